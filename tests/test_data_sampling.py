"""data/sampling.py: the one draw behind every down-sample and stratified split.

The references are the per-site loops the recipes replaced (task.py, user.py, tweets.py, bbc.py,
paper.py before the move): the same seed must keep picking the same rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from anchoral_jax.data import sampling
from anchoral_jax.data.task import Split


def _labels(n: int, classes: int, seed: int) -> np.ndarray:
  labels = np.random.default_rng(seed).integers(0, classes, n).astype(np.int32)
  labels[:classes] = np.arange(classes)  # every class present
  return labels


def _split(labels: np.ndarray) -> Split:
  n = len(labels)
  return Split(tuple(f"t{i}" for i in range(n)), labels, 1000 + 3 * np.arange(n, dtype=np.int64))


CASES = [(n, c, seed) for n, c in ((40, 2), (300, 3), (997, 5)) for seed in range(4)]


@pytest.mark.parametrize("n,classes,seed", CASES)
def test_keep_and_sample_keeps_other_groups_whole(n, classes, seed):
  labels = _labels(n, classes, seed)
  counts = {1: 7, 0: 10**6}  # a small draw, and one that takes the whole group
  rows = sampling.keep_and_sample(labels, counts, np.random.default_rng(seed))
  assert np.all(np.diff(rows) > 0)  # sorted, no repeats
  for c in range(classes):
    got = int((labels[rows] == c).sum())
    want = min(counts[c], int((labels == c).sum())) if c in counts else int((labels == c).sum())
    assert got == want


@pytest.mark.parametrize("n,classes,seed", CASES)
def test_recipes_pick_the_rows_of_the_former_loops(n, classes, seed):
  labels = _labels(n, classes, seed)
  split = _split(labels)

  # task.downsample_minority (former): every non-minority row + a draw of the minority.
  rng = np.random.default_rng(seed)
  neg, pos = np.flatnonzero(labels != 1), np.flatnonzero(labels == 1)
  k = min(len(pos), sampling.minority_count(len(neg), 0.05))
  want = np.sort(np.concatenate([neg, rng.choice(pos, size=k, replace=False)]))
  got = sampling.downsample_minority(split, 1, 0.05, np.random.default_rng(seed))
  np.testing.assert_array_equal(got.uid, split.uid[want])

  # task.stratified_rows (former), then a draw from the same rng: the state must match too.
  for size in (5, n // 3, 3 * n):
    rng, ref = np.random.default_rng(seed), np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
      idx = np.flatnonzero(labels == c)
      keep.append(ref.choice(idx, size=min(max(1, round(size * len(idx) / n)), len(idx)),
                             replace=False))
    np.testing.assert_array_equal(sampling.stratified_rows(labels, size, rng),
                                  np.sort(np.concatenate(keep)))
    assert rng.integers(1 << 30) == ref.integers(1 << 30)

  # tweets.py / user.stratified_test_split (former): round(f * n_c) rows of each class.
  rng = np.random.default_rng(seed)
  is_test = np.zeros(n, bool)
  for c in range(classes):
    idx = np.flatnonzero(labels == c)
    is_test[rng.choice(idx, size=round(0.2 * len(idx)), replace=False)] = True
  np.testing.assert_array_equal(
      sampling.stratified_test_split(labels, 0.2, np.random.default_rng(seed)), is_test)

  # bbc.py multi-minority cut and user.downsample_majority (former), one rng in sequence.
  minority = tuple(range(1, classes))
  rng = np.random.default_rng(seed)
  is_min = np.isin(labels, minority)
  keep = [np.flatnonzero(~is_min)]
  for c in minority:
    rows = np.flatnonzero(labels == c)
    keep.append(rng.choice(rows, size=min(4, len(rows)), replace=False))
  pool_want = np.sort(np.concatenate(keep))
  rest = np.flatnonzero(~is_min)
  test_want = np.sort(np.concatenate([np.flatnonzero(is_min),
                                      rng.choice(rest, size=min(6, len(rest)), replace=False)]))
  rng = np.random.default_rng(seed)
  pool = sampling.keep_and_sample(labels, dict.fromkeys(minority, 4), rng)
  test = sampling.downsample_majority(split, minority, 6, rng)
  np.testing.assert_array_equal(pool, pool_want)
  np.testing.assert_array_equal(test.uid, split.uid[test_want])


@pytest.mark.parametrize("seed", [0, 42, 7])
def test_paper_draws_use_a_fresh_legacy_random_state(seed):
  labels = (_labels(500, 4, seed) == 1).astype(np.int32)
  split = _split(labels)
  neg, pos = np.flatnonzero(labels != 1), np.flatnonzero(labels == 1)
  k = sampling.minority_count(int((labels == 0).sum()), 0.05)
  want = np.sort(np.concatenate([neg, pos[np.random.RandomState(seed).choice(len(pos), k,
                                                                              replace=False)]]))
  np.testing.assert_array_equal(sampling.paper_pool(split, 0.05, seed).uid, split.uid[want])
  rows = np.flatnonzero(labels == 0)
  np.testing.assert_array_equal(sampling.paper_sample(rows, len(rows) + 1, seed), rows)
