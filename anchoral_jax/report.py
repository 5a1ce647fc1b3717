"""`anchoral report RUNS_DIR [--out DIR]`: the paper's tables and plots from a folder of runs.

Every folder under RUNS_DIR holding `hparams.json` and `metrics.jsonl` is a run (finished or
not). Runs are grouped into *cells* by their config: the dataset (`data.name`, a table column
group), the strategy and filter, and a *variant* naming any other config field that differs
between runs (e.g. `num_anchors=50` in the ablations). Seeds (`data.seed`, `model.seed`,
`al.initial_seed`), W&B fields and paths never split cells: a cell's runs are its seeds.

Numbers (the paper's definitions): Minority / Majority = area under the per-round test F1 curve
of the minority class(es) / the majority class (trapezoid, unit spacing over rounds, F1 in
[0, 1]: `metrics.learning_curve_auc`); Time = cumulative query time (`time/query`: anchors +
search + scoring + acquisition, no training or testing) in minutes. Each cell shows the median
and the IQR (75th - 25th percentile, numpy's linear interpolation) over its runs.
  Overall: each run's whole curve.
  Budget-Matched: every run of a dataset cut to the smallest number of rounds any run of that
  dataset reached (so runs stopped early, e.g. by a time limit, compare at the same budget).
  Summary (per filter, what a demo prints): per cell the medians of the minority AUC, the last
  round's minority F1, the minority labels the queries found, the final labelled / subpool /
  unlabelled-pool minority shares, query seconds and rows scored per round (`summary_table`).

Writes to --out (default RUNS_DIR/report): report.md (the summary, both tables, the plots, the
runs), summary.{md,csv}, overall.{md,csv}, budget_matched.{md,csv}, runs.csv, and per dataset
the PNGs minority_f1-<dataset>.png (vs budget), query_time-<dataset>.png (per round),
labelled_minority_share-<dataset>.png (vs budget), subpool_minority_share-<dataset>.png
(per round, with the unlabelled pool's share dotted when logged): one panel per strategy, one
line per filter/variant (median, IQR band); full-pool Random, when present, is drawn dashed in
every panel as the reference.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anchoral_jax.metrics import learning_curve_auc
from anchoral_jax.tracking import load_metrics

SEED_KEYS = ("data.seed", "model.seed", "al.initial_seed")
IGNORED = ("wandb.", "data.cache_dir", "data.kwargs.manual_dir", "index.path", "index.view")
STRATEGY_ORDER = ("random", "entropy", "least_confidence", "margin", "badge", "ftbertkm")
FILTER_ORDER = ("none", "randomsubset", "seals", "anchoral")
FILTER_NAMES = {"none": "Full pool", "randomsubset": "RandomSubset", "seals": "SEALS",
                "anchoral": "AnchorAL"}
MINORITY, MAJORITY, QUERY_TIME = "test/minority_f1", "test/majority_f1", "time/query"
LABELLED_SHARE, SUBPOOL_SHARE = "labelled/minority_share", "subpool/minority_share"
POOL_SHARE, ROWS_SCORED = "pool/minority_share", "query/rows_scored"  # optional: newer runs only
UNIT_KEYS = (MINORITY, LABELLED_SHARE, SUBPOOL_SHARE)  # plotted on a y axis within [0, 1]
PLOTS = (  # file stem, y key, x axis, y label
    ("minority_f1", MINORITY, "budget", "test minority F1"),
    ("query_time", QUERY_TIME, "round", "query time per round (s)"),
    ("labelled_minority_share", LABELLED_SHARE, "budget", "minority share of the labelled set"),
    ("subpool_minority_share", SUBPOOL_SHARE, "round", "minority share of the subpool"),
)
PLOT_REFERENCE = {SUBPOOL_SHARE: (POOL_SHARE, "unlabelled pool")}  # dotted, when logged


@dataclasses.dataclass
class RunData:
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


# ---------------------------------------------------------------------------------------------
# Loading and grouping.
# ---------------------------------------------------------------------------------------------

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


def cells(runs: Sequence[RunData]) -> dict[tuple[str, str, str, str], list[RunData]]:
  """(dataset, strategy, filter, variant) -> runs, in the paper's row order."""
  keys = variant_keys(runs)
  by_dataset = collections.defaultdict(list)
  for r in runs:
    by_dataset[r.dataset].append(r)
  modes = {  # per dataset: a variant is named against its own dataset's usual value
      d: {k: collections.Counter(_key(r.hparams[k]) for r in members if k in r.hparams)
          .most_common(1)[0][0] for k in keys if any(k in r.hparams for r in members)}
      for d, members in by_dataset.items()}
  out: dict[tuple[str, str, str, str], list[RunData]] = collections.defaultdict(list)
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


