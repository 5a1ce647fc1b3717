"""Errors caused by input (a config, a data file, a checkpoint, a workdir's files or its lock), not
by a bug: each subclasses `UserError`, and the CLI prints its message in one line and exits 2.

The bottom of the house: it imports nothing of the package, so any module can raise these.
"""


class UserError(Exception):
  """Input the user can fix; the message says how (CLI: one line, exit status 2)."""


class ConfigError(UserError, ValueError):
  """An option is unknown, out of range, or inconsistent with another; raised before any
  expensive step (al/validation.py)."""


class WorkdirError(UserError, RuntimeError):
  """The workdir's state stops the run; the message says what to do."""


class WorkdirInUseError(WorkdirError):
  """Another process holds the workdir's lock (fileio.lock)."""


class CorruptCacheError(WorkdirError, ValueError):
  """A cache file (tokens, embeddings, index) cannot be read; the message names it and says to
  delete it. A ValueError for callers that caught the bare parse errors before."""
