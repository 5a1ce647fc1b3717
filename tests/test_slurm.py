"""Sweeps against a real Slurm (tests/slurm_cluster.py: munged, slurmctld, slurmd under a temp
dir; skipped with the reason where it cannot start), each result compared with a local run of
the same command (labelled.parquet, subpools and metrics equal but for time fields).

One scenario, submitted at once so that its waits overlap (`scenario`), then one test per case:
  S1  the 4-run sweep via its generated scripts with --parallel 2 on a cluster with MaxArraySize
      3 (two arrays, chained); `scontrol requeue` of one task mid-run; `scancel` of another,
      then the same `anchoral sweep` again resubmits only that run, submitted with a --time
      within its USR1 lead (300 s) + 30 s (the task must not requeue itself: it finishes);
  S2  one run that outlives its time limit with a 10 s lead: USR1, self-requeue, resume. Once
      the run has committed two rounds the test pauses it (SIGSTOP) and cuts the job's limit
      to a minute or two past its run time (`scontrol update TimeLimit`, as an admin may), so
      that a few seconds' run outlives it whatever the machine's load; SIGCONT at USR1;
  S3  a cell's two seeds with --group_seeds (one task, the seeds in lockstep), against a local
      --group_seeds run (lockstep training is not bitwise the separate runs' training).
Apart: `srun --ntasks=2 anchoral sweep --shard=auto`, each task lists its own share.
The test cluster requeues after 10 s (AuthInfo cred_expire; Slurm's default 120 s).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import slurm_cluster as sc

from anchoral_jax.tracking.jsonl import load_metrics

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "configs" / "main.py"
SWEEP = f"{MAIN}:runlocal,strategies=random+entropy,filters=none+randomsubset,seeds=2"
ONE = f"{MAIN}:runlocal,strategies=random,filters=none,seeds=1"  # = the first run of SWEEP
CELL = f"{MAIN}:runlocal,strategies=entropy,filters=randomsubset,seeds=2"  # a cell of SWEEP
BUDGET = 500  # 16 query rounds of 25: a few seconds of rounds to act on a run mid-way
MAX_ARRAY = 3

pytestmark = pytest.mark.slow


def _anchoral(env, *args, check=True) -> subprocess.CompletedProcess:
  out = subprocess.run([sys.executable, "-m", "anchoral_jax.cli", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert not check or out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out


def _sweep_args(config, runs_dir, cache_dir, *extra):
  return ("sweep", "--config", config, "--runs_dir", str(runs_dir),
          f"--config.al.budget={BUDGET}", f"--config.data.cache_dir={cache_dir}", *extra)


def _steps(workdir: Path) -> int:
  try:
    return (workdir / "metrics.jsonl").read_text().count('{"step"')
  except FileNotFoundError:
    return 0


def _run_pid(workdir: Path) -> int | None:
  """The `anchoral run` process of a workdir (a child of the test's own Slurm task)."""
  for proc in Path("/proc").iterdir():
    if not proc.name.isdigit():
      continue
    try:
      argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
      continue
    if b"anchoral_jax.cli" in argv and str(workdir).encode() in argv:
      return int(proc.name)
  return None


def _submitted(out: str) -> list[str]:
  return re.findall(r"Submitted (?:batch job )?(\d+)", out)


def _outputs(workdir: Path):
  records, _ = load_metrics(workdir / "metrics.jsonl")
  metrics = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]
  return (metrics, pd.read_parquet(workdir / "labelled.parquet"),
          (workdir / "subpools.jsonl").read_text())


def _assert_same(got: Path, ref: Path) -> None:
  assert (got / "DONE").exists(), (got / "run.log").read_text()[-3000:]
  (ma, la, sa), (mb, lb, sb) = _outputs(got), _outputs(ref)
  pd.testing.assert_frame_equal(la, lb)  # the same labelled uids, in the same rounds
  assert sa == sb
  assert [sorted(r) for r in ma] == [sorted(r) for r in mb]
  for ra, rb in zip(ma, mb, strict=True):
    for k, v in ra.items():
      assert rb[k] == v, k


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  reason = sc.unavailable()
  if reason:
    pytest.skip(reason)
  directory = tmp_path_factory.mktemp("slurm")
  env = sc.start(directory, cpus=8, max_array=MAX_ARRAY)
  yield env
  sc.stop(directory)


