"""Multi-host: two jax.distributed CPU processes (gloo) run one AL simulation together.

Process 0 alone writes the run's files; both compute. The result must equal a single process
driving the same 2-device mesh (XLA's fake host devices), bit for bit on every decision.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _args(workdir: Path, cache_dir) -> list[str]:
  return [sys.executable, "-m", "anchoral_jax.cli", "run", "--workdir", str(workdir),
          "--config", "configs/default.py:tiny", "--config.data.kwargs.pool_size=400",
          "--config.data.kwargs.test_size=120", f"--config.data.cache_dir={cache_dir}",
          "--config.wandb.mode=disabled", "--config.al.subpool_size=150"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _records(workdir: Path, name: str) -> list[dict]:
  rows = [json.loads(line) for line in (workdir / name).read_text().splitlines()]
  return [{k: v for k, v in r.items() if not k.startswith("time")} for r in rows
          if "summary" not in r]


def test_two_processes_match_one_process_on_the_same_mesh(tmp_path, cache_dir):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  ref = tmp_path / "one-process"
  one = subprocess.run(_args(ref, cache_dir), cwd=ROOT, capture_output=True, text=True,
                       timeout=600,
                       env={**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert one.returncode == 0, one.stderr[-3000:]

  work = tmp_path / "two-processes"
  port = _free_port()
  procs = [subprocess.Popen(_args(work, cache_dir), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**env, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                                 "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
           for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
  assert "round   2/2" in outs[0] and "round   " not in outs[1]  # process 0 reports
  assert (work / "DONE").exists()
  pd.testing.assert_frame_equal(pd.read_parquet(work / "labelled.parquet"),
                                pd.read_parquet(ref / "labelled.parquet"))
  for name in ("metrics.jsonl", "subpools.jsonl", "anchors.jsonl"):
    got, want = _records(work, name), _records(ref, name)
    assert got == want and len(got) >= 2, name  # one line per round: process 0 wrote once
