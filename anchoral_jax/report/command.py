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

Writes to --out (default RUNS_DIR/report): report.md (the summary, the tables, the plots, the
runs), summary.{md,csv}, overall.{md,csv}, budget_matched.{md,csv}, paired.{md,csv},
found.{md,csv}, stopping.{md,csv}, runs.csv, and per dataset the figures (PNG, PDF/SVG:
`--format`) minority_f1-, minority_found-, query_time-, labelled_minority_share- and
subpool_minority_share-<dataset> (the unlabelled pool's share dotted when logged), all against
the labelled budget: one panel per strategy, one line per filter/variant (median, IQR band when
n > 1); full-pool Random, when present, is drawn in every panel as the reference.

  Paired (paired.py): a reference filter (`--reference`, default AnchorAL) minus every
  other cell of its dataset and strategy, seed by seed: mean AUC difference, bootstrap 95% CI,
  exact Wilcoxon signed-rank p; labels to reach `--reach`% of the best final minority F1;
  minority labels found against budget (paired.md, found.md and their CSVs).
  Stopping (stopping.py): per cell the round each stopping criterion (al/stopping.py) would
  have stopped at and the minority F1 there vs at the end (stopping.md/csv).

The job is split in modules, run in order by `report` here: cells.py (read the runs, group them
into cells), tables.py and paired.py (the numbers and tables), plots.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from anchoral_jax.report.cells import FILTER_NAMES, cells, find_runs
from anchoral_jax.report.paired import found_markdown, found_table, paired_markdown, paired_table
from anchoral_jax.report.plots import FORMATS, plot_dataset
from anchoral_jax.report.stopping import stopping_markdown, stopping_table
from anchoral_jax.report.tables import markdown, summary_markdown, summary_table, tables


def report(runs_dir: str | Path, out: str | Path | None = None, plots: bool = True,
           reference: str = "anchoral", reach: float = 90.0,
           formats: Sequence[str] = ("png", "pdf")) -> Path:
  """Writes every table and plot; returns the path of report.md."""
  from anchoral_jax.errors import ConfigError

  runs_dir = Path(runs_dir)
  if not runs_dir.is_dir():
    raise ConfigError(f"{runs_dir} is {'a file' if runs_dir.exists() else 'missing'}: give the "
                      "folder of a sweep's runs (its --runs-dir) or of one run (its --workdir).")
  runs = find_runs(runs_dir)
  if not runs:
    raise ConfigError(f"No runs under {runs_dir} (folders with hparams.json and metrics.jsonl): "
                      "give the folder of a sweep's runs (its --runs-dir) or of one run.")
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
  groups = cells(runs)
  for name, table, text in (
      ("paired", paired := paired_table(groups, reference, reach),
       paired_markdown(paired, reference, reach)),
      ("found", found := found_table(groups), found_markdown(found)),
      ("stopping", stops := stopping_table(groups), stopping_markdown(stops))):
    table.to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(text)
    sections += [text, ""]
  if plots:
    sections += ["### Plots", ""]
    for dataset in dict.fromkeys(r.dataset for r in runs):
      for path in plot_dataset(dataset, groups, out, formats):
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
  parser.add_argument("runs_dir", help="folder holding run folders (e.g. a sweep's --runs-dir)")
  parser.add_argument("--out", default=None, help="output folder (default RUNS_DIR/report)")
  parser.add_argument("--no-plots", "--no_plots", action="store_true", help="tables only")
  parser.add_argument("--reference", default="anchoral",
                      help="the filter the paired comparisons subtract the others from "
                      f"({', '.join(FILTER_NAMES)}; default anchoral)")
  parser.add_argument("--reach", type=float, default=90.0,
                      help="labels needed to reach this %% of the best final minority F1 "
                      "(default 90)")
  parser.add_argument("--format", default="png,pdf",
                      help=f"plot files, comma-separated ({', '.join(FORMATS)}; default png,pdf)")
  args = parser.parse_args(argv)
  formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
  bad = [f for f in formats if f not in FORMATS] or ([] if formats else ["(none)"])
  if bad:
    parser.error(f"--format {bad[0]}: choose from {', '.join(FORMATS)}.")
  if args.reference not in FILTER_NAMES:
    parser.error(f"--reference {args.reference}: choose from {', '.join(FILTER_NAMES)}.")
  if not 0 < args.reach <= 100:
    parser.error(f"--reach {args.reach:g}: a percentage in (0, 100].")
  from anchoral_jax.errors import ConfigError

  try:
    path = report(args.runs_dir, args.out, plots=not args.no_plots, reference=args.reference,
                  reach=args.reach, formats=formats)
  except ConfigError as e:  # one message and exit 2, as every command (cli.py)
    print(f"anchoral report: {e}", file=sys.stderr)
    sys.exit(2)
  for name in ("summary", "overall", "paired"):
    print((path.parent / f"{name}.md").read_text())
  print(f"Wrote {path} (tables, CSV and plots in {path.parent}).")
