"""Config fields are documented where a user finds them from the command line (`--help`), and
`ANCHORAL_CACHE_DIR` moves the default cache (`data.cache_dir`) for every command at once."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from anchoral_jax import config as config_lib

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "anchoral_jax.cli", *args], cwd=ROOT,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", **env}, capture_output=True,
                        text=True, timeout=240)


def test_every_base_field_has_a_doc_and_no_doc_is_stale():
  keys = config_lib.field_keys(config_lib.base())
  assert set(config_lib.FIELD_DOCS) == set(keys)
  assert all(config_lib.FIELD_DOCS[k].strip() for k in keys)
  assert set(config_lib.SECTION_DOCS) == {k.split(".")[0] for k in keys}


@pytest.mark.parametrize("command", ["run", "config", "sweep"])
def test_help_lists_every_field_with_its_doc_by_section(command):
  r = _cli(command, "--help")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Try --helpfull" not in r.stdout and f"anchoral {command}" in r.stdout
  lines = r.stdout.splitlines()
  for key in config_lib.field_keys(config_lib.base()):
    (line,) = [x for x in lines if x.strip().startswith(f"--config.{key}=")]
    assert config_lib.FIELD_DOCS[key] in line
  sections = [x.strip().split(":")[0] for x in lines if x.startswith("  ") and
              not x.startswith("   ") and x.strip().split(":")[0] in config_lib.SECTION_DOCS]
  assert sections == list(config_lib.SECTION_DOCS)  # grouped: each section once, in order
  flag = {"run": "--workdir:", "config": "--config:", "sweep": "--runs-dir:"}[command]
  assert any(x.strip().startswith(flag) for x in lines)


def test_help_with_a_config_shows_that_family_s_defaults():
  r = _cli("run", "--config", str(ROOT / "configs/default.py") + ":tiny", "--help")
  assert r.returncode == 0, r.stderr[-3000:]
  resolved = config_lib.base()
  assert "configs/default.py:tiny" in r.stdout and "--workdir" in r.stdout
  # default.py's tiny mode shortens the texts: its value, not base()'s, is shown.
  (line,) = [x for x in r.stdout.splitlines() if "--config.data.max_length=" in x]
  assert f"={resolved.data.max_length} " not in line


def test_cache_dir_env_sets_the_default(monkeypatch, tmp_path):
  monkeypatch.delenv(config_lib.CACHE_DIR_ENV, raising=False)
  assert config_lib.base().data.cache_dir == config_lib.DEFAULT_CACHE_DIR
  monkeypatch.setenv(config_lib.CACHE_DIR_ENV, str(tmp_path))
  assert config_lib.base().data.cache_dir == str(tmp_path)
  monkeypatch.setenv(config_lib.CACHE_DIR_ENV, "")  # set but empty: the default, not "" (cwd)
  assert config_lib.base().data.cache_dir == config_lib.DEFAULT_CACHE_DIR


def test_cache_dir_env_reaches_config_and_env_commands(tmp_path):
  cache = str(tmp_path / "cache")
  r = _cli("config", "--config", str(ROOT / "configs/default.py") + ":tiny",
           ANCHORAL_CACHE_DIR=cache)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f'"cache_dir": "{cache}"' in r.stdout
  e = _cli("env", ANCHORAL_CACHE_DIR=cache)
  assert e.returncode == 0, e.stderr[-3000:]
  (line,) = [x for x in e.stdout.splitlines() if x.startswith("cache dir")]
  assert line.endswith(cache) and "ANCHORAL_CACHE_DIR" in line
