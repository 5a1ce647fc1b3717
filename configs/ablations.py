r"""AnchorAL ablations: Amazon-Agri, BERT-base, Entropy; one knob changed per cell; 8 seeds each.

Lesci & Vlachos (NAACL 2024), ablation table; official launcher pietrolesci/anchoral
`bin/run_ablations.sh`. Cells (9 x 8 seeds = 72 runs), each against `ablation=main`, the paper's
AnchorAL set-up (k-means++ anchors, 10 anchors per class, 50 neighbours per anchor):
  anchor_strategy  random | kmeans | entropy   (main: kmeans_pp)
  num_anchors      50 | 100                    (main: 10)
  num_neighbours   500 | 5000                  (main: 50)
  subpool          RandomSubset with a 1,000-item subpool (no anchoring, AnchorAL-sized pool)

Tiny (offline; 72 runs on 1,500 embedded tweets with a random tiny BERT, ~40 s per run,
~30 min for all with --parallel 2 on 2 CPU cores, 3.5 min with `seeds=1`; a smoke test of the
machinery, not of the method):

  anchoral sweep --config configs/ablations.py:runlocal --runs-dir runs/ablations-local --parallel 2
  anchoral report runs/ablations-local

Full size (amazoncat-agri in $ANCHORAL_DATA_DIR, bert-base-uncased in the local HF cache):

  anchoral sweep --config configs/ablations.py --runs-dir runs/ablations --parallel 1   # one GPU
  anchoral sweep --config configs/ablations.py --runs-dir runs/ablations --backend slurm \
      --sbatch=--gres=gpu:1 --sbatch=--time=24:00:00     # then: sbatch runs/ablations/_sweep/ablations.sbatch
  anchoral report runs/ablations

Expected (paper, minority AUC / query minutes; majority AUC ~134.5 in every row; compare the
ordering, the paper's AUC scale is its own): main 73.5 / 4.1; 100 anchors 72.2 / 24.8;
500 neighbours 70.7 / 30.1; 5,000 neighbours 68.3; entropy anchors 71.4 / 12.7;
random subpool of 1,000: 33.6 / 3.4. More anchors or neighbours cost time and do not help.

Arguments (comma-separated): dataset=amazoncat_agri (any of configs/main.py DATASETS)
  ablation=main|anchor_strategy|num_anchors|num_neighbours|subpool, with the changed knob:
  anchor_strategy=kmeans_pp|random|kmeans|entropy  num_anchors=10  num_neighbours=50
  subpool_size=1000;  runlocal (alias tiny).
  Sweep only: ablations=num_anchors+subpool (a subset of the cells), seeds=N (first N of 8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections

from anchoral_jax import config as common
from anchoral_jax.sweep.runs import load_module

main = load_module(Path(__file__).with_name("main.py"))  # configs/ is not a package

EXPERIMENT = "ablations"
DATASET = "amazoncat_agri"  # the paper ran the ablations on Amazon-Agri only
STRATEGY = "entropy"
# The paper's AnchorAL knobs (SPEC.md §2) and the values each ablation tries.
DEFAULTS = {"anchor_strategy": "kmeans_pp", "num_anchors": 10, "num_neighbours": 50,
            "subpool_size": 1000}
CELLS: dict[str, tuple[dict[str, Any], ...]] = {
    "main": ({},),
    # Official run: majority anchors by entropy, minority by entropy or k-means++ sampling;
    # here one strategy serves every class (the QUIRK-fix knobs stay unset).
    "anchor_strategy": tuple({"anchor_strategy": s} for s in ("random", "kmeans", "entropy")),
    "num_anchors": ({"num_anchors": 50}, {"num_anchors": 100}),  # per class
    "num_neighbours": ({"num_neighbours": 500}, {"num_neighbours": 5000}),  # per anchor
    "subpool": ({"subpool_size": 1000},),  # RandomSubset of 1,000 pool items per round
}
KNOB = {"anchor_strategy": "anchor_strategy", "num_anchors": "num_anchors",
        "num_neighbours": "num_neighbours", "subpool": "subpool_size"}
SWEEP_ARGS = ("ablations", "seeds")


def parse(arg: str | None) -> ml_collections.ConfigDict:
  return common.parse_arg(arg, dataset=DATASET, ablation="main", runlocal=False, tiny=False,
                          ablations="", seeds=8, **DEFAULTS)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse(arg)
  if a.ablation not in CELLS:
    raise ValueError(f"Unknown ablation {a.ablation!r}; choose from {list(CELLS)}.")
  changed = [k for k, v in DEFAULTS.items() if a[k] != v]
  allowed = [KNOB[a.ablation]] if a.ablation in KNOB else []
  if any(k not in allowed for k in changed):
    raise ValueError(f"ablation={a.ablation} changes {allowed or 'nothing'}, but the argument "
                     f"also sets {[k for k in changed if k not in allowed]}: one knob per cell.")
  filter = "randomsubset" if a.ablation == "subpool" else "anchoral"
  c = main.paper_config(EXPERIMENT, a.dataset, STRATEGY, filter, a.runlocal or a.tiny)
  c.anchoral.anchor_strategy = a.anchor_strategy
  c.anchoral.num_anchors = a.num_anchors  # per class present in the labelled set
  c.anchoral.num_neighbours = a.num_neighbours  # retrieved per anchor
  if a.ablation == "subpool":
    c.al.subpool_size = a.subpool_size  # items; the paper's RandomSubset default is 10,000
  c.wandb.group = f"{EXPERIMENT}/dataset={c.data.name}/ablation={a.ablation}" + "".join(
      f"/{k}={a[k]}" for k in changed)
  c.wandb.tags = tuple(c.wandb.tags) + (f"ablation:{a.ablation}",)
  return c


def sweep(add: main.Add, arg: str | None = None) -> None:
  a = parse(arg)
  dataset = main.LOCAL_DATASET if (a.runlocal or a.tiny) else a.dataset
  for ablation in main.pick(a.ablations, tuple(CELLS), "ablations"):
    for knobs in CELLS[ablation]:
      for seeds in main.seed_points(a.seeds):
        add(dataset=dataset, ablation=ablation, **knobs, **seeds)
