"""Dropout with a counter-based hash mask instead of threefry bits (every family's dropout).

Why: `flax.linen.Dropout` draws `jax.random.bernoulli` bits, and JAX lowers threefry on CPU as
a rolled `while` loop per dropout site that XLA cannot fuse with its consumer: dropout and its
PRNG were 20% of the MiniLM train step on a CPU (bench/RESULTS.md, "The train step op by op").
Here each element's keep bit is a hash of (the site's key, the element's flat position): a few
uint32 multiplies and xor-shifts that XLA fuses into the elementwise op that applies the mask.

The hash: `x = lowbias32(pos * 0x9E3779B9 + k0)`, then `lowbias32(x ^ k1)`, where (k0, k1) are
the 64 bits of the site's key (`make_rng("dropout")`: the caller's key folded with the module
path, as flax does) and lowbias32 is C. Wellons' 32-bit integer hash (hash-prospector, bias
0.17; a bijection of uint32, so distinct positions never share a pre-image). An element is
kept iff its hash < round(keep * 2^32): a keep probability within 2^-32 of `1 - rate`.
tests/test_dropout.py checks the keep rate (binomial bounds), independence across adjacent
positions, steps and keys (chi-square), and the 1/keep scaling.

Shapes: any; positions are the row-major flat index (uint32: arrays up to 2^32 elements).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

GOLDEN = np.uint32(0x9E3779B9)  # 2^32 / golden ratio: spreads consecutive positions


def lowbias32(x_u32: jax.Array) -> jax.Array:
  """C. Wellons' lowbias32: a bijective 32-bit hash with low avalanche bias."""
  x_u32 = x_u32 ^ (x_u32 >> 16)
  x_u32 = x_u32 * np.uint32(0x7FEB352D)
  x_u32 = x_u32 ^ (x_u32 >> 15)
  x_u32 = x_u32 * np.uint32(0x846CA68B)
  return x_u32 ^ (x_u32 >> 16)


def key_words(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The two uint32 words of a threefry key (typed `jax.random.key` or raw uint32[2])."""
  data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  data = data.reshape(-1).astype(jnp.uint32)
  return data[0], data[-1]


def hash_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """uint32 bits of `shape`, one independent-looking word per position, from `key`."""
  k0, k1 = key_words(key)
  size = int(np.prod(shape, dtype=np.int64))
  if size >= 2**32:
    raise ValueError(f"dropout on {size} elements: positions must fit uint32")
  pos = jax.lax.iota(jnp.uint32, size).reshape(shape) if size else jnp.zeros(shape, jnp.uint32)
  return lowbias32(lowbias32(pos * GOLDEN + k0) ^ k1)


def keep_mask(key: jax.Array, keep_prob: float, shape: tuple[int, ...]) -> jax.Array:
  """bool mask, True with probability `keep_prob` per element (within 2^-32)."""
  threshold = min(int(round(keep_prob * 2.0**32)), 2**32 - 1)
  return hash_bits(key, shape) < np.uint32(threshold)


class Dropout(nn.Module):
  """`flax.linen.Dropout(rate)(x, deterministic=...)` with the hash mask (module docstring).

  Same interface, RNG stream ("dropout") and scaling (kept values / keep), so families swap it
  in without touching their parameters; eval mode (deterministic) is the identity as before."""

  rate: float
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool, rng: jax.Array | None = None):
    if self.rate == 0.0 or deterministic:
      return inputs
    if self.rate == 1.0:  # as flax: no 0/0 in the gradient
      return jnp.zeros_like(inputs)
    keep_prob = 1.0 - self.rate
    if rng is None:
      rng = self.make_rng(self.rng_collection)
    mask = keep_mask(rng, keep_prob, inputs.shape)
    return jax.lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
