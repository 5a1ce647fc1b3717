"""Sweeps: a config file's `sweep(add, arg)` expanded into named run directories (CONTRIBUTING.md §3).

`sweep(add, arg)` calls `add(**point)` once per run. Keys without a dot are `get_config`
arguments (merged into the config string after ':'); dotted keys are config overrides
(`--config.<key>=<value>`, e.g. seeds). The run directory name comes from the point, so the same
sweep always names the same runs: one level per argument in the order given, then one leaf
joining the overrides, e.g.
  dataset=agnews_business/strategy=entropy/filter=anchoral/dseed=654321,mseed=654321,iseed=123456
The name minus the leaf is the run's *cell* (the seeds of one table cell); it becomes the W&B
group, the full name the W&B run name. A config module may list `SWEEP_ARGS`: arguments that only
shape the sweep (subsets, seed counts) and are dropped from each run's config string.

Re-running a sweep skips runs whose `DONE` exists and resumes the others: `anchoral run` on the
same workdir continues from its last checkpoint. Backends:
  local      sequential or `parallel` subprocesses, a progress bar, `<run>/run.log` per run.
             SIGTERM/SIGINT/SIGHUP stop every run (SIGTERM, SIGKILL after a grace period)
             before the sweep exits; on Linux the runs also die with a SIGKILLed sweep.
  slurm      `<runs_dir>/_sweep/<experiment>.sbatch`: an array job, one task per unfinished run,
             requeued when preempted or near its time limit (launch/slurm_array.sbatch.tmpl).
  multihost  `<runs_dir>/_sweep/<experiment>-multihost.sh`: run it on every host; the runs go one
             after the other, each across all hosts via jax.distributed (launch/multihost.sh.tmpl).
  dry        lists the runs and their commands; writes nothing.
`--shard=I/N` (local and dry) keeps run i of the expansion when i % N == I: N hosts (a TPU
pod's workers, Slurm nodes) each run their own share, independently; `--shard=auto` takes I/N
from the TPU worker id and count, else from Slurm (`shard_from_env`). Every host partitions the
same full list, whatever is DONE, so the shares never depend on timing; the workdir lock keeps
two hosts off one run anyway.
Each backend but dry writes `<run>/overrides.json` (the point, the command) and a manifest
`<runs_dir>/_sweep/<experiment>.jsonl`; slurm and multihost also write a new
`<runs_dir>/_sweep/<experiment>-<UTC time>.commands` per submission (see `write_commands`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import functools
import importlib.util
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import ml_collections

from anchoral_jax.config import num_query_rounds
from anchoral_jax.fileio import write_text_atomic

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "launch"
SWEEP_DIR = "_sweep"  # under runs_dir: manifests, generated scripts, Slurm logs
BACKENDS = ("local", "slurm", "multihost", "dry")
# Short names of common seed overrides in run names (anything else keeps its dotted key).
SHORT_NAMES = {"data.seed": "dseed", "model.seed": "mseed", "al.initial_seed": "iseed"}


# ---------------------------------------------------------------------------------------------
# Expansion.
# ---------------------------------------------------------------------------------------------

@functools.cache
def load_module(path: str | os.PathLike) -> ModuleType:
  """A config file as a module (configs/ is not a package; config_flags also loads by path)."""
  path = Path(path).resolve()
  if not path.is_file():
    raise FileNotFoundError(f"Config file {path} does not exist.")
  name = "anchoral_configs_" + "_".join(path.with_suffix("").parts[-2:]).replace("-", "_")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # dataclasses and pickling look modules up by name
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise
  return module


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep: where it lives and the `anchoral run` arguments that make it."""

  name: str  # relative run directory
  cell: str  # `name` without the override leaf: the seeds of one table cell
  experiment: str  # the config file's stem (main, ablations, ...)
  config_file: str  # absolute path
  arg: str  # get_config argument of this run
  overrides: Mapping[str, Any]  # dotted config key -> value
  point: Mapping[str, Any]  # what sweep() passed to add()

  @property
  def config_spec(self) -> str:
    return f"{self.config_file}:{self.arg}" if self.arg else self.config_file

  def workdir(self, runs_dir: str | os.PathLike) -> Path:
    return Path(runs_dir).resolve() / self.name

  def argv(self, runs_dir: str | os.PathLike) -> list[str]:
    """`anchoral` arguments (after the program name) for this run."""
    return (["run", "--config", self.config_spec, "--workdir", str(self.workdir(runs_dir))]
            + [f"--config.{k}={format_value(v)}" for k, v in self.overrides.items()])

  def done(self, runs_dir: str | os.PathLike) -> bool:
    return (self.workdir(runs_dir) / "DONE").exists()


