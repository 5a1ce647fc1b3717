"""Crash-safe file writes shared by the loop and the sweep."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
  """Write via `<name>.tmp` + os.replace: readers see the old file or the new, never half."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)
