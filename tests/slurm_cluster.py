"""A private single-node Slurm for the tests: launch/slurm_cluster.sh (the script a user starts
by hand) under a temp dir, stopped by its PID files at the end. Skipped, with the reason, where
Slurm cannot run: no `slurm-wlm`/`munge` binaries (`make test` installs them with apt when it
runs as root), or not root (the daemons run as root here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "launch" / "slurm_cluster.sh"
PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def unavailable() -> str:
  """Why a private Slurm cannot start here ('' when it can)."""
  missing = [p for p in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue")
             if shutil.which(p, path=PATH) is None]
  if missing:
    return (f"no Slurm here ({', '.join(missing)} missing): `make test` as root installs "
            "Debian's slurm-wlm and munge; elsewhere apt-get install slurm-wlm munge")
  if os.geteuid() != 0:
    return "the private Slurm runs its daemons as root (munged, slurmctld, slurmd)"
  return ""


def start(directory: Path, cpus: int = 8, max_array: int = 1001) -> dict[str, str]:
  """Starts the cluster; returns the environment its clients (sbatch, squeue) need."""
  env = {**os.environ, "PATH": PATH, "SLURM_CPUS": str(cpus),
         "SLURM_MAX_ARRAY": str(max_array)}
  out = subprocess.run(["bash", str(SCRIPT), "start", str(directory)], env=env,
                       capture_output=True, text=True, timeout=120)
  if out.returncode != 0:
    raise RuntimeError(f"slurm_cluster.sh start failed:\n{out.stdout}\n{out.stderr}")
  return {**env, "SLURM_CONF": str(directory / "slurm.conf")}


def stop(directory: Path) -> None:
  subprocess.run(["bash", str(SCRIPT), "stop", str(directory)], capture_output=True,
                 timeout=60, env={**os.environ, "PATH": PATH})


def sh(env: dict[str, str], *cmd: str, check: bool = True) -> str:
  out = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=60)
  if check and out.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)}: rc {out.returncode}\n{out.stdout}\n{out.stderr}")
  return out.stdout


def tasks(env: dict[str, str], job_ids: list[str]) -> dict[str, str]:
  """squeue's tasks of these array jobs: {"12_0": "RUNNING", "12_[1-3%2]": "PENDING", ...}."""
  if not job_ids:
    return {}
  out = sh(env, "squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(job_ids))
  return dict(line.split() for line in out.splitlines() if line.strip())


def job_field(env: dict[str, str], job: str, field: str) -> str | None:
  """A `scontrol show job` field of a job (kept MinJobAge = 300 s after it ends)."""
  out = sh(env, "scontrol", "-o", "show", "job", job, check=False)
  m = re.search(rf"\b{field}=(\S*)", out)
  return m.group(1) if m else None


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
  """Polls until `predicate()` is truthy (returns it); fails the test after `timeout` s."""
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    got = predicate()
    if got:
      return got
    time.sleep(poll)
  raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
