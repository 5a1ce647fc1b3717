"""What every benchmark row records (date, machine, load, versions) and the append-only
RESULTS.md writers and shared helpers for the bench/ scripts.

The machine is shared with other jobs, so each row carries the 1-minute load average taken
when that row was measured: compare rows only at similar load.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# $ANCHORAL_BENCH_RESULTS: another file to append to (bench/device_check.sh --dry-run's scratch
# copy, so that a rehearsal never writes rows into the record).
RESULTS = Path(os.environ.get("ANCHORAL_BENCH_RESULTS")
               or Path(__file__).resolve().parent / "RESULTS.md")


def now() -> str:
  return time.strftime("%Y-%m-%d %H:%M")


def machine() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return f"{cpu}, {os.cpu_count()} cpus"


def load() -> str:
  """`uptime`'s load averages (1, 5, 15 min)."""
  return " ".join(f"{x:.2f}" for x in os.getloadavg())


def versions(names: Sequence[str]) -> str:
  out = []
  for name in names:
    try:
      out.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      pass
  return ", ".join(out)


def interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
  """Median wall seconds per function, timing them in turn (A B A B ...), so that the load
  of other jobs drifting during the run hits every contender alike."""
  times: dict[str, list[float]] = {k: [] for k in fns}
  for _ in range(reps):
    for k, fn in fns.items():
      t0 = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - t0)
  return {k: statistics.median(v) for k, v in times.items()}


def markdown_table(columns: Sequence[str], rows: Sequence[dict[str, str]]) -> str:
  head = f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n"
  return head + "".join(f"| {' | '.join(str(r.get(c, '')) for c in columns)} |\n" for r in rows)


def append_section(heading: str, preamble: str, columns: Sequence[str],
                   rows: Sequence[dict[str, str]]) -> None:
  """Append-only: a new `## heading` block (others append their own sections concurrently)."""
  text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
  out = "" if RESULTS.exists() else text
  if text and not text.endswith("\n"):
    out += "\n"
  out += f"\n## {heading}\n\n{preamble.strip()}\n\n{markdown_table(columns, rows)}"
  with RESULTS.open("a") as f:
    f.write(out)


def append_rows(heading: str, columns: Sequence[str], rows: Sequence[dict[str, str]]) -> None:
  """Append-only rows under `## heading`: continue its table when that section came last,
  else start the section (and its table header) again."""
  text = RESULTS.read_text() if RESULTS.exists() else ""
  headings = [line for line in text.splitlines() if line.startswith("## ")]
  out = "" if text else "# Benchmark results\n"
  if not headings or headings[-1].strip() != f"## {heading}":
    out += f"\n## {heading}\n\n| {' | '.join(columns)} |\n|{'---|' * len(columns)}\n"
  elif not text.endswith("\n"):
    out += "\n"
  out += "".join(f"| {' | '.join(r[c] for c in columns)} |\n" for r in rows)
  with RESULTS.open("a") as f:
    f.write(out)


def recall(found_QxK, truth_QxK) -> float:
  """Mean fraction of each query's true neighbours that were found (recall@k)."""
  return float(sum(len(set(f.tolist()) & set(t.tolist())) / t.size
                   for f, t in zip(found_QxK, truth_QxK, strict=True)) / len(truth_QxK))
