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
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@functools.cache
def mesh() -> Mesh:
  return jax.make_mesh((jax.device_count(),), ("data",))


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
  """jax.distributed for multi-host runs; a no-op unless the launcher set the coordinator."""
  if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_NTASKS", "1") != "1":
    jax.distributed.initialize()
