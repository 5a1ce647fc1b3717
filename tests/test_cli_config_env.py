"""`anchoral config` prints the resolved config (overrides applied) and runs nothing;
`anchoral env` prints what a bug report needs about the machine and the installed packages."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "anchoral_jax.cli", *args], cwd=ROOT,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **env}, capture_output=True,
                        text=True, timeout=240)


def test_config_prints_the_resolved_config_and_runs_nothing(tmp_path):
  r = _cli("config", "--config", str(ROOT / "configs/default.py") + ":tiny",
           "--config.al.budget=150", f"--config.data.cache_dir={tmp_path}")
  assert r.returncode == 0, r.stderr[-3000:]
  printed = json.loads(r.stdout)
  assert printed["al"]["budget"] == 150
  assert printed["data"]["cache_dir"] == str(tmp_path)
  assert list(tmp_path.iterdir()) == []  # no compilation cache, tokens or run dir


def test_config_with_a_typo_fails_in_one_line():
  r = _cli("config", "--config", str(ROOT / "configs/default.py") + ":tiny",
           "--config.al.budgte=150")
  assert r.returncode == 2 and "al.budget" in r.stderr and "Traceback" not in r.stderr


def test_env_prints_backend_versions_and_caches():
  r = _cli("env")
  assert r.returncode == 0, r.stderr[-3000:]
  for needle in ("jax backend: cpu", "devices: ", "jax: ", "jaxlib: ", "flax: ", "optax: ",
                 "orbax-checkpoint: ", "usearch: ", "transformers: ", "wandb: ",
                 "cache dir", "XLA compilation cache: on"):
    assert needle in r.stdout, r.stdout
  off = _cli("env", ANCHORAL_COMPILATION_CACHE="0")
  assert "XLA compilation cache: off" in off.stdout, off.stdout
