"""PoolIndex (usearch) against the exact numpy reference: recall, exclusion, persistence, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anchoral_jax.retrieval.index import PoolIndex, brute_force_knn

N, E, Q, K = 20_000, 64, 100, 50


def _unit(x: np.ndarray) -> np.ndarray:
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# Distances and stored vectors vs exact float32 ones, per storage: f16 rounds each component
# (relative 2**-11), which moves a cosine distance by ~1e-4 here.
ATOL = {"f16": 1e-3, "f32": 1e-5}


@pytest.fixture(scope="module", params=["f16", "f32"])
def pool(request):
  rng = np.random.default_rng(0)
  emb_NxE = _unit(rng.standard_normal((N, E)))
  uids = rng.permutation(10 * N)[:N].astype(np.int64) + 1_000_000  # sparse, non-contiguous
  queries_QxE = _unit(rng.standard_normal((Q, E)))
  index = PoolIndex.build(emb_NxE, uids, progress=False, dtype=request.param)
  assert index.dtype == request.param
  return emb_NxE, uids, queries_QxE, index


def _recall(found_QxK: np.ndarray, truth_QxK: np.ndarray) -> float:
  hits = [len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum())
          for f, t in zip(found_QxK, truth_QxK, strict=True)]
  return float(np.mean(hits))


def test_recall_at_50_vs_brute_force(pool):
  """The AnchorAL case: queries are labelled pool items (anchors), excluded from results."""
  emb, uids, _, index = pool
  rows = np.random.default_rng(5).choice(N, Q, replace=False)
  queries, labelled = emb[rows], uids[rows]
  found, dist = index.search(queries, K, exclude_rows=labelled)
  truth, truth_dist = brute_force_knn(emb, uids, queries, K, exclude_rows=labelled)
  assert found.shape == (Q, K) and found.dtype == np.int64 and dist.dtype == np.float32
  assert _recall(found, truth) >= 0.95
  assert np.all(np.diff(dist, axis=1) >= -1e-6)  # sorted by distance
  # Distances are cosine distances: compare to the exact ones for the ids found.
  lookup = dict(zip(uids.tolist(), range(N), strict=True))
  rows = np.vectorize(lookup.__getitem__)(found[:5])
  exact = 1.0 - np.einsum("qe,qke->qk", queries[:5], emb[rows])
  np.testing.assert_allclose(dist[:5], exact, atol=ATOL[index.dtype])
  assert np.all(truth_dist[:, 0] <= dist[:, 0] + (1e-6 if index.dtype == "f32" else ATOL["f16"]))


def test_recall_out_of_pool_queries_with_wider_beam(pool):
  """Isotropic random queries are HNSW's hardest case: ef=k=50 gives ~0.88 here, ef=200 ~1."""
  emb, uids, queries, index = pool
  truth, _ = brute_force_knn(emb, uids, queries, K)
  assert _recall(index.search(queries, K, ef_search=200)[0], truth) >= 0.95


def test_exclusion_never_returns_excluded_and_still_fills_k(pool):
  emb, uids, queries, index = pool
  rng = np.random.default_rng(1)
  truth, _ = brute_force_knn(emb, uids, queries, 300)
  # Exclude each query's 200 true nearest neighbours (forces the fetch to grow) + random ids.
  excluded = np.union1d(truth[:, :200].ravel(), rng.choice(uids, 2000, replace=False))
  found, dist = index.search(queries, K, exclude_rows=excluded)
  assert not np.isin(found, excluded).any()
  assert (found >= 0).all() and np.isfinite(dist).all()
  assert all(len(set(r)) == K for r in found)
  ref, _ = brute_force_knn(emb, uids, queries, K, exclude_rows=excluded)
  assert _recall(found, ref) >= 0.9


def test_exclusion_accepts_lists_and_unknown_ids(pool):
  _, uids, queries, index = pool
  found, _ = index.search(queries[:3], 5, exclude_rows=[int(uids[0]), -7, 123])
  assert (found >= 0).all() and int(uids[0]) not in found


@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_exhausted_pool_pads_with_minus_one_and_inf(dtype):
  rng = np.random.default_rng(2)
  emb = rng.standard_normal((30, 8)).astype(np.float32) * 5.0  # non-unit is fine (cosine)
  uids = np.arange(100, 130, dtype=np.int64)
  index = PoolIndex.build(emb, uids, progress=False, dtype=dtype)
  excluded = uids[:25]
  found, dist = index.search(emb[:4], 10, exclude_rows=excluded)
  assert (found[:, :5] >= 0).all() and (found[:, 5:] == -1).all()
  assert np.isinf(dist[:, 5:]).all() and np.isfinite(dist[:, :5]).all()
  assert set(found[0, :5]) == set(uids[25:].tolist())
  ref, ref_dist = brute_force_knn(emb, uids, emb[:4], 10, exclude_rows=excluded)
  np.testing.assert_array_equal(np.sort(found, axis=1), np.sort(ref, axis=1))
  np.testing.assert_allclose(np.sort(dist[:, :5], axis=1), np.sort(ref_dist[:, :5], axis=1),
                             atol=ATOL[index.dtype])


