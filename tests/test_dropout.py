"""The hash dropout mask (models/dropout.py) is statistically sound: keep rate within binomial
bounds, no dependence between adjacent or strided positions, dropout steps or keys (chi-square,
scipy), uniform bits; the module scales as flax's Dropout and is the identity in eval mode.

All draws use fixed keys, so the tests are deterministic; a control shows the independence
test rejects a weak mask (the counter without the hash)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from anchoral_jax.models import dropout as D

SHAPE = (256, 12, 64)  # batch x heads x length-like, 196,608 positions
P_MIN = 1e-4  # smallest acceptable p-value of one fixed-key test (several run per key)


def _mask(key, keep: float, shape=SHAPE) -> np.ndarray:
  return np.asarray(jax.jit(D.keep_mask, static_argnums=(1, 2))(key, keep, shape))


def _pair_pvalue(a: np.ndarray, b: np.ndarray) -> float:
  """Chi-square test of independence of two boolean arrays (2 x 2 contingency table)."""
  table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
  return float(stats.chi2_contingency(table, correction=False).pvalue)


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_keep_rate_within_binomial_bounds(keep):
  for seed in range(3):
    m = _mask(jax.random.key(seed), keep)
    n = m.size
    lo, hi = stats.binom.ppf([1e-5, 1 - 1e-5], n, keep)
    assert lo <= m.sum() <= hi, (seed, m.mean())
  # Threshold exactness: the keep probability is round(keep * 2^32) / 2^32.
  assert abs(round(keep * 2**32) / 2**32 - keep) < 2**-32


def test_adjacent_and_strided_positions_independent():
  m = _mask(jax.random.key(7), 0.9).reshape(-1)
  for lag in (1, 2, 3, 64, 768, 4096):
    assert _pair_pvalue(m[:-lag], m[lag:]) > P_MIN, lag
  # 4 consecutive positions: the 16 patterns occur as independent draws predict.
  fair = 0.5  # a fair mask makes the 16 patterns equiprobable: the strongest check of this kind
  m4 = _mask(jax.random.key(8), fair).reshape(-1, 4).astype(np.int64) @ np.array([8, 4, 2, 1])
  counts = np.bincount(m4, minlength=16)
  assert stats.chisquare(counts).pvalue > P_MIN


def test_hash_bits_uniform_in_high_and_low_bytes():
  bits = np.asarray(D.hash_bits(jax.random.key(3), (1 << 18,)))
  for shift in (24, 16, 8, 0):
    counts = np.bincount((bits >> shift) & 0xFF, minlength=256)
    assert stats.chisquare(counts).pvalue > P_MIN, shift


def test_steps_and_seeds_give_independent_masks():
  key = jax.random.key(11)
  m0 = _mask(jax.random.fold_in(key, 0), 0.9)
  for other in (jax.random.fold_in(key, 1), jax.random.fold_in(key, 2), jax.random.key(12)):
    m1 = _mask(other, 0.9)
    assert not np.array_equal(m0, m1)
    assert _pair_pvalue(m0.reshape(-1), m1.reshape(-1)) > P_MIN
  # A raw uint32[2] key (flax's make_rng under legacy keys) gives the typed key's mask.
  np.testing.assert_array_equal(_mask(jax.random.key_data(key), 0.9), _mask(key, 0.9))


def test_control_the_independence_test_rejects_a_weak_mask():
  """Without the hash, the counter itself (pos * golden + k0) gives strongly dependent bits:
  the same test must reject it, else it could not fail."""
  pos = np.arange(np.prod(SHAPE), dtype=np.uint32)
  weak = (pos * D.GOLDEN + np.uint32(12345)) < np.uint32(round(0.9 * 2**32))
  assert _pair_pvalue(weak[:-1], weak[1:]) < 1e-10


def test_module_scales_like_flax_dropout_and_eval_is_identity():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 128)).astype(np.float32))
  key = jax.random.key(5)
  out = np.asarray(D.Dropout(0.1).apply({}, x, deterministic=False, rngs={"dropout": key}))
  kept = out != 0
  np.testing.assert_allclose(out[kept], np.asarray(x)[kept] / 0.9, rtol=1e-6)
  assert 0.85 < kept.mean() < 0.95
  # the mask is keep_mask of the key flax hands the module (make_rng("dropout"))
  flax_like = np.asarray(nn.Dropout(0.1).apply({}, x, deterministic=False, rngs={"dropout": key}))
  assert not np.array_equal(out, flax_like)  # a different generator, same scale rule
  np.testing.assert_allclose(flax_like[flax_like != 0], np.asarray(x)[flax_like != 0] / 0.9,
                             rtol=1e-6)
  for rate, det in ((0.1, True), (0.0, False)):
    y = D.Dropout(rate).apply({}, x, deterministic=det, rngs={"dropout": key})
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
  assert not np.asarray(D.Dropout(1.0).apply({}, x, deterministic=False,
                                             rngs={"dropout": key})).any()
  # mean preserved: E[out] = x, over many masks of a constant input
  ones = jnp.ones((1 << 16,))
  means = [float(D.Dropout(0.1).apply({}, ones, deterministic=False,
                                      rngs={"dropout": jax.random.key(s)}).mean())
           for s in range(4)]
  assert abs(np.mean(means) - 1.0) < 5 * np.sqrt(0.1 / 0.9 / (4 << 16))


def test_vmapped_keys_give_each_key_its_own_mask():
  """fit_many vmaps the dropout keys of several runs: each run's mask is its key's mask."""
  keys = jax.random.split(jax.random.key(9), 3)
  batched = np.asarray(jax.vmap(lambda k: D.keep_mask(k, 0.9, (32, 16)))(keys))
  for i in range(3):
    np.testing.assert_array_equal(batched[i], _mask(keys[i], 0.9, (32, 16)))
