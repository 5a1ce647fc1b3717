"""Experiment trackers: a local JSON-lines log that is always written, W&B as an optional sink.

The JSONL file in the workdir is the record of truth (CONTRIBUTING.md §6): it survives a killed run
(flush + fsync per line), needs no service, and is what analysis and resume read. W&B receives
the same records. It runs offline by default and never goes online unless the user asks.

Mode resolution for W&B (`resolve_wandb_mode`): the configured mode (default "offline"), or
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

import json
import math
import os
import pathlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

JSONL_NAME = "metrics.jsonl"
RUN_ID_NAME = "wandb_run_id"
WANDB_MODES = ("disabled", "offline", "online")  # ordered from most to least private
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}
_WANDB_CFG_KEYS = frozenset(
    {"mode", "project", "entity", "group", "name", "job_type", "tags", "dir", "id", "notes",
     "settings"})


@runtime_checkable
class Tracker(Protocol):
  """Where per-round records go. `step` is the AL round."""

  def log(self, record: Mapping[str, Any], step: int) -> None: ...

  def summary(self, values: Mapping[str, Any]) -> None: ...

  def finish(self) -> None: ...


def to_jsonable(value: Any, nan_as_none: bool = True) -> Any:
  """Plain-Python copy of `value`: numpy/JAX scalars and arrays become numbers and lists.

  With `nan_as_none`, NaN and +-inf become None so the output is strict JSON (readable by jq,
  browsers and `pandas.read_json`, which turns null back into NaN in numeric columns).
  """
  if value is None or isinstance(value, bool | int | str):
    return value
  if isinstance(value, float):
    return None if nan_as_none and not math.isfinite(value) else value
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v, nan_as_none) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [to_jsonable(v, nan_as_none) for v in value]
  if isinstance(value, pathlib.PurePath):
    return str(value)
  if hasattr(value, "__array__"):  # numpy scalars and arrays, JAX arrays
    import numpy as np

    return to_jsonable(np.asarray(value).tolist(), nan_as_none)
  if hasattr(value, "item"):  # numpy scalars without __array__ in exotic builds
    return to_jsonable(value.item(), nan_as_none)
  raise TypeError(
      f"Cannot log a value of type {type(value).__name__}: convert it to a number, string, "
      "list or dict first.")


class JsonlTracker:
  """Appends one JSON object per line: `{"step": s, **record}` or `{"summary": {...}}`.

  NaN/inf are written as null (strict JSON). Each line is flushed and fsync-ed, so a killed
  run loses at most the line being written; a torn last line is cut off on reopen (so it
  never ends up in the middle, where `read_jsonl` would call the file damaged).
  """

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    if self.path.exists():
      drop_torn_tail(self.path)
    self._f = open(self.path, "a", encoding="utf-8")  # closed in finish()

  def log(self, record: Mapping[str, Any], step: int) -> None:
    if "step" in record and record["step"] != step:
      raise ValueError(f"record has its own 'step'={record['step']!r} != step={step}.")
    self._write({"step": int(step), **record})

  def summary(self, values: Mapping[str, Any]) -> None:
    self._write({"summary": dict(values)})

  def finish(self) -> None:
    if not self._f.closed:
      self._f.close()

  def _write(self, obj: Mapping[str, Any]) -> None:
    self._write_raw(json.dumps(to_jsonable(obj), allow_nan=False) + "\n")

  def _write_raw(self, text: str) -> None:
    self._f.write(text)
    self._f.flush()
    os.fsync(self._f.fileno())


class CorruptJsonlError(ValueError):
  """A JSONL line other than the last is unreadable: damage, not a write cut short by a kill."""


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
  """All JSON objects in a JSONL file, in order: the one reader of every JSONL the runs write.

  An unreadable LAST line is a write torn by a kill or a full disk: it belongs to a round that
  was never committed, so it is dropped with a warning. An unreadable line before the last
  cannot come from a torn append, so it fails with CorruptJsonlError naming file and line.
  """
  out: list[dict[str, Any]] = []
  bad: tuple[int, bytes] | None = None  # an unreadable line: fine only if nothing follows
  with open(path, "rb") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      if bad is not None:
        text = bad[1][:60].decode(errors="replace")
        raise CorruptJsonlError(
            f"{path}:{bad[0]}: unreadable line ({text!r}) before the last line, so not a torn "
            "write: the file is damaged. Restore it, or delete that line if you accept losing "
            "its record.")
      obj = _parse_line(line)
      if obj is None:
        bad = (lineno, line)
      else:
        out.append(obj)
  if bad is not None:
    warnings.warn(f"{path}:{bad[0]}: dropping an unreadable last line (a write torn by a kill "
                  "or a full disk; its round was not committed).", stacklevel=2)
  return out


def drop_torn_tail(path: str | os.PathLike) -> None:
  """Makes a JSONL file end in a complete line, so that appends start on a line of their own.

  A torn last line is cut off (with read_jsonl's warning); a readable one missing only its
  newline gets it.
  """
  path = pathlib.Path(path)
  data = path.read_bytes()
  body = data.rstrip()
  if not body:
    return
  start = body.rfind(b"\n") + 1
  if _parse_line(body[start:]) is None:
    warnings.warn(f"{path}: dropping an unreadable last line (a write torn by a kill or a full "
                  "disk; its round was not committed).", stacklevel=2)
    os.truncate(path, start)
  elif not data.endswith(b"\n"):
    with open(path, "ab") as f:
      f.write(b"\n")


def _parse_line(line: bytes) -> dict[str, Any] | None:
  """The JSON object on `line`, or None if it is not one (torn, binary garbage)."""
  try:
    obj = json.loads(line)
  except ValueError:  # JSONDecodeError, UnicodeDecodeError
    return None
  return obj if isinstance(obj, dict) else None


def load_metrics(path: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """(history, summary) from a `JsonlTracker` file.

  History has one dict per step, sorted by step; records logged for the same step (several
  calls in one round, or a round re-logged after resume) are merged, later values winning.
  """
  by_step: dict[int, dict[str, Any]] = {}
  summary: dict[str, Any] = {}
  for obj in read_jsonl(path):
    if "summary" in obj and "step" not in obj:
      summary.update(obj["summary"])
    elif "step" in obj:
      by_step.setdefault(int(obj["step"]), {}).update(obj)
  return [by_step[s] for s in sorted(by_step)], summary


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
    self.run = wandb.init(
        project=project,
        entity=entity,
        group=group,
        name=name,
        job_type=job_type,
        tags=list(tags),
        notes=notes,
        config=to_jsonable(_as_dict(config), nan_as_none=False),
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
  cfg = _as_dict(wandb_cfg) if wandb_cfg is not None else None
  if cfg is not None:
    unknown = set(cfg) - _WANDB_CFG_KEYS
    if unknown:
      trackers[0].finish()
      raise ValueError(
          f"Unknown wandb config keys {sorted(unknown)}; known: {sorted(_WANDB_CFG_KEYS)}.")
    configured = cfg.get("mode", "offline")
    mode = resolve_wandb_mode(configured) if configured is not None else "disabled"
    if mode != "disabled":
      try:
        trackers.append(
            WandbTracker(
                config=_as_dict(run_config),
                project=cfg.get("project") or "anchoral-jax",
                entity=cfg.get("entity"),
                group=cfg.get("group"),
                name=cfg.get("name") or workdir.resolve().name,
                job_type=cfg.get("job_type", "al"),
                tags=tuple(cfg.get("tags") or ()),
                mode=mode,
                dir=cfg.get("dir") or os.environ.get("WANDB_DIR") or workdir,
                resume_id=cfg.get("id") or load_or_create_run_id(workdir),
                notes=cfg.get("notes"),
                settings=_as_dict(cfg.get("settings") or {}),
            ))
      except BaseException:
        trackers[0].finish()
        raise
  return MultiTracker(trackers)


def _normalise_mode(mode: str, source: str) -> str:
  mode = _MODE_ALIASES.get(mode, mode)
  if mode not in WANDB_MODES:
    raise ValueError(f"{source} W&B mode {mode!r} is not one of {WANDB_MODES}.")
  return mode


def _as_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
  """Plain nested dict from a dict or an ml_collections ConfigDict."""
  to_dict = getattr(cfg, "to_dict", None)
  return dict(to_dict()) if callable(to_dict) else dict(cfg)
