"""k-means++ seeding, Lloyd k-means and centre-to-point assignment, on host numpy arrays.

Used by BADGE (k-means++ picks on gradient embeddings), FTbertKM (k-means on [CLS]) and the
AnchorAL anchor strategies (SPEC.md §2-3).

Why numpy and not a jitted JAX function: the inputs are host arrays whose row count changes
every round (subpool and per-class labelled-set sizes), so a jitted version would retrace per
shape or need padding and masking; Lloyd also stops on a data-dependent tolerance. The work is
tiny (N <= ~10^4 rows, K <= ~10^2 centres: a few ms per iteration on a CPU), so a device round
trip plus a compile per shape would cost more than it saves.

Shape letters: N points, D features, K centres, T local trials.
"""

from __future__ import annotations

import numpy as np


def _sq_dist_to(centre_rows_TxD: np.ndarray, x_NxD: np.ndarray, xx_N: np.ndarray) -> np.ndarray:
  """Squared Euclidean distances [T, N] as ||c||^2 - 2 c.x + ||x||^2, clipped at 0.

  Same expansion and operation order as scikit-learn's `_euclidean_distances`.
  """
  d_TxN = -2.0 * (centre_rows_TxD @ x_NxD.T)
  d_TxN += np.einsum("td,td->t", centre_rows_TxD, centre_rows_TxD)[:, None]
  d_TxN += xx_N[None, :]
  np.maximum(d_TxN, 0.0, out=d_TxN)
  return d_TxN


def kmeans_pp(X_NxD: np.ndarray, k: int, rng: np.random.Generator,
              n_local_trials: int | None = None) -> np.ndarray:
  """Indices of k distinct rows picked by greedy k-means++ seeding.

  Follows scikit-learn's `_kmeans_plusplus` step by step (SPEC.md §3, BADGE):
  the first centre is uniform; each later centre is the best of `n_local_trials`
  (default 2 + floor(ln k)) candidates drawn with probability proportional to D^2, "best"
  meaning the smallest total potential after adding it. `rng` only needs `.choice` and
  `.uniform`, so a `np.random.RandomState` reproduces scikit-learn's picks draw for draw.

  Departure: once every point coincides with a chosen centre (duplicates; zero potential),
  scikit-learn would repeat index 0; we draw the remaining picks uniformly from the unpicked
  rows so the k indices stay distinct. If k >= N all indices are returned.
  """
  X = np.asarray(X_NxD)
  if X.ndim != 2:
    raise ValueError(f"kmeans_pp expects an [N, D] matrix, got shape {X.shape}.")
  if not np.issubdtype(X.dtype, np.floating):
    X = X.astype(np.float64)
  xx_N = np.einsum("nd,nd->n", X, X)
  return _seed(X.shape[0], lambda rows_T: _sq_dist_to(X[rows_T], X, xx_N), k, rng,
               n_local_trials)


def outer_sq_dist_to(rows_T: np.ndarray, r_NxC: np.ndarray, h_NxH: np.ndarray,
                     gg_N: np.ndarray) -> np.ndarray:
  """Squared distances [T, N] between the outer products g_n = r_n (x) h_n, never formed:
  ||g_t - g_n||^2 = ||g_t||^2 - 2 (r_t.r_n)(h_t.h_n) + ||g_n||^2 (<g_t, g_n> factorises; the
  trick of scikit-activeml#589), in `_sq_dist_to`'s operation order, clipped at 0.
  `gg_N` = ||r_n||^2 ||h_n||^2. Memory O(T N), not the O(N C H) of the flattened g."""
  d_TxN = -2.0 * ((r_NxC[rows_T] @ r_NxC.T) * (h_NxH[rows_T] @ h_NxH.T))
  d_TxN += gg_N[rows_T][:, None]
  d_TxN += gg_N[None, :]
  np.maximum(d_TxN, 0.0, out=d_TxN)
  return d_TxN


def kmeans_pp_outer(r_NxC: np.ndarray, h_NxH: np.ndarray, k: int, rng: np.random.Generator,
                    n_local_trials: int | None = None) -> np.ndarray:
  """`kmeans_pp` on the rows g_n = r_n (x) h_n (flattened [N, C*H]) without materialising them:
  the same draws and picks, with distances from `outer_sq_dist_to`. BADGE on a 1.2M-row pool
  at H 768 keeps r and h (N x (C + H) floats), not N x C*H (bench/RESULTS.md, issue 22)."""
  r = np.asarray(r_NxC)
  h = np.asarray(h_NxH)
  if r.ndim != 2 or h.ndim != 2 or r.shape[0] != h.shape[0]:
    raise ValueError(f"kmeans_pp_outer: r {r.shape} and h {h.shape} must be [N, C] and [N, H] "
                     "with the same N.")
  dtype = np.result_type(r.dtype, h.dtype, np.float32)
  r, h = r.astype(dtype, copy=False), h.astype(dtype, copy=False)
  gg_N = np.einsum("nc,nc->n", r, r) * np.einsum("nh,nh->n", h, h)
  return _seed(r.shape[0], lambda rows_T: outer_sq_dist_to(rows_T, r, h, gg_N), k, rng,
               n_local_trials)


