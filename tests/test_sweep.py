"""Sweep expansion and naming, the generated Slurm/multi-host scripts (content, and run with
stub programs), and a real 4-run local sweep of the tiny config with --parallel 2."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tracking import _read_offline_run  # parses W&B's offline .wandb log

from anchoral_jax.sweep import command as sweep
from anchoral_jax.sweep import launch as sweep_launch
from anchoral_jax.sweep import local as sweep_local
from anchoral_jax.sweep import runs as sweep_runs
from anchoral_jax.sweep import seeds as sweep_seeds

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "configs" / "main.py"
# 4 runs: full-pool random and entropy+randomsubset (no retrieval index needed), 2 seeds each.
TINY_SWEEP = f"{MAIN}:runlocal,strategies=random+entropy,filters=none+randomsubset,seeds=2"


def test_run_names_are_stable_and_readable():
  point = {"dataset": "agnews_business", "strategy": "entropy", "filter": "anchoral",
           "data.seed": 654321, "model.seed": 123456, "al.initial_seed": 654321}
  name, cell = sweep_runs.run_name(point)
  assert name == ("dataset=agnews_business/strategy=entropy/filter=anchoral/"
                  "dseed=654321,mseed=123456,iseed=654321")
  assert cell == "dataset=agnews_business/strategy=entropy/filter=anchoral"
  assert sweep_runs.run_name({"model": "google/bert", "flag": True})[0] == "model=google_bert/flag=true"
  assert sweep_runs.run_name({"train.learning_rate": 1e-4}) == ("train.learning_rate=0.0001", "")


def test_arg_strings_round_trip():
  args = sweep_runs.parse_arg_string("runlocal,dataset=x,seeds=2")
  assert args == {"runlocal": None, "dataset": "x", "seeds": "2"}
  assert sweep_runs.format_arg_string(args) == "runlocal,dataset=x,seeds=2"
  assert sweep_runs.format_value(True) == "true" and sweep_runs.format_value(4e-5) == "4e-05"
  assert sweep_runs.format_value(("a", "b")) == "('a', 'b')"


def test_expand_merges_args_and_applies_global_overrides(tmp_path):
  runs = sweep_runs.expand(TINY_SWEEP, {"data.cache_dir": str(tmp_path)})
  assert [r.name for r in runs] == [
      f"dataset=tweets_iphone/strategy={s}/filter={f}/dseed=654321,mseed=654321,iseed={i}"
      for s, f in (("random", "none"), ("entropy", "randomsubset")) for i in (654321, 123456)]
  r = runs[1]
  assert r.arg == "runlocal,dataset=tweets_iphone,strategy=random,filter=none"  # sweep args gone
  argv = r.argv(tmp_path / "runs")
  assert argv[:3] == ["run", "--config", f"{MAIN}:{r.arg}"]
  assert argv[4] == str((tmp_path / "runs" / r.name).resolve())
  assert f"--config.data.cache_dir={tmp_path}" in argv
  assert "--config.al.initial_seed=123456" in argv
  assert f"--config.wandb.name={r.name}" in argv
  assert "--config.wandb.group=main/dataset=tweets_iphone/strategy=random/filter=none" in argv
  c = sweep_runs.build_config(r)
  assert (c.al.initial_seed, c.data.cache_dir, c.wandb.name) == (123456, str(tmp_path), r.name)
  with pytest.raises(ValueError, match="conflicts with the sweep"):
    sweep_runs.expand(TINY_SWEEP, {"data.seed": 1})
  with pytest.raises(KeyError, match="Unknown config key 'al.budgte'"):
    sweep_runs.expand(TINY_SWEEP, {"al.budgte": 1})


def test_dry_backend_lists_and_writes_nothing(tmp_path, capsys):
  sweep.main(TINY_SWEEP, tmp_path / "runs", backend="dry")
  out = capsys.readouterr().out
  assert "4 runs in 2 cells (0 DONE)" in out and out.count("anchoral run --config") == 4
  assert not (tmp_path / "runs").exists()


def _stub(path: Path, body: str) -> Path:
  path.write_text("#!/bin/bash\n" + body)
  path.chmod(path.stat().st_mode | stat.S_IEXEC)
  return path


def test_slurm_script_content(tmp_path):
  runs_dir = tmp_path / "runs"
  runs = sweep_runs.expand(f"{MAIN}:runlocal,seeds=2")
  (runs_dir / runs[0].name).mkdir(parents=True)
  (runs_dir / runs[0].name / "DONE").write_text("x\n")  # finished: left out of the array
  sweep.main(f"{MAIN}:runlocal,seeds=2", runs_dir, parallel=4, backend="slurm",
             sbatch=["--gres=gpu:1", "--time=24:00:00"])
  script = runs_dir / "_sweep" / "main.sbatch"
  text = script.read_text()
  for line in ("#SBATCH --array=0-18%4", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@120",
               "#SBATCH --gres=gpu:1", "#SBATCH --time=24:00:00", "#SBATCH --ntasks=1",
               f"#SBATCH --output={runs_dir.resolve()}/_sweep/slurm/%A_%a.out",
               "trap requeue USR1", 'scontrol requeue "${SLURM_ARRAY_JOB_ID}_${TASK}"',
               f"ANCHORAL=${{ANCHORAL:-{sys.executable} -m anchoral_jax.cli}}"):
    assert line in text, line
  assert "{{" not in text
  subprocess.run(["bash", "-n", str(script)], check=True)
  (commands_file,) = (runs_dir / "_sweep").glob("main-*.commands")
  assert f'"{commands_file}"' in text  # the script names this submission's file
  commands = commands_file.read_text().splitlines()
  assert len(commands) == 19
  assert all(c.split("\t")[0] == str(r.workdir(runs_dir)) for c, r in zip(commands, runs[1:], strict=True))
  manifest = [json.loads(x) for x in (runs_dir / "_sweep" / "main.jsonl").read_text().splitlines()]
  assert len(manifest) == 20 and manifest[0]["done"] and not manifest[1]["done"]
  saved = json.loads((runs_dir / runs[1].name / "overrides.json").read_text())
  assert saved["overrides"]["al.initial_seed"] == 123456 and saved["cell"] == runs[1].cell


def test_each_slurm_submission_gets_its_own_never_rewritten_commands_file(tmp_path):
  """A pending or requeued array reads its commands file by line number: a re-run of the sweep
  (here after a run finished: fewer lines) must write a new file, not rewrite the old one."""
  runs_dir = tmp_path / "runs"
  sweep.main(f"{MAIN}:runlocal,seeds=2", runs_dir, backend="slurm")
  (first,) = (runs_dir / "_sweep").glob("main-*.commands")
  before = first.read_text()
  assert len(before.splitlines()) == 20
  runs = sweep_runs.expand(f"{MAIN}:runlocal,seeds=2")
  runs[0].workdir(runs_dir).mkdir(parents=True, exist_ok=True)
  (runs[0].workdir(runs_dir) / "DONE").write_text("x\n")
  sweep.main(f"{MAIN}:runlocal,seeds=2", runs_dir, backend="slurm")
  files = sorted((runs_dir / "_sweep").glob("main-*.commands"))
  assert len(files) == 2 and first.read_text() == before  # the first is untouched
  (second,) = [f for f in files if f != first]
  assert len(second.read_text().splitlines()) == 19
  script = (runs_dir / "_sweep" / "main.sbatch").read_text()
  assert str(second) in script and str(first) not in script


def test_slurm_task_runs_its_line_and_requeues_on_usr1(tmp_path):
  runs_dir = tmp_path / "runs"
  sweep.main(TINY_SWEEP, runs_dir, backend="slurm")
  script = runs_dir / "_sweep" / "main.sbatch"
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _stub(bin_dir / "scontrol", f'echo "$@" > {tmp_path}/scontrol\n')
  fake = _stub(tmp_path / "fake_anchoral", f'echo "$@" > {tmp_path}/args\nexec sleep 60\n')
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ANCHORAL": str(fake),
         "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_JOB_ID": "77"}
  proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, text=True)
  deadline = time.time() + 20
  while not (tmp_path / "args").exists() and time.time() < deadline:
    time.sleep(0.05)
  runs = sweep_runs.expand(TINY_SWEEP)
  args = (tmp_path / "args").read_text().split()
  assert args[:2] == ["run", "--config"] and args[4] == str(runs[2].workdir(runs_dir))
  proc.send_signal(signal.SIGUSR1)  # Slurm's warning before the time limit
  out, _ = proc.communicate(timeout=20)
  assert proc.returncode == 0
  assert (tmp_path / "scontrol").read_text().split() == ["requeue", "77_2"]
  assert "USR1: requeueing 77_2" in (runs[2].workdir(runs_dir) / "run.log").read_text()
  # A task whose run is DONE exits at once without starting anything.
  (runs[3].workdir(runs_dir) / "DONE").write_text("x\n")
  done = subprocess.run(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": "3"},
                        capture_output=True, text=True, timeout=20)
  assert done.returncode == 0 and "is DONE" in done.stdout


def test_multihost_script_runs_each_run_once_with_the_coordinator_env(tmp_path):
  runs_dir = tmp_path / "runs"
  sweep.main(TINY_SWEEP, runs_dir, backend="multihost")
  script = runs_dir / "_sweep" / "main-multihost.sh"
  text = script.read_text()
  assert "export JAX_COORDINATOR_ADDRESS=$COORDINATOR" in text and "--worker=all" in text
  subprocess.run(["bash", "-n", str(script)], check=True)
  # The stub records the distributed env and finishes the run (writes DONE in --workdir).
  fake = _stub(tmp_path / "fake_anchoral",
               'echo "$JAX_COORDINATOR_ADDRESS $JAX_NUM_PROCESSES $JAX_PROCESS_ID" > "$5/env"\n'
               'touch "$5/DONE"\n')
  env = {**os.environ, "ANCHORAL": str(fake), "COORDINATOR": "host0:8476",
         "NUM_PROCESSES": "2", "PROCESS_ID": "1"}
  env.pop("SLURM_NTASKS", None)
  first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                         timeout=30)
  assert first.returncode == 0, first.stderr
  runs = sweep_runs.expand(TINY_SWEEP)
  for r in runs:
    assert (r.workdir(runs_dir) / "env").read_text().split() == ["host0:8476", "2", "1"]
    assert (r.workdir(runs_dir) / "run.log.1").exists()
  again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                         timeout=30)
  assert again.stdout.count("DONE") == 4
  no_coord = {k: v for k, v in env.items() if k != "COORDINATOR"}
  missing = subprocess.run(["bash", str(script)], env=no_coord, capture_output=True, text=True)
  assert missing.returncode == 2 and "COORDINATOR" in missing.stderr
  # Everything DONE: no script to write.
  assert sweep_launch.write_multihost(runs, runs_dir, TINY_SWEEP) is None


def test_local_backend_schedules_logs_and_reports_failures(tmp_path, capsys):
  """With a stub interpreter: the first run of a dataset sets up alone, then 2 at a time, one
  device each; failures are reported with their log tail; a re-run skips DONE runs."""
  runs_dir = tmp_path / "runs"
  runs = sweep_runs.expand(TINY_SWEEP)
  # argv: -m anchoral_jax.cli run --config SPEC --workdir DIR ...: $7 is the workdir.
  fake = _stub(tmp_path / "python",
               'date +%s.%N > "$7/start"; echo "$CUDA_VISIBLE_DEVICES" > "$7/device"\n'
               'sleep 0.4; mkdir -p "$7/checkpoints"; sleep 0.4\n'
               'case "$7" in *strategy=entropy*iseed=123456) echo "boom: bad run"; exit 3;; esac\n'
               'touch "$7/DONE"\n')
  status = sweep_local.run_local(runs, runs_dir, parallel=2, python=str(fake), poll_s=0.05,
                          devices=("7", "8"))
  assert status == {r.name: s for r, s in zip(runs, ["done", "done", "done", "failed"],
                                              strict=True)}
  out = capsys.readouterr().out
  assert f"FAILED  [4/4] {runs[3].name}" in out and "boom: bad run" in out
  starts = [float((r.workdir(runs_dir) / "start").read_text()) for r in runs]
  assert starts[1] - starts[0] >= 0.35  # waited for the first run's set-up (shared caches)
  assert starts[2] < starts[1] + 0.8  # then two at a time
  devices = [(r.workdir(runs_dir) / "device").read_text().strip() for r in runs]
  assert devices[:2] == ["7", "8"] and set(devices) == {"7", "8"}  # one device per slot
  log = (runs[0].workdir(runs_dir) / "run.log").read_text()
  assert log.startswith("=== ") and "anchoral run --config" in log
  again = sweep_local.run_local(runs, runs_dir, parallel=2, python=str(fake), poll_s=0.05)
  assert again == {r.name: s for r, s in zip(runs, ["skipped", "skipped", "skipped", "failed"],
                                             strict=True)}
  with pytest.raises(ValueError, match="parallel"):
    sweep_local.run_local(runs, runs_dir, parallel=0)


def test_group_seeds_makes_one_job_per_cell_on_the_same_workdirs(tmp_path, capsys):
  """`--group_seeds`: a cell's seeds become one `anchoral run --seeds` job whose runs are the
  ungrouped sweep's (workdirs and whole configs); a cell of one run stays a run."""
  runs = sweep_runs.expand(TINY_SWEEP, {"train.learning_rate": 1e-4})
  jobs = sweep_seeds.group_seeds(runs)
  runs_dir = (tmp_path / "runs").resolve()
  assert [type(j) for j in jobs] == [sweep_seeds.SeedGroup] * 2
  assert [r.name for j in jobs for r in j.runs] == [r.name for r in runs]
  for job in jobs:
    argv = job.argv(runs_dir)
    assert argv[:5] == ["run", "--config", job.runs[0].config_spec, "--workdir",
                        str(runs_dir / job.cell)]
    assert "--seeds=654321:654321:654321,654321:654321:123456" in argv
    assert "--config.train.learning_rate=0.0001" in argv
    assert f"--config.wandb.name={job.cell}" in argv  # + /<seed leaf> per run, as the sweep's
    base = sweep_runs.load_module(MAIN).get_config(job.runs[0].arg)
    base.lock()
    sweep_runs.apply_overrides(base, job.common)
    seeds = next(a for a in argv if a.startswith("--seeds="))[len("--seeds="):].split(",")
    configs, workdirs = sweep_seeds.seed_runs(base, job.workdir(runs_dir), sweep_seeds.parse_seeds(seeds))
    assert workdirs == [r.workdir(runs_dir) for r in job.runs]
    assert [c.to_json(sort_keys=True) for c in configs] == [
        sweep_runs.build_config(r).to_json(sort_keys=True) for r in job.runs]
  one = sweep_runs.expand(f"{MAIN}:runlocal,strategies=random,filters=none,seeds=1")
  assert sweep_seeds.group_seeds(one) == one
  sweep.main(TINY_SWEEP, runs_dir, backend="dry", group=True)
  out = capsys.readouterr().out
  assert "2 jobs (4 runs) in 2 cells (0 DONE)" in out and out.count("--seeds=") == 2