@pytest.fixture(scope="module")
def scenario(cluster, tmp_path_factory, cache_dir):
  """Runs S1, S2, S3 and the local reference concurrently; returns what the tests check."""
  root = tmp_path_factory.mktemp("slurm_sweeps")
  env = {**cluster, "WANDB_MODE": "offline", "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
  ref, ref_g, s1, s2, s3 = (root / n for n in ("local", "local_g", "s1", "s2", "s3"))
  seen: dict = {"s1_max_running": 0}
  stopped_again = None  # the resubmitted run, paused until its task has had USR1
  local = subprocess.Popen([sys.executable, "-m", "anchoral_jax.cli",
                            *_sweep_args(SWEEP, ref, cache_dir, "--parallel", "2")],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
  local_g = subprocess.Popen([sys.executable, "-m", "anchoral_jax.cli",
                              *_sweep_args(CELL, ref_g, cache_dir, "--group_seeds")],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  try:
    s1_args = _sweep_args(SWEEP, s1, cache_dir, "--backend", "slurm", "--parallel", "2",
                          "--sbatch=--time=10", "--sbatch=--signal=B:USR1@300",
                          "--sbatch=--mem=1G")
    # Every script is written first, then all are submitted at once: the runs start on
    # submission, and writing a script (an `anchoral sweep` process) takes seconds to tens of
    # seconds on a loaded machine, long enough for a run to finish before the loop below looks.
    seen["s1_sweep"] = _anchoral(env, *s1_args).stdout
    seen["s2_sweep"] = _anchoral(env, *_sweep_args(
        ONE, s2, cache_dir, "--backend", "slurm", "--sbatch=--time=10",
        "--sbatch=--signal=B:USR1@10", "--sbatch=--mem=1G")).stdout
    _anchoral(env, *_sweep_args(CELL, s3, cache_dir, "--backend", "slurm", "--group_seeds",
                                "--sbatch=--time=10", "--sbatch=--mem=1G"))
    from anchoral_jax.sweep import runs as sweep

    runs = sweep.expand(SWEEP, {"al.budget": BUDGET, "data.cache_dir": str(cache_dir)})
    submit = s1 / "_sweep" / "main-submit.sh"
    seen["s1_parts"] = sorted(p.name for p in (s1 / "_sweep").glob("main-part*.sbatch"))
    s1_jobs = _submitted(sc.sh(env, "bash", str(submit)))
    s2_jobs = _submitted(sc.sh(env, "sbatch", str(s2 / "_sweep" / "main.sbatch")))
    s3_jobs = _submitted(sc.sh(env, "sbatch", str(s3 / "_sweep" / "main.sbatch")))
    requeued, cancelled = runs[0].workdir(s1), runs[1].workdir(s1)
    (s2_run,) = [r.workdir(s2) for r in sweep.expand(ONE, {"al.budget": BUDGET})]
    seen["runs"] = [r.name for r in runs]
    todo = {"requeue", "scancel", "stop", "cont", "extend"}
    stopped = None
    end = time.monotonic() + 900
    while time.monotonic() < end:
      s1_tasks = sc.tasks(env, s1_jobs)
      running = {t for t, state in s1_tasks.items() if state == "RUNNING"}
      seen["s1_max_running"] = max(seen["s1_max_running"], len(running))
      for task in running:  # act on a task once its run has committed two rounds
        workdir = runs[int(task.split("_")[1]) + (0 if task.split("_")[0] == s1_jobs[0]
                                                  else MAX_ARRAY)].workdir(s1)
        if "requeue" in todo and workdir == requeued and _steps(workdir) >= 2:
          seen["requeued_at"] = _steps(workdir)
          sc.sh(env, "scontrol", "requeue", task)
          seen["requeued_task"] = task
          todo.discard("requeue")
        if "scancel" in todo and workdir == cancelled and _steps(workdir) >= 2:
          seen["cancelled_at"] = _steps(workdir)
          sc.sh(env, "scancel", task)
          todo.discard("scancel")
      # S2: pause the run mid-way and cut its limit; USR1 comes 10-40 s before the new limit;
      # the task stops the run (SIGTERM, delivered at our SIGCONT) and requeues itself.
      log = (s2_run / "run.log").read_text() if (s2_run / "run.log").exists() else ""
      s2_state = sc.tasks(env, s2_jobs).get(f"{s2_jobs[0]}_0")
      if "stop" in todo and s2_state == "RUNNING" and _steps(s2_run) >= 2:
        stopped = _run_pid(s2_run)
        if stopped:
          os.kill(stopped, signal.SIGSTOP)
          seen["stopped_at"] = _steps(s2_run)
          h, m, sec = (int(x) for x in sc.job_field(env, f"{s2_jobs[0]}_0", "RunTime")
                       .split("-")[-1].split(":"))
          limit = -(-(h * 3600 + m * 60 + sec + 45) // 60)  # minutes, >= 45 s from now
          sc.sh(env, "scontrol", "update", f"JobId={s2_jobs[0]}_0", f"TimeLimit={limit}")
          seen["s2_limit"] = limit
          todo.discard("stop")
      if "cont" in todo and "stop" not in todo and "USR1: requeueing" in log:
        os.kill(stopped, signal.SIGCONT)
        todo.discard("cont")
      if "extend" in todo and "cont" not in todo and s2_state == "PENDING":
        # requeued: give the rest of the run its time back
        sc.sh(env, "scontrol", "update", f"JobId={s2_jobs[0]}_0", "TimeLimit=10")
        todo.discard("extend")
      if not sc.tasks(env, s1_jobs + s2_jobs + s3_jobs) and local.poll() is not None and (
          local_g.poll() is not None):
        break
      time.sleep(0.2)
    seen["todo"] = todo
    seen["local_out"] = local.communicate(timeout=600)[0]
    assert local.returncode == 0, seen["local_out"][-3000:]
    out_g = local_g.communicate(timeout=600)[0]
    assert local_g.returncode == 0, out_g[-3000:]
    seen["s1_jobs"], seen["s2_jobs"] = s1_jobs, s2_jobs
    seen["requeue_restarts"] = sc.job_field(env, seen.get("requeued_task", "0"), "Restarts")
    seen["s2_restarts"] = sc.job_field(env, f"{s2_jobs[0]}_0", "Restarts")
    seen["s2_state"] = sc.job_field(env, f"{s2_jobs[0]}_0", "JobState")
    # The same sweep command again: only the cancelled run is left; submitted with a limit
    # within the 300 s lead + 30 s (as `sbatch --time` on the command line can), it gets USR1
    # at once and must not requeue itself (it would at every start), but finish.
    seen["s1_again"] = _anchoral(env, *s1_args).stdout
    seen["s1_again_script"] = (s1 / "_sweep" / "main.sbatch").read_text()
    (again,) = _submitted(sc.sh(env, "sbatch", "--time=5", str(s1 / "_sweep" / "main.sbatch")))
    # Slurm sends the signal at its next look (up to ~30 s in): the resumed run, a few rounds,
    # may be done before. Pause it (SIGSTOP) until the task has logged its USR1 decision.
    def said() -> bool:
      return "USR1: not requeueing" in (cancelled / "run.log").read_text().split("===")[-1]

    end = time.monotonic() + 300
    while sc.tasks(env, [again]) and time.monotonic() < end:
      if stopped_again is None and not said():
        stopped_again = _run_pid(cancelled)
        if stopped_again:
          os.kill(stopped_again, signal.SIGSTOP)
      if stopped_again and said():
        os.kill(stopped_again, signal.SIGCONT)
        stopped_again = 0
      time.sleep(0.2)
    assert not sc.tasks(env, [again]), "the resubmitted run did not end within 300 s"
    seen["again_restarts"] = sc.job_field(env, again, "Restarts")
    seen["again_state"] = sc.job_field(env, again, "JobState")
    seen.update(ref=ref, ref_g=ref_g, s1=s1, s2=s2, s3=s3, runs_obj=runs, s2_run=s2_run,
                s3_jobs=s3_jobs)
    return seen
  finally:
    if stopped_again:
      os.kill(stopped_again, signal.SIGCONT)
    for proc in (local, local_g):
      if proc.poll() is None:
        proc.kill()
    sc.sh(cluster, "scancel", "--user=root", check=False)


def test_sweep_script_runs_every_run_like_local(scenario):
  assert "bash " + str(scenario["s1"] / "_sweep" / "main-submit.sh") in scenario["s1_sweep"]
  assert scenario["s1_parts"] == ["main-part1.sbatch", "main-part2.sbatch"]  # 4 runs, max 3
  assert len(scenario["s1_jobs"]) == 2
  for r in scenario["runs_obj"]:
    _assert_same(r.workdir(scenario["s1"]), r.workdir(scenario["ref"]))


def test_parallel_caps_running_tasks_across_the_split_arrays(scenario):
  assert 1 <= scenario["s1_max_running"] <= 2


def test_scontrol_requeue_mid_run_resumes_identically(scenario):
  runs = scenario["runs_obj"]
  assert scenario["requeued_at"] >= 2 and scenario["requeue_restarts"] == "1"
  log = (runs[0].workdir(scenario["s1"]) / "run.log").read_text()
  assert "(restart 1)" in log and "Resuming" in log
  _assert_same(runs[0].workdir(scenario["s1"]), runs[0].workdir(scenario["ref"]))


def test_scancel_then_the_same_sweep_resubmits_only_that_run(scenario):
  runs = scenario["runs_obj"]
  assert "1 of 4 runs to go (3 DONE)" in scenario["s1_again"]
  assert "#SBATCH --array=0-0%2\n" in scenario["s1_again_script"]
  workdir = runs[1].workdir(scenario["s1"])
  log = (workdir / "run.log").read_text()
  assert scenario["cancelled_at"] >= 2 and "Resuming" in log.split("===")[-1]
  _assert_same(workdir, runs[1].workdir(scenario["ref"]))


def test_time_limit_below_the_lead_does_not_requeue_in_a_loop(scenario):
  log = (scenario["runs_obj"][1].workdir(scenario["s1"]) / "run.log").read_text()
  assert "USR1: not requeueing" in log
  assert (scenario["again_state"], scenario["again_restarts"]) == ("COMPLETED", "0")


def test_run_outliving_its_time_limit_requeues_itself_and_finishes_identically(scenario):
  s2_run = scenario["s2_run"]
  log = (s2_run / "run.log").read_text()
  assert scenario["todo"] == set(), scenario["todo"]  # paused, cut, resumed, extended
  assert "USR1: requeueing" in log and "(restart 1)" in log, log[-3000:]
  assert (scenario["s2_state"], scenario["s2_restarts"]) == ("COMPLETED", "1")
  ref = scenario["runs_obj"][0].workdir(scenario["ref"])
  _assert_same(s2_run, ref)


def test_group_seeds_under_slurm(scenario):
  from anchoral_jax.sweep import runs as sweep

  runs = sweep.expand(CELL)
  assert len(runs) == 2 and len(scenario["s3_jobs"]) == 1  # one task for the cell's seeds
  for r in runs:
    _assert_same(r.workdir(scenario["s3"]), r.workdir(scenario["ref_g"]))
  assert "--seeds=" in (scenario["s3"] / runs[0].cell / "run.log").read_text()


def test_sweep_refuses_a_time_limit_below_the_usr1_lead(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = _anchoral(env, "sweep", "--config", ONE, "--runs_dir", str(tmp_path), "--backend",
                  "slurm", "--sbatch=--time=00:02:00", check=False)
  assert out.returncode == 2 and "USR1 lead (120 s)" in out.stderr, out.stderr
  assert not (tmp_path / "_sweep").exists()
  ok = _anchoral(env, "sweep", "--config", ONE, "--runs_dir", str(tmp_path), "--backend",
                 "slurm", "--sbatch=--time=00:02:00", "--sbatch=--signal=B:USR1@60")
  assert "#SBATCH --signal=B:USR1@60\n" in (tmp_path / "_sweep" / "main.sbatch").read_text()
  assert "no --gres=gpu:N" in ok.stderr and "no --mem" in ok.stderr and "no --time" not in ok.stderr
  json.loads((tmp_path / "_sweep" / "main.jsonl").read_text().splitlines()[0])


def test_srun_shard_auto_gives_each_task_its_share(cluster, tmp_path):
  """`srun --ntasks=2 anchoral sweep --shard=auto`: the shares (from SLURM_PROCID/NTASKS)
  together list every run exactly once (the dry backend: listing, not running, the runs)."""
  env = {**cluster, "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
  out = subprocess.run(["srun", "--ntasks=2", "--label", "--time=5", sys.executable, "-m",
                        "anchoral_jax.cli", "sweep", "--config", SWEEP, "--runs_dir",
                        str(tmp_path), "--shard=auto", "--backend", "dry"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
  shares: dict[str, list[str]] = {"0": [], "1": []}
  for line in out.stdout.splitlines():
    task, _, rest = line.partition(": ")
    if rest.startswith("todo "):
      shares[task.strip()].append(rest.split()[1])
  from anchoral_jax.sweep import runs as sweep

  names = [r.name for r in sweep.expand(SWEEP)]
  assert sorted(shares["0"] + shares["1"]) == sorted(names)
  assert shares["0"] == names[0::2] and shares["1"] == names[1::2]
