"""How many minority rows the pool holds: an exact interval from a random audit sample.

Why not the model: the labelled set is what active learning chose (enriched in the minority,
the point of AnchorAL), so a head trained on it is miscalibrated for the pool, in a direction
and by an amount nobody knows; its predicted-positive count said "11 of 11" with 17 unfound.
Rows the model picked are no sample of anything either. So `init` draws an audit sample A: a
uniformly random ordering of the pool (session seed), whose first `audit_size` rows are served
a few per batch, in that order, and never proposed by the Selector. A served prefix A[:a] is a
simple random sample (without replacement) of the N pool rows whatever the labels, so its
minority count k is hypergeometric(N, T, a) in the unknown pool total T, and inverting the two
one-sided tests gives an exact (conservative) interval for T. Every row anyone labelled is a
certain lower bound (T >= found), and every row labelled majority an upper one, so the interval
is intersected with [found, N - found majority]: that never lowers its coverage.

The width is the honest price of a rare class: 50 audit rows at 1.4% hold 0-2 minority rows,
so the upper end stays far above what was found; a larger `--audit-size` narrows it.
Skipped audit rows ("don't know") are left out, which assumes they are skipped for reasons
unrelated to their class.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass(frozen=True)
class Estimate:
  total: int  # point estimate of the pool's minority count
  low: int  # the interval, both ends included
  high: int
  found: int  # minority rows labelled so far (anywhere)
  audited: int  # audit rows answered (a)
  audit_minority: int  # of which minority (k)
  level: float

  @property
  def all_found(self) -> bool:
    """True only when the interval itself says nothing is left to find."""
    return self.high <= self.found


@functools.lru_cache(maxsize=1024)
def hypergeom_interval(n_pool: int, n_sample: int, k: int, level: float = 0.95
                       ) -> tuple[int, int]:
  """Exact interval for the number T of marked items in a population of `n_pool`, given `k`
  marked in a simple random sample of `n_sample` without replacement: the T not rejected by
  either one-sided test at (1 - level) / 2 (Clopper-Pearson's construction, hypergeometric).

  P(K >= k | T) grows with T and P(K <= k | T) falls, so each end is a bisection."""
  from scipy.stats import hypergeom

  if not 0 <= k <= n_sample <= n_pool:
    raise ValueError(f"need 0 <= k <= sample <= pool, got {k}, {n_sample}, {n_pool}")
  alpha = (1.0 - level) / 2

  def first(ok, lo: int, hi: int) -> int:
    """The smallest T in [lo, hi] with ok(T), ok being monotone False -> True."""
    while lo < hi:
      mid = (lo + hi) // 2
      lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo

  # scipy: sf(k - 1) = P(K >= k). T = k is never rejected from below, T = N - (a - k) from above.
  low = first(lambda t: hypergeom.sf(k - 1, n_pool, t, n_sample) > alpha, k, n_pool)
  top = n_pool - (n_sample - k)
  high = first(lambda t: not hypergeom.cdf(k, n_pool, t, n_sample) > alpha, low, top + 1) - 1
  return low, max(high, low)


def estimate(n_pool: int, audit_labels: list[bool], found: int, found_majority: int,
             level: float = 0.95) -> Estimate:
  """The pool's minority count from the answered audit prefix (True = minority) and the counts
  labelled anywhere (module docstring)."""
  a, k = len(audit_labels), int(sum(audit_labels))
  lo, hi = hypergeom_interval(n_pool, a, k, level) if a else (0, n_pool)
  lo, hi = max(lo, found), max(min(hi, n_pool - found_majority), found)
  point = round(n_pool * k / a) if a else lo
  return Estimate(int(min(max(point, lo), hi)), int(lo), int(hi), found, a, k, level)


def audit_order(n_pool: int, size: int, seed: int) -> np.ndarray:
  """The audit sample's rows, in serving order: the first `size` of a uniform permutation."""
  return np.random.default_rng([seed, 0xA0D17]).permutation(n_pool)[:min(size, n_pool)]
