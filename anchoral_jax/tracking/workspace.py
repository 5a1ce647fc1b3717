"""W&B saved views of the paper's comparison, as code (W&B's `wandb-workspaces`), so that no
user rebuilds them by hand in the UI:

  anchoral wandb-workspace RUNS_DIR --entity E --project P [--save]
  (also python -m anchoral_jax.tracking.workspace ...)

One workspace view per dataset x strategy found in RUNS_DIR (every `hparams.json` below it),
its runs filtered to that dataset and strategy (config `data.name`, `al.strategy`) and grouped
by filter (`al.filter`: median line, min-max band over the seeds), with the paper's panels
(SPEC.md §6, the PNGs of `anchoral report`): test minority F1 against the labelled budget,
minority found (the labelled set's minority share) against the budget, query time per round,
and the subpool's minority share per round. Without `--save` nothing leaves the machine: the
views are built and listed (`--json` writes their W&B view specs); `--save` needs the W&B
service and an API key (`wandb login`), and the runs synced to that entity/project.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# (metric, x-axis, panel title): the paper's comparison, in `anchoral report`'s order.
PANELS = (
    ("test/minority_f1", "budget", "Test minority F1 vs labelled budget"),
    ("labelled/minority_share", "budget", "Minority found: labelled minority share vs budget"),
    ("time/query", "round", "Query time per round (s)"),
    ("subpool/minority_share", "round", "Subpool minority share per round"),
)
GROUP_BY = "al.filter"
# W&B stores a nested config ({"al": {"strategy": ...}}, as runs log it) as
# {"al": {"value": {...}}}: a filter names the stored path. (wandb-workspaces inserts the
# ".value" into groupings itself, not into filters.)
FILTER_KEYS = ("data.value.name", "al.value.strategy")


def cells(runs_dir: str | os.PathLike) -> list[tuple[str, str]]:
  """The (dataset, strategy) pairs of the runs under `runs_dir`, sorted."""
  found = set()
  for path in Path(runs_dir).rglob("hparams.json"):
    try:
      hp = json.loads(path.read_text())
      found.add((str(hp["data"]["name"]), str(hp["al"]["strategy"])))
    except (OSError, ValueError, KeyError, TypeError):
      continue
  return sorted(found)


def build(pairs: Iterable[tuple[str, str]], entity: str, project: str) -> list[Any]:
  """One `wandb_workspaces.workspaces.Workspace` per (dataset, strategy)."""
  import wandb_workspaces.reports.v2 as wr
  import wandb_workspaces.workspaces as ws

  views = []
  for dataset, strategy in pairs:
    sections = [ws.Section(name=title, is_open=True, panels=[wr.LinePlot(
        title=title, x=x, y=[metric], groupby_aggfunc="median", groupby_rangefunc="minmax",
        title_x=x)]) for metric, x, title in PANELS]
    views.append(ws.Workspace(
        name=f"AnchorAL: {dataset} / {strategy}", entity=entity, project=project,
        sections=sections, settings=ws.WorkspaceSettings(x_axis="budget"),
        runset_settings=ws.RunsetSettings(
            filters=[ws.Config(FILTER_KEYS[0]) == dataset,
                     ws.Config(FILTER_KEYS[1]) == strategy],
            groupby=[ws.Config(GROUP_BY)])))
  return views


def main(argv: Sequence[str] | None = None,
         prog: str = "python -m anchoral_jax.tracking.workspace") -> int:
  parser = argparse.ArgumentParser(prog=prog,
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("runs_dir")
  parser.add_argument("--entity", required=True)
  parser.add_argument("--project", default="anchoral-jax")
  parser.add_argument("--save", action="store_true", help="create the views on W&B (network)")
  parser.add_argument("--json", help="write the views' W&B specs to this file")
  args = parser.parse_args(argv)
  pairs = cells(args.runs_dir)
  if not pairs:
    print(f"No runs (hparams.json) under {args.runs_dir}.", file=sys.stderr)
    return 2
  try:
    views = build(pairs, args.entity, args.project)
  except ImportError:
    print("wandb-workspaces is not installed: pip install wandb-workspaces", file=sys.stderr)
    return 2
  for view in views:
    print(f"{view.name}: {len(view.sections)} panels, runs where {view.runset_settings.filters}"
          f", grouped by {GROUP_BY}")
  if args.json:
    specs = [json.loads(v._to_model().model_dump_json()) for v in views]
    Path(args.json).write_text(json.dumps(specs, indent=1))
  if args.save:
    for view in views:
      view.save()
      print(f"saved {view.url}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