def format_value(value: Any) -> str:
  """A config value as config_flags parses it back from `--config.key=value`."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, str | int | float):
    return str(value) if not isinstance(value, float) else repr(value)
  if isinstance(value, list | tuple):
    return repr(tuple(value))
  raise TypeError(f"Cannot pass a {type(value).__name__} ({value!r}) as a config override.")


def parse_arg_string(arg: str | None) -> dict[str, str | None]:
  """'a=1,flag' -> {'a': '1', 'flag': None} (None: a bare word), order kept."""
  out: dict[str, str | None] = {}
  for part in (arg or "").split(","):
    if part:
      k, eq, v = part.partition("=")
      out[k] = v if eq else None
  return out


def format_arg_string(args: Mapping[str, str | None]) -> str:
  return ",".join(k if v is None else f"{k}={v}" for k, v in args.items())


def _arg_value(value: Any) -> str | None:
  if value is True:
    return None  # a bare word
  if value is False:
    return "false"
  text = str(value)
  if "," in text or ":" in text:
    raise ValueError(f"Config argument value {text!r} may not contain ',' or ':'.")
  return text


def _name_value(value: Any) -> str:
  """A value as a path component: readable, no separators."""
  text = str(value).lower() if isinstance(value, bool) else str(value)
  return text.replace(os.sep, "_").replace(" ", "_") or "_"


def run_name(point: Mapping[str, Any]) -> tuple[str, str]:
  """(name, cell) of a sweep point: one level per argument, then a leaf with the overrides."""
  levels = [f"{k}={_name_value(v)}" for k, v in point.items() if "." not in k]
  leaf = ",".join(f"{SHORT_NAMES.get(k, k)}={_name_value(v)}" for k, v in point.items()
                  if "." in k)
  cell = "/".join(levels)
  name = "/".join(levels + ([leaf] if leaf else [])) or "run"
  for part in name.split("/"):
    if part in (".", "..") or len(part) > 200:
      raise ValueError(f"Bad run directory component {part!r} from sweep point {dict(point)}.")
  return name, cell


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets dotted keys on a locked config: unknown keys and wrong types fail here, early."""
  for key, value in overrides.items():
    node = config
    *path, last = key.split(".")
    try:
      for part in path:
        node = node[part]
      if last not in node:
        raise KeyError(last)
      node[last] = value
    except (KeyError, AttributeError) as e:
      raise KeyError(f"Unknown config key {key!r} in a sweep override (valid keys under "
                     f"{'.'.join(path) or 'the root'}: {sorted(node.keys())}).") from e


def build_config(run: Run) -> ml_collections.ConfigDict:
  """The config `anchoral run` builds for this run (get_config + overrides, locked)."""
  module = load_module(run.config_file)
  config = module.get_config(run.arg or None)
  config.lock()
  apply_overrides(config, run.overrides)
  return config


def expand(config: str, overrides: Mapping[str, Any] | None = None) -> list[Run]:
  """The runs of `path/to/config.py[:arg]`'s sweep; `overrides` apply to every run.

  Every run's config is built and validated here, so a bad argument, key or value fails
  before anything starts.
  """
  from anchoral_jax import loop

  path_str, _, base_arg = config.partition(":")
  path = Path(path_str).resolve()
  module = load_module(path)
  if not hasattr(module, "sweep"):
    raise ValueError(f"{path} has no `sweep(add, arg)` function; run it with `anchoral run`.")
  points: list[dict[str, Any]] = []
  module.sweep(lambda **point: points.append(point), base_arg or None)
  if not points:
    raise ValueError(f"{config}: the sweep has no runs.")
  base = parse_arg_string(base_arg)
  for key in getattr(module, "SWEEP_ARGS", ()):
    base.pop(key, None)
  experiment = path.stem
  runs: list[Run] = []
  seen: dict[str, dict[str, Any]] = {}
  for point in points:
    name, cell = run_name(point)
    if name in seen:
      raise ValueError(f"Sweep points {seen[name]} and {point} both map to the run {name!r}.")
    seen[name] = point
    args = dict(base)
    args.update({k: _arg_value(v) for k, v in point.items() if "." not in k})
    run_overrides = {k: v for k, v in point.items() if "." in k}
    for k, v in (overrides or {}).items():
      if k in run_overrides and run_overrides[k] != v:
        raise ValueError(f"--config.{k}={v} conflicts with the sweep, which sets it to "
                         f"{run_overrides[k]} for {name}.")
      run_overrides[k] = v
    arg = format_arg_string(args)
    wandb = module.get_config(arg or None).get("wandb")
    if wandb is not None:  # one W&B group per cell, the run named like its directory
      if "name" in wandb:
        run_overrides.setdefault("wandb.name", name)
      if "group" in wandb:
        run_overrides.setdefault("wandb.group", f"{experiment}/{cell}" if cell else experiment)
    run = Run(name, cell, experiment, str(path), arg, run_overrides, point)
    try:  # the overrides' keys and types, then the values: before any run starts, not in each
      loop.validate(build_config(run))
    except loop.ConfigError as e:
      raise loop.ConfigError(f"run {name} of {config}: {e}") from e
    runs.append(run)
  return runs