def test_group_seeds_in_slurm_and_local_backends(tmp_path, capsys):
  runs_dir = (tmp_path / "runs").resolve()
  runs = sweep_runs.expand(TINY_SWEEP)
  sweep.main(TINY_SWEEP, runs_dir, backend="slurm", group=True)
  assert "#SBATCH --array=0-1\n" in (runs_dir / "_sweep" / "main.sbatch").read_text()
  (commands,) = (runs_dir / "_sweep").glob("main-*.commands")
  lines = [line.split("\t") for line in commands.read_text().splitlines()]
  assert [w for w, _ in lines] == [str(runs_dir / runs[0].cell), str(runs_dir / runs[2].cell)]
  assert all(" --seeds=" in args for _, args in lines)
  # Local: one process per cell (a stub that finishes each seed's workdir under --workdir $7).
  fake = _stub(tmp_path / "python", 'echo "$@" > "$7/args"; for d in "$7"/*/; do '
               'touch "$d/DONE"; done\n')
  jobs = sweep_seeds.group_seeds(runs)
  status = sweep_local.run_local(jobs, runs_dir, parallel=2, python=str(fake), poll_s=0.05)
  assert status == {j.name: "done" for j in jobs}
  assert all(r.done(runs_dir) for r in runs)
  assert "--seeds=" in (runs_dir / runs[0].cell / "args").read_text()
  assert "anchoral run --config" in (runs_dir / runs[0].cell / "run.log").read_text()
  assert "2 jobs in" in capsys.readouterr().out
  (runs[3].workdir(runs_dir) / "DONE").unlink()  # one seed left: only its cell's job runs
  again = sweep_local.run_local(jobs, runs_dir, parallel=2, python=str(fake), poll_s=0.05)
  assert again == {jobs[0].name: "skipped", jobs[1].name: "done"}


