"""Data parallelism over all local devices with jax.sharding (a 1-D "data" mesh).

Batches are split along their leading axis; parameters and optimiser state are replicated
(the S runs `fit_many` trains together are split over a 2-D mesh instead: `seed_mesh`).
With one device every function here is the identity, so the single-device path is unchanged.
Multi-host: call `initialize_distributed()` first (jax.distributed), then each process feeds
its own local batch shard; `launch/` scripts set the coordinator variables.

Also the JAX runtime's set-up and clocks: `enable_compilation_cache` (XLA's persistent cache,
on by default; `ANCHORAL_COMPILATION_CACHE=0` turns it off) and `compile_clock` (seconds spent
tracing, lowering and compiling, which `loop` keeps out of the query time), `timed` (step
timers less the compilation inside them) and `show_bars` (progress bars only on a terminal).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


@functools.cache
def mesh() -> Mesh:
  # Auto axes: since jax 0.9 `make_mesh` defaults to Explicit sharding, under which the
  # embedding gather of a batch-sharded ids array fails to type-check; the compiler's
  # propagation (Auto) is what plain data parallelism wants.
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def num_devices() -> int:
  return jax.device_count()


# The run's shardings (`anchoral plan` compiles with the same ones on a target's mesh): batches
# split along their leading axis, parameters and optimiser state replicated.
BATCH = PartitionSpec("data")
REPLICATED = PartitionSpec()


# fit_many's layout for S runs of a table cell (`seed_mesh`): the runs' stacked params and
# optimiser state split along their seed axis over "seeds", each run's batch over "data".
SEED_STATE = PartitionSpec("seeds")  # [S, ...]
SEED_BATCH = PartitionSpec("seeds", "data")  # [S, B, ...]


def seed_mesh(seeds: int, devices=None) -> Mesh:
  """fit_many's mesh for S runs on D devices: ("seeds", "data") of shape (g, D / g) with
  g = gcd(S, D). Each device holds S / g runs' params and optimiser state, not all S (the paper's
  8 bert-base seeds replicated on every chip outgrow a 16 GiB one: bench/RESULTS.md), and
  computes those runs on its 1 / (D / g) of their batches: the same rows per device as the 1-D
  data-parallel layout, which g = 1 is (S and D coprime)."""
  devs = np.asarray(jax.devices() if devices is None else devices).reshape(-1)
  g = np.gcd(seeds, devs.size)
  return Mesh(devs.reshape(g, devs.size // g), ("seeds", "data"),
              axis_types=(AxisType.Auto, AxisType.Auto))


def round_batch(batch_size: int, devices: int | None = None) -> int:
  """Rounds a batch size up to a multiple of the device count (each device gets equal rows)."""
  n = num_devices() if devices is None else devices
  return -(-batch_size // n) * n


def shard_batch(arrays):
  """Places host arrays with the batch axis split over the mesh (identity on one device)."""
  if num_devices() == 1:
    return arrays
  sharding = NamedSharding(mesh(), BATCH)
  return jax.tree.map(lambda a: jax.device_put(np.asarray(a), sharding), arrays)


def replicate(tree):
  """Replicates a pytree (params, optimiser state) on every device (identity on one device)."""
  if num_devices() == 1:
    return tree
  return jax.device_put(tree, NamedSharding(mesh(), REPLICATED))


# "1": always start jax.distributed (launch/multihost.sh.tmpl: one run over all hosts), with no
# coordinator address on Cloud TPU, where JAX reads the TPU metadata; "0": never (the runs of a
# local or sharded sweep are independent one-host processes, even under srun or on a pod host);
# unset: only when a launcher set JAX_COORDINATOR_ADDRESS or Slurm runs several tasks.
DISTRIBUTED_ENV = "ANCHORAL_DISTRIBUTED"


def initialize_distributed() -> None:
  """jax.distributed for multi-host runs, as `ANCHORAL_DISTRIBUTED` says (see above).

  Without a coordinator address JAX auto-detects TPU pods (metadata) and Slurm; plain GPU hosts
  get JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID from
  `launch/multihost.sh.tmpl`.
  """
  env = os.environ
  mode = env.get(DISTRIBUTED_ENV, "").strip().lower()
  if mode in ("0", "false", "off", "no"):
    return
  if (mode not in ("1", "true", "on", "yes") and not env.get("JAX_COORDINATOR_ADDRESS")
      and env.get("SLURM_NTASKS", "1") == "1"):
    return
  # CPU processes need a collectives backend to run one program together (tests, CPU
  # clusters); GPU/TPU use NCCL/ICI and ignore this flag.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kw = {}
  if env.get("JAX_COORDINATOR_ADDRESS"):
    kw["coordinator_address"] = env["JAX_COORDINATOR_ADDRESS"]
    if env.get("JAX_NUM_PROCESSES"):
      kw["num_processes"] = int(env["JAX_NUM_PROCESSES"])
    if env.get("JAX_PROCESS_ID"):
      kw["process_id"] = int(env["JAX_PROCESS_ID"])
  jax.distributed.initialize(**kw)  # without kw: Slurm / TPU pods are auto-detected


def is_primary() -> bool:
  """True on process 0: the one process that writes a run's files (all of them compute)."""
  return jax.process_index() == 0


