"""Per-host sweeps (`anchoral sweep --shard=I/N|auto`): every run in exactly one host's share,
the shares agree whatever has finished, `auto` reads the TPU worker id (env or Cloud TPU
metadata) or Slurm; a shard's runs never start jax.distributed, and a one-run-over-all-hosts
job on Cloud TPU needs no coordinator address."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from anchoral_jax import parallel
from anchoral_jax.errors import ConfigError
from anchoral_jax.sweep import command as sweep
from anchoral_jax.sweep import launch as sweep_launch
from anchoral_jax.sweep import local as sweep_local
from anchoral_jax.sweep import runs as sweep_runs

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "configs" / "main.py"
# 6 runs: full-pool random and entropy+randomsubset, 3 seeds each (no index needed).
SWEEP = f"{MAIN}:runlocal,strategies=random+entropy,filters=none+randomsubset,seeds=3"


@pytest.fixture(scope="module")
def runs():
  return sweep_runs.expand(SWEEP)


@pytest.mark.parametrize("count", [1, 2, 4, 6, 7])
def test_every_run_is_in_exactly_one_share(runs, count):
  shares = [sweep_launch.select_shard(runs, i, count) for i in range(count)]
  names = [r.name for share in shares for r in share]
  assert sorted(names) == sorted(r.name for r in runs)  # union = all, no run twice
  assert len(names) == len(set(names))
  assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced


def test_shares_do_not_depend_on_what_is_done(runs, tmp_path, capsys):
  before = [r.name for r in sweep.main(SWEEP, tmp_path, backend="dry", shard="1/2")]
  (runs[1].workdir(tmp_path)).mkdir(parents=True)
  (runs[1].workdir(tmp_path) / "DONE").touch()  # another host finished one of its runs
  after = sweep.main(SWEEP, tmp_path, backend="dry", shard="1/2")
  assert [r.name for r in after] == before
  assert f"(shard 1/2: {len(before)} of {len(runs)} runs)" in capsys.readouterr().out


def _dry(*args: str, **env: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "anchoral_jax.cli", "sweep", "--config", SWEEP,
                         "--backend", "dry", *args], cwd=ROOT, capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **env}, timeout=300)


def _listed(out: str) -> list[str]:
  return [line.split(None, 1)[1] for line in out.splitlines()
          if line.startswith(("todo ", "DONE "))]


def test_cli_dry_shards_partition_the_sweep(runs, tmp_path):
  every = [r.name for r in runs]
  seen = []
  for i in range(3):
    r = _dry("--runs_dir", str(tmp_path), f"--shard={i}/3")
    assert r.returncode == 0, r.stderr[-3000:]
    seen += _listed(r.stdout)
  assert sorted(seen) == sorted(every) and len(seen) == len(set(seen))
  # auto, from a GKE-style TPU environment: worker 1 of 3 gets the same share as --shard=1/3.
  env = {"TPU_WORKER_ID": "1", "TPU_WORKER_HOSTNAMES": "h0,h1,h2"}
  auto = _dry("--runs_dir", str(tmp_path), "--shard=auto", **env)
  assert auto.returncode == 0, auto.stderr[-3000:]
  assert _listed(auto.stdout) == [r.name for r in sweep_launch.select_shard(runs, 1, 3)]


@pytest.mark.parametrize("args,needle", [
    (["--shard=2/2"], "not in 0..1"),
    (["--shard=1of2"], "expected I/N"),
    (["--shard=0/2", "--backend", "slurm"], "drop --shard"),
])
def test_cli_bad_shard_is_one_message(tmp_path, args, needle):
  r = _dry("--runs_dir", str(tmp_path), *args)
  assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
  assert not (tmp_path / "_sweep").exists()  # nothing written


def test_auto_reads_tpu_env_then_tpu_metadata_then_slurm():
  no_metadata = lambda key: None  # noqa: E731
  tpu = {"TPU_WORKER_ID": "2", "TPU_WORKER_HOSTNAMES": "a,b,c,d", "SLURM_PROCID": "0",
         "SLURM_NTASKS": "9"}
  assert sweep_launch.parse_shard("auto", tpu, no_metadata) == (2, 4)
  metadata = {"agent-worker-number": "3",
              "worker-network-endpoints": "w0:0:10.0.0.1,w1:1:10.0.0.2,w2:2:10.0.0.3,"
                                          "w3:3:10.0.0.4"}
  assert sweep_launch.parse_shard("auto", {}, metadata.get) == (3, 4)  # gcloud ssh --worker=all
  slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8"}
  assert sweep_launch.parse_shard("auto", slurm, no_metadata) == (5, 8)
  with pytest.raises(ValueError, match="--shard=I/N"):
    sweep_launch.parse_shard("auto", {}, no_metadata)
  assert sweep_launch.parse_shard("", {}, no_metadata) is None
  assert sweep_launch.parse_shard("0/1", {}, no_metadata) == (0, 1)


def test_sharded_main_rejects_before_writing(tmp_path):
  with pytest.raises(ConfigError, match="drop --shard"):
    sweep.main(SWEEP, tmp_path, backend="multihost", shard="0/2")
  assert list(tmp_path.iterdir()) == []


def test_local_runs_never_start_jax_distributed(monkeypatch):
  monkeypatch.delenv(parallel.DISTRIBUTED_ENV, raising=False)
  assert sweep_local.child_env(1)[parallel.DISTRIBUTED_ENV] == "0"


def test_parallel_local_runs_share_the_cores_for_blas(monkeypatch):
  monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
  cores = len(os.sched_getaffinity(0))
  assert "OPENBLAS_NUM_THREADS" not in sweep_local.child_env(1)
  assert sweep_local.child_env(2)["OPENBLAS_NUM_THREADS"] == str(max(1, cores // 2))
  assert sweep_local.child_env(4 * cores)["OPENBLAS_NUM_THREADS"] == "1"
  monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")  # the user's choice stands
  assert sweep_local.child_env(2)["OPENBLAS_NUM_THREADS"] == "3"


@pytest.mark.parametrize("env,expected", [
    ({}, None),  # one host: nothing to start
    ({"SLURM_NTASKS": "4"}, {}),  # srun, several tasks: JAX reads Slurm
    ({"SLURM_NTASKS": "4", "ANCHORAL_DISTRIBUTED": "0"}, None),  # a sweep's run under srun
    ({"ANCHORAL_DISTRIBUTED": "1"}, {}),  # Cloud TPU pod: no coordinator address needed
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1}),
])
def test_initialize_distributed_modes(monkeypatch, env, expected):
  for key in ("SLURM_NTASKS", "ANCHORAL_DISTRIBUTED", "JAX_COORDINATOR_ADDRESS",
              "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
    monkeypatch.delenv(key, raising=False)
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  calls = []
  monkeypatch.setattr(parallel.jax.distributed, "initialize", lambda **kw: calls.append(kw))
  monkeypatch.setattr(parallel.jax.config, "update", lambda *a: None)  # keep this process's
  parallel.initialize_distributed()
  assert calls == ([] if expected is None else [expected])


def test_multihost_script_needs_no_coordinator_on_a_tpu_vm(tmp_path):
  runs_dir = tmp_path / "runs"
  tiny = f"{MAIN}:runlocal,strategies=random,filters=none,seeds=1"
  script = sweep_launch.write_multihost(sweep_runs.expand(tiny), runs_dir, tiny)
  fake = tmp_path / "fake_anchoral"
  fake.write_text('#!/bin/bash\necho "[$ANCHORAL_DISTRIBUTED][$JAX_COORDINATOR_ADDRESS]" > "$5/env"'
                  '\ntouch "$5/DONE"\n')
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  env = {k: v for k, v in os.environ.items()
         if k not in ("COORDINATOR", "JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS")}
  env.update(ANCHORAL=str(fake), TPU_WORKER_ID="0")  # as on a TPU VM (GKE sets it)
  r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  (run,) = sweep_runs.expand(tiny)
  assert (run.workdir(runs_dir) / "env").read_text().strip() == "[1][]"
