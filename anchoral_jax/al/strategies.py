"""Base acquisition strategies as pure functions on host arrays (SPEC.md §3).

The model forward happens elsewhere and hands over `logits`, `probs`, `pooled` or `cls`;
these functions only score and pick. Every selector returns int64 row indices into the
arrays it was given (the caller maps them to uids).

Shape letters: N candidates, C classes, H hidden size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from anchoral_jax.al.clustering import closest_distinct, kmeans, kmeans_pp_outer, standardise

log = logging.getLogger(__name__)

# name -> what the strategy needs from the model forward:
#   "none": nothing; "logits": logits_NxC; "gradient": probs_NxC and pooled_NxH (BADGE);
#   "cls": the last-layer [CLS] vectors (FTbertKM).
STRATEGIES: dict[str, str] = {
    "random": "none",
    "entropy": "logits",
    "least_confidence": "logits",
    "margin": "logits",
    "badge": "gradient",
    "ftbertkm": "cls",
}


def strategy_kind(name: str) -> str:
  """What `name` needs from the forward pass; fails early on unknown names."""
  if name not in STRATEGIES:
    raise ValueError(f"Unknown strategy {name!r}; known strategies: {', '.join(sorted(STRATEGIES))}.")
  return STRATEGIES[name]


def _log_softmax(logits_NxC: np.ndarray) -> np.ndarray:
  z = np.asarray(logits_NxC, dtype=np.float64)
  if z.ndim != 2 or z.shape[1] < 2:
    raise ValueError(f"Expected logits of shape [N, C] with C >= 2, got {z.shape}.")
  z = z - z.max(axis=1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits_NxC: np.ndarray) -> np.ndarray:
  """p = softmax(logits) on the host (float64 maths, float32 out)."""
  return np.exp(_log_softmax(logits_NxC)).astype(np.float32)


def entropy(logits_NxC: np.ndarray) -> np.ndarray:
  """H(p) = -sum_c p_c log p_c with p = softmax(logits); higher = more uncertain."""
  logp_NxC = _log_softmax(logits_NxC)
  return -(np.exp(logp_NxC) * logp_NxC).sum(axis=1)


def least_confidence(logits_NxC: np.ndarray) -> np.ndarray:
  """1 - max_c p_c; higher = more uncertain."""
  return 1.0 - np.exp(_log_softmax(logits_NxC).max(axis=1))


def margin(logits_NxC: np.ndarray) -> np.ndarray:
  """1 - (p_(1) - p_(2)), the gap between the top two probabilities; higher = more uncertain."""
  p_NxC = np.exp(_log_softmax(logits_NxC))
  top2_Nx2 = -np.sort(-p_NxC, axis=1)[:, :2]
  return 1.0 - (top2_Nx2[:, 0] - top2_Nx2[:, 1])


UNCERTAINTY_SCORES = {"entropy": entropy, "least_confidence": least_confidence, "margin": margin}


def topk(scores_N: np.ndarray, k: int) -> np.ndarray:
  """Indices of the k highest scores, best first; ties go to the lower index (deterministic)."""
  s = np.asarray(scores_N, dtype=np.float64).ravel()
  if np.isnan(s).any():
    raise ValueError("Scores contain NaN: the model's logits diverged; check the training loss.")
  k = max(0, min(int(k), s.size))
  return np.argsort(-s, kind="stable")[:k].astype(np.int64)


def random_select(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
  """k distinct uniform indices from range(n) (all of them, shuffled, if k >= n)."""
  return rng.choice(n, size=min(int(k), int(n)), replace=False).astype(np.int64)


def badge_residuals(probs_NxC: np.ndarray) -> np.ndarray:
  """r = p - onehot(argmax p) [N, C]: BADGE's gradient embedding is r (x) h."""
  p_NxC = np.asarray(probs_NxC, dtype=np.float32)
  r_NxC = p_NxC.copy()
  r_NxC[np.arange(p_NxC.shape[0]), np.argmax(p_NxC, axis=1)] -= 1.0
  return r_NxC


def _check_badge_inputs(p_NxC: np.ndarray, h_NxH: np.ndarray, who: str) -> None:
  if p_NxC.ndim != 2 or h_NxH.ndim != 2 or p_NxC.shape[0] != h_NxH.shape[0]:
    raise ValueError(f"{who}: probs {p_NxC.shape} and pooled {h_NxH.shape} must be "
                     "[N, C] and [N, H] with the same N.")