# ---------------------------------------------------------------------------------------------
# End to end: the real CLI, 4 tiny runs, 2 at a time.

_TINY_RUNS: dict[str, Path] = {}


def tiny_sweep_dir(tmp_path_factory, cache_dir) -> Path:
  """Runs the 4-run tiny sweep once per session (shared with test_report.py)."""
  if "dir" not in _TINY_RUNS:
    runs_dir = tmp_path_factory.mktemp("tiny_sweep")
    result = _cli_sweep(runs_dir, cache_dir, tmp_path_factory.mktemp("wandb"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _TINY_RUNS["dir"] = runs_dir
    _TINY_RUNS["stdout"] = result.stdout + result.stderr
  return _TINY_RUNS["dir"]


def _cli_sweep(runs_dir: Path, cache_dir: Path, wandb_dir: Path) -> subprocess.CompletedProcess:
  env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir),
         "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "anchoral_jax.cli", "sweep", "--config", TINY_SWEEP,
         "--runs_dir", str(runs_dir), "--parallel", "2", f"--config.data.cache_dir={cache_dir}"]
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_local_sweep_end_to_end_then_skips_and_resumes(tmp_path_factory, cache_dir):
  runs_dir = tiny_sweep_dir(tmp_path_factory, cache_dir)
  assert "4 to run, 2 at a time" in _TINY_RUNS["stdout"]
  runs = sweep_runs.expand(TINY_SWEEP, {"data.cache_dir": str(cache_dir)})
  for r in runs:
    workdir = r.workdir(runs_dir)
    assert (workdir / "DONE").exists(), (workdir / "run.log").read_text()[-2000:]
    hparams = json.loads((workdir / "hparams.json").read_text())
    assert hparams["al"]["initial_seed"] == r.overrides["al.initial_seed"]
    assert hparams["wandb"]["group"] == f"main/{r.cell}" and hparams["wandb"]["name"] == r.name
    assert json.loads((workdir / "overrides.json").read_text())["name"] == r.name
    assert "=== " in (workdir / "run.log").read_text()
    offline = sorted((workdir / "wandb").glob("offline-run-*"))
    assert offline, "no offline W&B run"
    wb = _read_offline_run(offline[0])["run"]  # W&B's own record of the run
    strategy, filter = r.point["strategy"], r.point["filter"]
    assert (wb.run_group, wb.job_type, wb.display_name) == (f"main/{r.cell}", "al", r.name)
    config = {u.key: json.loads(u.value_json) for u in wb.config.update}
    assert (config["al"]["strategy"], config["al"]["filter"]) == (strategy, filter)
    assert {f"strategy:{strategy}", f"filter:{filter}", "main"} <= set(wb.tags)
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 3 + 1  # rounds + summary
  # Same command again: everything is DONE and skipped. Then a run without DONE resumes from
  # its checkpoints (all rounds committed, so it only writes its summary and DONE again).
  again = _cli_sweep(runs_dir, cache_dir, tmp_path_factory.mktemp("wandb2"))
  assert again.returncode == 0 and "4 DONE (skipped), 0 to run" in again.stdout + again.stderr
  target = runs[3].workdir(runs_dir)
  (target / "DONE").unlink()
  metrics = (target / "metrics.jsonl").read_text()
  resumed = _cli_sweep(runs_dir, cache_dir, tmp_path_factory.mktemp("wandb3"))
  assert resumed.returncode == 0, (target / "run.log").read_text()[-2000:]
  assert "3 DONE (skipped), 1 to run" in resumed.stdout + resumed.stderr
  assert (target / "DONE").exists()
  assert (target / "metrics.jsonl").read_text().count('"step"') == metrics.count('"step"')