def test_non_unit_vectors_same_neighbours_as_unit(pool):
  emb, uids, queries, pooled = pool
  small, small_uids = emb[:2000], uids[:2000]
  scaled = small * np.random.default_rng(3).uniform(0.1, 10.0, size=(2000, 1)).astype(np.float32)
  index = PoolIndex.build(scaled, small_uids, progress=False, dtype=pooled.dtype)
  found, _ = index.search(queries[:20] * 7.0, 10, exact=True)
  ref, ref_dist = brute_force_knn(small, small_uids, queries[:20], 10)
  if index.dtype == "f32":
    np.testing.assert_array_equal(found, ref)
  else:  # rounding may swap near-ties: the j-th found is as near as the j-th true neighbour
    pos = {u: i for i, u in enumerate(small_uids.tolist())}
    got = 1.0 - np.einsum("qe,qke->qk", queries[:20], small[np.vectorize(pos.get)(found)])
    np.testing.assert_allclose(got, ref_dist, atol=ATOL["f16"])
    assert np.mean(found == ref) > 0.9


def test_save_load_and_view_round_trip(pool, tmp_path):
  _, uids, queries, index = pool
  path = tmp_path / "sub" / "pool.usearch"
  index.save(path)
  excluded = uids[:500]
  want = index.search(queries, K, exclude_rows=excluded)
  assert json.loads((tmp_path / "sub" / "pool.usearch.meta.json").read_text())["dtype"] == (
      index.dtype)
  for view in (False, True):
    loaded = PoolIndex.load(path, view=view)
    assert len(loaded) == N and loaded.ndim == E and loaded.dtype == index.dtype
    assert (loaded.connectivity, loaded.expansion_add, loaded.ef_search) == (64, 200, 50)
    got = loaded.search(queries, K, exclude_rows=excluded)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_ef_search_is_per_call_and_restored(pool):
  emb, uids, queries, index = pool
  truth, _ = brute_force_knn(emb, uids, queries, 10)
  low, _ = index.search(queries, 10, ef_search=10)  # the official QUIRK: ef == k
  high, _ = index.search(queries, 10, ef_search=400)
  assert index.ef_search == 50 and index._index.expansion_search == 50
  assert _recall(high, truth) >= _recall(low, truth) - 0.01
  assert _recall(high, truth) >= 0.99


def test_vectors_lookup(pool):
  emb, uids, _, index = pool
  np.testing.assert_allclose(index.vectors(uids[[5, 0, 7]]), emb[[5, 0, 7]],
                             atol=0.0 if index.dtype == "f32" else ATOL["f16"])
  assert index.contains(np.array([uids[0], -1])).tolist() == [True, False]
  with pytest.raises(KeyError, match="not in the index"):
    index.vectors(np.array([-1]))


def test_errors(pool, tmp_path):
  _, uids, queries, index = pool
  with pytest.raises(ValueError, match="64-d"):
    index.search(queries[:, :32], 5)
  with pytest.raises(FileNotFoundError, match="anchoral index"):
    PoolIndex.load(tmp_path / "missing.usearch")
  with pytest.raises(ValueError, match="unique"):
    PoolIndex.build(np.zeros((3, 4), np.float32) + 1, np.array([1, 1, 2]), progress=False)
  with pytest.raises(ValueError, match="match"):
    PoolIndex.build(np.ones((3, 4), np.float32), np.array([1, 2]), progress=False)
  with pytest.raises(ValueError, match="k must be"):
    index.search(queries, 0)
  with pytest.raises(ValueError, match="'i8' is not one of"):
    PoolIndex.build(np.ones((3, 4), np.float32), np.arange(3), progress=False, dtype="i8")
  with pytest.raises(ValueError, match="Dimension mismatch"):
    brute_force_knn(np.ones((3, 4)), np.arange(3), np.ones((1, 5)), 1)


def test_single_threaded_build_is_reproducible():
  rng = np.random.default_rng(4)
  emb = rng.standard_normal((1500, 16)).astype(np.float32)
  a = PoolIndex.build(emb, np.arange(1500), connectivity=16, threads=1, progress=False)
  b = PoolIndex.build(emb, np.arange(1500), connectivity=16, threads=1, progress=False)
  np.testing.assert_array_equal(a.search(emb[:50], 10)[0], b.search(emb[:50], 10)[0])