def _seed(n: int, sq_dist_to, k: int, rng: np.random.Generator,
          n_local_trials: int | None) -> np.ndarray:
  """Greedy k-means++ over N points given only `sq_dist_to(rows_T) -> d_TxN` (`kmeans_pp`)."""
  if k <= 0:
    return np.zeros((0,), np.int64)
  if k >= n:
    return np.arange(n, dtype=np.int64)
  if n_local_trials is None:
    n_local_trials = 2 + int(np.log(k))
  picks = np.full(k, -1, np.int64)
  chosen = np.zeros(n, bool)
  first = int(rng.choice(n, p=np.full(n, 1.0 / n)))
  picks[0] = first
  chosen[first] = True
  ones_N = np.ones(n, np.float64)  # potentials as matmuls with unit weights, as scikit-learn
  closest_N = sq_dist_to(np.array([first]))[0].astype(np.float64)
  potential = float(closest_N @ ones_N)
  for c in range(1, k):
    if not potential > 0.0:  # all remaining points duplicate a centre: keep picks distinct
      rest = np.flatnonzero(~chosen)
      picks[c:] = rng.choice(rest, size=k - c, replace=False)
      break
    rand_T = rng.uniform(size=n_local_trials) * potential
    cand_T = np.searchsorted(np.cumsum(closest_N), rand_T)
    np.clip(cand_T, None, n - 1, out=cand_T)
    d_TxN = np.minimum(closest_N[None, :], sq_dist_to(cand_T))
    pot_T = d_TxN @ ones_N
    best = int(np.argmin(pot_T))
    idx = int(cand_T[best])
    if chosen[idx]:  # only reachable through a zero-probability draw (rand == 0.0)
      idx = int(rng.choice(np.flatnonzero(~chosen)))
      d_N = np.minimum(closest_N, sq_dist_to(np.array([idx]))[0])
      closest_N, potential = d_N, float(d_N @ ones_N)
    else:
      closest_N, potential = d_TxN[best], float(pot_T[best])
    picks[c] = idx
    chosen[idx] = True
  return picks


def standardise(X_NxD: np.ndarray) -> np.ndarray:
  """Per-feature zero mean, unit variance (scikit-learn StandardScaler; constant features -> 0)."""
  X = np.asarray(X_NxD, dtype=np.float64)
  std_D = X.std(axis=0)
  std_D[std_D == 0.0] = 1.0
  return (X - X.mean(axis=0)) / std_D


def kmeans(X_NxD: np.ndarray, k: int, rng: np.random.Generator, num_iters: int = 300,
           tol: float = 1e-4) -> np.ndarray:
  """Lloyd k-means from a k-means++ start; returns the centres [K, D] (float64).

  Mirrors scikit-learn's `KMeans(n_init=1, init="k-means++")`: `tol` is relative to the mean
  per-feature variance and bounds the squared centre shift; an empty cluster is re-seeded
  with the point farthest from its current centre. If k >= N every point is its own centre.
  """
  X = np.asarray(X_NxD, dtype=np.float64)
  n = X.shape[0]
  if k <= 0:
    return np.zeros((0, X.shape[1]), np.float64)
  if k >= n:
    return X.copy()
  xx_N = np.einsum("nd,nd->n", X, X)
  centres_KxD = X[kmeans_pp(X, k, rng)].copy()
  tol_abs = tol * float(np.mean(np.var(X, axis=0)))
  rows_N = np.arange(n)
  for _ in range(num_iters):
    d_KxN = _sq_dist_to(centres_KxD, X, xx_N)
    assign_N = np.argmin(d_KxN, axis=0)
    counts_K = np.bincount(assign_N, minlength=k)
    new_KxD = _cluster_sums(X, assign_N, k)
    empty = counts_K == 0
    new_KxD[~empty] /= counts_K[~empty, None]
    if empty.any():  # relocate empty clusters to the worst-served points (distinct)
      far_N = np.argsort(-d_KxN[assign_N, rows_N], kind="stable")
      new_KxD[empty] = X[far_N[: int(empty.sum())]]
    shift = float(((new_KxD - centres_KxD) ** 2).sum())
    centres_KxD = new_KxD
    if shift <= tol_abs:
      break
  return centres_KxD


def _cluster_sums(X_NxD: np.ndarray, assign_N: np.ndarray, k: int) -> np.ndarray:
  """Per cluster the sum of its rows [K, D], as one matmul with the 0/1 membership matrix:
  np.add.at was 80% of FTbertKM's query time (0.1 s vs 0.014 s per Lloyd iteration at
  23,923 x 384; bench/bench_kmeans.py)."""
  member_KxN = np.zeros((k, len(assign_N)), X_NxD.dtype)
  member_KxN[assign_N, np.arange(len(assign_N))] = 1.0
  return member_KxN @ X_NxD


def closest_distinct(centres_KxD: np.ndarray, X_NxD: np.ndarray) -> np.ndarray:
  """For each centre, the row of X with the highest dot product, all picks distinct.

  Official `_get_nearest_to_centers` on standardised features (normalized=True): similarity is
  the raw dot product; on a collision, centres are served greedily in order, each taking its
  best row not already taken. Needs K <= N.
  """
  c = np.asarray(centres_KxD, dtype=np.float64)
  X = np.asarray(X_NxD, dtype=np.float64)
  k, n = c.shape[0], X.shape[0]
  if k > n:
    raise ValueError(f"closest_distinct: {k} centres but only {n} points.")
  sim_KxN = c @ X.T
  picks = np.argmax(sim_KxN, axis=1)
  if len(np.unique(picks)) == k:
    return picks.astype(np.int64)
  picks = np.full(k, -1, np.int64)
  for i in range(k):
    row = sim_KxN[i].copy()
    row[picks[:i]] = -np.inf
    picks[i] = int(np.argmax(row))
  return picks
