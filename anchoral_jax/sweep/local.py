"""The local sweep backend: runs (or seed groups, `sweep_seeds.py`) as child processes,
`parallel` at a time, with a progress bar and `<workdir>/run.log` each (`sweep.py` says how a
sweep picks its backend).

Shared caches (tokens; frozen-encoder features; embeddings + index) are built by one run alone.
SIGTERM/SIGINT/SIGHUP stop every child (SIGTERM, SIGKILL after a grace period) before the sweep
exits; on Linux the children also die with a SIGKILLed sweep.
"""

from __future__ import annotations

import ctypes
import datetime
import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from anchoral_jax.config import num_query_rounds
from anchoral_jax.sweep.runs import Run, build_config
from anchoral_jax.sweep.seeds import Job, members


def _rounds_logged(workdir: Path) -> int:
  try:
    with open(workdir / "metrics.jsonl", "rb") as f:
      return sum(1 for line in f if line.startswith(b'{"step"'))
  except FileNotFoundError:
    return 0


def _past_setup(workdir: Path) -> bool:
  """The run built its caches: `loop.run` opens `checkpoints/` right after its set-up."""
  return (workdir / "checkpoints").exists() or _rounds_logged(workdir) > 0


def _tail(path: Path, lines: int = 12) -> str:
  try:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
  except FileNotFoundError:
    return ""


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP")
                     if hasattr(signal, n))


def die_with_parent() -> Callable[[], None] | None:
  """A `preexec_fn` that has the kernel send the child SIGTERM when the sweep dies, even by
  SIGKILL, which no handler sees (Linux-only `prctl(PR_SET_PDEATHSIG)`; None elsewhere, where
  only the signal handlers of `run_local` stop the runs).

  libc and prctl are looked up here, before the fork: the child only makes the call.
  "Dies" means the thread that started the child ends, so call Popen from a lasting thread.
  """
  if not sys.platform.startswith("linux"):
    return None
  try:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
  except (OSError, AttributeError):
    return None
  prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
  parent = os.getpid()

  def preexec() -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the sweep died before prctl: no one will send the signal
      os.kill(os.getpid(), signal.SIGTERM)

  return preexec


def stop_children(procs: Sequence[subprocess.Popen], grace_s: float,
                  hurry: Callable[[], bool] = lambda: False) -> None:
  """SIGTERM to each running child's process group, SIGKILL to those alive after `grace_s`
  (at once when `hurry()` turns true, e.g. a second Ctrl-C); waits for all of them."""
  alive = [p for p in procs if p.poll() is None]
  for p in alive:
    _signal_group(p, signal.SIGTERM)
  deadline = time.monotonic() + grace_s
  while alive and time.monotonic() < deadline and not hurry():
    time.sleep(0.05)
    alive = [p for p in alive if p.poll() is None]
  for p in alive:
    _signal_group(p, signal.SIGKILL)
  for p in procs:
    p.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
  """`sig` to the group our child leads (start_new_session), while it is not yet reaped: only
  then is the group id surely still ours."""
  if proc.returncode is None:
    try:
      os.killpg(proc.pid, sig)
    except ProcessLookupError:
      pass


