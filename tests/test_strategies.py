"""Acquisition scores against hand formulas; BADGE and FTbertKM picks."""

from __future__ import annotations

import numpy as np
import pytest

from anchoral_jax.al import strategies as S


def _softmax(z: np.ndarray) -> np.ndarray:
  e = np.exp(z - z.max(1, keepdims=True))
  return e / e.sum(1, keepdims=True)


def test_uncertainty_scores_match_hand_formulas():
  logits = np.random.default_rng(0).standard_normal((64, 5)) * 3
  p = _softmax(logits)
  np.testing.assert_allclose(S.entropy(logits), -(p * np.log(p)).sum(1), rtol=1e-10)
  np.testing.assert_allclose(S.least_confidence(logits), 1 - p.max(1), rtol=1e-10)
  ps = np.sort(p, 1)
  np.testing.assert_allclose(S.margin(logits), 1 - (ps[:, -1] - ps[:, -2]), rtol=1e-10)


def test_uncertainty_scores_are_higher_when_more_uncertain():
  logits = np.array([[0.0, 0.0], [3.0, -3.0], [50.0, -50.0]])
  for fn in (S.entropy, S.least_confidence, S.margin):
    s = fn(logits)
    assert s[0] > s[1] > s[2] and np.isfinite(s).all()
  np.testing.assert_allclose(S.entropy(logits)[0], np.log(2))
  with pytest.raises(ValueError):
    S.entropy(np.zeros((3, 1)))


def test_topk_is_deterministic_on_ties():
  scores = np.array([0.5, 0.9, 0.9, 0.1, 0.9])
  np.testing.assert_array_equal(S.topk(scores, 3), [1, 2, 4])
  np.testing.assert_array_equal(S.topk(scores, 10), [1, 2, 4, 0, 3])
  with pytest.raises(ValueError, match="NaN"):
    S.topk(np.array([1.0, np.nan]), 1)


def test_badge_embeddings_shape_and_values():
  probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
  pooled = np.array([[1.0, 2.0], [-1.0, 0.5]])
  g = S.badge_embeddings(probs, pooled)
  assert g.shape == (2, 6)
  want0 = np.outer([0.7 - 1.0, 0.2, 0.1], [1.0, 2.0]).ravel()
  want1 = np.outer([0.1, 0.3, 0.6 - 1.0], [-1.0, 0.5]).ravel()
  np.testing.assert_allclose(g, np.stack([want0, want1]), rtol=1e-6)


def test_badge_select_distinct():
  rng = np.random.default_rng(1)
  probs = _softmax(rng.standard_normal((300, 4)))
  pooled = rng.standard_normal((300, 16))
  picks = S.badge_select(probs, pooled, 25, np.random.default_rng(2))
  assert picks.shape == (25,) and len(set(picks.tolist())) == 25


def test_ftbertkm_distinct_and_covers_blobs():
  rng = np.random.default_rng(3)
  centres = rng.standard_normal((8, 32)) * 10
  blob = np.repeat(np.arange(8), 40)
  cls = centres[blob] + rng.standard_normal((320, 32))
  for seed in range(3):
    picks = S.ftbertkm_select(cls, 8, np.random.default_rng(seed))
    assert len(set(picks.tolist())) == 8
    assert sorted(blob[picks].tolist()) == list(range(8))
  np.testing.assert_array_equal(S.ftbertkm_select(cls[:5], 8, rng), np.arange(5))


def test_random_select_and_registry():
  picks = S.random_select(10, 4, np.random.default_rng(0))
  assert len(set(picks.tolist())) == 4 and picks.max() < 10
  assert sorted(S.random_select(3, 5, np.random.default_rng(0)).tolist()) == [0, 1, 2]
  assert S.strategy_kind("badge") == "gradient" and S.strategy_kind("entropy") == "logits"
  assert set(S.UNCERTAINTY_SCORES) == {k for k, v in S.STRATEGIES.items() if v == "logits"}
  with pytest.raises(ValueError, match="known strategies: badge, entropy"):
    S.strategy_kind("bald")


def test_badge_embeddings_are_the_last_layer_gradient_by_jax_grad():
  """An independent reference: jax.grad of the cross-entropy at the model's own prediction
  with respect to the linear head's kernel, per example (BADGE, Ash et al. 2020)."""
  import jax
  import jax.numpy as jnp
  import optax

  rng = np.random.default_rng(3)
  h_NxH = rng.normal(size=(7, 5)).astype(np.float32)
  w_HxC = rng.normal(size=(5, 3)).astype(np.float32)
  b_C = rng.normal(size=3).astype(np.float32)
  logits_NxC = h_NxH @ w_HxC + b_C

  def loss(w, h, y):
    return optax.softmax_cross_entropy_with_integer_labels(h @ w + b_C, y)

  y_N = logits_NxC.argmax(1)
  grads_NxHxC = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(jnp.asarray(w_HxC), h_NxH, y_N)
  want = np.asarray(grads_NxHxC).transpose(0, 2, 1).reshape(7, 15)  # [N, C*H], class-major
  got = S.badge_embeddings(S.softmax(logits_NxC), h_NxH)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_badge_select_without_embeddings_picks_as_kmeans_pp_on_jax_grad_embeddings():
  """The factorised BADGE (no [N, C*H] matrix) picks exactly what k-means++ picks on the
  gradient embeddings computed by jax.grad, draw for draw, over several seeds and class counts;
  and its distances match brute force on the materialised vectors (float64)."""
  import jax
  import jax.numpy as jnp
  import optax

  from anchoral_jax.al.clustering import kmeans_pp, outer_sq_dist_to

  rng = np.random.default_rng(4)
  for c in (2, 5):
    h_NxH = rng.normal(size=(400, 24)).astype(np.float32)
    w_HxC = rng.normal(size=(24, c)).astype(np.float32)
    logits_NxC = h_NxH @ w_HxC

    def loss(w, h, y):
      return optax.softmax_cross_entropy_with_integer_labels(h @ w, y)

    grads = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(jnp.asarray(w_HxC), h_NxH,
                                                           logits_NxC.argmax(1))
    g_NxD = np.asarray(grads).transpose(0, 2, 1).reshape(400, -1)
    probs_NxC = S.softmax(logits_NxC)
    for seed in range(4):
      want = kmeans_pp(g_NxD, 30, np.random.default_rng(seed))
      got = S.badge_select(probs_NxC, h_NxH, 30, np.random.default_rng(seed))
      np.testing.assert_array_equal(got, want)
      np.testing.assert_array_equal(
          S.badge_select(probs_NxC, h_NxH, 30, np.random.RandomState(seed)),
          kmeans_pp(g_NxD, 30, np.random.RandomState(seed)))
    r_NxC = S.badge_residuals(probs_NxC).astype(np.float64)
    h64 = h_NxH.astype(np.float64)
    gg_N = (r_NxC ** 2).sum(1) * (h64 ** 2).sum(1)
    rows = np.array([0, 17, 399])
    g64 = (r_NxC[:, :, None] * h64[:, None, :]).reshape(400, -1)
    brute_TxN = ((g64[rows][:, None, :] - g64[None]) ** 2).sum(-1)
    np.testing.assert_allclose(outer_sq_dist_to(rows, r_NxC, h64, gg_N), brute_TxN,
                               rtol=1e-9, atol=1e-9)
    assert np.all(outer_sq_dist_to(rows, r_NxC, h64, gg_N)[np.arange(3), rows] < 1e-9)
