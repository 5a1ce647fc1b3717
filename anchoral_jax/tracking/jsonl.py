"""The local record of truth: metrics as JSON lines in the workdir (CONTRIBUTING.md §6).

The JSONL file survives a killed run (flush + fsync per line), needs no service, and is what
analysis, reports and resume read (`read_jsonl`, the one reader; `load_metrics`). `to_jsonable`
is the one conversion of records to plain JSON values, for this file and the W&B sink alike.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any

from anchoral_jax.errors import UserError

JSONL_NAME = "metrics.jsonl"


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


class CorruptJsonlError(UserError, ValueError):
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