class _Stopped(BaseException):
  """A stop signal reached the sweep (raised from its loop, not from the handler)."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


def child_env(parallel: int) -> dict[str, str]:
  env = dict(os.environ)
  env.setdefault("WANDB_SILENT", "true")
  # A local run is one host's process: no jax.distributed, even when the sweep itself was
  # started on every node by srun (SLURM_NTASKS > 1) or on every worker of a TPU pod.
  env.setdefault("ANCHORAL_DISTRIBUTED", "0")
  if parallel > 1:  # several runs on one accelerator: allocate on demand, not 75% each
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # and on one CPU: numpy's BLAS (k-means, k-means++) takes its share of the cores, not all
    # of them in every run (2 runs x 2 OpenBLAS threads on 2 cores: a 25 x 23,923 x 384 distance
    # product took 55 ms vs 38 ms with 1 thread each; full-pool FTbertKM is such products).
    env.setdefault("OPENBLAS_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // parallel)))
  return env


@functools.cache
def _task(name: str, kwargs: str):
  """One load per dataset and its arguments, however many runs of the sweep use it."""
  from anchoral_jax.data import load_task

  return load_task(name, **json.loads(kwargs))


def cache_keys(config: ml_collections.ConfigDict) -> set[str]:
  """The shared caches a run reads or builds (`al.state.shared_files`, from `cache`'s own
  key functions: tokens, the frozen encoder's outputs, pool embeddings and index)."""
  from anchoral_jax.al.state import shared_files  # imports JAX: only where a sweep runs locally

  task = _task(config.data.name, json.dumps(config.data.kwargs.to_dict(), sort_keys=True))
  return {str(p) for p in shared_files(config, task)}


def run_local(runs: Sequence[Job], runs_dir: str | os.PathLike, parallel: int = 1,
              python: str = sys.executable, poll_s: float = 0.5,
              print_fn: Callable[[str], None] | None = None,
              devices: Sequence[str] = (), grace_s: float = 10.0) -> dict[str, str]:
  """Runs the unfinished jobs (runs, or seed groups), `parallel` at a time; returns
  name -> done|skipped|failed.

  `devices` (e.g. ("0", "1")): process slot i sees only devices[i % len(devices)]
  (CUDA_VISIBLE_DEVICES), so N runs share N GPUs one each.
  Each run is its own process group (a terminal's Ctrl-C does not reach it half-way through a
  write). A stop signal to the sweep stops them all (`stop_children`, `grace_s`) and exits with
  128 + the signal; a SIGKILLed sweep takes them along on Linux (`die_with_parent`). A re-run
  while an old run still lives fails that run at once: `anchoral run` locks its workdir.
  """
  from tqdm.auto import tqdm

  from anchoral_jax.cache import is_built

  if parallel < 1:
    raise ValueError(f"parallel must be >= 1 (got {parallel}).")
  runs_dir = Path(runs_dir).resolve()
  status = {r.name: "skipped" for r in runs if r.done(runs_dir)}
  todo = [r for r in runs if r.name not in status]
  rounds, cache_of, fresh = {}, {}, {}
  for r in todo:
    fresh[r.name] = [m for m in members(r) if not m.done(runs_dir)]  # a group's unfinished runs
    configs = [build_config(m) for m in fresh[r.name]]
    rounds[r.name] = num_query_rounds(configs[0]) + 1
    cache_of[r.name] = set().union(*map(cache_keys, configs))
  warm: set[str] = set()  # cache keys built (or whose first run is past its set-up, or ended)
  claims: dict[str, set[str]] = {}  # running run -> the caches it is building
  env = child_env(parallel)
  say = print_fn or tqdm.write
  what = "runs" if all(isinstance(r, Run) for r in runs) else "jobs"  # jobs: seed groups too
  say(f"{len(runs)} {what} in {runs_dir}: {len(status)} DONE (skipped), {len(todo)} to run, "
      f"{parallel} at a time. Logs: <run>/run.log")
  running: dict[str, tuple[subprocess.Popen, Any, float, Job, int]] = {}
  queue = list(todo)
  number = {r.name: f"[{i + 1}/{len(todo)}]" for i, r in enumerate(todo)}
  bar = tqdm(total=len(todo), unit="run", dynamic_ncols=True, disable=None)
  preexec = die_with_parent()
  stops: list[int] = []  # stop signals received; the handler only records them

  def check_stop() -> None:
    if stops:
      raise _Stopped(stops[0])

  previous = _install_stop_handlers(stops.append)
  try:
    while queue or running:
      check_stop()
      for name in running:
        if claims.get(name) and any(_past_setup(m.workdir(runs_dir)) for m in fresh[name]):
          warm |= claims.pop(name)
        elif claims.get(name):  # each cache as soon as it is whole: the full pool's run need
          built = {k for k in claims[name] if is_built(k)}  # not wait for the index
          warm |= built
          claims[name] -= built
      while len(running) < parallel:
        # Shared caches (tokens; features; embeddings + index) are built by one run alone: runs
        # that need a cache another run is building wait until it is whole (`is_built`).
        building = set().union(*claims.values())
        ready = [r for r in queue if not cache_of[r.name] & building]
        if not ready:
          break
        run = ready[0]
        queue.remove(run)
        claims[run.name] = cache_of[run.name] - warm
        workdir = run.workdir(runs_dir)
        workdir.mkdir(parents=True, exist_ok=True)
        log = open(workdir / "run.log", "a")  # closed when the run ends
        cmd = [python, "-m", "anchoral_jax.cli", *run.argv(runs_dir)]
        log.write(f"=== {datetime.datetime.now().isoformat(timespec='seconds')} "
                  f"anchoral {shlex.join(run.argv(runs_dir))}\n")
        log.flush()
        slot = min(set(range(parallel)) - {v[4] for v in running.values()})
        run_env = env
        if devices:
          run_env = {**env, "CUDA_VISIBLE_DEVICES": str(devices[slot % len(devices)])}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=run_env,
                                start_new_session=True, preexec_fn=preexec)
        running[run.name] = (proc, log, time.time(), run, slot)
      for name, (proc, log, t0, run, _) in list(running.items()):
        rc = proc.poll()
        if rc is None:
          continue
        log.close()
        del running[name]
        bar.update(1)
        warm |= claims.pop(name, set())
        took = time.time() - t0
        if rc == 0 and run.done(runs_dir):
          status[name] = "done"
          say(f"done    {number[name]} {name} ({took:.0f} s)")
        else:
          status[name] = "failed"
          say(f"FAILED  {number[name]} {name} (exit {rc}, {took:.0f} s); log "
              f"{run.workdir(runs_dir)}/run.log:\n"
              + _tail(run.workdir(runs_dir) / "run.log"))
      failed = sum(s == "failed" for s in status.values())
      bar.set_postfix_str(
          ("; ".join(f"{number[n]} round "
                     f"{min(_rounds_logged(m.workdir(runs_dir)) for m in fresh[n])}/{rounds[n]}"
                     for n in running))
          + (f" | {failed} failed" if failed else ""), refresh=False)
      if running:
        time.sleep(poll_s)
  except BaseException as e:
    if isinstance(e, _Stopped):
      say(f"{signal.Signals(e.signum).name}: stopping {len(running)} running runs (SIGTERM, "
          f"SIGKILL after {grace_s:.0f} s). Re-run the same command to resume them.")
    # Our children only, by their process groups; a second stop signal skips the grace.
    stop_children([v[0] for v in running.values()], grace_s, hurry=lambda: len(stops) > 1)
    for _, log, *_ in running.values():
      log.close()
    if isinstance(e, _Stopped):
      raise SystemExit(128 + e.signum) from None
    raise
  finally:
    _restore_handlers(previous)
    bar.close()
  return status


def _install_stop_handlers(record: Callable[[int], None]) -> dict[int, Any]:
  """Handlers that only record a stop signal (the loop acts on it between steps, never
  half-way through starting a child); {} off the main thread, where Python allows none."""
  if threading.current_thread() is not threading.main_thread():
    return {}
  return {sig: signal.signal(sig, lambda signum, frame: record(signum)) for sig in STOP_SIGNALS}


def _restore_handlers(previous: dict[int, Any]) -> None:
  for sig, handler in previous.items():
    if handler is not None:  # None: set outside Python, cannot be put back
      signal.signal(sig, handler)

