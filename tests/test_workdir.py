"""Nothing lost, nothing run twice: torn JSONL lines, the workdir lock, a killed sweep's
children, lost metrics lines, and a config corrected after a failed first try."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import conftest
import pytest

from anchoral_jax import errors, fileio
from anchoral_jax.al import loop
from anchoral_jax.run import files as run_files
from anchoral_jax.run import workdir as workdir_lib
from anchoral_jax.sweep import local as sweep_local
from anchoral_jax.tracking import jsonl as tracking_jsonl

ROOT = Path(__file__).resolve().parents[1]
POOL, TEST = 1500, 200
MAIN = ROOT / "configs" / "main.py"
TINY_SWEEP = f"{MAIN}:runlocal,strategies=random+entropy,filters=none+randomsubset,seeds=2"
LINUX = sys.platform.startswith("linux")


def tiny_config(cache_dir, **overrides):
  """2 query rounds whether al.budget counts the initial 100 labels or not (150 = 100 + 2 x 25
  total, or 6 rounds of 25 otherwise); the tests read the rounds from the outputs."""
  return conftest.tiny_config(cache_dir, POOL, TEST, **{
      "data.test_size": 0, "al.budget": 150, "al.initial_size": 100, "al.query_size": 25,
      "al.filter": "randomsubset", "al.subpool_size": 400, **overrides})


def _steps(workdir: Path) -> list[int]:
  return [int(r["step"]) for r in tracking_jsonl.load_metrics(workdir / "metrics.jsonl")[0]]


def _comparable(rec: dict) -> dict:
  return {k: v for k, v in rec.items() if not k.startswith("time/")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir) -> Path:
  """One complete run; each test works on a copy."""
  workdir = tmp_path_factory.mktemp("finished")
  loop.run(tiny_config(cache_dir), workdir)
  assert (workdir / "DONE").exists()
  return workdir


def _copy(src: Path, dst: Path) -> Path:
  shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
  return dst


def _step_lines(path: Path) -> list[str]:
  """The round lines of a metrics file (the summary line dropped)."""
  return [ln for ln in path.read_text().splitlines() if ln.startswith('{"step"')]


# ---------------------------------------------------------------------------------------------
# 1. Torn JSONL lines.

def test_truncate_drops_a_torn_last_line_and_names_a_damaged_one(tmp_path):
  path = tmp_path / "subpools.jsonl"
  path.write_text('{"round": 0, "uids": [1]}\n{"round": 1, "uids": [2]}\n{"round": 2, "ui')
  with pytest.warns(UserWarning, match=r"subpools\.jsonl:3: dropping an unreadable last line"):
    run_files.truncate_jsonl(path, 5)
  assert path.read_text() == '{"round": 0, "uids": [1]}\n{"round": 1, "uids": [2]}\n'
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    run_files.truncate_jsonl(path, 1)  # a clean file: no warning, uncommitted rounds dropped
  assert path.read_text() == '{"round": 0, "uids": [1]}\n'
  path.write_text('{"round": 0}\n{"round": 1, "ui\n{"round": 2}\n')  # damage, not a torn append
  with pytest.raises(tracking_jsonl.CorruptJsonlError, match=r"subpools\.jsonl:2: unreadable line"):
    run_files.truncate_jsonl(path, 5)
  assert issubclass(tracking_jsonl.CorruptJsonlError, errors.UserError)  # exit 2, no traceback


def test_tracker_cuts_a_torn_tail_instead_of_burying_it(tmp_path):
  """Terminating a torn line and appending after it would turn it into damage mid-file."""
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 0, "a": 1}\n{"step": 1, "a"')
  with pytest.warns(UserWarning, match="torn"):
    t = tracking_jsonl.JsonlTracker(path)
  t.log({"a": 2}, step=1)
  t.finish()
  path.write_text(path.read_text() + '{"step": 2, "a": 3}')  # complete, only the newline lost
  t = tracking_jsonl.JsonlTracker(path)
  t.log({"a": 4}, step=3)
  t.finish()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert [r["a"] for r in tracking_jsonl.read_jsonl(path)] == [1, 2, 3, 4]


def test_torn_metrics_line_of_an_uncommitted_round_does_not_block_resume(tmp_path, finished,
                                                                         cache_dir):
  workdir = _copy(finished, tmp_path / "w")
  last = max(_steps(workdir))
  # The state of a run killed while logging its last round: no DONE, no summary, no
  # checkpoint for that round, half its metrics line on disk.
  (workdir / "DONE").unlink()
  (workdir / "summary.json").unlink()
  shutil.rmtree(workdir / "checkpoints" / str(last + 1))
  lines = _step_lines(workdir / "metrics.jsonl")
  torn = lines[-1][: len(lines[-1]) // 2]
  (workdir / "metrics.jsonl").write_text("".join(ln + "\n" for ln in lines[:-1]) + torn)
  with pytest.warns(UserWarning, match=r"metrics\.jsonl:\d+: dropping an unreadable last line"):
    loop.run(tiny_config(cache_dir), workdir)
  assert (workdir / "DONE").exists()
  assert _steps(workdir) == list(range(last + 1))  # each round once
  redone = tracking_jsonl.load_metrics(workdir / "metrics.jsonl")[0][-1]
  original = tracking_jsonl.load_metrics(finished / "metrics.jsonl")[0][-1]
  assert _comparable(redone) == _comparable(original)


def test_torn_subpools_line_of_the_first_round_does_not_block_the_rerun(tmp_path, cache_dir):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "subpools.jsonl").write_text('{"round": 0, "uids": ["a", "b", ')  # disk full
  with pytest.warns(UserWarning, match=r"subpools\.jsonl:1: dropping an unreadable last line"):
    loop.run(tiny_config(cache_dir), workdir)
  subpools = tracking_jsonl.read_jsonl(workdir / "subpools.jsonl")
  assert [s["round"] for s in subpools] == list(range(max(_steps(workdir))))
  assert all(len(s["uids"]) == 400 for s in subpools)


def test_damaged_metrics_line_fails_naming_file_and_line(tmp_path, finished, cache_dir):
  workdir = _copy(finished, tmp_path / "w")
  (workdir / "DONE").unlink()
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  (workdir / "metrics.jsonl").write_text("\n".join([lines[0], "{garbage", *lines[1:]]) + "\n")
  with pytest.raises(tracking_jsonl.CorruptJsonlError, match=r"metrics\.jsonl:2: unreadable line"):
    loop.run(tiny_config(cache_dir), workdir)
  # Through the CLI (the DONE path reads the metrics before any set-up): exit 2, no traceback.
  (workdir / "DONE").write_text("x\n")
  (workdir / "hparams.json").unlink()  # whatever config the command line builds
  r = _cli_run(workdir, cache_dir)
  assert r.returncode == 2, r.stderr[-2000:]
  assert "CorruptJsonlError" in r.stderr and "metrics.jsonl:2" in r.stderr
  assert "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------
# 3. The workdir lock.

HOLDER = ("import sys\nfrom anchoral_jax import fileio\n"
          "with fileio.lock(sys.argv[1]):\n  print('held', flush=True)\n  sys.stdin.read()\n")


def _cli_run(workdir: Path, cache_dir) -> subprocess.CompletedProcess:
  cmd = [sys.executable, "-m", "anchoral_jax.cli", "run", "--config",
         str(ROOT / "configs/default.py") + ":tiny", "--workdir", str(workdir),
         f"--config.data.cache_dir={cache_dir}", f"--config.data.kwargs.pool_size={POOL}",
         f"--config.data.kwargs.test_size={TEST}", "--config.wandb.mode=disabled"]
  return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def _snapshot(d: Path) -> dict[str, tuple[bytes | None, int]]:
  return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
          for p in sorted(d.rglob("*"))}


def test_second_run_on_a_locked_workdir_fails_at_once_and_writes_nothing(tmp_path, cache_dir):
  workdir, host = tmp_path / "w", socket.gethostname()
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    (workdir / "notes.txt").write_text("a run in progress\n")
    before = _snapshot(workdir)
    with pytest.raises(errors.WorkdirInUseError,
                       match=re.escape(f"in use by pid {holder.pid} on host {host}")):
      loop.run(tiny_config(cache_dir), workdir)
    r = _cli_run(workdir, cache_dir)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"workdir {workdir} is in use by pid {holder.pid} on host {host}" in r.stderr
    assert "Traceback" not in r.stderr
    assert _snapshot(workdir) == before
  finally:
    holder.kill()  # dies without unlocking: the kernel releases the lock
    holder.wait()
  loop.run(tiny_config(cache_dir), workdir)
  assert (workdir / "DONE").exists()
  pid, host = (workdir / ".lock").read_text().split()
  assert (int(pid), host) == (os.getpid(), socket.gethostname())  # the last holder's
  with fileio.lock(workdir):  # released when the run returned
    pass


# ---------------------------------------------------------------------------------------------
# 4. Lost metrics lines.

@pytest.mark.parametrize("loss", ["one_round", "whole_file"])
def test_lost_metrics_lines_fail_instead_of_a_wrong_summary(tmp_path, finished, cache_dir, loss):
  workdir = _copy(finished, tmp_path / "w")
  last = max(_steps(workdir))
  (workdir / "DONE").unlink()
  (workdir / "summary.json").unlink()
  metrics = workdir / "metrics.jsonl"
  if loss == "one_round":
    lines = _step_lines(metrics)
    metrics.write_text("".join(ln + "\n" for ln in lines if json.loads(ln)["step"] != 1))
    expected = r"metrics\.jsonl lacks rounds 1:"
  else:
    metrics.unlink()
    expected = rf"metrics\.jsonl lacks rounds 0-{last}:"
  with pytest.raises(workdir_lib.IncompleteMetricsError, match=expected):
    loop.run(tiny_config(cache_dir), workdir)
  assert not (workdir / "DONE").exists() and not (workdir / "summary.json").exists()
  assert issubclass(workdir_lib.IncompleteMetricsError, errors.UserError)  # exit 2


# ---------------------------------------------------------------------------------------------
# 5. A config corrected after a failed first try.

def test_config_may_change_until_a_round_is_committed(tmp_path, cache_dir):
  workdir = tmp_path / "w"
  with pytest.raises(errors.ConfigError, match="Budget larger than the pool"):
    loop.run(tiny_config(cache_dir, **{"al.budget": 5000}), workdir)
  fixed = tiny_config(cache_dir)
  loop.run(fixed, workdir)  # was: "holds a run with a different config"
  assert (workdir / "DONE").exists()
  assert json.loads((workdir / "hparams.json").read_text())["al"]["budget"] == 150
  (workdir / "DONE").unlink()  # committed rounds: a different config is refused again
  with pytest.raises(errors.ConfigError, match="different config"):
    loop.run(tiny_config(cache_dir, **{"al.subpool_size": 300}), workdir)


# ---------------------------------------------------------------------------------------------
# 2. A killed sweep takes its runs along.

DRIVER = """
import sys
from anchoral_jax.sweep import command as sweep
runs = sweep.expand(sys.argv[1])
sweep.run_local(runs, sys.argv[2], parallel=2, python=sys.argv[3], poll_s=0.05, print_fn=print,
                grace_s=1.0)
