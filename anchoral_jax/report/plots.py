"""`anchoral report`, step 3: the plots, one figure per dataset and curve (PNG at 200 dpi,
and PDF/SVG for a paper: `--format`).

One panel per strategy, one line per filter/variant against the labelled budget (the median
over a cell's runs, an IQR band when the cell has more than one run); full-pool Random, when
present, is drawn in every panel as the reference. Every line has the same width and its own
marker and dash pattern, so the filters stay apart in grey-scale print and none looks weaker.
matplotlib is imported only when a figure is drawn (`--no-plots` never needs it).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anchoral_jax.report.cells import (
  FILTER_NAMES,
  LABELLED_SHARE,
  MINORITY,
  MINORITY_FOUND,
  POOL_SHARE,
  QUERY_TIME,
  SUBPOOL_SHARE,
  Cell,
  RunData,
  display_name,
)
from anchoral_jax.report.tables import _minority_count

UNIT_KEYS = (MINORITY, LABELLED_SHARE, SUBPOOL_SHARE)  # plotted on a y axis within [0, 1]
PLOTS = (  # file stem, y key, x axis, y label
    ("minority_f1", MINORITY, "budget", "test minority F1"),
    ("minority_found", MINORITY_FOUND, "budget", "minority labels found by the queries"),
    ("query_time", QUERY_TIME, "budget", "query time per round (s)"),
    ("labelled_minority_share", LABELLED_SHARE, "budget", "minority share of the labelled set"),
    ("subpool_minority_share", SUBPOOL_SHARE, "budget", "minority share of the subpool"),
)
PLOT_REFERENCE = {SUBPOOL_SHARE: (POOL_SHARE, "unlabelled pool")}  # dotted, when logged
NO_SUBPOOL = {SUBPOOL_SHARE}  # the full pool has no subpool: its "subpool" is the pool
FORMATS = ("png", "pdf", "svg")
DPI = 200  # PNG; PDF and SVG are vector
LINE_WIDTH = 1.5


def _values(history: Sequence[dict[str, Any]], key: str) -> list[tuple[dict[str, Any], float]]:
  """(record, value of `key`) for every record that has it; MINORITY_FOUND is derived."""
  if key == MINORITY_FOUND:
    first = _minority_count(history[0])
    return [(rec, _minority_count(rec) - first) for rec in history
            if rec.get(LABELLED_SHARE) is not None and rec.get("budget") is not None]
  return [(rec, float(rec[key])) for rec in history if rec.get(key) is not None]


def curve(members: Sequence[RunData], key: str, x: str) -> tuple[np.ndarray, ...]:
  """Per round: x (median over runs), median, 25th and 75th percentile of `key`."""
  by_round: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
  for r in members:
    for rec, value in _values(r.history, key):
      by_round[int(rec["round"])].append((float(rec.get(x, rec["round"])), value))
  rounds = sorted(by_round)
  if not rounds:
    empty = np.zeros(0)
    return empty, empty, empty, empty
  xs = np.array([np.median([p[0] for p in by_round[k]]) for k in rounds])
  q_Rx3 = np.array([np.percentile([p[1] for p in by_round[k]], [50, 25, 75]) for k in rounds])
  return xs, q_Rx3[:, 0], q_Rx3[:, 1], q_Rx3[:, 2]


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DASHES = ((), (6, 2), (2, 1.5), (6, 1.5, 1.5, 1.5), (3, 3), (8, 2, 2, 2, 2, 2), (1, 1), (4, 1))
# Okabe & Ito's colour-blind-safe palette, ordered so neighbours differ in lightness as well.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
          "#F0E442")


def line_style(i: int, n_points: int) -> dict[str, Any]:
  """Style of a panel's i-th filter line: one width for all, its own dash pattern and hollow
  marker at shifted points, so curves that coincide exactly (e.g. identical seeds) stay visible
  and every line is told apart without colour."""
  every = max(1, n_points // 10)
  turn = i // len(MARKERS)  # past 8 lines the dashes and colours shift: no two lines alike
  return {"lw": LINE_WIDTH, "dashes": DASHES[(i + turn) % len(DASHES)],
          "marker": MARKERS[i % len(MARKERS)], "ms": 5.0, "mfc": "white", "mew": 1.2,
          "markevery": (i * every // 4 % every, every), "color": COLORS[(i + 3 * turn) % len(COLORS)]}


def setup_axis(ax: Any, key: str, x: str) -> None:
  """Budget/round ticks at round numbers (not 102/108/114); F1s and shares kept within [0, 1]
  (autoscaling pads an all-zero curve to -0.04..0.04), at least 0.1 tall."""
  from matplotlib.ticker import MaxNLocator

  ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))
  if key in UNIT_KEYS:
    lo, hi = ax.get_ylim()
    lo = min(max(0.0, lo), 0.9)
    ax.set_ylim(lo, min(1.0, max(hi, lo + 0.1)))


def figure(dataset: str, groups: Mapping[Cell, list[RunData]], key: str,
           x: str, ylabel: str) -> Any:
  """One plot of one dataset (a matplotlib Figure), or None when no run logged `key`."""
  from matplotlib.figure import Figure
  from matplotlib.ticker import LogFormatter

  mine = {k[1:]: v for k, v in groups.items() if k[0] == dataset
          and not (key in NO_SUBPOOL and k[2] == "none")}
  strategies = list(dict.fromkeys(s for s, _, _ in mine))
  reference = {k: v for k, v in mine.items() if k[0] == "random" and k[1] == "none"}
  panels = [s for s in strategies if not (s == "random" and len(strategies) > 1
                                          and all(f == "none" for t, f, _ in mine if t == s))]
  # Styles by the dataset's every cell, so a filter looks the same in every plot of it.
  labels = list(dict.fromkeys(k[2:] for k in groups if k[0] == dataset))
  if not panels:
    return None
  fig = Figure(figsize=(max(6.5, 4.2 * len(panels)), 3.6), layout="constrained")
  axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
  drawn, banded = False, False
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
      style = ({"lw": LINE_WIDTH, "dashes": (1, 1.5), "color": "0.3", "marker": "x", "ms": 4,
                "markevery": (0, max(1, len(xs) // 10))} if is_ref
               else line_style(labels.index((f, v)), len(xs)))
      ax.plot(xs, med, clip_on=False, label=f"{label} (n={len(members)})", **style)
      if len(members) > 1:
        ax.fill_between(xs, lo, hi, color=style["color"], alpha=0.12, lw=0)
        banded = True
    if key in PLOT_REFERENCE:  # e.g. the unlabelled pool's minority share beside the subpool's
      ref_key, ref_label = PLOT_REFERENCE[key]
      xs, med, _, _ = curve([r for k, v in lines if k[0] == strategy for r in v], ref_key, x)
      if len(xs):
        ax.plot(xs, med, color="0.2", ls=":", lw=LINE_WIDTH, label=f"{ref_label} (median)")
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
  fig.suptitle(f"{display_name(dataset)}: {ylabel} "
               f"({'median, IQR band' if banded else 'one run per line'})", fontsize=10)
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


def plot_dataset(dataset: str, groups: Mapping[Cell, list[RunData]], out: Path,
                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
  """The figures of one dataset in every format (a plot no run logged is left out); returns
  the path of each plot's first format (what report.md shows)."""
  paths = []
  for stem, key, x, ylabel in PLOTS:
    fig = figure(dataset, groups, key, x, ylabel)
    if fig is None:
      continue
    for fmt in formats:
      fig.savefig(out / f"{stem}-{dataset}.{fmt}", dpi=DPI,
                  metadata={"Date": None} if fmt == "svg" else None)
    paths.append(out / f"{stem}-{dataset}.{formats[0]}")
  return paths

