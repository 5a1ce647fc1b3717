"""Ctrl-C during `anchoral run` (while JAX compiles the first train step) ends the process at
once with exit 130 and one line saying how to resume, never a segfault or a traceback; the
same command then finishes the run (the workdir's writes are atomic, its lock dies with the
process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from anchoral_jax.cli import INTERRUPTED_MESSAGE, INTERRUPTED_RC

ROOT = Path(__file__).resolve().parents[1]
POOL, TEST = 400, 100


def _cmd(workdir: Path, cache_dir: Path) -> list[str]:
  return [sys.executable, "-u", "-m", "anchoral_jax.cli", "run", "--config",
          str(ROOT / "configs/default.py") + ":tiny", "--workdir", str(workdir),
          f"--config.data.cache_dir={cache_dir}", f"--config.data.kwargs.pool_size={POOL}",
          f"--config.data.kwargs.test_size={TEST}", "--config.wandb.mode=disabled"]


def test_sigint_during_compile_exits_130_and_the_rerun_finishes(tmp_path):
  workdir, cache = tmp_path / "w", tmp_path / "cache"  # a cold cache: the first step compiles
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.Popen(_cmd(workdir, cache), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  seen = []
  try:
    # The set-up's last line (pool and test sizes) comes right before round 0 compiles its
    # train step (seconds on a CPU, the only compile of this size in the run).
    for line in proc.stdout:
      seen.append(line)
      if ": pool " in line and "; test " in line:  # "<task>: pool N (...); test M (...)"
        break
    else:
      raise AssertionError("the run ended before its set-up line:\n" + "".join(seen))
    proc.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    rest = proc.stdout.read()
    rc = proc.wait(timeout=60)
    took = time.monotonic() - t0
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  out = "".join(seen) + rest
  assert rc == INTERRUPTED_RC, out[-3000:]
  assert INTERRUPTED_MESSAGE in rest
  for bad in ("Segmentation fault", "Fatal Python error", "Traceback", "core dumped"):
    assert bad not in out, out[-3000:]
  assert not (workdir / "DONE").exists() and took < 30
  rerun = subprocess.run(_cmd(workdir, cache), cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert (workdir / "DONE").exists()
