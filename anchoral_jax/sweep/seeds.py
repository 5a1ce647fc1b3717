"""The seeds of a table cell in one process (`loop.run_many`): `anchoral run --seeds` and
`anchoral sweep --group-seeds` (launch/README.md).

A seed combination sets the data order, the model init and the initial set (`SEED_KEYS`), as
the sweeps of configs/main.py do. Each seed's run keeps the workdir and W&B name a sweep gives
it, `<workdir>/dseed=D,mseed=M,iseed=I` (`sweep_runs.run_name` of the seed point), so the
report, resume and `DONE` see ordinary runs; a DONE run of a group is skipped
(`loop.run_many`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from anchoral_jax.errors import UserError
from anchoral_jax.sweep.runs import (
  Run,
  apply_overrides,
  build_config,
  format_value,
  load_module,
  run_name,
)

SEED_KEYS = ("data.seed", "model.seed", "al.initial_seed")  # configs/main.py's, in its order


class SeedsError(UserError, ValueError):
  """A bad `--seeds` value or one that conflicts with a `--config.<seed key>` override."""


def parse_seeds(values: Sequence[str]) -> list[dict[str, int]]:
  """`--seeds` entries as seed points: 'S' sets all three seed fields to S; 'D:M:I' sets
  data.seed, model.seed and al.initial_seed to D, M and I (one of the paper's combinations)."""
  points: list[dict[str, int]] = []
  for value in values:
    parts = str(value).strip().split(":")
    if len(parts) not in (1, len(SEED_KEYS)) or not all(
        p.strip().lstrip("-").isdigit() for p in parts):
      raise SeedsError(f"--seeds entry {value!r}: expected an integer S (all three seeds S) "
                       "or D:M:I (data.seed:model.seed:al.initial_seed), e.g. "
                       "--seeds=654321,123456 or --seeds=654321:654321:123456.")
    ints = [int(p) for p in parts] * (len(SEED_KEYS) // len(parts))
    point = dict(zip(SEED_KEYS, ints, strict=True))
    if point in points:
      raise SeedsError(f"--seeds lists {value!r} twice.")
    points.append(point)
  if not points:
    raise SeedsError("--seeds is empty.")
  return points


def format_seeds(point: Mapping[str, Any]) -> str:
  """A seed point as its `--seeds` entry, D:M:I."""
  return ":".join(str(point[k]) for k in SEED_KEYS)


def seed_leaf(point: Mapping[str, Any]) -> str:
  """The run directory of a seed point under its cell: the sweep's leaf for the same seeds."""
  return run_name({k: point[k] for k in SEED_KEYS})[0]


def seed_runs(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
              points: Sequence[Mapping[str, int]],
              overrides: Mapping[str, Any] | None = None
              ) -> tuple[list[ml_collections.ConfigDict], list[Path]]:
  """The configs and workdirs of `anchoral run --seeds`: per seed point, `config` with the
  three seed fields set, in `<workdir>/<seed_leaf>`, W&B name `<wandb.name>/<seed_leaf>` (the
  leaf when unset) as the sweep names its runs. `overrides` (the command line's) may not set
  a seed field: the point sets it."""
  clash = sorted(set(overrides or {}) & set(SEED_KEYS))
  if clash:
    raise SeedsError(f"--seeds sets {', '.join(SEED_KEYS)}; drop --config.{clash[0]}.")
  configs, workdirs = [], []
  for point in points:
    leaf = seed_leaf(point)
    c = copy.deepcopy(config)
    apply_overrides(c, {k: point[k] for k in SEED_KEYS})
    if "wandb" in c and "name" in c.wandb:
      c.wandb.name = f"{c.wandb.name}/{leaf}" if c.wandb.name else leaf
    configs.append(c)
    workdirs.append(Path(workdir) / leaf)
  return configs, workdirs


@dataclasses.dataclass(frozen=True)
class SeedGroup:
  """One job of `anchoral sweep --group-seeds`: the runs of a cell that differ only in their
  seeds, as one `anchoral run --seeds` (quacks like a `Run` for the backends)."""

  runs: tuple[Run, ...]
  common: Mapping[str, Any]  # the runs' overrides but their seeds (and per-seed W&B name)

  @property
  def cell(self) -> str:
    return self.runs[0].cell

  @property
  def experiment(self) -> str:
    return self.runs[0].experiment

  @property
  def name(self) -> str:
    return f"{self.cell or '.'} ({len(self.runs)} seeds)"

  def workdir(self, runs_dir: str | os.PathLike) -> Path:
    """The cell's directory, parent of the runs' workdirs: the group's run.log goes there."""
    return Path(runs_dir).resolve() / self.cell

  def argv(self, runs_dir: str | os.PathLike) -> list[str]:
    seeds = ",".join(format_seeds(r.overrides) for r in self.runs)
    return (["run", "--config", self.runs[0].config_spec, "--workdir", str(self.workdir(runs_dir)),
             f"--seeds={seeds}"]
            + [f"--config.{k}={format_value(v)}" for k, v in self.common.items()])

  def done(self, runs_dir: str | os.PathLike) -> bool:
    return all(r.done(runs_dir) for r in self.runs)


Job = Run | SeedGroup


def members(job: Job) -> tuple[Run, ...]:
  """The runs a job makes."""
  return job.runs if isinstance(job, SeedGroup) else (job,)


def _group_key(run: Run) -> tuple[str, ...] | None:
  seeds = [run.overrides.get(k) for k in SEED_KEYS]
  if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
    return None  # not a full integer seed combination: runs alone
  rest = {k: v for k, v in run.overrides.items() if k not in SEED_KEYS and k != "wandb.name"}
  return (run.config_file, run.arg, run.cell, json.dumps(sorted(rest.items()), default=str))


def _as_group(runs: Sequence[Run]) -> SeedGroup | None:
  """The group of `runs` (a cell's seeds) when `anchoral run --seeds` remakes each run
  exactly (its workdir and its whole config, W&B fields included), else None."""
  first = runs[0]
  common = {k: v for k, v in first.overrides.items() if k not in SEED_KEYS and k != "wandb.name"}
  name, leaf = first.overrides.get("wandb.name"), seed_leaf(first.overrides)
  if isinstance(name, str) and name.endswith("/" + leaf):
    common["wandb.name"] = name[:-len(leaf) - 1]
  elif name is not None and name != leaf:
    return None
  base = load_module(first.config_file).get_config(first.arg or None)
  base.lock()
  try:
    apply_overrides(base, common)
  except KeyError:
    return None
  configs, workdirs = seed_runs(base, first.cell, [r.overrides for r in runs])
  for run, config, workdir in zip(runs, configs, workdirs, strict=True):
    if (str(workdir) != run.name or config.to_json_best_effort(sort_keys=True)
        != build_config(run).to_json_best_effort(sort_keys=True)):
      return None
  return SeedGroup(tuple(runs), common)


def group_seeds(runs: Sequence[Run]) -> list[Job]:
  """One job per table cell: the runs that differ only in their seeds become a `SeedGroup`, at
  the place of their first run; a cell of one run, or runs a group would not remake exactly
  (`_as_group`), stay `Run`s."""
  buckets: dict[Any, list[Run]] = {}
  for run in runs:
    buckets.setdefault(_group_key(run) or ("alone", run.name), []).append(run)
  jobs: list[Job] = []
  for bucket in buckets.values():
    group = _as_group(bucket) if len(bucket) > 1 else None
    jobs.extend([group] if group else bucket)
  return jobs
