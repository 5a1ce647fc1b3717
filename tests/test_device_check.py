"""bench/device_check.sh, the prepared GPU check, stays runnable where no GPU is: its syntax
(and shellcheck where installed), its argument errors, a dry run of one cheap step with its
outputs, and that a failed or skipped step is reported and fails the script. The full
`--dry-run` (every step at its smallest, on CPU) takes minutes and is run by hand
(bench/RESULTS.md)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "device_check.sh"


def _run(*args: str, out: Path | None = None, python: str = sys.executable, timeout: int = 300
         ) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHON": python, "JAX_PLATFORMS": "cpu"}
  env.pop("OUT", None)
  if out is not None:
    env["OUT"] = str(out)
  return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _digest(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def test_syntax():
  proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
  proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout


def test_bad_arguments_exit_2_with_one_message():
  for args, needle in ((["--bogus"], "unknown argument '--bogus'"),
                       (["--only", "nope"], "unknown step 'nope'"),
                       (["--budget", "soon"], "--budget needs seconds"),
                       (["--wheels", "x"], "--wheels goes with --system")):
    proc = _run(*args)
    assert proc.returncode == 2 and needle in proc.stderr, (args, proc.stderr[-2000:])
  proc = _run("--help")
  assert proc.returncode == 0 and "--dry-run" in proc.stdout


def test_install_pins_follow_the_makefile():
  """The install step repeats the Makefile's --no-deps line and torch pin (a venv of its own)."""
  script, makefile = SCRIPT.read_text(), (ROOT / "Makefile").read_text()
  (no_deps,) = re.findall(r"MAKEFILE_NO_DEPS=\((.*)\)", script)
  (make_line,) = [line for line in makefile.splitlines()
                  if line.lstrip().startswith("$(BIN)/pip install") and "--no-deps" in line]
  assert re.findall(r'"([^"]+)"', no_deps) == re.findall(r'"([^"]+==[^"]+)"', make_line)
  assert re.findall(r'"torch==[\d.]+"', script) and set(
      re.findall(r'"torch==[\d.]+"', script)) == set(re.findall(r'"torch==[\d.]+"', makefile))


def test_dry_run_of_one_step_writes_its_outputs_and_leaves_results_md(tmp_path):
  before = _digest(ROOT / "bench" / "RESULTS.md")
  proc = _run("--dry-run", "--only", "env", out=tmp_path)
  assert proc.returncode == 0, proc.stdout[-3000:]
  assert "== [env] ok" in proc.stdout and "jax backend: cpu" in proc.stdout
  for step in ("model", "run", "seeds"):  # the others are shown with their commands
    assert f"== [{step}] not run (--only):" in proc.stdout
  assert "bench/bench_model.py --dtype bfloat16 --device cpu" in proc.stdout
  assert (tmp_path / "device_check.log").read_text().count("== [env] ok") == 1
  new = (tmp_path / "RESULTS.new.md").read_text()
  assert "## Device check (bench/device_check.sh)" in new
  assert re.search(r"\| dry \| env \| ok \| \d+ \|", new), new
  assert _digest(ROOT / "bench" / "RESULTS.md") == before  # a rehearsal records nothing there


def test_a_failed_step_fails_the_script_and_the_rest_is_reported_skipped(tmp_path):
  proc = _run("--dry-run", out=tmp_path, python="false")  # the gpu check cannot run
  assert proc.returncode == 1
  assert "== [gpu] FAILED (exit 1)" in proc.stdout
  assert "SKIPPED: the gpu step failed" in proc.stdout
  assert "NOT all steps passed" in proc.stdout
  assert "| gpu | FAILED (exit 1) |" in (tmp_path / "RESULTS.new.md").read_text()


def test_a_spent_budget_skips_steps_and_fails(tmp_path):
  proc = _run("--dry-run", "--budget", "0", "--only", "env", out=tmp_path)
  assert proc.returncode == 1
  assert "== [env] SKIPPED: the 0s budget is spent" in proc.stdout
  assert "| env | skipped (budget) |" in (tmp_path / "RESULTS.new.md").read_text()