def to_host(tree):
  """Device arrays -> numpy. Arrays spread over several processes are gathered first.

  One `jax.device_get` for all the local leaves: their copies start together and the host
  waits once, so a caller fetching many small arrays (`train.fit`'s per-epoch predictions and
  losses) pays one round trip, not one per array.
  """
  leaves, treedef = jax.tree.flatten(tree)
  spread = [isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves]
  local = iter(jax.device_get([x for x, s in zip(leaves, spread, strict=True) if not s]))
  out = []
  for x, s in zip(leaves, spread, strict=True):
    if s:
      from jax.experimental import multihost_utils

      out.append(np.asarray(multihost_utils.process_allgather(x, tiled=True)))
    else:
      out.append(np.asarray(next(local)))
  return jax.tree.unflatten(treedef, out)


def sync(name: str) -> None:
  """Barrier across processes (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


# ---------------------------------------------------------------------------------------------
# Compilation: the persistent cache and the compile clock.
# ---------------------------------------------------------------------------------------------

COMPILATION_CACHE_ENV = "ANCHORAL_COMPILATION_CACHE"
# On CPU the programs here (tiny BERT buckets, k-means) compile in 0.05-1 s: JAX's default
# threshold (1 s) would cache almost none of them. Programs faster than this are not worth a
# file (the cache key's hashing and the disk read cost about as much).
MIN_CACHED_COMPILE_S = 0.05


def enable_compilation_cache(cache_dir: str | os.PathLike) -> Path | None:
  """Turns on XLA's persistent compilation cache under `<cache_dir>/xla`; returns that path, or
  None when `ANCHORAL_COMPILATION_CACHE=0` (or "false", "off") turned it off.

  Every round, run and sweep member compiles the same train step and forward buckets: with the
  cache, only the first process on a machine pays for it. Call before anything compiles (the
  CLI does it at start-up): JAX reads these settings once, at its first compilation.
  """
  if os.environ.get(COMPILATION_CACHE_ENV, "1").strip().lower() in ("0", "false", "off", "no"):
    return None
  path = Path(os.path.expanduser(cache_dir)) / "xla"
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_CACHED_COMPILE_S)
  return path


# Trace, lowering to MLIR, and XLA compilation (including a persistent-cache read): the three
# stages a jit cache miss costs. Their spans nest (a jit called while tracing another fires
# its own trace event), so the clock adds up their union, never a span twice.
COMPILE_EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration",
                            "/jax/core/compile/jaxpr_to_mlir_module_duration",
                            "/jax/core/compile/backend_compile_duration"})


@dataclasses.dataclass
class CompileClock:
  spans: list[tuple[float, float]] = dataclasses.field(default_factory=list)

  @property
  def seconds(self) -> float:
    """Length of the union of the recorded spans."""
    total, reach = 0.0, -float("inf")
    for start, end in sorted(self.spans):
      if end > reach:
        total += end - max(start, reach)
        reach = end
    return total


@contextlib.contextmanager
def compile_clock() -> Iterator[CompileClock]:
  """Records the wall seconds this process spends compiling inside the block.

  Why: the first round's query would otherwise count XLA compilation (seconds, once per
  program and shape) as query time, which the paper's Time is not about. Compilation runs on
  the calling thread before dispatch, so `wall - clock.seconds` is the block's time without it
  (as long as the device is not busy meanwhile: `scoring.forward_rows` drains before a new
  shape).
  """
  from jax import monitoring

  clock = CompileClock()

  def listener(event: str, start_time: float, end_time: float, **_) -> None:
    if event in COMPILE_EVENTS:
      clock.spans.append((start_time, end_time))

  monitoring.register_event_time_span_listener(listener)
  try:
    yield clock
  finally:
    monitoring.unregister_event_time_span_listener(listener)


# ---------------------------------------------------------------------------------------------
# Step timers (compilation kept out of the step they time) and progress bars.
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def timed(timers: dict[str, float] | None, name: str) -> Iterator[None]:
  """Adds the block's wall seconds to `timers[name]`, less the JAX compilation inside it, which
  goes to `timers["compile"]`: compiling a program (once per shape and process, or read from
  the persistent cache) is no cost of the step itself (a round-0 query was ~50x round 1's).
  `timers=None` times nothing (library callers that do not ask for timings)."""
  if timers is None:
    yield
    return
  t0 = time.perf_counter()
  with compile_clock() as compiled:
    yield
  timers[name] = timers.get(name, 0.0) + time.perf_counter() - t0 - compiled.seconds
  timers["compile"] = timers.get("compile", 0.0) + compiled.seconds


def show_bars(progress: bool) -> bool:
  """Progress bars only where they redraw in place: a terminal, or a notebook. Written to a log
  file (a sweep's run.log, CI), tqdm's carriage-return redraws piled up (41 KB for a 2-minute
  run); there the epoch and round lines, one each, say how far it is."""
  if not progress:
    return False
  if "ipykernel" in sys.modules:  # a notebook draws the bar in place; its stderr is no tty
    return True
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):  # replaced or closed stream
    return False