def badge_embeddings(probs_NxC: np.ndarray, pooled_NxH: np.ndarray) -> np.ndarray:
  """BADGE gradient embedding g = (p - onehot(argmax p)) (x) h, flattened to [N, C*H].

  This is the last-layer gradient of the cross-entropy at the model's own prediction (up to
  sign): h is the pooled [CLS] output feeding the linear head. `badge_select` never forms it
  (O(N C H) memory); this is the reference its factorised distances are tested against.
  """
  p_NxC = np.asarray(probs_NxC, dtype=np.float32)
  h_NxH = np.asarray(pooled_NxH, dtype=np.float32)
  _check_badge_inputs(p_NxC, h_NxH, "badge_embeddings")
  r_NxC = badge_residuals(p_NxC)
  return (r_NxC[:, :, None] * h_NxH[:, None, :]).reshape(len(r_NxC), -1)


def badge_select(probs_NxC: np.ndarray, pooled_NxH: np.ndarray, k: int,
                 rng: np.random.Generator) -> np.ndarray:
  """BADGE: greedy k-means++ seeding (scikit-learn's variant) on the gradient embeddings,
  with their distances factorised over r and h (`clustering.kmeans_pp_outer`): the same picks
  as `kmeans_pp(badge_embeddings(...))` in O(N (C + H)) memory instead of O(N C H)."""
  p_NxC = np.asarray(probs_NxC, dtype=np.float32)
  h_NxH = np.asarray(pooled_NxH, dtype=np.float32)
  _check_badge_inputs(p_NxC, h_NxH, "badge_select")
  return kmeans_pp_outer(badge_residuals(p_NxC), h_NxH, k, rng)


def ftbertkm_select(cls_NxH: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
  """FTbertKM: standardise [CLS], k-means with k clusters, the highest-dot-product point per centre.

  Picks are distinct (collisions served greedily in centre order, as the official code).
  """
  x_NxH = np.asarray(cls_NxH)
  n = x_NxH.shape[0]
  if k >= n:
    return np.arange(n, dtype=np.int64)
  z_NxH = standardise(x_NxH)
  return closest_distinct(kmeans(z_NxH, k, rng), z_NxH)


# Outputs each strategy needs from the one forward pass over the subpool, by its kind.
_KIND_OUTPUTS = {"none": (), "logits": ("logits",), "gradient": ("logits", "pooled"),
                 "cls": ("cls",)}
STRATEGY_OUTPUTS: dict[str, tuple[str, ...]] = {
    name: _KIND_OUTPUTS[kind] for name, kind in STRATEGIES.items()}
# What a caller provides: model outputs (numpy, float32) of pool rows, by output name.
Outputs = Callable[[np.ndarray, tuple[str, ...]], dict[str, np.ndarray]]


def acquire(name: str, outputs: Outputs, subpool: np.ndarray, unlabelled: np.ndarray,
            query_size: int, rng: np.random.Generator, timers: dict[str, float] | None = None,
            info: dict[str, Any] | None = None) -> np.ndarray:
  """The base strategy `name` picks `query_size` rows of `subpool` (pool row numbers).

  `outputs(rows, keys)` gives the model outputs the strategy needs (STRATEGY_OUTPUTS[name]),
  computed once over the whole subpool. A subpool smaller than `query_size` is topped up
  uniformly from the rest of `unlabelled` (a warning, and `info["topped_up"]`). `rng` is the
  strategy's one persistent generator (random, BADGE's and FTbertKM's seeding, the top-up).
  `timers` gets "score" and "acquisition" seconds; `info["rows_scored"]` counts scored rows.
  """
  from anchoral_jax.parallel import timed

  info = {} if info is None else info
  keys = STRATEGY_OUTPUTS.get(name)
  if keys is None:
    strategy_kind(name)  # raises, naming the known strategies
  subpool = np.asarray(subpool, np.int64)
  q = int(query_size)
  k = min(q, len(subpool))
  out: dict[str, np.ndarray] = {}
  if keys and k:
    with timed(timers, "score"):
      out = outputs(subpool, keys)
    info["rows_scored"] = info.get("rows_scored", 0) + len(subpool)
  with timed(timers, "acquisition"):
    if name == "random":
      pick = random_select(len(subpool), k, rng)
    elif name in UNCERTAINTY_SCORES:
      pick = topk(UNCERTAINTY_SCORES[name](out["logits"]), k)
    elif name == "badge":
      # numpy, not jax.nn.softmax: host arrays of a new shape every round would compile anew.
      pick = badge_select(softmax(out["logits"]), out["pooled"], k, rng)
    else:
      pick = ftbertkm_select(out["cls"], k, rng)
    chosen = subpool[np.asarray(pick, np.int64)]
    if k < q:  # documented graceful behaviour: top up uniformly from the rest of the pool
      rest = np.setdiff1d(unlabelled, chosen)
      extra = rng.choice(rest, size=min(q - k, len(rest)), replace=False)
      log.warning("Subpool has %d items < query_size %d: topped up %d uniformly from the pool.",
                  len(subpool), q, len(extra))
      chosen = np.concatenate([chosen, extra])
      info["topped_up"] = len(extra)
  return chosen
