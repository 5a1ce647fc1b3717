"""Resume checks the data: checkpoints hold pool row positions, so a resume over changed data
(a shuffled or edited CSV) must fail before any round runs instead of rewriting the history."""

import json
import os
import subprocess
import sys
from pathlib import Path

import conftest
import pytest

from anchoral_jax.al import loop
from anchoral_jax.data import registry
from anchoral_jax.run import workdir as workdir_lib

ROOT = Path(__file__).resolve().parents[1]
POOL, TEST = 600, 100


def _config(cache_dir):
  return conftest.tiny_config(cache_dir, POOL, TEST, **{
      "data.test_size": 0, "al.budget": 125, "al.filter": "none"})


def _cli(workdir, cache_dir):
  cmd = [sys.executable, "-m", "anchoral_jax.cli", "run", "--config",
         str(ROOT / "configs/default.py") + ":tiny", "--workdir", str(workdir),
         f"--config.data.cache_dir={cache_dir}", f"--config.data.kwargs.pool_size={POOL}",
         f"--config.data.kwargs.test_size={TEST}", "--config.data.test_size=0",
         "--config.al.budget=125", "--config.al.filter=none", "--config.wandb.mode=disabled"]
  return subprocess.run(cmd, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                        text=True, cwd=ROOT, timeout=600)


def test_unit_check_writes_then_rejects_changed_data_after_a_round(tmp_path):
  fp = {"data.name": "x", "train": "aaaa", "test": "bbbb", "pool_size": 10, "test_size": 5}
  workdir_lib.check_data_fingerprint(tmp_path, fp)
  path = tmp_path / workdir_lib.DATA_FINGERPRINT_NAME
  assert json.loads(path.read_text()) == fp
  changed = {**fp, "train": "cccc"}
  # No round committed: nothing to mix, the new data takes the workdir over.
  workdir_lib.check_data_fingerprint(tmp_path, changed)
  assert json.loads(path.read_text()) == changed
  (tmp_path / "checkpoints" / "1").mkdir(parents=True)
  workdir_lib.check_data_fingerprint(tmp_path, changed)  # same data resumes
  with pytest.raises(workdir_lib.DataChangedError, match="train: 'cccc' -> 'aaaa'"):
    workdir_lib.check_data_fingerprint(tmp_path, fp)
  path.write_text("{not json")
  with pytest.raises(workdir_lib.DataChangedError, match="not valid JSON"):
    workdir_lib.check_data_fingerprint(tmp_path, fp)


def test_resume_over_changed_data_fails_before_any_round(tmp_path, cache_dir):
  workdir = tmp_path / "run"
  c = _config(cache_dir)
  loop.run(c, workdir)
  path = workdir / workdir_lib.DATA_FINGERPRINT_NAME
  written = json.loads(path.read_text())
  task = registry.load_task(c.data.name, **c.data.kwargs.to_dict())
  assert written == {"data.name": c.data.name, "train": task.fingerprint("train"),
                     "test": task.fingerprint("test"), "pool_size": len(task.train),
                     "test_size": len(task.test)}
  # Killed after its rounds, before DONE: a resume over the same data goes ahead.
  (workdir / "DONE").unlink()
  loop.run(c, workdir)
  assert (workdir / "DONE").exists()
  # The data changed between the kill and the resume (simulated: the file says other data).
  (workdir / "DONE").unlink()
  path.write_text(json.dumps({**written, "train": "0123456789abcdef"}))
  metrics_before = (workdir / "metrics.jsonl").read_text()
  r = _cli(workdir, cache_dir)
  assert r.returncode == 2, r.stderr[-3000:]
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  assert "DataChangedError" in r.stderr and "train: '0123456789abcdef' -> " in r.stderr
  assert (workdir / "metrics.jsonl").read_text() == metrics_before
  assert not (workdir / "DONE").exists()
