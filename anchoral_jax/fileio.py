"""Crash-safe file writes shared by the loop, the sweep, the caches and the labelling mode."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
  """Write via `<name>.tmp` + os.replace: readers see the old file or the new, never half."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def tmp_path(path: Path) -> Path:
  """A per-process temporary name next to `path` (same suffix, so numpy adds none): two
  writers never collide."""
  return path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")


def publish(path: Path, write: Callable[[Path], None]) -> None:
  """`write(tmp)` to `tmp_path(path)`, then os.replace: readers see the old file or the new
  one, never half."""
  tmp = tmp_path(path)
  write(tmp)
  os.replace(tmp, path)
