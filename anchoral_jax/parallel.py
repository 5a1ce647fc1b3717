"""Data parallelism over all local devices with jax.sharding (a 1-D "data" mesh).

Batches are split along their leading axis; parameters and optimiser state are replicated.
With one device every function here is the identity, so the single-device path is unchanged.
Multi-host: call `initialize_distributed()` first (jax.distributed), then each process feeds
its own local batch shard; `launch/` scripts set the coordinator variables.
"""

from __future__ import annotations

import functools
import os

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


def round_batch(batch_size: int) -> int:
  """Rounds a batch size up to a multiple of the device count (each device gets equal rows)."""
  n = num_devices()
  return -(-batch_size // n) * n


def shard_batch(arrays):
  """Places host arrays with the batch axis split over the mesh (identity on one device)."""
  if num_devices() == 1:
    return arrays
  sharding = NamedSharding(mesh(), PartitionSpec("data"))
  return jax.tree.map(lambda a: jax.device_put(np.asarray(a), sharding), arrays)


def replicate(tree):
  """Replicates a pytree (params, optimiser state) on every device (identity on one device)."""
  if num_devices() == 1:
    return tree
  return jax.device_put(tree, NamedSharding(mesh(), PartitionSpec()))


def initialize_distributed() -> None:
  """jax.distributed for multi-host runs; a no-op unless a launcher set the coordinator.

  TPU pods and Slurm are auto-detected by jax; plain GPU hosts get JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES and JAX_PROCESS_ID from `launch/multihost.sh.tmpl`.
  """
  env = os.environ
  if not env.get("JAX_COORDINATOR_ADDRESS") and env.get("SLURM_NTASKS", "1") == "1":
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
  """Device arrays -> numpy. Arrays spread over several processes are gathered first."""
  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      from jax.experimental import multihost_utils

      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  return jax.tree.map(get, tree)


def sync(name: str) -> None:
  """Barrier across processes (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