# ---------------------------------------------------------------------------------------------
# Numbers.
# ---------------------------------------------------------------------------------------------

def run_numbers(history: Sequence[Mapping[str, Any]], rounds: int | None = None) -> dict:
  """Minority/majority AUC and query minutes of one run, over its first `rounds` rounds.

  Time counts the queries that produced those rounds' labelled sets (rounds 0..R-2); for a whole
  run this equals every logged query, as the last round queries nothing.
  """
  h = list(history[:rounds] if rounds is not None else history)
  out: dict[str, float] = {"rounds": len(h), "budget": float(h[-1].get("budget", math.nan))}
  for name, key in (("minority", MINORITY), ("majority", MAJORITY)):
    values = [float(r[key]) for r in h if r.get(key) is not None]
    out[name] = learning_curve_auc(values) if values else math.nan
  out["time_min"] = sum(float(r.get(QUERY_TIME) or 0.0) for r in h[:-1]) / 60.0
  if rounds is None and h and h[-1].get(QUERY_TIME) is not None:  # an unfinished run
    out["time_min"] += float(h[-1][QUERY_TIME]) / 60.0
  return out


def stats(values: Iterable[float]) -> dict[str, float]:
  v = np.asarray([x for x in values if not math.isnan(x)], np.float64)
  if not len(v):
    return {"median": math.nan, "q25": math.nan, "q75": math.nan, "iqr": math.nan}
  q25, med, q75 = np.percentile(v, [25, 50, 75])
  return {"median": float(med), "q25": float(q25), "q75": float(q75), "iqr": float(q75 - q25)}