def test_cache_keys_are_the_files_a_run_builds_and_move_with_them(tmp_path):
  """The sweep's cache keys come from the run's own key functions (`cache.shared_files`): a
  set-up builds exactly the keyed files, and a changed setting moves the key and the file."""
  from conftest import tiny_config

  from anchoral_jax import cache
  from anchoral_jax.al.state import Setup

  def built() -> set[str]:
    kinds = {"tokens": "*.npz", "features": "*", "embeddings": "*.npy", "index": "*.usearch"}
    return {str(p) for d, pattern in kinds.items() for p in (tmp_path / d).glob(pattern)
            if not p.name.endswith(".lock")}

  def config(**overrides):  # frozen-encoder regime + AnchorAL: every kind of shared cache
    return tiny_config(tmp_path, 300, 60, **{"train.trainable": "head", "al.filter": "anchoral",
                                              "al.subpool_size": 100, "index.embed_max_length": 32,
                                              **overrides})

  base = sweep_local.cache_keys(config())
  assert len(base) == 6  # tokens x 2 splits, features x 2 splits, embeddings, index
  assert not any(map(cache.is_built, base))  # what the sweep waits on, cache by cache
  Setup(config())
  assert built() == base and all(map(cache.is_built, base))
  for change, moved in [({"index.connectivity": 8}, {"index"}),
                        ({"model.pooling": "mean"}, {"features"}),
                        ({"index.ef_search": 200}, set())]:  # query-time only: same index
    keys = sweep_local.cache_keys(config(**change))
    assert {Path(k).parent.name for k in keys - base} == moved, change
    before = built()
    Setup(config(**change))
    assert built() - before == keys - base, change
  # Two runs importing different embedding files would write the same cache entry: the sweep
  # lets one build it (the old config-level keys told them apart, and both wrote it at once).
  assert sweep_local.cache_keys(config(**{"index.import_path": "/data/e.parquet"})) == base
  features = next(k for k in base if Path(k).parent.name == "features")
  (Path(features) / "DONE").unlink()  # a folder whose encoder pass has not finished
  assert not cache.is_built(features)