"""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  try:  # a zombie waiting for a reaper counts as dead
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
  except (FileNotFoundError, IndexError):
    return False


def _wait_for(predicate, timeout_s: float, what: str) -> None:
  deadline = time.monotonic() + timeout_s
  while not predicate():
    if time.monotonic() > deadline:
      raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
    time.sleep(0.05)


def _stub_python(path: Path) -> Path:
  """Stands in for `python -m anchoral_jax.cli run ... --workdir $7`: records its pid, is past
  its set-up at once (so the second run starts), then sleeps; optionally deaf to SIGTERM."""
  path.write_text('#!/bin/bash\necho $$ > "$7/pid"\nmkdir -p "$7/checkpoints"\n'
                  '[ -n "$STUB_IGNORE_TERM" ] && trap "" TERM\nexec sleep 300\n')
  path.chmod(0o755)
  return path


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG and /proc are Linux-only")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_sweep_leaves_no_run_behind(tmp_path, sig):
  runs_dir = tmp_path / "runs"
  stub = _stub_python(tmp_path / "python")
  # Under SIGTERM the runs ignore SIGTERM: the sweep must SIGKILL them after its grace period.
  env = {**os.environ, "STUB_IGNORE_TERM": "1" if sig == signal.SIGTERM else ""}
  proc = subprocess.Popen([sys.executable, "-c", DRIVER, TINY_SWEEP, str(runs_dir), str(stub)],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  pids: list[int] = []
  try:
    pid_files = lambda: sorted(runs_dir.glob("**/pid"))  # noqa: E731
    _wait_for(lambda: len(pid_files()) == 2, 120, "two runs to start")
    _wait_for(lambda: all(p.read_text().strip() for p in pid_files()), 10, "their pids")
    pids = [int(p.read_text()) for p in pid_files()]
    _wait_for(lambda: all(b"sleep" in Path(f"/proc/{p}/cmdline").read_bytes() for p in pids),
              10, "the runs to be running")
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    _wait_for(lambda: not any(_alive(p) for p in pids), 60, f"runs {pids} to end")
    if sig == signal.SIGTERM:
      assert proc.returncode == 128 + signal.SIGTERM, out
      assert "SIGTERM: stopping 2 running runs" in out
    else:
      assert proc.returncode == -signal.SIGKILL
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
    for p in pids:  # only ours, and only if the test failed
      if _alive(p):
        os.kill(p, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG and /proc are Linux-only")
def test_sigkilled_cli_sweep_takes_its_real_run_along(tmp_path):
  """The real `anchoral sweep` and `anchoral run` processes (the stub test's child is bash).
  Own cache dir: the killed run may leave a half-written cache behind. The run trains for
  hours, so it cannot end by itself while the test waits."""
  cmd = [sys.executable, "-m", "anchoral_jax.cli", "sweep", "--config", TINY_SWEEP,
         "--runs_dir", str(tmp_path / "runs"), "--parallel", "2",
         f"--config.data.cache_dir={tmp_path / 'cache'}", "--config.wandb.mode=disabled",
         "--config.train.min_steps=100000000", "--config.train.patience=100000000"]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  children: list[int] = []
  try:
    def find_children() -> bool:
      children[:] = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                     and _ppid(int(p.name)) == proc.pid and b"anchoral_jax.cli\0run"
                     in _cmdline(int(p.name))]
      return bool(children)

    _wait_for(find_children, 120, "the sweep to start a run")
    proc.kill()
    proc.wait()
    _wait_for(lambda: not any(_alive(p) for p in children), 60, f"runs {children} to end")
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
    for p in children:
      if _alive(p):
        os.kill(p, signal.SIGKILL)


def _ppid(pid: int) -> int:
  try:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
  except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
    return -1


def _cmdline(pid: int) -> bytes:
  try:
    return Path(f"/proc/{pid}/cmdline").read_bytes()
  except (FileNotFoundError, ProcessLookupError):
    return b""


def test_stop_children_escalates_and_sweep_helpers_are_harmless_elsewhere():
  """`stop_children` SIGKILLs a child deaf to SIGTERM; `die_with_parent` is None off Linux."""
  deaf = subprocess.Popen(["bash", "-c", 'trap "" TERM; exec sleep 300'],
                          start_new_session=True)
  try:
    if LINUX:  # past the trap once it is sleep (bash's own command line mentions sleep too)
      _wait_for(lambda: _cmdline(deaf.pid).split(b"\0")[0].endswith(b"sleep"), 10,
                "the child to be sleeping")
    sweep_local.stop_children([deaf], grace_s=0.5)
    assert deaf.returncode == -signal.SIGKILL if LINUX else deaf.returncode < 0
  finally:
    if deaf.poll() is None:
      deaf.kill()
      deaf.wait()
  assert (sweep_local.die_with_parent() is None) == (not LINUX)
