"""One W&B naming rule (config.py `c.wandb`): a sweep's run keeps the name (its path) and group
(experiment/cell) the sweep gave it however it is started, and wandb's debug logs stay inside
the run's folder. Read back from the offline `.wandb` log with W&B's own protobuf classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_tracking import _read_offline_run

from anchoral_jax.sweep import launch as sweep_launch
from anchoral_jax.sweep import runs as sweep_runs
from anchoral_jax.tracking import wandb_sink

ROOT = Path(__file__).resolve().parents[1]
REPRO = ROOT / "configs" / "reproduce_cpu.py"


def test_every_config_gets_the_sweep_name_and_group(tmp_path):
  """reproduce_cpu (like the demo) used to leave the name to the seeds folder: five cells of
  one sweep shared three run names."""
  runs = sweep_runs.expand(f"{REPRO}:demo")
  assert len({r.overrides["wandb.name"] for r in runs}) == len(runs)
  sweep_launch.write_run_files(runs, tmp_path)
  for r in runs[:3]:
    assert wandb_sink.sweep_names(r.workdir(tmp_path)) == {
        "name": r.name, "group": f"{r.experiment}/{r.cell}"}
  assert wandb_sink.sweep_names(tmp_path / "elsewhere") == {}
  from anchoral_jax import config

  assert config.base().wandb.entity == ""  # a key, not only $WANDB_ENTITY


def test_a_sweep_run_started_by_hand_keeps_its_name_group_and_logs(tmp_path, cache_dir):
  """`anchoral run` on a sweep's workdir, with the config's own (other) group: the W&B run
  still gets the sweep's name and group; wandb-core's debug log is in the workdir, not in
  ~/.cache."""
  workdir = tmp_path / "dataset=x/strategy=entropy/filter=none/dseed=1,mseed=1,iseed=1"
  workdir.mkdir(parents=True)
  (workdir / "overrides.json").write_text(json.dumps({
      "name": "dataset=x/strategy=entropy/filter=none/dseed=1,mseed=1,iseed=1",
      "cell": "dataset=x/strategy=entropy/filter=none", "experiment": "exp", "overrides": {}}))
  home = tmp_path / "home"
  env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "WANDB_DIR")}
  env.update(HOME=str(home), WANDB_MODE="offline", JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
  code = (
      "import conftest\n"
      "from anchoral_jax.al import loop\n"
      f"c = conftest.tiny_config({str(cache_dir)!r}, 300, 100, **{{'wandb.mode': 'offline', "
      "'al.budget': 125, 'wandb.group': 'default-by-hand'})\n"
      f"loop.run(c, {str(workdir)!r})\n")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  (run_dir,) = (workdir / "wandb").glob("offline-run-*")
  run = _read_offline_run(run_dir)
  header = run["run"]
  assert (header.display_name, header.run_group) == (
      "dataset=x/strategy=entropy/filter=none/dseed=1,mseed=1,iseed=1",
      "exp/dataset=x/strategy=entropy/filter=none")
  assert [h["budget"] for h in run["history"]] == [100, 125]  # the budget axis, per round
  assert "auc/minority_f1" in run["summary"]
  assert list(workdir.rglob("core-debug-*.log")), sorted(workdir.rglob("*.log"))
  assert not list(home.rglob("core-debug-*.log"))


def test_readme_sync_command_syncs_a_sweeps_offline_runs_oldest_first(tmp_path):
  import re

  readme = (ROOT / "README.md").read_text()
  (command,) = re.findall(r"`(find RUNS_DIR -type d -name 'offline-run-\*' [^`]+)`", readme)
  runs = tmp_path / "runs"
  stamps = {"b/s1/wandb": "20261205_120000-bbb", "a/s1/wandb": "20261204_090000-aaa",
            "a/s2/wandb": "20261205_080000-ccc", "b/s1/wandb ": "20261206_000000-bbb"}
  for where, stamp in stamps.items():
    (runs / where.strip() / f"offline-run-{stamp}").mkdir(parents=True)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  stub = bin_dir / "wandb"
  stub.write_text(f'#!/bin/bash\nfor a in "$@"; do echo "$a" >> {tmp_path}/synced; done\n')
  stub.chmod(0o755)
  subprocess.run(["bash", "-c", command.replace("RUNS_DIR", str(runs))], check=True,
                 env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
  verb, *synced = (tmp_path / "synced").read_text().splitlines()
  assert verb == "sync"
  assert [Path(p).name[len("offline-run-"):] for p in synced] == sorted(
      s for s in stamps.values())
