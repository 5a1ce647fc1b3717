"""`anchoral report`, step 3: the plots, one PNG per dataset and curve.

One panel per strategy, one line per filter/variant (the median over a cell's runs, an IQR
band); full-pool Random, when present, is drawn dashed in every panel as the reference.
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
  POOL_SHARE,
  QUERY_TIME,
  SUBPOOL_SHARE,
  Cell,
  RunData,
)

UNIT_KEYS = (MINORITY, LABELLED_SHARE, SUBPOOL_SHARE)  # plotted on a y axis within [0, 1]
PLOTS = (  # file stem, y key, x axis, y label
    ("minority_f1", MINORITY, "budget", "test minority F1"),
    ("query_time", QUERY_TIME, "round", "query time per round (s)"),
    ("labelled_minority_share", LABELLED_SHARE, "budget", "minority share of the labelled set"),
    ("subpool_minority_share", SUBPOOL_SHARE, "round", "minority share of the subpool"),
)
PLOT_REFERENCE = {SUBPOOL_SHARE: (POOL_SHARE, "unlabelled pool")}  # dotted, when logged


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


def figure(dataset: str, groups: Mapping[Cell, list[RunData]], key: str,
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


def plot_dataset(dataset: str, groups: Mapping[Cell, list[RunData]],
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

