"""`--backend slurm` fails early (sweep/slurm.py): time limits against the USR1 lead, requests
left to the cluster, MaxArraySize splits, models and data checked before any script. No Slurm
needed (tests/test_slurm.py runs the scripts on a real one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from anchoral_jax.errors import ConfigError
from anchoral_jax.sweep import command as sweep
from anchoral_jax.sweep import launch as sweep_launch
from anchoral_jax.sweep import runs as sweep_runs
from anchoral_jax.sweep import slurm as sweep_slurm

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "configs" / "main.py"
SEEDS2 = f"{MAIN}:runlocal,strategies=random,filters=none,seeds=8"  # 8 runs


@pytest.mark.parametrize("text,seconds", [
    ("10", 600), ("1:30", 90), ("2:00:00", 7200), ("1-0", 86400), ("1-2:30", 95400),
    ("0-00:01:05", 65), ("UNLIMITED", None), ("infinite", None)])
def test_parse_time_reads_every_slurm_form(text, seconds):
  assert sweep_slurm.parse_time(text) == seconds


@pytest.mark.parametrize("bad", ["", "1h", "1:2:3:4", "x-1", "-5"])
def test_parse_time_refuses_the_rest(bad):
  with pytest.raises(ValueError, match="not a Slurm time"):
    sweep_slurm.parse_time(bad)


def test_time_limit_must_leave_room_after_the_lead():
  assert sweep_slurm.signal_lead(["--mem=1G"]) == (120, ["--mem=1G"])
  assert sweep_slurm.signal_lead(["--signal=B:USR1@30", "-t 5"]) == (30, ["-t 5"])
  with pytest.raises(ConfigError, match="B:USR1@SECONDS"):
    sweep_slurm.signal_lead(["--signal=TERM@60"])
  assert sweep_slurm.check_time_limit(["--time=3"], 120) == 180  # 180 > 120 + 30
  assert sweep_slurm.check_time_limit(["--mem=1G"], 120) is None
  for limit in (["--time=2"], ["-t 00:02:30"], ["-t2"], ["--time 0:150"]):
    with pytest.raises(ConfigError, match="USR1 lead"):
      sweep_slurm.check_time_limit(limit, 120)
  assert sweep_slurm.check_time_limit(["--time=1"], 10) == 60  # 60 > 10 + 30: the tests' lead


def test_missing_requests_are_named():
  assert len(sweep_slurm.missing_requests([])) == 3
  assert sweep_slurm.missing_requests(["--time=1-0", "--gpus=1", "--mem-per-cpu=4G"]) == []
  (only,) = sweep_slurm.missing_requests(["-t 60", "--gres=gpu:a100:1"])
  assert only.startswith("--mem")


def test_max_array_size_from_scontrol():
  def fake(out: str, rc: int = 0):
    return lambda *a, **k: subprocess.CompletedProcess(a, rc, out, "")
  conf = "AuthType = auth/munge\nMaxArraySize            = 40001\nMaxJobCount = 10000\n"
  assert sweep_slurm.max_array_size(fake(conf)) == 40001
  assert sweep_slurm.max_array_size(fake(conf, rc=1)) is None

  def missing(*a, **k):
    raise FileNotFoundError("scontrol")
  assert sweep_slurm.max_array_size(missing) is None


def test_big_sweeps_become_chained_arrays_within_max_array_size(tmp_path):
  runs = sweep_runs.expand(SEEDS2)
  runs_dir = tmp_path / "runs"
  submit = sweep_launch.write_slurm(runs, runs_dir, SEEDS2, parallel=2, max_array=3)
  assert submit.name == "main-submit.sh"
  parts = sorted((runs_dir / "_sweep").glob("main-part*.sbatch"))
  assert [p.name for p in parts] == ["main-part1.sbatch", "main-part2.sbatch",
                                     "main-part3.sbatch"]
  arrays = [next(x for x in p.read_text().splitlines() if x.startswith("#SBATCH --array"))
            for p in parts]
  assert arrays == ["#SBATCH --array=0-2%2", "#SBATCH --array=0-2%2", "#SBATCH --array=0-1%2"]
  assert '$((3 + TASK + 1))p' in parts[1].read_text()  # part 2 reads lines 4-6
  # Submitting: each array after the one before (afterany), so that 2 run at most in all.
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  log = tmp_path / "sbatch.log"
  stub = bin_dir / "sbatch"
  stub.write_text(f'#!/bin/bash\necho "$@" >> {log}\necho $((100 + $(wc -l < {log})))\n')
  stub.chmod(0o755)
  out = subprocess.run(["bash", str(submit)], env={**os.environ, "PATH": f"{bin_dir}:"
                                                   + os.environ["PATH"]},
                       capture_output=True, text=True, check=True)
  calls = log.read_text().splitlines()
  assert calls == [f"--parsable {parts[0]}", f"--parsable --dependency=afterany:101 {parts[1]}",
                   f"--parsable --dependency=afterany:102 {parts[2]}"]
  assert "Submitted 103" in out.stdout
  # Without --parallel, no chain: every array may run at once.
  unchained = sweep_launch.write_slurm(runs, tmp_path / "r2", SEEDS2, parallel=0, max_array=3)
  assert "dependency" not in unchained.read_text()
  one = sweep_launch.write_slurm(runs, tmp_path / "r3", SEEDS2, parallel=1, max_array=8)
  assert one.name == "main.sbatch" and "#SBATCH --array=0-7%1\n" in one.read_text()


def test_scripts_carry_the_cache_and_data_dirs(tmp_path, monkeypatch):
  monkeypatch.setenv("ANCHORAL_CACHE_DIR", str(tmp_path / "my cache"))
  monkeypatch.setenv("ANCHORAL_DATA_DIR", str(tmp_path / "data"))
  script = sweep_launch.write_slurm(sweep_runs.expand(SEEDS2), tmp_path / "runs", SEEDS2)
  text = script.read_text()
  assert f"export ANCHORAL_CACHE_DIR=${{ANCHORAL_CACHE_DIR:-'{tmp_path}/my cache'}}" in text
  assert f"export ANCHORAL_DATA_DIR=${{ANCHORAL_DATA_DIR:-{tmp_path}/data}}" in text


def test_sweep_fails_before_writing_when_a_model_or_the_data_is_missing(tmp_path, capsys):
  runs_dir = tmp_path / "runs"
  with pytest.raises(ConfigError, match="model.name"):
    sweep.main(SEEDS2, runs_dir, backend="slurm",
               overrides={"model.name": str(tmp_path / "no-such-model")})
  paper = f"{MAIN}:datasets=agnews_business,strategies=random,filters=none,seeds=1"
  with pytest.raises(ConfigError, match="pietrolesci/agnews"):  # a model here, the data not
    sweep.main(paper, runs_dir, backend="slurm", overrides={
        "model.name": "all-MiniLM-L6-v2", "data.kwargs.manual_dir": str(tmp_path)})
  assert not runs_dir.exists()  # nothing written, nothing to submit
  with pytest.raises(ConfigError, match="--parallel -1"):
    sweep.main(SEEDS2, runs_dir, backend="slurm", parallel=-1)


def test_cli_warns_about_requests_left_to_the_cluster(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}  # no scontrol here
  out = subprocess.run([sys.executable, "-m", "anchoral_jax.cli", "sweep", "--config", SEEDS2,
                        "--runs_dir", str(tmp_path), "--backend", "slurm", "--sbatch=-t 1-0"],
                       cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert "no --gres=gpu:N or --gpus" in out.stderr and "no --mem" in out.stderr
  assert "no --time" not in out.stderr and "arrays of at most 1001 tasks" in out.stderr


def _stub(path: Path, body: str) -> Path:
  path.write_text("#!/bin/bash\n" + body)
  path.chmod(0o755)
  return path


@pytest.mark.parametrize("left,restart,commits,requeues", [
    ("10:00", 0, False, True),   # a first start near its limit: requeue
    ("10:00", 1, True, True),    # a restart that committed a round: requeue
    ("10:00", 1, False, False),  # a restart that committed nothing: another would not either
    ("2:30", 0, True, False)])   # started within lead + 30 s: USR1 comes at every start
def test_a_task_requeues_itself_only_when_another_start_could_do_better(
    tmp_path, left, restart, commits, requeues):
  import signal
  import time

  runs = sweep_runs.expand(SEEDS2)
  script = sweep_launch.write_slurm(runs, tmp_path / "runs", SEEDS2)
  workdir = runs[0].workdir(tmp_path / "runs")
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _stub(bin_dir / "squeue", f"echo {left}\n")
  _stub(bin_dir / "scontrol", f'echo "$@" >> {tmp_path}/scontrol\n')
  commit = f"echo '{{\"step\": 0}}' >> {workdir}/metrics.jsonl\n" if commits else ""
  fake = _stub(tmp_path / "fake", f"{commit}touch {tmp_path}/started\nsleep 2\n")
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ANCHORAL": str(fake),
         "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_JOB_ID": "7", "SLURM_JOB_ID": "8",
         "SLURM_RESTART_COUNT": str(restart)}
  proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, text=True)
  deadline = time.time() + 20
  while not (tmp_path / "started").exists() and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(0.2)
  proc.send_signal(signal.SIGUSR1)
  proc.communicate(timeout=30)
  log = (workdir / "run.log").read_text()
  assert proc.returncode == 0
  if requeues:
    assert (tmp_path / "scontrol").read_text().split() == ["requeue", "7_0"]
    assert "USR1: requeueing 7_0" in log
  else:
    assert not (tmp_path / "scontrol").exists() and "USR1: not requeueing 7_0" in log
    assert "exit 0" in log  # the run went on to its end