def tables(runs: Sequence[RunData]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
  """(per-run numbers, the Overall cell table, the Budget-Matched cell table)."""
  groups = cells(runs)
  min_rounds: dict[str, int] = {}
  for r in runs:
    min_rounds[r.dataset] = min(min_rounds.get(r.dataset, 10**9), len(r.history))
  per_run, rows = [], []
  for (dataset, strategy, filter, variant), members in groups.items():
    for table, rounds in (("overall", None), ("budget_matched", min_rounds[dataset])):
      nums = [run_numbers(r.history, rounds) for r in members]
      row = {"table": table, "dataset": dataset, "strategy": strategy, "filter": filter,
             "variant": variant, "n_runs": len(members), "n_done": sum(r.done for r in members),
             "rounds": int(min(n["rounds"] for n in nums)),
             "rounds_max": int(max(n["rounds"] for n in nums)),
             "budget": float(np.median([n["budget"] for n in nums]))}
      for metric in ("minority", "majority", "time_min"):
        for stat, value in stats(n[metric] for n in nums).items():
          row[f"{metric}_{stat}"] = value
      rows.append(row)
      for r, n in zip(members, nums, strict=True):
        per_run.append({"table": table, "dataset": dataset, "strategy": strategy,
                        "filter": filter, "variant": variant, "run": str(r.path),
                        "done": r.done, **{k: r.hparams.get(k) for k in SEED_KEYS}, **n})
  table = pd.DataFrame(rows)
  return (pd.DataFrame(per_run), table[table.table == "overall"].reset_index(drop=True),
          table[table.table == "budget_matched"].reset_index(drop=True))


def _decimals(x: float) -> int:
  """1 decimal from 10 up (the paper's 73.5, 134.5), 2 from 1, 2 significant digits below."""
  a = abs(x)
  if math.isnan(a) or a == 0 or 1 <= a < 10:
    return 2
  return 1 if a >= 10 else 1 - math.floor(math.log10(a))


def _fmt(x: float, decimals: int) -> str:
  return "–" if x is None or math.isnan(x) else f"{x:.{decimals}f}"


def markdown(table: pd.DataFrame, title: str, matched: bool = False) -> str:
  """The paper's layout: one row per strategy/filter(/variant), per dataset Minority, Majority,
  Time as "median (IQR)"; the best median per column in bold."""
  datasets = list(dict.fromkeys(table.dataset))
  has_variant = (table.variant != "").any()
  head = ["Strategy", "Filter"] + (["Variant"] if has_variant else [])
  cols = [(d, m) for d in datasets for m in ("minority", "majority", "time_min")]
  names = {"minority": "Minority ↑", "majority": "Majority ↑", "time_min": "Time (min) ↓"}
  best = {}
  for d, m in cols:
    medians = table[table.dataset == d][f"{m}_median"].dropna()
    if medians.nunique() > 1:  # ties everywhere: nothing to point out
      best[(d, m)] = medians.min() if m == "time_min" else medians.max()
  n_max = int(table.n_runs.max())
  lines = [f"### {title}", ""]
  lines.append("| " + " | ".join(head + [f"{d} {names[m]}" for d, m in cols]) + " |")
  lines.append("|" + "---|" * (len(head) + len(cols)))
  rows = list(dict.fromkeys(zip(table.strategy, table["filter"], table.variant, strict=True)))
  for strategy, filter, variant in rows:
    out = [strategy, FILTER_NAMES.get(filter, filter)] + ([variant or "–"] if has_variant else [])
    for d, m in cols:
      sel = table[(table.dataset == d) & (table.strategy == strategy) & (table["filter"] == filter)
                  & (table.variant == variant)]
      if sel.empty:
        out.append("")
        continue
      s = sel.iloc[0]
      dec = _decimals(s[f"{m}_median"])
      text = f"{_fmt(s[f'{m}_median'], dec)} ({_fmt(s[f'{m}_iqr'], dec)})"
      if (d, m) in best and s[f"{m}_median"] == best[(d, m)]:
        text = f"**{text}**"
      if s.n_runs != n_max:
        text += f" [n={s.n_runs}]"
      out.append(text)
    lines.append("| " + " | ".join(out) + " |")
  by = table.groupby("dataset", sort=False)
  if matched:
    cut = by.agg(rounds=("rounds", "min"), budget=("budget", "median"))
    rounds = "Every run cut to the first R rounds of its dataset (labels at the last): " + (
        ", ".join(f"{d} {int(r.rounds)} ({int(r.budget)})" for d, r in cut.iterrows()))
  else:
    most = by.agg(rounds=("rounds_max", "max"))
    rounds = "Whole runs; most rounds per dataset: " + ", ".join(
        f"{d} {int(r.rounds)}" for d, r in most.iterrows())
  lines += ["", f"Median (IQR) over n={n_max} runs per cell unless marked; AUC over rounds of "
            f"F1 in [0, 1]; time = cumulative query time. {rounds}."]
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Per-filter summary.
# ---------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = {  # column -> (markdown header, format)
    "minority_auc": ("Minority F1 AUC ↑", "auc"),
    "final_minority_f1": ("Final minority F1 ↑", "share"),
    "minority_found": ("Minority found ↑", "count"),
    "labelled_minority_share": ("Labelled minority share", "share"),
    "subpool_minority_share": ("Subpool minority share", "share"),
    "pool_minority_share": ("Pool minority share", "share"),
    "query_time_s": ("Query time (s) ↓", "auc"),
    "rows_scored": ("Rows scored / round", "count"),
}
OPTIONAL_COLUMNS = ("pool_minority_share", "rows_scored")  # left out when no run logs them


def _last(history: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, Any] | None:
  return next((r for r in reversed(history) if r.get(key) is not None), None)


def _minority_count(record: Mapping[str, Any]) -> float:
  """Minority labels in a round's labelled set: the share times the size, rounded (the share is
  an exact fraction of it). The classes that are minority are a property of the dataset, known
  to the loop but not logged, so `labelled/count_class_<k>` cannot be summed here."""
  if record.get("budget") is None or record.get(LABELLED_SHARE) is None:
    return math.nan
  return float(round(float(record["budget"]) * float(record[LABELLED_SHARE])))


