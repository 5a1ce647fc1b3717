"""Pool filters: AnchorAL scoring by brute force, exclusion, anchors per class, SEALS, subsets."""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from anchoral_jax.al import filters as F
from anchoral_jax.retrieval.index import PoolIndex, brute_force_knn


class ExactIndex:
  """A brute-force stand-in for PoolIndex: isolates the scoring logic from HNSW recall."""

  def __init__(self, emb_NxE: np.ndarray, uids: np.ndarray):
    self.emb, self.uids = emb_NxE, uids

  def search(self, queries_QxE, k, exclude_uids=None):
    return brute_force_knn(self.emb, self.uids, queries_QxE, k, exclude_uids)


@pytest.fixture(scope="module")
def small_pool():
  rng = np.random.default_rng(0)
  emb = rng.standard_normal((400, 16)).astype(np.float32)
  uids = np.arange(1000, 1400, dtype=np.int64)
  return emb, uids


def test_anchoral_score_is_mean_over_retrieving_anchors(small_pool):
  emb, uids = small_pool
  labelled = uids[:30]
  anchors = emb[:6]
  sub, scores, stats = F.anchoral_subpool(ExactIndex(emb, uids), anchors, 20, labelled, 10_000)
  # Reference: loop over anchors, group distances by uid, mean over those anchors only.
  unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  seen = defaultdict(list)
  for a in range(6):
    d = 1.0 - unit[a] @ unit.T
    d[:30] = np.inf
    for j in np.argsort(d, kind="stable")[:20]:
      seen[int(uids[j])].append(d[j])
  want = {u: 1.0 - np.mean(ds) for u, ds in seen.items()}
  assert stats == {"num_anchors": 6, "num_retrieved": 120, "num_unique": len(want)}
  assert set(sub.tolist()) == set(want)
  np.testing.assert_allclose(scores, [want[int(u)] for u in sub], atol=1e-6)
  assert np.all(np.diff(scores) <= 0)
  assert any(len(v) > 1 for v in seen.values())  # the test exercises shared neighbours


def test_anchoral_subpool_cap_and_softmax(small_pool):
  emb, uids = small_pool
  index = ExactIndex(emb, uids)
  full, full_scores, _ = F.anchoral_subpool(index, emb[:6], 20, uids[:30], 10_000)
  top, _, _ = F.anchoral_subpool(index, emb[:6], 20, uids[:30], 7)
  np.testing.assert_array_equal(top, full[:7])
  drawn, drawn_scores, _ = F.anchoral_subpool(index, emb[:6], 20, uids[:30], 7,
                                              rng=np.random.default_rng(0), sampling="softmax")
  assert len(set(drawn.tolist())) == 7 and set(drawn.tolist()) <= set(full.tolist())
  assert np.all(np.diff(drawn_scores) <= 0)
  with pytest.raises(ValueError, match="needs an rng"):
    F.anchoral_subpool(index, emb[:6], 20, uids[:30], 7, sampling="softmax")
  with pytest.raises(ValueError, match="topk, softmax"):
    F.anchoral_subpool(index, emb[:6], 20, uids[:30], 7, sampling="gumbel")
  empty = F.anchoral_subpool(index, np.zeros((0, 16)), 20, uids[:30], 7)
  assert empty[0].size == 0 and empty[2]["num_anchors"] == 0


def test_labelled_ids_never_in_subpool_with_real_index(small_pool):
  emb, uids = small_pool
  index = PoolIndex.build(emb, uids, connectivity=16, progress=False)
  labelled = uids[::3]
  sub, _, stats = F.anchoral_subpool(index, emb[::3][:10], 50, labelled, 10_000)
  assert stats["num_retrieved"] == 500 and stats["num_unique"] == sub.size
  assert not np.isin(sub, labelled).any()


