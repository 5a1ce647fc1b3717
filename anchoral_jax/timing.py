"""Step timers that keep JAX compilation out of the step they time."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from anchoral_jax import parallel


@contextlib.contextmanager
def timed(timers: dict[str, float] | None, name: str) -> Iterator[None]:
  """Adds the block's wall seconds to `timers[name]`, less the JAX compilation inside it, which
  goes to `timers["compile"]`: compiling a program (once per shape and process, or read from
  the persistent cache) is no cost of the step itself (a round-0 query was ~50x round 1's).
  `timers=None` times nothing (library callers that do not ask for timings)."""
  if timers is None:
    yield
    return
  t0 = time.perf_counter()
  with parallel.compile_clock() as compiled:
    yield
  timers[name] = timers.get(name, 0.0) + time.perf_counter() - t0 - compiled.seconds
  timers["compile"] = timers.get("compile", 0.0) + compiled.seconds


def show_bars(progress: bool) -> bool:
  """Progress bars only where they redraw in place: a terminal, or a notebook. Written to a log
  file (a sweep's run.log, CI), tqdm's carriage-return redraws piled up (41 KB for a 2-minute
  run); there the epoch and round lines, one each, say how far it is."""
  if not progress:
    return False
  if "ipykernel" in sys.modules:  # a notebook draws the bar in place; its stderr is no tty
    return True
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):  # replaced or closed stream
    return False
