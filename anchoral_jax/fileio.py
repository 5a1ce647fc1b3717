"""Crash-safe file writes (atomic publish) and advisory file locks (one process per workdir, one
builder per cache file), shared by the loop, the sweep, the caches and the labelling mode."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from anchoral_jax.errors import WorkdirError, WorkdirInUseError

try:
  import fcntl
except ImportError:  # not POSIX: no lock
  fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


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


@contextlib.contextmanager
def build_lock(path: str | os.PathLike) -> Iterator[None]:
  """Holds an exclusive, blocking `fcntl.flock` on `<path>.lock` while `path` is built.

  Runs of one task in different workdirs share the cache: without this, two cold-cache runs
  both build the file and the last rename wins, so they may search different (equally valid
  but not identical) HNSW graphs. With it one process builds and the others wait, then load
  the same file. The lock file stays (unlinking it would race with a waiter); the kernel drops
  the lock when its holder dies. Where the filesystem refuses locks, builds go unprotected.
  """
  path = Path(path)
  if fcntl is None:
    yield
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  lock_path = Path(str(path) + ".lock")

  def acquire(fd: int) -> bool:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        log.warning("Cannot lock %s (%s): building %s without protection against a "
                    "concurrent build.", lock_path, e, path)
        return False
      log.info("Waiting for another process building %s (it holds %s).", path, lock_path)
      fcntl.flock(fd, fcntl.LOCK_EX)
    return True

  with _held(lock_path, acquire):
    yield


@contextlib.contextmanager
def _held(lock_path: Path, acquire) -> Iterator[int | None]:
  """Opens `lock_path` and holds the lock `acquire(fd)` takes (True: taken, False: the
  filesystem has no locks) for the block; yields the fd while locked, else None."""
  fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    locked = acquire(fd)
    try:
      yield fd if locked else None
    finally:
      if locked:
        fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)


def make_dir(path: str | os.PathLike, what: str = "--workdir") -> Path:
  """Creates the folder `path` (and its parents) if missing; a WorkdirError naming `what`
  when `path` or a parent is a file (mkdir's FileExistsError was a 31-line traceback)."""
  path = Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except (FileExistsError, NotADirectoryError) as e:
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
    raise WorkdirError(f"{what} {path}: {blocker} is a file, not a folder; choose another path "
                       "(a missing folder is created).") from e
  return path


@contextlib.contextmanager
def lock(workdir: str | os.PathLike) -> Iterator[None]:
  """Holds `<workdir>/.lock` (non-blocking) until the block ends or the process dies.

  Fails at once with WorkdirInUseError when another process holds it; creates the workdir and
  the lock file if missing, and writes nothing else.
  """
  workdir = Path(workdir)
  if fcntl is None:
    log.warning("No fcntl on this platform: %s is not locked against a second run.", workdir)
    yield
    return
  make_dir(workdir)
  path = workdir / LOCK_NAME
  with _held(path, lambda fd: _try_lock(fd, path)) as fd:
    if fd is not None:
      os.ftruncate(fd, 0)
      os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
      os.fsync(fd)
    yield


def _try_lock(fd: int, path: Path) -> bool:
  """True once locked; False where the filesystem has no locks; raises if another holds it."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except OSError as e:
    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      log.warning("Cannot lock %s (%s): running without protection against a second run on "
                  "this workdir.", path, e)
      return False
  pid, host = _holder(fd)
  raise WorkdirInUseError(
      f"workdir {path.parent} is in use by pid {pid} on host {host} (it holds {path}). Wait "
      "for it to finish, or stop it, then re-run this command to resume.")


def _holder(fd: int) -> tuple[str, str]:
  """(pid, host) the holder wrote; '?' while it has not written them yet."""
  try:
    parts = os.pread(fd, 4096, 0).decode(errors="replace").split()
  except OSError:
    parts = []
  return (parts[0] if parts else "?"), (parts[1] if len(parts) > 1 else "?")