def test_anchors_per_class_absent_classes_and_sorted_order(small_pool):
  emb, uids = small_pool
  lookup = dict(zip(uids.tolist(), emb, strict=True))
  emb_lookup = lambda u: np.stack([lookup[int(i)] for i in u])  # noqa: E731
  labelled = uids[:40]
  labels = np.where(np.arange(40) < 5, 2, 0)  # classes 0 and 2 present, 1 absent
  rng = np.random.default_rng(42)
  a_uids, a_cls = F.anchors_per_class(labelled, labels, emb_lookup, 10,
                                      lambda c: "kmeans_pp", rng)
  assert a_cls.tolist() == [0] * 10 + [2] * 5
  assert set(a_uids[10:].tolist()) == set(labelled[:5].tolist())  # |L_2| <= 10: take all
  assert set(a_uids[:10].tolist()) <= set(labelled[5:].tolist()) and len(set(a_uids)) == 15
  # One persistent rng: a second round draws different anchors from the same class.
  again, _ = F.anchors_per_class(labelled, labels, emb_lookup, 10, lambda c: "kmeans_pp", rng)
  assert set(again[:10].tolist()) != set(a_uids[:10].tolist())
  empty = F.anchors_per_class(np.zeros(0, np.int64), np.zeros(0), emb_lookup, 10,
                              lambda c: "random", rng)
  assert empty[0].size == 0 and empty[1].size == 0


def test_anchors_per_class_strategies_per_class(small_pool):
  emb, uids = small_pool
  labelled, labels = uids[:60], np.arange(60) % 2
  scores = np.linspace(0, 1, 60)
  calls = []

  def emb_lookup(u):
    calls.append(len(u))
    return emb[u - 1000]

  strategy = {0: "entropy", 1: "kmeans"}
  a_uids, a_cls = F.anchors_per_class(labelled, labels, emb_lookup, 5, strategy.__getitem__,
                                      np.random.default_rng(0), scores=scores)
  np.testing.assert_array_equal(a_uids[:5], labelled[[58, 56, 54, 52, 50]])  # top entropy
  assert a_cls.tolist() == [0] * 5 + [1] * 5 and len(set(a_uids[5:])) == 5
  assert calls == [30]  # embeddings fetched only for the clustering strategy
  with pytest.raises(ValueError, match="needs `scores`"):
    F.anchors_per_class(labelled, labels, emb_lookup, 5, strategy.__getitem__,
                        np.random.default_rng(0))
  with pytest.raises(ValueError, match="known: kmeans_pp, random, kmeans, entropy"):
    F.select_anchors(emb[:20], 5, "coreset", np.random.default_rng(0))


def test_select_anchors_each_strategy_distinct(small_pool):
  emb, _ = small_pool
  rng = np.random.default_rng(1)
  for strategy in ("kmeans_pp", "random", "kmeans", "entropy"):
    picks = F.select_anchors(emb[:50], 10, strategy, rng, scores_L=np.arange(50.0))
    assert len(set(picks.tolist())) == 10 and picks.max() < 50
  np.testing.assert_array_equal(F.select_anchors(emb[:4], 10, "kmeans", rng), np.arange(4))


def test_seals_growth_exclusion_and_serialisation(small_pool):
  emb, uids = small_pool
  index = ExactIndex(emb, uids)
  emb_lookup = lambda u: emb[np.asarray(u) - 1000]  # noqa: E731
  state = F.SealsState()
  labelled = uids[:10].copy()
  sub0, st0 = F.seals_subpool(index, state, labelled, emb_lookup, 15)
  assert st0["num_queries"] == 10 and st0["num_retrieved"] == 150
  assert not np.isin(sub0, labelled).any() and st0["num_unique"] == sub0.size
  new = sub0[:5]  # the base strategy labels five of S
  labelled = np.concatenate([labelled, new])
  state.mark_labelled(new)
  restored = F.SealsState.from_dict(json.loads(json.dumps(state.to_dict())))
  assert restored == state
  sub1, st1 = F.seals_subpool(index, restored, labelled, emb_lookup, 15)
  assert st1["num_queries"] == 5  # later rounds search only last round's labels
  assert set(sub0.tolist()) - set(new.tolist()) <= set(sub1.tolist())  # grows, no cap
  assert sub1.size >= sub0.size - 5 and not np.isin(sub1, labelled).any()


def test_random_subset():
  pool = np.arange(100, 200)
  rng = np.random.default_rng(0)
  s = F.random_subset(pool, 30, rng)
  assert s.size == 30 and len(set(s.tolist())) == 30 and np.isin(s, pool).all()
  assert np.all(np.diff(s) > 0)
  assert not np.array_equal(s, F.random_subset(pool, 30, rng))  # fresh draw each round
  np.testing.assert_array_equal(F.random_subset(pool, 500, rng), pool)