def test_single_query_search_matches_batch():
  """usearch returns `Matches` (not `BatchMatches`) for one query: same results either way."""
  rng = np.random.default_rng(3)
  emb = rng.normal(size=(500, 16)).astype(np.float32)
  idx = PoolIndex.build(emb, np.arange(500), progress=False)
  one_u, one_d = idx.search(emb[:1], 10, exclude_rows=np.array([0, 5]))
  two_u, two_d = idx.search(emb[:2], 10, exclude_rows=np.array([0, 5]))
  np.testing.assert_array_equal(one_u[0], two_u[0])
  assert 0 not in one_u and one_u.shape == (1, 10)


class _Killed(Exception):
  pass


def _kill_after(n_chunks: int, starts: list[int]):
  def on_chunk(start: int, stop: int) -> None:
    starts.append(start)
    if len(starts) == n_chunks:
      raise _Killed

  return on_chunk


def test_killed_build_resumes_from_partial(tmp_path, caplog):
  """A build killed after 3 chunks restarts at the saved row, not at 0, and is complete."""
  from anchoral_jax.cache import discard_partial_index

  rng = np.random.default_rng(6)
  emb = _unit(rng.standard_normal((2_000, 32)))
  uids = np.arange(2_000, dtype=np.int64) + 7
  partial = tmp_path / "pool.usearch.partial"
  kw = dict(connectivity=16, batch_size=300, progress=False, partial_path=partial,
            save_every_s=0.0)
  first: list[int] = []
  with pytest.raises(_Killed):
    PoolIndex.build(emb, uids, on_chunk=_kill_after(3, first), **kw)
  assert first == [0, 300, 600] and partial.is_file()  # saved after chunks 1 and 2, 3, ...
  resumed: list[int] = []
  with caplog.at_level("INFO", logger="anchoral_jax.cache"):
    idx = PoolIndex.build(emb, uids, on_chunk=lambda a, b: resumed.append(a), **kw)
  assert resumed[0] == 900 and resumed[-1] == 1800  # only the rows after the partial
  assert "Resuming the index build at row 900" in caplog.text
  assert idx._index.expansion_add == 200  # the build setting, not usearch's restore default
  assert len(idx) == 2_000 and set(idx.search(emb, 1)[0][:, 0].tolist()) <= set(uids.tolist())
  found, _ = idx.search(emb[:50], 20)
  truth, _ = brute_force_knn(emb, uids, emb[:50], 20)
  assert _recall(found, truth) >= 0.95
  # Other settings (or other embeddings): the partial is not used.
  other: list[int] = []
  PoolIndex.build(emb, uids, on_chunk=lambda a, b: other.append(a),
                  **{**kw, "connectivity": 8})
  assert other[0] == 0
  with pytest.raises(_Killed):
    PoolIndex.build(emb, uids, on_chunk=_kill_after(2, []), **kw)
  stored: list[int] = []  # an f16 partial does not resume an f32 build
  PoolIndex.build(emb, uids, on_chunk=lambda a, b: stored.append(a), **{**kw, "dtype": "f32"})
  assert stored[0] == 0
  with pytest.raises(_Killed):
    PoolIndex.build(emb, uids, on_chunk=_kill_after(2, []), **kw)
  moved: list[int] = []  # same uids and settings, other vectors: not resumed either
  PoolIndex.build(emb[::-1].copy(), uids, on_chunk=lambda a, b: moved.append(a), **kw)
  assert moved[0] == 0
  # An unreadable partial (sidecar intact): warned about and rebuilt from the start.
  with pytest.raises(_Killed):
    PoolIndex.build(emb, uids, on_chunk=_kill_after(2, []), **kw)
  partial.write_bytes(b"not an index")
  again: list[int] = []
  with caplog.at_level("WARNING", logger="anchoral_jax.cache"):
    PoolIndex.build(emb, uids, on_chunk=lambda a, b: again.append(a), **kw)
  assert again[0] == 0 and "unreadable partial index" in caplog.text
  discard_partial_index(partial)
  assert not partial.exists() and not (tmp_path / "pool.usearch.partial.json").exists()


def test_cache_file_name_keys_the_graph_settings(tmp_path):
  """M always; ef_construction and storage when not the defaults the older files were built
  with (200, f32), so those keep their names. Two settings never share a file."""
  from anchoral_jax import cache
  from anchoral_jax import config as common

  c = common.base()
  c.data.cache_dir = str(tmp_path)
  task = type("T", (), {"fingerprint": lambda self: "abc"})()
  names = {}
  for ef, dtype in ((200, "f32"), (200, "f16"), (400, "f32"), (400, "f16")):
    c.index.expansion_add, c.index.dtype = ef, dtype
    names[ef, dtype] = cache.index_path(c, task).name
  assert len(set(names.values())) == 4
  assert names[200, "f32"].endswith("-M64.usearch")
  assert names[200, "f16"].endswith("-M64-f16.usearch")
  assert names[400, "f16"].endswith("-M64-ef400-f16.usearch")
