"""`anchoral report`, step 1: read the run folders and group them into cells.

A run is a folder holding `hparams.json` and `metrics.jsonl` (finished or not). A *cell* is
(dataset, strategy, filter, variant): the variant names any other config field that differs
between runs of a dataset (e.g. `num_anchors=50` in the ablations); seeds, W&B fields and paths
never split cells, so a cell's runs are its seeds (report.py's docstring has the whole report).
Also the names shared by the tables and the plots: the record keys read and the display names.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anchoral_jax.al import filters, strategies
from anchoral_jax.tracking.jsonl import load_metrics

SEED_KEYS = ("data.seed", "model.seed", "al.initial_seed")
IGNORED = ("wandb.", "data.cache_dir", "data.kwargs.manual_dir", "index.path", "index.view")
STRATEGY_ORDER = tuple(strategies.STRATEGIES)  # the registries' order: tables follow it
FILTER_ORDER = filters.FILTERS
FILTER_NAMES = {"none": "Full pool", "randomsubset": "RandomSubset", "seals": "SEALS",
                "anchoral": "AnchorAL"}
DATASET_NAMES = {  # registry key -> the task's name in the paper / README
    "bbc_tech": "bbc-tech-.01", "bbc_multi": "bbc-multi-.01", "tweets_iphone": "tweets-iphone-.01",
    "agnews_business": "agnews-business-.01", "wikitoxic": "wikitoxic-.01",
    "amazoncat_agri": "amazoncat-agri", "amazoncat_multi": "amazoncat-multi"}
MINORITY, MAJORITY, QUERY_TIME = "test/minority_f1", "test/majority_f1", "time/query"
LABELLED_SHARE, SUBPOOL_SHARE = "labelled/minority_share", "subpool/minority_share"
POOL_SHARE, ROWS_SCORED = "pool/minority_share", "query/rows_scored"  # optional: newer runs only
MINORITY_FOUND = "minority_found"  # derived from budget x labelled share (report/tables.py)
Cell = tuple[str, str, str, str]  # (dataset, strategy, filter, variant)


def display_name(dataset: str) -> str:
  """A task's display name: 'bbc-tech-.01' for the registry's 'bbc_tech'."""
  return DATASET_NAMES.get(dataset, dataset)


@dataclasses.dataclass
class RunData:
  """One run folder as the report reads it."""

  path: Path
  hparams: dict[str, Any]  # flattened: "al.strategy" -> "entropy"
  history: list[dict[str, Any]]  # one record per round, in round order
  done: bool

  @property
  def dataset(self) -> str:
    return str(self.hparams.get("data.name", "?"))

  @property
  def strategy(self) -> str:
    return str(self.hparams.get("al.strategy", "?"))

  @property
  def filter(self) -> str:
    return str(self.hparams.get("al.filter", "?"))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out: dict[str, Any] = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def find_runs(runs_dir: str | Path) -> list[RunData]:
  """Every run under `runs_dir` with at least one logged round, in path order."""
  runs = []
  for metrics in sorted(Path(runs_dir).rglob("metrics.jsonl")):
    folder = metrics.parent
    hparams = folder / "hparams.json"
    if not hparams.exists():
      continue
    history, _ = load_metrics(metrics)
    history = [r for r in history if "round" in r]
    if not history:
      warnings.warn(f"{folder}: no rounds logged yet; left out.", stacklevel=2)
      continue
    runs.append(RunData(folder, flatten(json.loads(hparams.read_text())), history,
                        (folder / "DONE").exists()))
  return runs


def _ignored(key: str) -> bool:
  return key in SEED_KEYS or any(key.startswith(p) for p in IGNORED)


def _key(value: Any) -> str:
  return json.dumps(value, sort_keys=True)


def variant_keys(runs: Sequence[RunData]) -> list[str]:
  """Config fields besides dataset/strategy/filter that differ between runs of one dataset
  (seeds excluded).

  Fields constant within each dataset do not count: they follow from the dataset (its `data.*`
  fields, or sizes scaled with its pool as in configs/reproduce_cpu.py). Nor do fields some runs
  lack (written by another version of the code) if the rest agree.
  """
  keys = sorted({k for r in runs for k in r.hparams})
  out = []
  for k in keys:
    if _ignored(k) or k in ("data.name", "al.strategy", "al.filter"):
      continue
    per_dataset = collections.defaultdict(set)
    for r in runs:
      if k in r.hparams:
        per_dataset[r.dataset].add(_key(r.hparams[k]))
    if all(len(v) == 1 for v in per_dataset.values()):
      continue
    out.append(k)
  return out


def variant_label(run: RunData, keys: Sequence[str], modes: Mapping[str, str]) -> str:
  """'num_anchors=50' for the fields where this run differs from the most common value."""
  short = {k: k.rsplit(".", 1)[-1] for k in keys}
  clash = {s for s in short.values() if list(short.values()).count(s) > 1}
  parts = []
  for k in keys:
    if k not in run.hparams:
      continue
    value = run.hparams[k]
    if _key(value) != modes[k]:
      name = k if short[k] in clash else short[k]
      parts.append(f"{name}={value}")
  return " ".join(parts)


def cells(runs: Sequence[RunData]) -> dict[Cell, list[RunData]]:
  """(dataset, strategy, filter, variant) -> runs, in the paper's row order."""
  keys = variant_keys(runs)
  by_dataset = collections.defaultdict(list)
  for r in runs:
    by_dataset[r.dataset].append(r)
  modes = {  # per dataset: a variant is named against its own dataset's usual value
      d: {k: collections.Counter(_key(r.hparams[k]) for r in members if k in r.hparams)
          .most_common(1)[0][0] for k in keys if any(k in r.hparams for r in members)}
      for d, members in by_dataset.items()}
  out: dict[Cell, list[RunData]] = collections.defaultdict(list)
  for r in runs:
    out[(r.dataset, r.strategy, r.filter, variant_label(r, keys, modes[r.dataset]))].append(r)
  return dict(sorted(out.items(), key=lambda kv: _row_order(kv[0][1:]) + (kv[0][0],)))


def _order(value: str, order: Sequence[str]) -> tuple[int, str]:
  return (order.index(value), "") if value in order else (len(order), value)


def _natural(text: str) -> tuple:
  """'num_anchors=50' before 'num_anchors=100'."""
  return tuple((0, int(t), "") if t.isdigit() else (1, 0, t)
               for t in re.split(r"(\d+)", text) if t)


def _row_order(row: tuple[str, str, str]) -> tuple:
  strategy, filter, variant = row
  return (_order(strategy, STRATEGY_ORDER), _order(filter, FILTER_ORDER), variant != "",
          _natural(variant))