def summary_numbers(history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """One run's summary numbers (NaN where it logged nothing to compute them from).

  minority_found = minority labels in the last logged round's labelled set minus those in round
  0's (the initial set), i.e. what the queries found; subpool and pool shares come from the last
  round with a subpool (the last round queries nothing), the pool's from that same round when it
  was logged there; rows_scored is the median over the rounds that logged it.
  """
  h = list(history)
  f1 = _last(h, MINORITY)
  sub = _last(h, SUBPOOL_SHARE)
  pool = sub if sub is not None and sub.get(POOL_SHARE) is not None else _last(h, POOL_SHARE)
  rows = [float(r[ROWS_SCORED]) for r in h if r.get(ROWS_SCORED) is not None]
  share = h[-1].get(LABELLED_SHARE)
  whole = run_numbers(h)
  return {
      "rounds": len(h),
      "minority_auc": whole["minority"],
      "final_minority_f1": float(f1[MINORITY]) if f1 else math.nan,
      "minority_found": _minority_count(h[-1]) - _minority_count(h[0]),
      "labelled_minority_share": float(share) if share is not None else math.nan,
      "subpool_minority_share": float(sub[SUBPOOL_SHARE]) if sub else math.nan,
      "pool_minority_share": float(pool[POOL_SHARE]) if pool else math.nan,
      "query_time_s": 60.0 * whole["time_min"],  # = the last `time/cumulative_query`
      "rows_scored": float(np.median(rows)) if rows else math.nan,
  }


def summary_table(runs: Sequence[RunData]) -> pd.DataFrame:
  """One row per cell: n runs and the median over its runs of every `summary_numbers` column."""
  rows = []
  for (dataset, strategy, filter, variant), members in cells(runs).items():
    nums = [summary_numbers(r.history) for r in members]
    row: dict[str, Any] = {"dataset": dataset, "strategy": strategy, "filter": filter,
                           "variant": variant, "n_runs": len(members),
                           "n_done": sum(r.done for r in members),
                           "rounds": int(max(n["rounds"] for n in nums))}
    for col in SUMMARY_COLUMNS:
      row[col] = stats(n[col] for n in nums)["median"]
    rows.append(row)
  return pd.DataFrame(rows)


def _fmt_summary(x: float, kind: str) -> str:
  if x is None or math.isnan(x):
    return "–"
  if kind == "share":
    return f"{x:.3f}"
  if kind == "count":  # whole unless a median fell between two runs
    return f"{x:.0f}" if x == round(x) else f"{x:.1f}"
  return _fmt(x, _decimals(x))


def summary_markdown(table: pd.DataFrame) -> str:
  """The summary as a markdown table: medians only (the paper tables carry the IQRs)."""
  has_variant = (table.variant != "").any()
  cols = [c for c in SUMMARY_COLUMNS if c not in OPTIONAL_COLUMNS or table[c].notna().any()]
  head = ["Dataset", "Strategy", "Filter"] + (["Variant"] if has_variant else []) + ["n"]
  lines = ["### Summary per filter", "",
           "| " + " | ".join(head + [SUMMARY_COLUMNS[c][0] for c in cols]) + " |",
           "|" + "---|" * (len(head) + len(cols))]
  for s in table.itertuples():
    out = [s.dataset, s.strategy, FILTER_NAMES.get(s.filter, s.filter)]
    out += ([s.variant or "–"] if has_variant else []) + [str(s.n_runs)]
    out += [_fmt_summary(getattr(s, c), SUMMARY_COLUMNS[c][1]) for c in cols]
    lines.append("| " + " | ".join(out) + " |")
  lines += ["", "Medians over a cell's runs. Minority found = minority labels the queries added "
            "(last round's labelled set minus the initial set); shares at the last round "
            "(subpool and pool: the last round that queried); query time summed over rounds."]
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Plots.
# ---------------------------------------------------------------------------------------------

def curve(members: Sequence[RunData], key: str, x: str) -> tuple[np.ndarray, ...]:
  """Per round: x (median over runs), median, 25th and 75th percentile of `key`."""
  by_round: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
  for r in members:
    for rec in r.history:
      if rec.get(key) is not None:
        by_round[int(rec["round"])].append((float(rec.get(x, rec["round"])), float(rec[key])))
  rounds = sorted(by_round)
  if not rounds:
    empty = np.zeros(0)
    return empty, empty, empty, empty
  xs = np.array([np.median([p[0] for p in by_round[k]]) for k in rounds])
  q_Rx3 = np.array([np.percentile([p[1] for p in by_round[k]], [50, 25, 75]) for k in rounds])
  return xs, q_Rx3[:, 0], q_Rx3[:, 1], q_Rx3[:, 2]


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def line_style(i: int, n_points: int) -> dict[str, Any]:
  """Style of a panel's i-th filter line: later lines thinner, with their own hollow markers at
  shifted points, so curves that coincide exactly (e.g. identical seeds) all stay visible."""
  every = max(1, n_points // 10)
  return {"lw": max(0.8, 3.2 - 0.8 * i), "marker": MARKERS[i % len(MARKERS)],
          "ms": max(3.0, 7.0 - 1.5 * i), "mfc": "none", "mew": 1.0, "markevery": (i % every, every)}


def setup_axis(ax: Any, key: str, x: str) -> None:
  """Budget/round ticks at round numbers (not 102/108/114); F1s and shares kept within [0, 1]
  (autoscaling pads an all-zero curve to -0.04..0.04), at least 0.1 tall."""
  from matplotlib.ticker import MaxNLocator

  ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))
  if key in UNIT_KEYS:
    lo, hi = ax.get_ylim()
    lo = min(max(0.0, lo), 0.9)
    ax.set_ylim(lo, min(1.0, max(hi, lo + 0.1)))


