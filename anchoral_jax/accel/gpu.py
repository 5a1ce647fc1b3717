"""NVIDIA H100s to compile for, on a machine without a GPU (issue 22: deviceless AOT for GPU).

`h100_devices(n)` returns n compile-only H100 devices: `jax.jit(f).lower(*ShapeDtypeStructs
sharded over a Mesh of them).compile()` then runs XLA's real GPU pipeline (fusion, cuBLAS
custom calls, collectives, buffer assignment), so `memory_analysis()` gives what a run would hold
per GPU, on this CPU machine. What it takes, found with jax 0.10.2 (bench/RESULTS.md, "H100
without a GPU"):

- the CUDA PJRT plugin only, `pip install "jax-cuda12-plugin==<jax's version>"` (it pulls
  `jax-cuda12-pjrt`: 182 MB download, 458 MB installed). The NVIDIA wheels of
  `jax[cuda12]` (another 3 GB download, 4.4 GB installed) are not needed to compile.
- the plugin must not check the CUDA install: that check calls cuInit, which fails without a
  driver, and the plugin then never registers. It skips the check when `jax_platforms` does
  not name cuda, so this module sets `jax_platforms` to "cpu" if nothing chose it yet.
- a target description (`TARGET_CONFIG`: XLA's `GpuTargetConfigProto` as text, the H100 SXM's
  numbers) and an explicit `topology` "<slices>x<hosts>x<devices per host>"; without the latter
  the plugin asks for a client, i.e. a GPU ("Cannot create topology without an explicit topology
  shape or without a client").

What it does not give: `compiled.cost_analysis()` is None for these devices (take FLOPs and bytes
from the same program lowered for CPU or TPU: they are properties of the HLO, not the chip), and
nothing is autotuned (no GPU to time kernels on), so the kernels chosen may differ from a run's.
Upstream: jax-ml/jax#23971 (deviceless GPU AOT through the "gpu" alias fails; "cuda" works),
jax-ml/jax#28376 (lowering without a device), openxla/xla#16913 (the `topology` and
`target_config` options of PJRT_TopologyDescription_Create).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import importlib.util

import jax

PLUGIN = "jax-cuda12-plugin"  # the pip package; its module is jax_plugins.xla_cuda12


@dataclasses.dataclass(frozen=True)
class Peak:
  """Published peak numbers of one accelerator chip, for rooflines (say which in any output)."""

  name: str
  bf16_flops_per_s: float  # dense (no structured sparsity)
  hbm_bytes_per_s: float
  memory_bytes: float
  source: str


# NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100, "H100 SXM" column):
# BF16 Tensor Core 1,979 TFLOPS is quoted *with sparsity*; dense is half, 989 TFLOPS. GPU memory
# 80 GB HBM3 at 3.35 TB/s. (nvidia-smi on such a card shows 81,559 MiB; JAX preallocates 75% of
# it unless XLA_PYTHON_CLIENT_MEM_FRACTION says otherwise.)
H100_SXM = Peak(name="NVIDIA H100 SXM 80GB", bf16_flops_per_s=989e12, hbm_bytes_per_s=3.35e12,
                memory_bytes=80e9,
                source="NVIDIA H100 Tensor Core GPU datasheet, H100 SXM: BF16 1,979 TFLOPS with "
                       "sparsity (989 dense), 80 GB HBM3, 3.35 TB/s")

# XLA's GpuTargetConfigProto for an H100 SXM (the device facts XLA's GPU compiler reads: SM
# count, shared memory, registers, clock, bandwidth, compute capability 9.0), with the cuDNN and
# CUDA runtime versions that `jax[cuda12]==0.10.2` installs (9.28, 12.9).
TARGET_CONFIG = """
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84978434048
  shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 minor: 0 }
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 28 }
runtime_version { major: 12 minor: 9 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""


class GpuAotUnavailable(RuntimeError):
  """Deviceless H100 compilation is not possible in this process (the message says why)."""


def install_line() -> str:
  return f'pip install "{PLUGIN}=={jax.__version__}"'


def plugin_installed() -> bool:
  try:
    return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
  except ModuleNotFoundError:  # no jax_plugins package at all
    return False


def _check_plugin() -> None:
  if not plugin_installed():
    raise GpuAotUnavailable(f"compiling for H100 needs JAX's CUDA plugin: {install_line()}")
  have = importlib.metadata.version(PLUGIN)
  if have != jax.__version__:
    raise GpuAotUnavailable(f"{PLUGIN} {have} does not match jax {jax.__version__}: "
                            f"{install_line()}")


@functools.cache
def _topology(hosts: int, per_host: int):
  from jax._src import xla_bridge
  from jax.experimental import topologies

  _check_plugin()
  if not xla_bridge.backends_are_initialized() and not jax.config.jax_platforms:
    jax.config.update("jax_platforms", "cpu")  # the plugin then skips its cuInit check
  try:
    return topologies.get_topology_desc(platform="cuda", target_config=TARGET_CONFIG,
                                        topology=f"1x{hosts}x{per_host}")
  except NotImplementedError as e:  # the plugin did not register
    raise GpuAotUnavailable(
        f"the CUDA plugin did not register ({e}); without a GPU it registers only when "
        f"jax_platforms does not name cuda (now {jax.config.jax_platforms!r}): set "
        "JAX_PLATFORMS=cpu") from e


def h100_devices(count: int = 1, hosts: int = 1) -> list[jax.Device]:
  """`count` compile-only H100 devices (`hosts` processes holding count / hosts each), for
  `jax.sharding.Mesh` and `.lower(...).compile()`; they cannot run anything."""
  if count < 1 or hosts < 1 or count % hosts:
    raise ValueError(f"{count} devices cannot be split over {hosts} hosts")
  return list(_topology(hosts, count // hosts).devices)
