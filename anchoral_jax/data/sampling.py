"""Every down-sampling and stratified split of the data package, through one helper.

`keep_and_sample` is the one draw: keep the rows of some groups whole and draw a count from each
of the others, a group at a time, by `rng.choice(rows, size, replace=False)`. The task recipes
below (SPEC.md §7: the minority cut to a prevalence, the test's majority cut, stratified splits
and samples) only choose the groups and counts, so the same seed picks the same rows everywhere.

`rng` is a numpy Generator (CONTRIBUTING.md §5), except for the paper's own draws: those use
the legacy `RandomState(42)` on purpose, as the official prepare_data.py did through
`DataFrame.sample(n, random_state=check_random_state(42))`, so the same files give the paper's
exact uids (`paper.py`).

Shapes: N rows of a split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
  from anchoral_jax.data.task import Split

Rng = np.random.Generator | np.random.RandomState
PAPER_SEED = 42  # check_random_state(42) in the official prepare_data.py


def keep_and_sample(groups_N: np.ndarray, counts: Mapping, rng: Rng) -> np.ndarray:
  """Sorted rows: all rows of groups not in `counts`, plus min(k, n_g) rows of each group g -> k.

  Groups are drawn in the order of `counts`, each with one `rng.choice` call (made even when it
  keeps the whole group, so later draws do not depend on group sizes).
  """
  keep = [np.flatnonzero(~np.isin(groups_N, list(counts)))]
  for g, k in counts.items():
    rows = np.flatnonzero(groups_N == g)
    keep.append(rng.choice(rows, size=min(k, len(rows)), replace=False))
  return np.sort(np.concatenate(keep))


def minority_count(num_negatives: int, prevalence: float) -> int:
  """Positives to keep so they make up `prevalence` of the pool: ceil(p * N_neg / (1 - p)).

  SPEC.md §7: agnews keeps ceil(0.01 * 90000 / 0.99) = 910 positives.
  """
  return math.ceil(prevalence * num_negatives / (1.0 - prevalence))


# ---------------------------------------------------------------------------------------------
# Stratified splits and samples.


def stratified_rows(labels: np.ndarray, size: int, rng: Rng) -> np.ndarray:
  """Sorted rows of a sample of about `size` keeping class proportions (>= 1 per class)."""
  classes, n_c = np.unique(labels, return_counts=True)
  counts = {c: max(1, round(size * n / len(labels))) for c, n in zip(classes, n_c, strict=True)}
  return keep_and_sample(labels, counts, rng)


def stratified_test_split(labels: np.ndarray, fraction: float, rng: Rng) -> np.ndarray:
  """Row mask of a test split holding round(fraction * n_c) rows of every class c."""
  classes, n_c = np.unique(labels, return_counts=True)
  counts = {c: round(fraction * n) for c, n in zip(classes, n_c, strict=True)}
  is_test = np.zeros(len(labels), bool)
  is_test[keep_and_sample(labels, counts, rng)] = True
  return is_test


# ---------------------------------------------------------------------------------------------
# The paper's cuts (SPEC.md §7), with a Generator.


def downsample_minority(split: Split, minority: int, prevalence: float, rng: Rng) -> Split:
  """Keep every non-`minority` row and a uniform sample of minority rows (paper's construction)."""
  n_neg = int((split.labels != minority).sum())
  return split.subset(keep_and_sample(split.labels, {minority: minority_count(n_neg, prevalence)},
                                      rng))


def downsample_minorities(split: Split, minority: Sequence[int], prevalence: float,
                          rng: Rng) -> Split:
  """Keep every non-minority row and ceil(p * N_rest / (1 - p)) rows of each minority class.

  N_rest counts rows of no minority class. With one minority class this is exactly
  `downsample_minority` (same draws from `rng`), the paper's construction.
  """
  n_rest = int((~np.isin(split.labels, minority)).sum())
  count = minority_count(n_rest, prevalence)
  return split.subset(keep_and_sample(split.labels, dict.fromkeys(minority, count), rng))


def downsample_majority(split: Split, minority: Sequence[int], size: int, rng: Rng) -> Split:
  """Keep every minority row and `size` of the others (all if fewer): the paper's test recipe."""
  return split.subset(keep_and_sample(np.isin(split.labels, minority), {False: size}, rng))


# ---------------------------------------------------------------------------------------------
# The paper's own draws: a fresh legacy RandomState(seed) per sample (official prepare_data.py).


def paper_sample(rows: np.ndarray, n: int, seed: int = PAPER_SEED) -> np.ndarray:
  """`n` of `rows` (all if fewer) as `df.loc[rows].sample(n, random_state=RandomState(seed))`."""
  rows = np.asarray(rows)
  picked = keep_and_sample(np.zeros(len(rows), np.int8), {0: n}, np.random.RandomState(seed))
  return np.sort(rows[picked])


def paper_pool(split: Split, prevalence: float, seed: int = PAPER_SEED) -> Split:
  """Keep every label-0 row and ceil(p * N_0 / (1 - p)) label-1 rows (--downsample_prop)."""
  count = minority_count(int((split.labels == 0).sum()), prevalence)
  return split.subset(keep_and_sample(split.labels, {1: count}, np.random.RandomState(seed)))


def paper_test(split: Split, majority: int, size: int, seed: int = PAPER_SEED) -> Split:
  """Keep every row not of class `majority` and `size` of its rows (--downsample_test_size)."""
  return split.subset(keep_and_sample(split.labels, {majority: size},
                                      np.random.RandomState(seed)))