def figure(dataset: str, groups: Mapping[tuple[str, str, str, str], list[RunData]], key: str,
           x: str, ylabel: str) -> Any:
  """One plot of one dataset (a matplotlib Figure), or None when no run logged `key`."""
  from matplotlib.figure import Figure
  from matplotlib.ticker import LogFormatter

  mine = {k[1:]: v for k, v in groups.items() if k[0] == dataset}
  strategies = list(dict.fromkeys(s for s, _, _ in mine))
  reference = {k: v for k, v in mine.items() if k[0] == "random" and k[1] == "none"}
  panels = [s for s in strategies if not (s == "random" and len(strategies) > 1
                                          and all(f == "none" for t, f, _ in mine if t == s))]
  labels = list(dict.fromkeys((f, v) for s, f, v in mine if s in panels))
  colors = {lab: f"C{i % 10}" for i, lab in enumerate(labels)}
  fig = Figure(figsize=(max(6.5, 4.2 * len(panels)), 3.6), layout="constrained")
  axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
  drawn = False
  for ax, strategy in zip(axes, panels, strict=True):
    lines = [(k, v) for k, v in mine.items() if k[0] == strategy]
    if strategy != "random":
      lines += [(k, v) for k, v in reference.items()]
    for (s, f, v), members in lines:
      xs, med, lo, hi = curve(members, key, x)
      if not len(xs):
        continue
      drawn = True
      is_ref = s == "random" and strategy != "random"
      label = "Random (full pool)" if is_ref else (FILTER_NAMES.get(f, f) + (f" {v}" if v else ""))
      color = "0.35" if is_ref else colors[(f, v)]
      style = ({"lw": 1.4, "ls": "--", "marker": ".", "ms": 3} if is_ref
               else line_style(labels.index((f, v)), len(xs)))
      ax.plot(xs, med, color=color, clip_on=False, label=f"{label} (n={len(members)})", **style)
      ax.fill_between(xs, lo, hi, color=color, alpha=0.15, lw=0)
    if key in PLOT_REFERENCE:  # e.g. the unlabelled pool's minority share beside the subpool's
      ref_key, ref_label = PLOT_REFERENCE[key]
      xs, med, _, _ = curve([r for k, v in lines if k[0] == strategy for r in v], ref_key, x)
      if len(xs):
        ax.plot(xs, med, color="0.2", ls=":", lw=1.4, label=f"{ref_label} (median)")
    ax.set_title(strategy)
    ax.set_xlabel("labelled instances (budget)" if x == "budget" else "round")
    ax.grid(alpha=0.3)
  if not drawn:
    return None
  for ax in axes:
    setup_axis(ax, key, x)
  axes[0].set_ylabel(ylabel)
  if key == QUERY_TIME and all(line.get_ydata().min() > 0 for ax in axes
                               for line in ax.get_lines() if len(line.get_ydata())):
    for ax in axes:
      ax.set_yscale("log")
      ax.yaxis.set_major_formatter(LogFormatter())  # plain numbers, not 10^k
      ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))
  fig.suptitle(f"{dataset}: {ylabel} (median, IQR band)", fontsize=10)
  legend: dict[str, Any] = {}  # one legend for all panels, outside them
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
      legend.setdefault(label, handle)
  col_in = 0.5 + 0.065 * max(len(label) for label in legend)  # ~width of one entry
  ncols = max(1, min(4, len(legend), int(fig.get_figwidth() // col_in)))
  fig.set_figheight(3.6 + 0.2 * -(-len(legend) // ncols))
  fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=ncols,
             fontsize=7, frameon=False)
  return fig


def plot_dataset(dataset: str, groups: Mapping[tuple[str, str, str, str], list[RunData]],
                 out: Path) -> list[Path]:
  """The PNGs of one dataset (a plot no run logged is left out); returns their paths."""
  paths = []
  for stem, key, x, ylabel in PLOTS:
    fig = figure(dataset, groups, key, x, ylabel)
    if fig is None:
      continue
    path = out / f"{stem}-{dataset}.png"
    fig.savefig(path, dpi=110)
    paths.append(path)
  return paths


# ---------------------------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------------------------

def report(runs_dir: str | Path, out: str | Path | None = None, plots: bool = True) -> Path:
  """Writes every table and plot; returns the path of report.md."""
  runs_dir = Path(runs_dir)
  runs = find_runs(runs_dir)
  if not runs:
    raise SystemExit(f"No runs under {runs_dir} (folders with hparams.json and metrics.jsonl).")
  out = Path(out) if out else runs_dir / "report"
  out.mkdir(parents=True, exist_ok=True)
  per_run, overall, matched = tables(runs)
  per_run.to_csv(out / "runs.csv", index=False)
  summary = summary_table(runs)
  summary.to_csv(out / "summary.csv", index=False)
  summary_text = summary_markdown(summary)
  (out / "summary.md").write_text(summary_text)
  sections = [f"# Report: {runs_dir.resolve()}", "",
              f"{len(runs)} runs ({sum(r.done for r in runs)} DONE) in "
              f"{len({k for k in cells(runs)})} cells.", "", summary_text, ""]
  for name, table, title in (("overall", overall, "Overall"),
                             ("budget_matched", matched, "Budget-Matched")):
    table.drop(columns="table").to_csv(out / f"{name}.csv", index=False)
    text = markdown(table, title, matched=name == "budget_matched")
    (out / f"{name}.md").write_text(text)
    sections += [text, ""]
  if plots:
    groups = cells(runs)
    sections += ["### Plots", ""]
    for dataset in dict.fromkeys(r.dataset for r in runs):
      for path in plot_dataset(dataset, groups, out):
        sections.append(f"![{path.stem}]({path.name})")
    sections.append("")
  unfinished = [r for r in runs if not r.done]
  if unfinished:
    sections += ["### Unfinished runs", ""] + [
        f"- {r.path.relative_to(runs_dir) if r.path.is_relative_to(runs_dir) else r.path}: "
        f"{len(r.history)} rounds" for r in unfinished] + [""]
  path = out / "report.md"
  path.write_text("\n".join(sections))
  return path


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="anchoral report",
      description="Tables (a per-filter summary; median and IQR over seeds of minority/majority "
      "AUC and query time, Overall and Budget-Matched) and plots from a folder of runs.")
  parser.add_argument("runs_dir", help="folder holding run folders (e.g. a sweep's --runs_dir)")
  parser.add_argument("--out", default=None, help="output folder (default RUNS_DIR/report)")
  parser.add_argument("--no_plots", action="store_true", help="tables only")
  args = parser.parse_args(argv)
  path = report(args.runs_dir, args.out, plots=not args.no_plots)
  print((path.parent / "summary.md").read_text())
  print((path.parent / "overall.md").read_text())
  print(f"Wrote {path} (tables, CSV and plots in {path.parent}).")
