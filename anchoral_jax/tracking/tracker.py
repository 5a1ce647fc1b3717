"""Experiment trackers: a local JSON-lines log that is always written, W&B as an optional sink.

The JSONL file in the workdir is the record of truth (CONTRIBUTING.md §6; `jsonl.py`): it
survives a killed run, needs no service, and is what analysis and resume read. W&B
(`wandb_sink.py`) receives the same records; it runs offline by default and never goes online
unless the user asks. This module is what a run uses: the `Tracker` interface and
`make_tracker` (the JSONL sink, plus W&B unless disabled).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from anchoral_jax.tracking.jsonl import (
  JSONL_NAME,
  JsonlTracker,
)
from anchoral_jax.tracking.wandb_sink import (
  WandbTracker,
  as_dict,
  load_or_create_run_id,
  resolve_wandb_mode,
)

_WANDB_CFG_KEYS = frozenset(
    {"mode", "project", "entity", "group", "name", "job_type", "tags", "dir", "id", "notes",
     "settings"})


@runtime_checkable
class Tracker(Protocol):
  """Where per-round records go. `step` is the AL round."""

  def log(self, record: Mapping[str, Any], step: int) -> None: ...

  def summary(self, values: Mapping[str, Any]) -> None: ...

  def finish(self) -> None: ...


class NoOpTracker:
  """Discards everything (tests, dry runs)."""

  def log(self, record: Mapping[str, Any], step: int) -> None:
    del record, step

  def summary(self, values: Mapping[str, Any]) -> None:
    del values

  def finish(self) -> None:
    pass


class MultiTracker:
  """Sends every call to each tracker in order; `finish` reaches all even if one fails."""

  def __init__(self, trackers: Iterable[Tracker]):
    self.trackers = list(trackers)

  def log(self, record: Mapping[str, Any], step: int) -> None:
    for t in self.trackers:
      t.log(record, step)

  def summary(self, values: Mapping[str, Any]) -> None:
    for t in self.trackers:
      t.summary(values)

  def finish(self) -> None:
    error: BaseException | None = None
    for t in self.trackers:
      try:
        t.finish()
      except Exception as e:  # re-raised below, after the others finished
        error = error or e
    if error is not None:
      raise error


def make_tracker(
    workdir: str | os.PathLike,
    wandb_cfg: Mapping[str, Any] | None,
    run_config: Mapping[str, Any],
) -> MultiTracker:
  """JSONL sink at `<workdir>/metrics.jsonl`, plus W&B unless its mode resolves to disabled.

  `wandb_cfg` keys (all optional): mode (None means disabled), project, entity, group, name
  (default: workdir name), job_type, tags, dir (default: $WANDB_DIR or the workdir), id
  (default: `load_or_create_run_id`), notes, settings (extra `wandb.Settings` fields).
  `wandb_cfg=None` means no W&B. `run_config` (dict or ConfigDict) becomes the W&B config.
  """
  workdir = pathlib.Path(workdir)
  trackers: list[Tracker] = [JsonlTracker(workdir / JSONL_NAME)]
  cfg = as_dict(wandb_cfg) if wandb_cfg is not None else None
  if cfg is not None:
    unknown = set(cfg) - _WANDB_CFG_KEYS
    if unknown:
      trackers[0].finish()
      raise ValueError(
          f"Unknown wandb config keys {sorted(unknown)}; known: {sorted(_WANDB_CFG_KEYS)}.")
    mode = _wandb_mode(cfg)
    if mode != "disabled":
      try:
        trackers.append(_wandb_tracker(
            cfg, mode, run_config, name=cfg.get("name") or workdir.resolve().name,
            job_type=cfg.get("job_type", "al"), directory=workdir,
            resume_id=cfg.get("id") or load_or_create_run_id(workdir)))
      except BaseException:
        trackers[0].finish()
        raise
  return MultiTracker(trackers)


def _wandb_mode(cfg: Mapping[str, Any]) -> str:
  """The mode a `wandb` config resolves to (offline by default; mode None: disabled)."""
  configured = cfg.get("mode", "offline")
  return resolve_wandb_mode(configured) if configured is not None else "disabled"


def _wandb_tracker(cfg: Mapping[str, Any], mode: str, run_config: Mapping[str, Any], *,
                   name: str, job_type: str | None, directory: str | os.PathLike,
                   resume_id: str | None) -> WandbTracker:
  """A W&B run with the `wandb` config's project, entity, group, tags, dir (default:
  $WANDB_DIR, else `directory`), notes and settings: an AL run's (`make_tracker`) and a
  data-preparation job's (`log_job`) alike."""
  return WandbTracker(
      config=as_dict(run_config),
      project=cfg.get("project") or "anchoral-jax",
      entity=cfg.get("entity"),
      group=cfg.get("group"),
      name=name,
      job_type=job_type,
      tags=tuple(cfg.get("tags") or ()),
      mode=mode,
      dir=cfg.get("dir") or os.environ.get("WANDB_DIR") or directory,
      resume_id=resume_id,
      notes=cfg.get("notes"),
      settings=as_dict(cfg.get("settings") or {}),
  )


def log_job(wandb_cfg: Mapping[str, Any] | None, job: str, name: str,
            run_config: Mapping[str, Any], summary: Mapping[str, Any],
            directory: str | os.PathLike) -> None:
  """A data-preparation job (`anchoral embed`, `anchoral index`) as a W&B run of its own:
  job_type `job` (the AL runs' is "al"), the config's group, project, entity and tags, the
  resolved config, and `summary` (what was built, its size, the seconds it took), so that a
  project shows what each cache build cost beside the runs that read it. One new run per call
  (no resume: a job that finds its cache built logs that it did nothing). W&B's files go to
  `directory` (or `wandb.dir`); the mode as for runs: offline by default, disabled -> nothing."""
  if wandb_cfg is None:
    return
  cfg = as_dict(wandb_cfg)
  mode = _wandb_mode(cfg)
  if mode == "disabled":
    return
  tracker = _wandb_tracker(cfg, mode, run_config, name=name, job_type=job, directory=directory,
                           resume_id=None)
  try:
    tracker.summary(summary)
  finally:
    tracker.finish()