# ---------------------------------------------------------------------------------------------
# Files every backend writes.
# ---------------------------------------------------------------------------------------------

def anchoral_command(python: str = sys.executable) -> str:
  """How generated scripts start `anchoral` by default (override with $ANCHORAL).

  The scripts split $ANCHORAL on spaces, so the interpreter path must not contain any.
  """
  if any(ch.isspace() for ch in python):
    raise ValueError(f"Interpreter path {python!r} has whitespace; set $ANCHORAL in the script.")
  return f"{python} -m anchoral_jax.cli"


def write_run_files(runs: Sequence[Run], runs_dir: str | os.PathLike) -> Path:
  """`<run>/overrides.json` for each run and the manifest `_sweep/<experiment>.jsonl`."""
  runs_dir = Path(runs_dir).resolve()
  sweep_dir = runs_dir / SWEEP_DIR
  sweep_dir.mkdir(parents=True, exist_ok=True)
  lines = []
  for run in runs:
    workdir = run.workdir(runs_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    record = {"name": run.name, "cell": run.cell, "experiment": run.experiment,
              "config": run.config_spec, "arg": run.arg, "point": dict(run.point),
              "overrides": dict(run.overrides),
              "command": "anchoral " + shlex.join(run.argv(runs_dir))}
    _write_json(workdir / "overrides.json", record)
    lines.append(json.dumps({**record, "workdir": str(workdir), "done": run.done(runs_dir)}))
  manifest = sweep_dir / f"{runs[0].experiment}.jsonl"
  write_text_atomic(manifest, "".join(line + "\n" for line in lines))
  return manifest


def write_commands(runs: Sequence[Run], runs_dir: str | os.PathLike) -> Path:
  """A new `_sweep/<experiment>-<UTC time>.commands`: one `workdir<TAB>anchoral arguments` line
  per run; the generated script names it.

  Never rewritten: a pending or requeued Slurm array task reads its line by number long after
  submission, so a re-run of the sweep (fewer unfinished runs, other line numbers) must not
  touch the file an earlier submission reads. Created exclusively: two submissions within the
  same second get `-2`, `-3`, ... suffixes instead of sharing a file."""
  runs_dir = Path(runs_dir).resolve()
  sweep_dir = runs_dir / SWEEP_DIR
  sweep_dir.mkdir(parents=True, exist_ok=True)
  stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
  text = "".join(f"{r.workdir(runs_dir)}\t{shlex.join(r.argv(runs_dir))}\n" for r in runs)
  for n in itertools.count(1):
    path = sweep_dir / f"{runs[0].experiment}-{stamp}{'' if n == 1 else f'-{n}'}.commands"
    try:
      with open(path, "x") as f:
        f.write(text)
    except FileExistsError:
      continue
    return path
  raise AssertionError("unreachable")


def _write_json(path: Path, obj: Any) -> None:
  write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def render(template: str, **values: Any) -> str:
  """launch/<template> with each {{KEY}} replaced (shell `$` stays untouched)."""
  path = LAUNCH_DIR / template
  if not path.exists():
    raise FileNotFoundError(f"Launch template {path} is missing: run from a source checkout "
                            "(pip install -e .), which has the launch/ folder.")
  text = path.read_text()
  for key, value in values.items():
    text = text.replace("{{" + key + "}}", str(value))
  if "{{" in text:
    raise ValueError(f"{path}: unfilled placeholder near {text[text.index('{{'):][:40]!r}.")
  return text


# ---------------------------------------------------------------------------------------------
# Backends.
# ---------------------------------------------------------------------------------------------

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
  return env


def cache_keys(config: ml_collections.ConfigDict) -> set[str]:
  """The shared per-dataset caches a run reads or builds: tokens, the frozen encoder's outputs
  (train.trainable="head"), and for the retrieval filters the pool embeddings + index."""
  c = config
  data = [c.data.cache_dir, c.data.name, c.data.kwargs.to_dict()]
  keys = {json.dumps(["tokens", *data, c.data.max_length, c.model.tokenizer or c.model.name],
                     default=str)}
  if c.train.get("trainable", "all") == "head":  # the frozen encoder's cached outputs
    keys.add(json.dumps(["features", *data, c.data.max_length, c.model.name, c.model.pooling,
                         c.model.dtype, c.model.pretrained or c.model.seed], default=str))
  if c.al.filter in ("seals", "anchoral"):
    keys.add(json.dumps(["index", *data, c.index.embed_model, c.index.embed_max_length,
                         c.index.import_path, c.index.path, c.index.connectivity],
                        default=str))
  return keys


def run_local(runs: Sequence[Run], runs_dir: str | os.PathLike, parallel: int = 1,
              python: str = sys.executable, poll_s: float = 0.5,
              print_fn: Callable[[str], None] | None = None,
              devices: Sequence[str] = (), grace_s: float = 10.0) -> dict[str, str]:
  """Runs the unfinished runs, `parallel` at a time; returns name -> done|skipped|failed.

  `devices` (e.g. ("0", "1")): process slot i sees only devices[i % len(devices)]
  (CUDA_VISIBLE_DEVICES), so N runs share N GPUs one each.
  Each run is its own process group (a terminal's Ctrl-C does not reach it half-way through a
  write). A stop signal to the sweep stops them all (`stop_children`, `grace_s`) and exits with
  128 + the signal; a SIGKILLed sweep takes them along on Linux (`die_with_parent`). A re-run
  while an old run still lives fails that run at once: `anchoral run` locks its workdir.
  """
  from tqdm.auto import tqdm

  if parallel < 1:
    raise ValueError(f"parallel must be >= 1 (got {parallel}).")
  runs_dir = Path(runs_dir).resolve()
  status = {r.name: "skipped" for r in runs if r.done(runs_dir)}
  todo = [r for r in runs if r.name not in status]
  rounds, cache_of = {}, {}
  for r in todo:
    c = build_config(r)
    rounds[r.name] = num_query_rounds(c) + 1
    cache_of[r.name] = cache_keys(c)
  warm: set[str] = set()  # cache keys whose first run is past its set-up (or ended)
  claims: dict[str, set[str]] = {}  # running run -> the caches it is building
  env = child_env(parallel)
  say = print_fn or tqdm.write
  say(f"{len(runs)} runs in {runs_dir}: {len(status)} DONE (skipped), {len(todo)} to run, "
      f"{parallel} at a time. Logs: <run>/run.log")
  running: dict[str, tuple[subprocess.Popen, Any, float, Run, int]] = {}
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
      for name, (_, _, _, r, _) in running.items():
        if claims.get(name) and _past_setup(r.workdir(runs_dir)):
          warm |= claims.pop(name)
      while len(running) < parallel:
        # Shared caches (tokens; embeddings + index) are built by one run alone: runs that
        # need a cache another run is building wait until that run is past its set-up.
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
          ("; ".join(f"{number[n]} round {_rounds_logged(r.workdir(runs_dir))}/{rounds[n]}"
                     for n, (_, _, _, r, _) in running.items()))
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


def _pending(runs: Sequence[Run], runs_dir: str | os.PathLike):
  """(runs_dir, unfinished runs, experiment, their commands file) or None when all are DONE."""
  runs_dir = Path(runs_dir).resolve()
  todo = [r for r in runs if not r.done(runs_dir)]
  if not todo:
    return None
  return runs_dir, todo, todo[0].experiment, write_commands(todo, runs_dir)


def write_slurm(runs: Sequence[Run], runs_dir: str | os.PathLike, config: str,
                parallel: int = 0, sbatch: Sequence[str] = (),
                python: str = sys.executable) -> Path | None:
  """An sbatch array script over the unfinished runs (None when all are DONE)."""
  pending = _pending(runs, runs_dir)
  if pending is None:
    return None
  runs_dir, todo, experiment, commands = pending
  sweep_dir = runs_dir / SWEEP_DIR
  script = sweep_dir / f"{experiment}.sbatch"
  extra = "".join(f"#SBATCH {s}\n" for s in sbatch)
  text = render("slurm_array.sbatch.tmpl", EXPERIMENT=experiment, CONFIG=config,
                DATE=datetime.datetime.now().isoformat(timespec="seconds"),
                NUM_RUNS=len(todo), NUM_DONE=len(runs) - len(todo),
                LAST=len(todo) - 1, THROTTLE=f"%{parallel}" if parallel > 1 else "",
                LOG_DIR=sweep_dir / "slurm", SBATCH_EXTRA=extra.rstrip("\n") or "#",
                COMMANDS=commands, SCRIPT=script, CWD=Path.cwd(), ANCHORAL=anchoral_command(python))
  (sweep_dir / "slurm").mkdir(parents=True, exist_ok=True)
  write_text_atomic(script, text)
  script.chmod(0o755)
  return script


def write_multihost(runs: Sequence[Run], runs_dir: str | os.PathLike, config: str,
                    python: str = sys.executable) -> Path | None:
  """A script to start on every host; it runs the unfinished runs one after the other."""
  pending = _pending(runs, runs_dir)
  if pending is None:
    return None
  runs_dir, todo, experiment, commands = pending
  script = runs_dir / SWEEP_DIR / f"{experiment}-multihost.sh"
  text = render("multihost.sh.tmpl", EXPERIMENT=experiment, CONFIG=config,
                DATE=datetime.datetime.now().isoformat(timespec="seconds"),
                NUM_RUNS=len(todo), COMMANDS=commands, SCRIPT=script, CWD=Path.cwd(),
                ANCHORAL=anchoral_command(python))
  write_text_atomic(script, text)
  script.chmod(0o755)
  return script


# ---------------------------------------------------------------------------------------------
# Shards: each host of a pod (or node of a cluster) runs its own share of a sweep.
# ---------------------------------------------------------------------------------------------

GCE_METADATA = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/"


def _gce_metadata(key: str) -> str | None:
  """A Cloud TPU VM's instance attribute (where JAX also reads the worker id), or None off GCE.

  Only `--shard=auto` asks, and only on a machine whose DMI says Google Compute Engine: the
  metadata server is the VM's own (link-local), never the internet."""
  try:
    product = Path("/sys/class/dmi/id/product_name").read_text()
  except OSError:
    return None
  if "Google" not in product:
    return None
  import urllib.request

  req = urllib.request.Request(GCE_METADATA + key, headers={"Metadata-Flavor": "Google"})
  try:
    with urllib.request.urlopen(req, timeout=5) as r:
      return r.read().decode().strip()
  except OSError:
    return None


def shard_from_env(environ: Mapping[str, str] | None = None,
                   metadata: Callable[[str], str | None] = _gce_metadata) -> tuple[int, int]:
  """(this host's index, number of hosts) for `--shard=auto`.

  In order: TPU_WORKER_ID with TPU_WORKER_HOSTNAMES (or TPU_PROCESS_ADDRESSES), as on GKE; a
  Cloud TPU VM's metadata (agent-worker-number, worker-network-endpoints), as
  `gcloud compute tpus tpu-vm ssh --worker=all` gives no environment; Slurm's SLURM_PROCID and
  SLURM_NTASKS (srun, one task per node)."""
  env = os.environ if environ is None else environ
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES")
  if env.get("TPU_WORKER_ID") and hosts:
    return int(env["TPU_WORKER_ID"]), len(hosts.split(","))
  worker = metadata("agent-worker-number")
  endpoints = metadata("worker-network-endpoints") if worker else None
  if worker and endpoints:
    return int(worker), len(endpoints.split(","))
  if env.get("SLURM_PROCID") and env.get("SLURM_NTASKS"):
    return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
  raise ValueError("--shard=auto found no TPU worker id (TPU_WORKER_ID and "
                   "TPU_WORKER_HOSTNAMES, or a Cloud TPU VM's metadata) and no Slurm task "
                   "(SLURM_PROCID, SLURM_NTASKS): pass --shard=I/N on host I of N.")


def parse_shard(shard: str, environ: Mapping[str, str] | None = None,
                metadata: Callable[[str], str | None] = _gce_metadata) -> tuple[int, int] | None:
  """'' -> None (every run); 'I/N' -> (I, N) with 0 <= I < N; 'auto' -> `shard_from_env`."""
  shard = (shard or "").strip()
  if not shard:
    return None
  if shard == "auto":
    index, count = shard_from_env(environ, metadata)
  else:
    i, slash, n = shard.partition("/")
    if not (slash and i.isdigit() and n.isdigit()):
      raise ValueError(f"--shard={shard}: expected I/N (e.g. --shard=0/4 on the first of 4 "
                       "hosts) or auto.")
    index, count = int(i), int(n)
  if not 0 <= index < count:
    raise ValueError(f"--shard: host index {index} is not in 0..{count - 1} (of {count}).")
  return index, count


def select_shard(runs: Sequence[Run], index: int, count: int) -> list[Run]:
  """Share `index` of `count`: every count-th run of the full expansion, starting at index.

  Round-robin, not blocks: a sweep lists a cell's seeds together, so each host gets a mix of
  cells (and of run lengths) rather than all seeds of a few."""
  return list(runs[index::count])


def main(config: str, runs_dir: str | os.PathLike, parallel: int = 1, backend: str = "local",
         overrides: Mapping[str, Any] | None = None, sbatch: Sequence[str] = (),
         devices: Sequence[str] = (), shard: str = "") -> list[Run]:
  """`anchoral sweep`: expand `config` ("path.py[:arg]") and run or script it on `backend`;
  with `shard` ("I/N" or "auto"), only this host's share (local and dry backends)."""
  from anchoral_jax.loop import ConfigError

  if backend not in BACKENDS:
    raise ValueError(f"Unknown backend {backend!r}; choose from {BACKENDS}.")
  try:
    part = parse_shard(shard)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if part is not None and backend not in ("local", "dry"):
    raise ConfigError(f"--shard splits a sweep between hosts that each run their share locally "
                      f"(--backend local or dry); --backend {backend} distributes the runs "
                      "itself: drop --shard.")
  runs = expand(config, overrides)
  runs_dir = Path(runs_dir).resolve()
  mine = runs if part is None else select_shard(runs, *part)
  where = "" if part is None else f" (shard {part[0]}/{part[1]}: {len(mine)} of {len(runs)} runs)"
  n_done = sum(r.done(runs_dir) for r in mine)
  if backend == "dry":
    for r in mine:
      print(f"{'DONE ' if r.done(runs_dir) else 'todo '} {r.name}\n"
            f"      anchoral {shlex.join(r.argv(runs_dir))}")
    cells = len({r.cell for r in mine})
    print(f"{len(mine)} runs in {cells} cells ({n_done} DONE) under {runs_dir}{where}.")
    return mine
  manifest = write_run_files(runs, runs_dir)  # all runs: every host writes the same manifest
  if backend == "local":
    if part is not None:
      print(f"shard {part[0]}/{part[1]}: {len(mine)} of the sweep's {len(runs)} runs on this host.")
    runs = mine
    status = run_local(runs, runs_dir, parallel, devices=devices)
    failed = [n for n, s in status.items() if s == "failed"]
    print(f"{len(runs)} runs: {sum(s == 'done' for s in status.values())} finished now, "
          f"{sum(s == 'skipped' for s in status.values())} were DONE, {len(failed)} failed. "
          f"Manifest {manifest}. Next: anchoral report {runs_dir}")
    if failed:
      raise SystemExit(f"{len(failed)} runs failed (re-run the same command to resume them): "
                       + ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else ""))
    return runs
  if backend == "slurm":
    script = write_slurm(runs, runs_dir, config, parallel, sbatch)
    how = f"sbatch {script}"
  else:
    script = write_multihost(runs, runs_dir, config)
    how = f"COORDINATOR=<host0>:<port> bash {script}   (on every host; see the script's header)"
  if script is None:
    print(f"All {len(runs)} runs are DONE; nothing to launch. Next: anchoral report {runs_dir}")
  else:
    print(f"{len(runs) - n_done} of {len(runs)} runs to go ({n_done} DONE). Wrote {script} and "
          f"{manifest}.\nLaunch: {how}")
  return runs
