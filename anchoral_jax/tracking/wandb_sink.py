"""The optional W&B sink: one W&B run per AL run, offline unless the user asks.

Mode resolution (`resolve_wandb_mode`): the configured mode (default "offline"), or
`WANDB_MODE` from the environment when the config does not set one. A `WANDB_MODE` that is more
private than the configured mode wins (disabled < offline < online), so a test or CI job that
exports `WANDB_MODE=offline` can never go online, and `WANDB_MODE=disabled` turns W&B off.

Resume: the W&B run id is stored in `<workdir>/wandb_run_id` (random, made when the file is
missing), so re-running the same command continues the same W&B run, even after the workdir is
moved, and a workdir deleted and run again is a new W&B run, not the old one re-synced.
Offline, each start writes its own `offline-run-*-<id>` directory with the same id; sync them
oldest first.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from anchoral_jax.tracking.jsonl import to_jsonable

RUN_ID_NAME = "wandb_run_id"
WANDB_MODES = ("disabled", "offline", "online")  # ordered from most to least private
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}


class WandbTracker:
  """One W&B run; each record is logged at `step=round` with a `round` field added.

  `budget` (the labelled-set size, which the records carry) is declared the x-axis of every
  metric with `define_metric`, so W&B plots curves against labels like the paper. With
  `resume_id` the run is created or continued under that id (`resume="allow"`).
  """

  def __init__(
      self,
      config: Mapping[str, Any],  # or an ml_collections ConfigDict
      project: str = "anchoral-jax",
      group: str | None = None,
      name: str | None = None,
      job_type: str | None = "al",
      tags: Sequence[str] = (),
      mode: str | None = None,
      dir: str | os.PathLike | None = None,  # wandb.init's own name
      resume_id: str | None = None,
      entity: str | None = None,
      notes: str | None = None,
      settings: Mapping[str, Any] | None = None,
      budget_key: str = "budget",
  ):
    import wandb

    self.mode = resolve_wandb_mode(mode)
    if dir is not None:
      pathlib.Path(dir).mkdir(parents=True, exist_ok=True)
    # No login prompt, no console capture (absl/tqdm output stays untouched), no code upload.
    run_settings = {"silent": True, "console": "off", "save_code": False, **(settings or {})}
    with _core_logs_in(dir):
      self.run = wandb.init(
          project=project,
          entity=entity,
          group=group,
          name=name,
          job_type=job_type,
          tags=list(tags),
          notes=notes,
          config=to_jsonable(as_dict(config), nan_as_none=False),
          mode=self.mode,
          dir=None if dir is None else os.fspath(dir),
          id=resume_id,
          resume="allow" if resume_id else None,
          settings=wandb.Settings(**run_settings),
          reinit="create_new",  # several runs at once in one process (loop.run_many)
      )
    self.budget_key = budget_key
    self.run.define_metric("round")
    self.run.define_metric(budget_key)
    self.run.define_metric("*", step_metric=budget_key)
    # A resumed online run continues at the server's next step. If the AL loop re-runs a round
    # that W&B already saw (killed after logging, before checkpointing), W&B would drop steps
    # below that, so all steps of this process are shifted up by a constant offset instead;
    # the `round` field keeps the true round.
    self._first_step = 0 if self.mode == "disabled" else int(self.run.step)
    self._step_offset: int | None = None
    self._finished = False

  def log(self, record: Mapping[str, Any], step: int) -> None:
    if self._step_offset is None:
      self._step_offset = max(0, self._first_step - int(step))
    data = {"round": int(step), **to_jsonable(dict(record), nan_as_none=False)}
    self.run.log(data, step=int(step) + self._step_offset)

  def summary(self, values: Mapping[str, Any]) -> None:
    self.run.summary.update(to_jsonable(dict(values), nan_as_none=False))

  def finish(self) -> None:
    if not self._finished:
      self._finished = True
      self.run.finish()


@contextlib.contextmanager
def _core_logs_in(directory: str | os.PathLike | None):
  """wandb-core, started by a process's first `wandb.init`, writes its debug log under
  $XDG_CACHE_HOME/wandb/logs (~/.cache by default): point it into the run's W&B folder, as
  `<dir>/wandb/cache/wandb/logs/`, for that call only (model caches read XDG_CACHE_HOME too)."""
  if directory is None:
    yield
    return
  old = os.environ.get("XDG_CACHE_HOME")
  os.environ["XDG_CACHE_HOME"] = os.fspath(pathlib.Path(directory) / "wandb" / "cache")
  try:
    yield
  finally:
    if old is None:
      os.environ.pop("XDG_CACHE_HOME", None)
    else:
      os.environ["XDG_CACHE_HOME"] = old


def sweep_names(workdir: str | os.PathLike) -> dict[str, str]:
  """The W&B name and group a sweep gave the run in `workdir` (its `overrides.json`: the run's
  path and experiment/cell), {} for a workdir no sweep wrote. `anchoral run` on a sweep's
  workdir, by hand or in a Slurm task, so lands in the same W&B run name and group."""
  import json

  try:
    record = json.loads((pathlib.Path(workdir) / "overrides.json").read_text())
  except (OSError, ValueError):
    return {}
  if not isinstance(record, dict) or "name" not in record:
    return {}
  overrides = record.get("overrides") or {}
  cell, experiment = record.get("cell", ""), record.get("experiment", "")
  group = f"{experiment}/{cell}" if cell else experiment
  return {"name": str(overrides.get("wandb.name") or record["name"]),
          "group": str(overrides.get("wandb.group") or group)}


def resolve_wandb_mode(configured: str | None = None) -> str:
  """Effective W&B mode: see the module docstring. Fails on unknown modes."""
  configured = _normalise_mode(configured, "configured") if configured is not None else None
  env = os.environ.get("WANDB_MODE") or None
  env = _normalise_mode(env, "WANDB_MODE") if env is not None else None
  mode = configured or env or "offline"
  if env is not None and WANDB_MODES.index(env) < WANDB_MODES.index(mode):
    mode = env
  return mode


def load_or_create_run_id(workdir: str | os.PathLike) -> str:
  """The run id stored in `<workdir>/wandb_run_id`; a new random one (16 hex digits) if absent.

  Random, not a hash of the workdir's path: that gave a deleted-and-rerun workdir its old
  id, so syncing the new run's offline files appended to (and overwrote) the old W&B run. The
  file is what keeps a resumed run's id; it is written atomically, so a kill leaves none or
  the whole id."""
  import secrets

  from anchoral_jax.fileio import write_text_atomic

  path = pathlib.Path(workdir) / RUN_ID_NAME
  if path.exists():
    run_id = path.read_text(encoding="utf-8").strip()
    if run_id:
      return run_id
  run_id = secrets.token_hex(8)
  path.parent.mkdir(parents=True, exist_ok=True)
  write_text_atomic(path, run_id + "\n")
  return run_id


def _normalise_mode(mode: str, source: str) -> str:
  mode = _MODE_ALIASES.get(mode, mode)
  if mode not in WANDB_MODES:
    raise ValueError(f"{source} W&B mode {mode!r} is not one of {WANDB_MODES}.")
  return mode


def as_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
  """Plain nested dict from a dict or an ml_collections ConfigDict."""
  to_dict = getattr(cfg, "to_dict", None)
  return dict(to_dict()) if callable(to_dict) else dict(cfg)
