"""The targets `anchoral plan` compiles for: chips, per-chip memory, published peaks.

A target is one entry of TARGETS: how to get its (abstract) devices, and the numbers the
roofline needs, with where they come from. A GPU target is one more entry whose `devices`
returns that GPU's topology devices.

Peaks are the vendors' published per-chip numbers (dense bf16 matrix FLOP/s, HBM bandwidth);
f32 matmuls on TPU run at the bf16 rate by default (JAX's default matmul precision), so the bf16
peak is the bound for both dtypes. Sources: cloud.google.com/tpu/docs/v4, /v5e, /v5p, /v6e
("System architecture" tables), read 2026-12.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from anchoral_jax.errors import UserError

GIB = 1024**3

# The one line that makes TPU targets available (jax's own extra pins the matching libtpu).
TPU_INSTALL = 'pip install "jax[tpu]==$(python -c "import jax; print(jax.__version__)")"'


class TargetError(UserError, ValueError):
  """A target that is unknown or cannot be compiled for here (a user error: exit 2)."""


@dataclasses.dataclass(frozen=True)
class Target:
  name: str
  chips: int
  memory_bytes: int  # per chip (per device: v4 and v5p megacore chips are one device)
  peak_flops: float | None  # per chip, dense bf16, FLOP/s (None: no published number)
  hbm_bytes_per_s: float | None  # per chip
  source: str
  devices: Callable[[], Sequence[Any]]  # the devices a program is compiled for
  platform: str  # what `scoring.eval_batch_size` keys its default on


def _tpu(generation: str, topology: str, accelerator_type: str) -> Callable[[], Sequence[Any]]:
  """Abstract devices of a TPU topology from libtpu (no TPU needed)."""

  def devices():
    try:
      import libtpu  # noqa: F401  (only to tell "not installed" from other failures)
    except ImportError as e:
      raise TargetError(f"TPU targets need libtpu, which is not installed; install it with: "
                        f"{TPU_INSTALL}") from e
    # Without it libtpu probes the GCE metadata server for the chip type (seconds of retries).
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", accelerator_type)
    # No chip to share: without it a second `plan` (or a test worker) fails on libtpu's
    # one-process lockfile (/tmp/libtpu_lockfile).
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    dims = [int(d) for d in topology.split("x")]
    kw = {}
    if math.prod(dims) < 4:  # below libtpu's default host of 2x2x1 chips: one smaller host
      kw["chips_per_host_bounds"] = tuple(dims + [1] * (3 - len(dims)))
    topo = topologies.get_topology_desc(topology_name=f"{generation}:{topology}",
                                        platform="tpu", **kw)
    return list(topo.devices)

  return devices


def _cpu_devices() -> Sequence[Any]:
  import jax

  return jax.devices("cpu")[:1]


def _cpu_memory() -> int:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError):
    return 0


# generation -> (per-chip memory GiB, peak bf16 TFLOP/s, HBM GB/s, accelerator-type prefix,
#                TensorCores per chip as counted in accelerator-type names, doc page)
TPU_CHIPS = {
    "v4": (32, 275.0, 1200.0, "v4", 2, "cloud.google.com/tpu/docs/v4"),
    "v5e": (16, 197.0, 819.0, "v5litepod", 1, "cloud.google.com/tpu/docs/v5e"),
    "v5p": (95, 459.0, 2765.0, "v5p", 2, "cloud.google.com/tpu/docs/v5p"),
    "v6e": (32, 918.0, 1640.0, "v6e", 1, "cloud.google.com/tpu/docs/v6e"),
}
# Slices `anchoral plan` knows (any TOPOLOGY libtpu accepts works as GEN:TOPOLOGY too).
TPU_TOPOLOGIES = ("v4:2x2x1", "v4:2x2x2", "v5e:1x1", "v5e:2x2", "v5e:2x4", "v5p:2x2x1",
                  "v6e:1x1", "v6e:2x2", "v6e:2x4")


def tpu_target(name: str) -> Target:
  generation, _, topology = name.partition(":")
  dims = topology.split("x")
  if generation not in TPU_CHIPS or not all(d.isdigit() and int(d) > 0 for d in dims):
    raise TargetError(unknown_message(name))
  chips = 1
  for d in dims:
    chips *= int(d)
  mem_gib, tflops, gbs, prefix, cores, doc = TPU_CHIPS[generation]
  return Target(name, chips, mem_gib * GIB, tflops * 1e12, gbs * 1e9,
                f"{doc}: {tflops:g} TFLOP/s bf16, {gbs:g} GB/s, {mem_gib} GiB HBM per chip",
                _tpu(generation, topology, f"{prefix}-{chips * cores}"), "tpu")


def cpu_target() -> Target:
  """This machine's CPU as one device: memory is the host's RAM; no published peak."""
  return Target("cpu", 1, _cpu_memory(), None, None, "host RAM; no published peak for this CPU",
                _cpu_devices, "cpu")


# name -> Target factory. A new target (e.g. "h100") is one entry here.
TARGETS: dict[str, Callable[[], Target]] = {"cpu": cpu_target}
TARGETS.update({t: (lambda t=t: tpu_target(t)) for t in TPU_TOPOLOGIES})


def known_message() -> str:
  return (f"Known targets: {', '.join(TARGETS)} (or any TPU topology GEN:AxB[xC] with GEN in "
          f"{', '.join(TPU_CHIPS)}).")


def unknown_message(name: str) -> str:
  return f"Unknown target {name!r}. {known_message()}"


def get(name: str) -> Target:
  """The target `name` names: a TARGETS entry or any GEN:TOPOLOGY of a known TPU generation."""
  if name in TARGETS:
    return TARGETS[name]()
  if ":" in name:
    return tpu_target(name)
  raise TargetError(unknown_message(name))
