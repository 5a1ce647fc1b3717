"""`anchoral report`, stopping criteria: per cell, the round each criterion would have stopped
the run and what stopping there would have cost (al/stopping.py defines the criteria; runs from
before they were logged are left out of the counts)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from anchoral_jax.al import stopping
from anchoral_jax.report.cells import FILTER_NAMES, Cell, RunData, display_name


def stopping_table(groups: Mapping[Cell, list[RunData]]) -> pd.DataFrame:
  """One row per cell and criterion: runs that logged it, runs it fired in, the median round /
  labels it fired at, the median minority F1 there and at the run's end (same runs)."""
  rows = []
  for (dataset, strategy, filter, variant), members in groups.items():
    logged = [r for r in members if any("stop/stable_rounds" in h for h in r.history)]
    if not logged:
      continue
    sums = [stopping.summary(r.history) for r in logged]
    for c in stopping.CRITERIA:
      fired = [s for s in sums if s[f"stop/{c}_round"] >= 0]
      row: dict[str, Any] = {"dataset": dataset, "strategy": strategy,
                             "filter": FILTER_NAMES.get(filter, filter) + (
                                 f" {variant}" if variant else ""),
                             "criterion": c, "n_logged": len(logged), "n_fired": len(fired)}
      for key, col in (("round", "round"), ("budget", "budget"), ("f1", "f1_at_stop")):
        values = [s[f"stop/{c}_{key}"] for s in fired if s[f"stop/{c}_{key}"] is not None]
        row[col] = float(np.median(values)) if values else math.nan
      finals = [s["stop/final_f1"] for s in fired if "stop/final_f1" in s]
      row["f1_at_end"] = float(np.median(finals)) if finals else math.nan
      rows.append(row)
  return pd.DataFrame(rows)


def stopping_markdown(table: pd.DataFrame) -> str:
  if table.empty:
    return ""
  names = {"stabilised": f"stabilised (kappa >= {stopping.KAPPA} x {stopping.K})",
           "confident": f"uncertainty <= {stopping.UNCERTAINTY}"}
  lines = ["### Stopping criteria", "",
           "| Dataset | Strategy | Filter | Criterion | Fired | Round | Labels | "
           "Minority F1 there | at the end |", "|---|---|---|---|---|---|---|---|---|"]

  def f(x: float, fmt: str) -> str:
    return "–" if math.isnan(x) else format(x, fmt)

  for s in table.itertuples():
    lines.append(f"| {display_name(s.dataset)} | {s.strategy} | {s.filter} | {names[s.criterion]} "
                 f"| {s.n_fired}/{s.n_logged} | {f(s.round, '.0f')} | {f(s.budget, '.0f')} | "
                 f"{f(s.f1_at_stop, '.3f')} | {f(s.f1_at_end, '.3f')} |")
  lines += ["", "Per cell: runs where the criterion fired of those that logged it; medians over "
            "those runs of the round and labels it fired at and the test minority F1 there and "
            "at the run's last round. Stabilised: Cohen's kappa between consecutive models' "
            f"predictions on a fixed {stopping.STOP_SET:,}-row stop set >= {stopping.KAPPA} "
            f"in {stopping.K} consecutive rounds (Bloodgood & Vijay-Shanker 2009); uncertainty: "
            "mean normalised predictive entropy on the stop set (Zhu et al. 2008)."]
  return "\n".join(lines) + "\n"
