"""`anchoral report`, step 2: the numbers and the markdown tables of the cells.

Overall and Budget-Matched (median and IQR over a cell's runs of the minority / majority AUC and
the query minutes, as the paper's tables) and the per-filter Summary (medians only); the
definitions are in report.py's docstring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from anchoral_jax.metrics import learning_curve_auc
from anchoral_jax.report.cells import (
  FILTER_NAMES,
  LABELLED_SHARE,
  MAJORITY,
  MINORITY,
  POOL_SHARE,
  QUERY_TIME,
  ROWS_SCORED,
  SEED_KEYS,
  SUBPOOL_SHARE,
  RunData,
  cells,
  display_name,
)


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
  best = {}  # the best median as printed, when no other cell prints the same
  for d, m in cols:
    shown = [_fmt(x, _decimals(x)) for x in table[table.dataset == d][f"{m}_median"].dropna()]
    if len(shown) > 1:
      top = (min if m == "time_min" else max)(shown, key=float)
      if shown.count(top) == 1:  # a tie as printed is no win
        best[(d, m)] = top
  n_max = int(table.n_runs.max())
  lines = [f"### {title}", ""]
  lines.append("| " + " | ".join(head + [f"{display_name(d)} {names[m]}" for d, m in cols])
               + " |")
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
      if best.get((d, m)) == _fmt(s[f"{m}_median"], dec):
        text = f"**{text}**"
      if s.n_runs != n_max:
        text += f" [n={s.n_runs}]"
      out.append(text)
    lines.append("| " + " | ".join(out) + " |")
  by = table.groupby("dataset", sort=False)
  if matched:
    cut = by.agg(rounds=("rounds", "min"), budget=("budget", "median"))
    rounds = "Every run cut to the first R rounds of its dataset (labels at the last): " + (
        ", ".join(f"{display_name(d)} {int(r.rounds)} ({int(r.budget)})" for d, r in cut.iterrows()))
  else:
    most = by.agg(rounds=("rounds_max", "max"))
    rounds = "Whole runs; most rounds per dataset: " + ", ".join(
        f"{display_name(d)} {int(r.rounds)}" for d, r in most.iterrows())
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
    "rows_scored": ("Rows scored / round", "int"),
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
    auc = stats(n["minority_auc"] for n in nums)  # the spread the summary shows beside it
    row["minority_auc_q25"], row["minority_auc_q75"] = auc["q25"], auc["q75"]
    rows.append(row)
  return pd.DataFrame(rows)


def _fmt_summary(x: float, kind: str) -> str:
  if x is None or math.isnan(x):
    return "–"
  if kind == "share":
    return f"{x:.3f}"
  if kind == "int":  # rows: a median between two runs rounds to a whole row
    return f"{round(x):,}"
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
    out = [display_name(s.dataset), s.strategy, FILTER_NAMES.get(s.filter, s.filter)]
    out += ([s.variant or "–"] if has_variant else []) + [str(s.n_runs)]
    out += [_fmt_summary(getattr(s, c), SUMMARY_COLUMNS[c][1]) for c in cols]
    if s.n_runs > 1:  # the minority AUC with its interquartile range
      dec = _decimals(s.minority_auc)
      out[len(head)] += f" [{_fmt(s.minority_auc_q25, dec)}, {_fmt(s.minority_auc_q75, dec)}]"
    lines.append("| " + " | ".join(out) + " |")
  lines += ["", "Medians over a cell's runs; [25th, 75th percentile] of the minority AUC when a "
            "cell has several runs (the paired table tests the differences). Minority found = minority labels the queries added "
            "(last round's labelled set minus the initial set); shares at the last round "
            "(subpool and pool: the last round that queried); query time summed over rounds."]
  return "\n".join(lines) + "\n"

