"""`anchoral run --seeds`: the seeds of a cell in one process (`loop.run_many`), each in the
workdir a sweep names for its seeds, ending where separate runs end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import conftest
import pytest
from test_seeds import _assert_same, _outputs

from anchoral_jax.sweep import seeds as sweep_seeds

ROOT = Path(__file__).resolve().parents[1]
# The tiny config of tests/test_seeds.py, without the index (randomsubset): frozen encoder +
# vmapped heads, 1 query round.
OVERRIDES = {"data.kwargs.pool_size": 1500, "data.kwargs.test_size": 200, "data.test_size": 0,
             "al.budget": 125, "al.subpool_size": 400, "al.filter": "randomsubset",
             "train.trainable": "head", "wandb.mode": "disabled"}


def test_parse_seeds_and_their_workdirs():
  points = sweep_seeds.parse_seeds(["654321", "1:2:3"])
  assert points == [{"data.seed": 654321, "model.seed": 654321, "al.initial_seed": 654321},
                    {"data.seed": 1, "model.seed": 2, "al.initial_seed": 3}]
  assert sweep_seeds.seed_leaf(points[1]) == "dseed=1,mseed=2,iseed=3"  # a sweep's leaf
  for bad in (["x"], ["1:2"], ["1", "1:1:1"], []):
    with pytest.raises(sweep_seeds.SeedsError):
      sweep_seeds.parse_seeds(bad)
  c = conftest.tiny_config("/tmp", 100, 10)
  c.lock()
  before = c.to_json()
  with pytest.raises(sweep_seeds.SeedsError, match="drop --config.model.seed"):
    sweep_seeds.seed_runs(c, "w", points, {"model.seed": 5})
  configs, workdirs = sweep_seeds.seed_runs(c, "w", points)
  assert [str(w) for w in workdirs] == ["w/dseed=654321,mseed=654321,iseed=654321",
                                        "w/dseed=1,mseed=2,iseed=3"]
  assert (configs[1].data.seed, configs[1].model.seed, configs[1].al.initial_seed) == (1, 2, 3)
  assert c.to_json() == before  # the caller's config is left as it was


def _anchoral_run(workdir: Path, cache_dir: Path, *args: str) -> None:
  cmd = [sys.executable, "-m", "anchoral_jax.cli", "run", "--config", "configs/default.py:tiny",
         "--workdir", str(workdir), f"--config.data.cache_dir={cache_dir}", *args]
  cmd += [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_cli_seeds_equal_separate_runs(tmp_path, cache_dir):
  seeds = ["11", "12:13:14"]
  _anchoral_run(tmp_path / "cell", cache_dir, f"--seeds={','.join(seeds)}")
  for point in sweep_seeds.parse_seeds(seeds):
    alone = tmp_path / "alone"
    _anchoral_run(alone, cache_dir, *(f"--config.{k}={v}" for k, v in point.items()))
    together = tmp_path / "cell" / sweep_seeds.seed_leaf(point)
    got = _outputs(together)
    _assert_same(got, _outputs(alone))
    assert {r["time/train_runs_in_program"] for r in got[3]} == {2}  # one program for both
    h_together = json.loads((together / "hparams.json").read_text())
    h_alone = json.loads((alone / "hparams.json").read_text())
    # The config a separate run has, but for the W&B name: the seed leaf, as a sweep names it.
    assert h_together["wandb"].pop("name") == sweep_seeds.seed_leaf(point)
    h_alone["wandb"].pop("name")
    assert h_together == h_alone
    assert (together / "DONE").exists()
    shutil.rmtree(alone)


def test_cli_bad_seeds_fail_with_one_line(tmp_path):
  for args, needle in ((["--seeds=1:2"], "expected an integer S"),
                       (["--seeds=1", "--config.data.seed=3"], "drop --config.data.seed")):
    proc = subprocess.run([sys.executable, "-m", "anchoral_jax.cli", "run", "--config",
                           "configs/default.py:tiny", "--workdir", str(tmp_path), *args],
                          cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())
