"""H100s without a GPU (anchoral_jax/accel/gpu.py): the project's real train step compiles for
them, batch-sharded over two, and XLA's per-GPU memory accounting matches the bytes counted from
the arrays' shapes. Needs JAX's CUDA plugin (`accel.gpu.install_line()`); without it only the
checks that need no plugin run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from anchoral_jax.accel import gpu

ROOT = Path(__file__).resolve().parents[1]
HAS_PLUGIN = gpu.plugin_installed()

# Run in a fresh process: the plugin registers only if jax_platforms leaves cuda out when JAX
# first starts (accel/gpu.py), which another test of this worker may have decided already.
COMPILE = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from anchoral_jax import models
from anchoral_jax.training import train
from anchoral_jax.accel import gpu

B, L, N = 8, 16, 2
devices = gpu.h100_devices(N)
mesh = Mesh(np.array(devices), ("data",))
rep, bat = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
cfg = models.preset("tiny", num_labels=2, dtype="bfloat16")
opt = train.make_optimizer(train.TrainConfig())

def init(key):
  p = models.init_params(cfg, key)
  return train.TrainState(p, opt.init(p), jnp.zeros((), jnp.int32))

shapes = jax.eval_shape(init, jax.random.key(0))
state = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), shapes)
ids = jax.ShapeDtypeStruct((B, L), jnp.int32, sharding=bat)
labels = jax.ShapeDtypeStruct((B,), jnp.int32, sharding=bat)
weight = jax.ShapeDtypeStruct((B,), jnp.float32, sharding=bat)
key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=rep)
compiled = train.train_step.lower(state, ids, ids, labels, weight, key, cfg=cfg,
                                  opt=opt).compile()
m = compiled.memory_analysis()
state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(shapes))
batch_bytes = (2 * ids.size * 4 + labels.size * 4 + weight.size * 4) // N  # this GPU's shard
key_bytes = jax.random.key_data(jax.random.key(0)).nbytes
json.dump({"kinds": sorted({d.device_kind for d in devices}),
           "platforms": sorted({d.platform for d in devices}), "n": len(devices),
           "args": m.argument_size_in_bytes, "alias": m.alias_size_in_bytes,
           "expected_args": state_bytes + batch_bytes + key_bytes, "state": state_bytes,
           "hlo": compiled.as_text()},
          sys.stdout)
"""


def test_without_the_plugin_one_message_names_the_install_line():
  if HAS_PLUGIN:
    pytest.skip("the CUDA plugin is installed")
  with pytest.raises(gpu.GpuAotUnavailable, match='pip install "jax-cuda12-plugin=='):
    gpu.h100_devices(1)


def test_device_count_must_split_over_hosts():
  with pytest.raises(ValueError, match="cannot be split"):
    gpu.h100_devices(3, hosts=2)


def test_peak_numbers_agree_with_xlas_h100_description():
  """The datasheet's numbers (H100_SXM) against XLA's device description (TARGET_CONFIG): two
  sources, the same card."""
  field = dict(re.findall(r"(\w+): ([\d.]+)", gpu.TARGET_CONFIG))
  assert float(field["memory_bandwidth"]) == pytest.approx(gpu.H100_SXM.hbm_bytes_per_s, rel=1e-3)
  assert float(field["device_memory_size"]) == pytest.approx(gpu.H100_SXM.memory_bytes, rel=0.07)
  # Dense bf16 from the H100 architecture whitepaper's parts: 132 SMs x 1.83 GHz (the SXM's
  # boost clock for tensor work) x 4 tensor cores x 1,024 dense bf16 FLOP per clock each
  assert 132 * 1.83e9 * 4096 == pytest.approx(gpu.H100_SXM.bf16_flops_per_s, rel=1e-3)
  assert int(field["core_count"]) == 132


@pytest.mark.skipif(not HAS_PLUGIN, reason=f"needs JAX's CUDA plugin: {gpu.install_line()}")
def test_train_step_compiles_for_two_h100s_without_a_gpu():
  proc = subprocess.run([sys.executable, "-c", COMPILE], cwd=ROOT, capture_output=True,
                        text=True, timeout=900,
                        env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)})
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout)
  assert out["n"] == 2 and out["kinds"] == ["NVIDIA H100 80GB HBM3"]
  assert out["platforms"] == ["gpu"]
  assert out["args"] == out["expected_args"]  # per GPU: the whole state + half the batch
  assert out["alias"] == out["state"]  # the donated state is updated in place
  assert "__cublas" in out["hlo"]  # XLA's GPU pipeline chose cuBLAS for the matmuls
  assert "all-reduce" in out["hlo"]  # gradients summed over the two GPUs' halves
