"""`anchoral report`, paired comparisons: a reference filter minus each other cell, seed by seed.

Seeds are shared across the cells of a sweep (`SEED_KEYS`: the same data order, model init and
initial set), so the runs of two cells pair up by seed and their differences cancel the seed's
own luck: a paired test sees a gap the per-cell IQRs hide (CDALBench, arXiv 2408.00426, shows
how unpaired 3-seed comparisons mislead). Per dataset and strategy, the reference cell (its
filter, default AnchorAL, no variant) is compared with every other cell of the same strategy
(other filters and variants, e.g. the ablations) and with full-pool Random:

  mean ΔAUC     mean over the seed pairs of reference minus other minority-F1 AUC, both runs cut
                to the rounds both reached (`tables.run_numbers`);
  95% CI        percentile bootstrap of that mean (B resamples of the pairs, seeded: a report is
                reproducible), none for one pair;
  p             Wilcoxon signed-rank test, two-sided, *exact*: the signed-rank statistic's
                distribution over all 2^n sign flips of the differences (ties at average ranks,
                zeros ranked then left out of both sides, Pratt's way, so it stays exact with ties).
                With n pairs the smallest possible p is 2 / 2^n: 0.0625 at 5 seeds, 0.002 at 10;
  W/T/L         pairs where the reference is above / equal to / below the other.

Labels to reach X% (`reach`): per dataset the target is X% of the best final minority F1 (the
largest median over the dataset's cells of the last round's F1); a run's labels to reach it are
the budget of its first round at or above it (not reached: left out, the count says how many).
Minority found: the minority labels the queries added (labelled minority minus the initial
set's) at fractions of the budget, per cell (`found_table`), and as a curve (plots.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from anchoral_jax.report.cells import (
  FILTER_NAMES,
  MINORITY,
  SEED_KEYS,
  Cell,
  RunData,
  display_name,
)
from anchoral_jax.report.tables import _minority_count, run_numbers

BOOTSTRAP = 10_000  # resamples
FOUND_AT = (0.25, 0.5, 0.75, 1.0)  # fractions of the rounds in `found_table`


# ---------------------------------------------------------------------------------------------
# Statistics (checked against scipy in tests/test_report_paired.py).
# ---------------------------------------------------------------------------------------------

def _ranks(x_N: np.ndarray) -> np.ndarray:
  """1-based ranks, ties at their average rank."""
  order = np.argsort(x_N, kind="stable")
  sorted_N = x_N[order]
  ranks_N = np.empty(len(x_N))
  start = 0
  for end in range(1, len(x_N) + 1):
    if end == len(x_N) or sorted_N[end] != sorted_N[start]:
      ranks_N[order[start:end]] = (start + 1 + end) / 2.0
      start = end
  return ranks_N


def signed_rank_test(diff_N: Sequence[float]) -> tuple[float, float]:
  """(W+, two-sided p) of the exact Wilcoxon signed-rank test of `diff_N` against 0.

  W+ = sum of the ranks of |d| over the positive d (zeros rank but count for neither side, the
  Pratt treatment). Under H0 each of the 2^n sign assignments is equally likely; its W+
  distribution is counted exactly by dynamic programming over the doubled ranks (integers: ties
  average to half-integers). p = P(|W+ - E| >= |w - E|), E = the sum of the ranks / 2 (the null
  is symmetric about E, so this is twice the smaller tail, capped at 1, as scipy's).
  """
  d_N = np.asarray(diff_N, np.float64)
  if not len(d_N):
    return math.nan, math.nan
  rank2_N = np.rint(2 * _ranks(np.abs(d_N))).astype(np.int64)
  rank2_N[d_N == 0] = 0
  w2 = int(rank2_N[d_N > 0].sum())
  counts = np.zeros(int(rank2_N.sum()) + 1)  # counts[k]: sign assignments with 2 W+ = k
  counts[0] = 1.0
  for r in rank2_N:
    if r:
      counts[r:] = counts[r:] + counts[:-r].copy()
    else:
      counts *= 2
  total = rank2_N.sum()  # 2 E = total / 2, compared in doubled units: |2k - total|
  k = np.arange(len(counts))
  extreme = np.abs(2 * k - total) >= abs(2 * w2 - total)
  return w2 / 2.0, float(counts[extreme].sum() / counts.sum())


def bootstrap_ci(diff_N: Sequence[float], level: float = 0.95, resamples: int = BOOTSTRAP,
                 seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of the mean of `diff_N` (NaNs for fewer than 2 values)."""
  d_N = np.asarray(diff_N, np.float64)
  if len(d_N) < 2:
    return math.nan, math.nan
  rng = np.random.default_rng(seed)
  means_B = d_N[rng.integers(0, len(d_N), (resamples, len(d_N)))].mean(axis=1)
  lo, hi = np.percentile(means_B, [50 * (1 - level), 50 * (1 + level)])
  return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------
# Per-run numbers.
# ---------------------------------------------------------------------------------------------

def seed_of(run: RunData) -> tuple:
  return tuple(run.hparams.get(k) for k in SEED_KEYS)


def labels_to_reach(history: Sequence[Mapping[str, Any]], target: float) -> float:
  """The budget of the first round whose minority F1 is at least `target` (NaN: never)."""
  for r in history:
    if r.get(MINORITY) is not None and float(r[MINORITY]) >= target:
      return float(r["budget"])
  return math.nan


def found_at(history: Sequence[Mapping[str, Any]], budget: float) -> float:
  """Minority labels the queries had added when the labelled set reached `budget` (NaN: the
  run never reached it)."""
  first = _minority_count(history[0])
  for r in history:
    if r.get("budget") is not None and float(r["budget"]) >= budget:
      return _minority_count(r) - first
  return math.nan


def final_f1(run: RunData) -> float:
  values = [float(r[MINORITY]) for r in run.history if r.get(MINORITY) is not None]
  return values[-1] if values else math.nan


def targets(groups: Mapping[Cell, list[RunData]], reach: float) -> dict[str, float]:
  """Per dataset: `reach`% of the best (over cells) median final minority F1."""
  best: dict[str, float] = {}
  for (dataset, *_), members in groups.items():
    f1 = np.nanmedian([final_f1(r) for r in members]) if members else math.nan
    if not math.isnan(f1):
      best[dataset] = max(best.get(dataset, -math.inf), float(f1))
  return {d: reach / 100.0 * v for d, v in best.items()}


# ---------------------------------------------------------------------------------------------
# Tables.
# ---------------------------------------------------------------------------------------------

def _label(filter: str, variant: str, strategy: str | None = None) -> str:
  name = FILTER_NAMES.get(filter, filter) + (f" {variant}" if variant else "")
  return f"{name} ({strategy})" if strategy else name


def _median_reach(members: Sequence[RunData], target: float) -> tuple[float, int]:
  values = [labels_to_reach(r.history, target) for r in members]
  reached = [v for v in values if not math.isnan(v)]
  return (float(np.median(reached)) if reached else math.nan), len(reached)


def paired_table(groups: Mapping[Cell, list[RunData]], reference: str = "anchoral",
                 reach: float = 90.0) -> pd.DataFrame:
  """One row per (reference cell, other cell) pair of a dataset and strategy (module doc)."""
  target = targets(groups, reach)
  rows = []
  for (dataset, strategy, filter, variant), ref_runs in groups.items():
    if filter != reference or variant:
      continue
    others = [(k, v) for k, v in groups.items() if k[0] == dataset and k != (
        dataset, strategy, filter, variant) and (k[1] == strategy or k[1:3] == ("random", "none"))]
    for (_, o_strategy, o_filter, o_variant), o_runs in others:
      by_seed = {seed_of(r): r for r in o_runs}
      pairs = [(r, by_seed[seed_of(r)]) for r in ref_runs if seed_of(r) in by_seed]
      diffs = []
      for a, b in pairs:
        rounds = min(len(a.history), len(b.history))
        diffs.append(run_numbers(a.history, rounds)["minority"]
                     - run_numbers(b.history, rounds)["minority"])
      d_N = np.asarray(diffs, np.float64)
      lo, hi = bootstrap_ci(d_N)
      _, p = signed_rank_test(d_N)
      ref_reach, ref_n = _median_reach([a for a, _ in pairs], target.get(dataset, math.nan))
      o_reach, o_n = _median_reach([b for _, b in pairs], target.get(dataset, math.nan))
      budget = min((float(r.history[-1]["budget"]) for pair in pairs for r in pair),
                   default=math.nan)
      found_N = np.asarray([found_at(a.history, budget) - found_at(b.history, budget)
                            for a, b in pairs], np.float64)
      found_lo, found_hi = bootstrap_ci(found_N)
      rows.append({
          "dataset": dataset, "strategy": strategy, "reference": _label(filter, ""),
          "other": _label(o_filter, o_variant, o_strategy if o_strategy != strategy else None),
          "n_pairs": len(pairs),
          "mean_diff": float(d_N.mean()) if len(d_N) else math.nan, "ci_lo": lo, "ci_hi": hi,
          "p_wilcoxon": p, "wins": int((d_N > 0).sum()), "ties": int((d_N == 0).sum()),
          "losses": int((d_N < 0).sum()),
          "target_f1": target.get(dataset, math.nan),
          "ref_labels_to_reach": ref_reach, "ref_reached": ref_n,
          "other_labels_to_reach": o_reach, "other_reached": o_n,
          "ref_found": float(np.median([found_at(a.history, budget) for a, _ in pairs]))
          if pairs else math.nan,
          "other_found": float(np.median([found_at(b.history, budget) for _, b in pairs]))
          if pairs else math.nan,
          "found_diff": float(found_N.mean()) if len(found_N) else math.nan,
          "found_ci_lo": found_lo, "found_ci_hi": found_hi,
      })
  return pd.DataFrame(rows)


def _f(x: float, fmt: str) -> str:
  return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _reach(value: float, reached: int, n: int) -> str:
  text = _f(value, ".0f")
  return text if reached == n else f"{text} [{reached}/{n}]"


def paired_markdown(table: pd.DataFrame, reference: str = "anchoral", reach: float = 90.0) -> str:
  name = FILTER_NAMES.get(reference, reference)
  if table.empty:
    return (f"### Paired comparisons\n\nNo cell with filter {name} (`--reference`) shares seeds "
            "with another cell.\n")
  lines = [f"### Paired comparisons: {name} minus each other cell, by seed", "",
           "| Dataset | Strategy | Other | n | Mean ΔAUC | 95% CI | Wilcoxon p | W/T/L | "
           f"Labels to {reach:g}% ({name} / other) ↓ | Minority found ({name} / other) ↑ | "
           "Δ found [95% CI] |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for s in table.itertuples():
    ci = f"[{_f(s.ci_lo, '+.2f')}, {_f(s.ci_hi, '+.2f')}]"
    lines.append(" | ".join([
        f"| {display_name(s.dataset)}", s.strategy, s.other, str(s.n_pairs), _f(s.mean_diff, "+.2f"), ci,
        _f(s.p_wilcoxon, ".3g"), f"{s.wins}/{s.ties}/{s.losses}",
        f"{_reach(s.ref_labels_to_reach, s.ref_reached, s.n_pairs)} / "
        f"{_reach(s.other_labels_to_reach, s.other_reached, s.n_pairs)}",
        f"{_f(s.ref_found, '.0f')} / {_f(s.other_found, '.0f')}",
        f"{_f(s.found_diff, '+.1f')} [{_f(s.found_ci_lo, '+.1f')}, {_f(s.found_ci_hi, '+.1f')}] |"]))
  targets_text = ", ".join(f"{display_name(d)} {t:.3f}" for d, t in
                           table.groupby("dataset", sort=False).target_f1.first().items())
  n = int(table.n_pairs.max())
  lines += ["", f"ΔAUC: {name}'s minority-F1 AUC minus the other's, seed by seed (both cut to the "
            "rounds both reached); 95% CI: percentile bootstrap of the mean "
            f"({BOOTSTRAP:,} resamples); p: Wilcoxon signed-rank, two-sided, exact (all 2^n sign "
            f"flips; with n={n} pairs no p can be below {2 / 2 ** n:.3g}); W/T/L: seeds where "
            f"{name} is above / equal / below. Labels to {reach:g}%: median labelled instances "
            f"at the first round with minority F1 >= {reach:g}% of the best cell's median final "
            f"F1 ({targets_text}); [k/n]: only k runs reached it. Minority found: median minority "
            "labels the queries added by the pair's last common budget; Δ found: their mean "
            "difference by seed with its bootstrap interval."]
  return "\n".join(lines) + "\n"


def found_table(groups: Mapping[Cell, list[RunData]]) -> pd.DataFrame:
  """Per cell: median minority labels found by fractions `FOUND_AT` of the dataset's budget."""
  budgets: dict[str, set[float]] = {}  # every labelled-set size a run of the dataset logged
  for (dataset, *_), members in groups.items():
    budgets.setdefault(dataset, set()).update(
        float(h["budget"]) for r in members for h in r.history if h.get("budget") is not None)
  rows = []
  for (dataset, strategy, filter, variant), members in groups.items():
    sizes = sorted(budgets[dataset])
    row: dict[str, Any] = {"dataset": dataset, "strategy": strategy,
                           "filter": _label(filter, variant), "n_runs": len(members)}
    for frac in FOUND_AT:  # the logged size nearest that fraction of the way
      budget = sizes[round(frac * (len(sizes) - 1))]
      values = [v for v in (found_at(r.history, budget) for r in members) if not math.isnan(v)]
      row[f"found@{int(round(budget))}"] = float(np.median(values)) if values else math.nan
    rows.append(row)
  return pd.DataFrame(rows)


def found_markdown(table: pd.DataFrame) -> str:
  if table.empty:
    return ""
  lines = ["### Minority found against budget", ""]
  for dataset, part in table.groupby("dataset", sort=False):
    cols = [c for c in part.columns if c.startswith("found@") and part[c].notna().any()]
    lines += [f"{display_name(str(dataset))}:", "",
              "| Strategy | Filter | n | " + " | ".join(f"{c[6:]} labels" for c in cols) + " |",
              "|---|---|---|" + "---|" * len(cols)]
    for _, row in part.iterrows():
      values = [table_cell(row, c) for c in cols]
      lines.append(f"| {row.strategy} | {row['filter']} | {row.n_runs} | "
                   + " | ".join(values) + " |")
    lines.append("")
  lines.append("Median over a cell's runs of the minority labels the queries had added (the "
               "labelled set's minority minus the initial set's) once the labelled set reached "
               "the budget in the header.")
  return "\n".join(lines) + "\n"


def table_cell(row: Mapping[str, Any], col: str) -> str:
  x = row[col]
  if x is None or math.isnan(x):
    return "–"
  return f"{x:.0f}" if x == round(x) else f"{x:.1f}"
