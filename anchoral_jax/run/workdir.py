"""Workdir integrity: one process per workdir (`fileio.lock`), and no summary over rounds whose
metrics are lost.

The lock is advisory (`fcntl.flock` on `<workdir>/.lock`): it stops a second `anchoral run`
(a re-started sweep, a double-submitted job) from running the same rounds again next to the
first. The kernel releases it when its holder dies, even by SIGKILL, so there is never a stale
lock to delete. The file holds the holder's pid and host for the error message. flock works
across hosts on NFSv4 and most cluster filesystems; where the filesystem refuses locks the run
goes ahead with a warning (as it did before there was a lock).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from anchoral_jax.errors import WorkdirError
from anchoral_jax.fileio import write_text_atomic

log = logging.getLogger(__name__)

class IncompleteMetricsError(WorkdirError):
  pass


class DataChangedError(WorkdirError):
  pass


def has_committed_round(workdir: str | os.PathLike) -> bool:
  """Whether a round was committed: a finished orbax step dir (orbax renames its tmp dir to the
  bare step number when the save completes) or DONE."""
  workdir = Path(workdir)
  if (workdir / "DONE").exists():
    return True
  ckpts = workdir / "checkpoints"
  return ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())


DATA_FINGERPRINT_NAME = "data_fingerprint.json"


def data_fingerprint(task, data_name: str) -> dict:
  """What identifies the data a run's checkpoints point into: they hold pool row positions, so
  the same config over a reordered or edited file would silently label other items."""
  return {"data.name": data_name, "train": task.fingerprint("train"),
          "test": task.fingerprint("test"), "pool_size": int(len(task.train)),
          "test_size": int(len(task.test))}


def check_data_fingerprint(workdir: str | os.PathLike, current: dict, write: bool = True) -> None:
  """Writes `<workdir>/data_fingerprint.json` at the first run; on a resume (a round committed)
  fails with DataChangedError naming what differs, before any round runs.

  Without a committed round nothing can be mixed, so a differing file is replaced (as for
  hparams.json). `write=False` checks only (non-primary processes of a multi-host run)."""
  workdir = Path(workdir)
  path = workdir / DATA_FINGERPRINT_NAME
  if path.exists():
    try:
      previous = json.loads(path.read_text())
    except ValueError:
      previous = None
    if previous != current and has_committed_round(workdir):
      if not isinstance(previous, dict):
        what = f"{path} is not valid JSON"
      else:
        what = "; ".join(f"{k}: {previous.get(k, '<unset>')!r} -> {current.get(k, '<unset>')!r}"
                         for k in sorted(previous.keys() | current.keys())
                         if previous.get(k, "<unset>") != current.get(k, "<unset>"))
      raise DataChangedError(
          f"{workdir} holds a run over different data ({what}): its checkpoints address pool "
          "rows by position, so resuming would label other items. Restore the data file the "
          "run started with, or start over in a new --workdir.")
    if previous == current:
      return
  if write:
    write_text_atomic(path, json.dumps(current, indent=2, sort_keys=True) + "\n")


PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "usearch",
            "transformers", "wandb")


def package_versions() -> dict[str, str]:
  """Installed versions of the packages that decide results (installed metadata: importing
  them all would cost seconds); "" for one not installed."""
  from importlib import metadata

  out = {}
  for name in PACKAGES:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = ""
  return out


def git_sha(timeout_s: float = 5.0) -> str:
  """The commit of the code (`git rev-parse HEAD` in the package's checkout), or "" when it is
  not a git checkout (an installed wheel) or git is missing or hangs."""
  import subprocess

  try:
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                       capture_output=True, text=True, timeout=timeout_s)
  except (OSError, subprocess.SubprocessError):
    return ""
  return r.stdout.strip() if r.returncode == 0 else ""


def git_dirty(timeout_s: float = 5.0, cwd: str | os.PathLike | None = None) -> bool | None:
  """Whether the checkout of the code (or of `cwd`) has uncommitted changes to tracked files
  (`git status --porcelain --untracked-files=no`): the commit alone does not say what ran
  then. None when it is not a git checkout or git is missing or hangs."""
  import subprocess

  try:
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                       cwd=cwd or Path(__file__).resolve().parent, capture_output=True, text=True,
                       timeout=timeout_s)
  except (OSError, subprocess.SubprocessError):
    return None
  return bool(r.stdout.strip()) if r.returncode == 0 else None


def platform_info() -> dict[str, str]:
  """Python and OS of this process (what `anchoral env` and provenance.json report)."""
  import platform
  import sys

  return {"python": sys.version.split()[0], "os": platform.platform()}


PROVENANCE_NAME = "provenance.json"


def record_provenance(workdir: str | os.PathLike) -> list[dict]:
  """Appends this start (time, host, code commit and whether the checkout had uncommitted
  changes, Python, OS, package versions) to
  `<workdir>/provenance.json` and returns all starts, oldest first.

  A list, never overwritten: a run resumed after an upgrade or a `git pull` mixes two code
  versions, and the file is how a reader of its results finds out. An unreadable file (edited
  by hand) is kept as `provenance.json.unreadable` rather than lost or blocking the run."""
  import time

  path = Path(workdir) / PROVENANCE_NAME
  starts: list = []
  if path.exists():
    try:
      starts = json.loads(path.read_text())
    except ValueError:
      starts = None
    if not isinstance(starts, list):
      log.warning("%s is not a list of starts; kept as %s.unreadable, starting a new list.",
                  path, path.name)
      os.replace(path, path.with_name(path.name + ".unreadable"))
      starts = []
  starts.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": socket.gethostname(),
                 "git_sha": git_sha(), "git_dirty": git_dirty(), **platform_info(),
                 "versions": package_versions()})
  write_text_atomic(path, json.dumps(starts, indent=2) + "\n")
  return starts


def check_rounds_logged(path: str | os.PathLike, steps: Sequence[int], num_rounds: int) -> None:
  """Fails unless the metrics file at `path` logged exactly rounds 0..num_rounds (`steps`).

  The checkpoints say every round ran; a summary over fewer rounds would be a wrong AUC.
  """
  expected = list(range(num_rounds + 1))
  if list(steps) == expected:
    return
  missing = sorted(set(expected) - set(steps))
  extra = sorted(set(steps) - set(expected))
  what = []
  if missing:
    what.append(f"lacks rounds {_ranges(missing)}")
  if extra:
    what.append(f"has rounds {_ranges(extra)} beyond the last round {num_rounds}")
  raise IncompleteMetricsError(
      f"{path} {' and '.join(what)}: the checkpoints say rounds 0..{num_rounds} ran, so a "
      "summary would be wrong; summary.json and DONE were not written. Restore the file, or "
      "re-run the same config in a new --workdir (runs are deterministic).")


def _ranges(values: Sequence[int]) -> str:
  """[0, 1, 2, 5] -> '0-2, 5'."""
  out, start = [], None
  for i, v in enumerate(values):
    if start is None:
      start = v
    if i + 1 == len(values) or values[i + 1] != v + 1:
      out.append(str(start) if start == v else f"{start}-{v}")
      start = None
  return ", ".join(out)
