"""Cosine nearest-neighbour index over the pool's retrieval embeddings (usearch HNSW).

SPEC.md §4: the official code builds hnswlib (space cosine, M=64,
ef_construction=200) once over the train split and hides labelled ids from results. We use
usearch in the same role. `brute_force_knn` is the exact numpy reference the tests and the
benchmark compare against.

Keys are pool row numbers (positions in `task.train`, the loop's bookkeeping unit); any unique
int64 ids work. The files (usearch + sidecar, resumable partials) belong to `cache.py`.

Shape letters: N pool size, E embedding dim, Q queries, K neighbours per query.
Distances are cosine distances, 1 - cos(q, x), in [0, 2]; vectors need not be unit-norm.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from usearch.index import Index

from anchoral_jax import cache


def _as_rows(rows: np.ndarray | Iterable[int] | None) -> np.ndarray:
  """Unique int64 keys (empty for None)."""
  if rows is None:
    return np.zeros((0,), np.int64)
  return np.unique(np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows,
                              dtype=np.int64).ravel())


def _as_queries(queries_QxE: np.ndarray, ndim: int) -> np.ndarray:
  """Contiguous float32 [Q, E] with a clear error on a dimension mismatch."""
  q = np.asarray(queries_QxE, dtype=np.float32)
  if q.ndim == 1:
    q = q[None, :]
  if q.ndim != 2 or q.shape[1] != ndim:
    raise ValueError(
        f"Queries have shape {q.shape} but the index holds {ndim}-d vectors: embed the queries "
        "with the same retrieval model the index was built from (or rebuild with "
        "`anchoral index`).")
  return np.ascontiguousarray(q)


STORAGE = ("f16", "f32")  # measured (bench/RESULTS.md); i8 fails recall@50 >= 0.98 there


def _storage(index: Index) -> str:
  """"f16" / "f32" / ... of a usearch index (ScalarKind.F16 -> "f16")."""
  return str(index.dtype).rsplit(".", 1)[-1].lower()


class PoolIndex:
  """usearch HNSW over pool rows, cosine metric, float16 (default) or float32 vector storage.

  Build once per (dataset, retrieval model); every AL round only searches. Keys are pool row
  numbers (int64, stored by usearch as uint64 and converted back).

  Storage: the official hnswlib index stores float32. We store float16 by default: at 100k x
  768 it built 1.55x faster and searched 1.53x faster than float32 at the same recall@50
  (0.990 vs 0.990, bench/RESULTS.md "Index vector storage"); distances are computed from the
  rounded vectors, so they differ from exact ones by about 1e-4 (tests allow 1e-3).
  """

  def __init__(self, index: Index, *, connectivity: int, expansion_add: int,
               expansion_search: int, path: str | None = None, sha256: str | None = None):
    self._index = index
    self.connectivity = connectivity
    self.expansion_add = expansion_add
    self.ef_search = expansion_search
    self.path = path
    self._sha256 = sha256  # of the file at `path` (its sidecar's, recorded when saved)

  # ---------------------------------------------------------------- construction and storage
  @classmethod
  def build(cls, emb_NxE: np.ndarray, rows: np.ndarray, *, connectivity: int = 64,
            expansion_add: int = 200, expansion_search: int = 50, batch_size: int = 65536,
            threads: int = 0, progress: bool = True, partial_path: str | os.PathLike | None = None,
            save_every_s: float = 600.0, dtype: str = "f16",
            on_chunk: Callable[[int, int], None] | None = None) -> PoolIndex:
    """Index `emb_NxE` under the keys `rows`, streaming `batch_size` rows at a time.

    Defaults follow the official hnswlib index: M=64, ef_construction=200. Streaming keeps
    memory flat when `emb_NxE` is a memmap of a million-row pool. `dtype`: vector storage,
    "f16" (default) or "f32" (the official index's).

    There is no `seed`: usearch draws HNSW levels from an internal fixed-seed generator, so
    `threads=1` gives a bit-reproducible index; `threads=0` (all cores) is much faster but the
    insertion order, hence the graph, varies a little from build to build.

    Resumable: with `partial_path`, the index built so far is saved there (atomically, with a
    `.json` sidecar) every `save_every_s` seconds, and a later call with the same embeddings,
    rows and settings restores it and adds only the rows after it (a killed 1.2M-row build
    loses at most `save_every_s` of work). The caller deletes it once the finished index is
    saved (`cache.discard_partial_index`). `on_chunk(start, stop)` is called after each chunk.
    """
    if emb_NxE.ndim != 2 or emb_NxE.shape[0] == 0:
      raise ValueError(f"Expected a non-empty [N, E] embedding matrix, got shape {emb_NxE.shape}.")
    if dtype not in STORAGE:
      raise ValueError(f"Index storage {dtype!r} is not one of {STORAGE}.")
    rows = np.asarray(rows, dtype=np.int64).ravel()
    n, e = emb_NxE.shape
    if rows.shape != (n,):
      raise ValueError(f"{n} embeddings but {rows.shape[0]} rows: they must match one to one.")
    if len(np.unique(rows)) != n:
      raise ValueError("Pool rows must be unique to be used as index keys.")
    # What a partial must match to be resumed: settings, rows and (cheaply) the embeddings.
    # ("uids_sha1" is the sidecar's name for the keys' hash: kept, so old partials resume.)
    probe = np.ascontiguousarray(np.concatenate([emb_NxE[:256], emb_NxE[-256:]]), np.float32)
    settings = {"n": n, "ndim": e, "connectivity": int(connectivity),
                "expansion_add": int(expansion_add),
                "uids_sha1": hashlib.sha1(rows.tobytes()).hexdigest(),
                "emb_probe_sha1": hashlib.sha1(probe.tobytes()).hexdigest()}
    if dtype != "f32":  # partials from before the storage choice were f32 and still resume
      settings["dtype"] = dtype
    index, done = (cache.restore_partial_index(partial_path, settings) if partial_path
                   else (None, 0))
    if index is None:
      index = Index(ndim=e, metric="cos", dtype=dtype, connectivity=int(connectivity),
                    expansion_add=int(expansion_add), expansion_search=int(expansion_search))
    bar = None
    from anchoral_jax.parallel import show_bars

    if show_bars(progress):
      from tqdm.auto import tqdm
      bar = tqdm(total=n, initial=done, desc="index", unit="vec")
    last_save = time.monotonic()
    for start in range(done, n, batch_size):
      stop = min(n, start + batch_size)
      chunk = np.ascontiguousarray(emb_NxE[start:stop], dtype=np.float32)
      index.add(rows[start:stop].astype(np.uint64), chunk, threads=threads)
      if bar is not None:
        bar.update(stop - start)
      if partial_path and stop < n and time.monotonic() - last_save >= save_every_s:
        cache.save_partial_index(index, partial_path, settings, stop)
        last_save = time.monotonic()
      if on_chunk is not None:
        on_chunk(start, stop)
    if bar is not None:
      bar.close()
    return cls(index, connectivity=int(connectivity), expansion_add=int(expansion_add),
               expansion_search=int(expansion_search))

  def save(self, path: str | os.PathLike) -> None:
    """Write the usearch file at `path` and a `<path>.meta.json` sidecar with the settings."""
    cache.save_index(self._index, path, {
        "connectivity": self.connectivity, "expansion_add": self.expansion_add,
        "ef_search": self.ef_search, "ndim": self.ndim, "size": len(self), "metric": "cos",
        "dtype": self.dtype})
    self.path = str(Path(path))
    self._sha256 = None

  @classmethod
  def load(cls, path: str | os.PathLike, view: bool = False) -> PoolIndex:
    """Load an index saved by `save`; `view=True` memory-maps it (read-only, for big pools)."""
    index, meta = cache.load_index(path, view=view)
    connectivity = int(meta.get("connectivity", index.connectivity))
    expansion_add = int(meta.get("expansion_add", index.expansion_add))
    ef_search = int(meta.get("ef_search", index.expansion_search))
    index.expansion_search = ef_search
    return cls(index, connectivity=connectivity, expansion_add=expansion_add,
               expansion_search=ef_search, path=str(Path(path)), sha256=meta.get("sha256"))

  def sha256(self) -> str | None:
    """sha256 of the index file (which graph this is): the sidecar's, else read from the file;
    None for an index never saved."""
    if self._sha256 is None and self.path:
      meta = cache.index_meta(self.path)
      self._sha256 = meta.get("sha256") or cache.file_sha256(self.path)
    return self._sha256

  # ---------------------------------------------------------------- properties
  def __len__(self) -> int:
    return len(self._index)

  @property
  def ndim(self) -> int:
    return int(self._index.ndim)

  @property
  def dtype(self) -> str:
    """Vector storage, "f16" or "f32" (read from the index itself, so also of loaded files)."""
    return _storage(self._index)

  def contains(self, rows: np.ndarray) -> np.ndarray:
    """Boolean mask: which rows are keys of the index."""
    rows = np.asarray(rows, dtype=np.int64).ravel()
    if rows.size == 0:
      return np.zeros((0,), bool)
    return np.asarray(self._index.contains(rows.astype(np.uint64)), dtype=bool)

  def vectors(self, rows: np.ndarray) -> np.ndarray:
    """Stored embeddings [len(rows), E] as float32 (rounded to float16 under f16 storage)."""
    rows = np.asarray(rows, dtype=np.int64).ravel()
    if rows.size == 0:
      return np.zeros((0, self.ndim), np.float32)
    vecs = self._index.get(rows.astype(np.uint64), dtype="f32")
    missing = [int(u) for u, v in zip(rows, vecs, strict=True) if v is None]
    if missing:
      raise KeyError(f"rows not in the index: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return np.stack([v.reshape(-1) for v in vecs]).astype(np.float32, copy=False)

  # ---------------------------------------------------------------- search
  def search(self, queries_QxE: np.ndarray, k: int, exclude_rows: np.ndarray | None = None, *,
             ef_search: int | None = None, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """k nearest pool rows per query, never returning `exclude_rows` (e.g. the labelled set).

    Returns (rows_QxK int64 padded with -1, dist_QxK float32 cosine distance padded with inf),
    each row sorted by increasing distance. A row is short only when fewer than k
    non-excluded items exist in the pool.

    Exclusion is over-fetch-and-filter: the official code marks labelled ids deleted in
    hnswlib, which still walks through them but never returns them. usearch has no such filter
    in Python, so we ask for k + m results (m = min(#excluded in index, k) at first), drop
    excluded rows, and re-query only the queries still short with a doubled fetch, up to
    k + #excluded-in-index, which is enough by construction (at most that many can be
    removed). Rows whose neighbourhood is not dominated by labelled items (nearly all of them)
    finish in one pass.

    ef_search: HNSW beam width; None uses the index's setting (`self.ef_search`). usearch, like
    hnswlib, searches with max(ef, fetch count), so ef_search=k reproduces the official QUIRK
    (SPEC.md §4: its query-time ef ended up equal to k=50). `exact=True` scans
    the whole index (a test and small-pool aid).
    """
    if k < 1:
      raise ValueError(f"k must be >= 1, got {k}.")
    q_QxE = _as_queries(queries_QxE, self.ndim)
    num_q = q_QxE.shape[0]
    rows_QxK = np.full((num_q, k), -1, np.int64)
    dist_QxK = np.full((num_q, k), np.inf, np.float32)
    n = len(self)
    if num_q == 0 or n == 0:
      return rows_QxK, dist_QxK
    excl = _as_rows(exclude_rows)
    excl = excl[self.contains(excl)] if excl.size else excl
    num_excl = int(excl.size)
    fetch_cap = min(n, k + num_excl)  # fetching this many always leaves >= min(k, n - m) rows
    fetch = min(n, k + min(num_excl, k))
    previous_ef = self._index.expansion_search
    self._index.expansion_search = int(ef_search if ef_search is not None else self.ef_search)
    try:
      pending = np.arange(num_q)
      while pending.size:
        matches = self._index.search(q_QxE[pending], fetch, exact=exact)
        if hasattr(matches, "counts"):  # BatchMatches: padded [Q, fetch] arrays
          counts = np.asarray(matches.counts).reshape(-1)
        else:  # a single query gives Matches, holding only the valid results
          counts = np.array([len(matches.keys)])
        keys = np.asarray(matches.keys).reshape(pending.size, -1).astype(np.int64)
        dists = np.asarray(matches.distances).reshape(pending.size, -1)
        valid = np.arange(keys.shape[1])[None, :] < counts[:, None]
        if num_excl:
          valid &= ~np.isin(keys, excl)
        # Stable order keeps usearch's distance order among the surviving entries.
        order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
        got = np.take_along_axis(valid, order, axis=1)
        found = np.where(got, np.take_along_axis(keys, order, axis=1), -1)
        row_dist = np.where(got, np.take_along_axis(dists, order, axis=1), np.inf)
        width = found.shape[1]
        rows_QxK[pending, :width] = found
        dist_QxK[pending, :width] = row_dist.astype(np.float32)
        short = got.sum(axis=1) < min(k, n - num_excl)
        if fetch >= fetch_cap or not short.any():
          break
        pending = pending[short]
        fetch = min(fetch_cap, 2 * fetch)
    finally:
      self._index.expansion_search = previous_ef
    return rows_QxK, dist_QxK


def brute_force_knn(emb_NxE: np.ndarray, rows: np.ndarray, queries_QxE: np.ndarray, k: int,
                    exclude_rows: np.ndarray | None = None, *, chunk_rows: int = 1 << 25
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Exact cosine kNN in numpy: the reference for `PoolIndex.search` (same output contract).

  Ties are broken by position in `emb_NxE`. Queries are processed in chunks so that at most
  `chunk_rows` distances are alive at once.
  """
  emb = np.asarray(emb_NxE, dtype=np.float32)
  q = np.asarray(queries_QxE, dtype=np.float32)
  if q.ndim == 1:
    q = q[None, :]
  if emb.ndim != 2 or q.ndim != 2 or emb.shape[1] != q.shape[1]:
    raise ValueError(f"Dimension mismatch: pool {emb.shape}, queries {q.shape}.")
  rows = np.asarray(rows, dtype=np.int64).ravel()
  n = emb.shape[0]
  emb_n = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
  q_n = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
  allowed_N = ~np.isin(rows, _as_rows(exclude_rows))
  num_q = q.shape[0]
  rows_QxK = np.full((num_q, k), -1, np.int64)
  dist_QxK = np.full((num_q, k), np.inf, np.float32)
  kk = min(k, int(allowed_N.sum()))
  if kk == 0:
    return rows_QxK, dist_QxK
  step = max(1, chunk_rows // max(n, 1))
  for s in range(0, num_q, step):
    d_BxN = 1.0 - q_n[s:s + step] @ emb_n.T
    d_BxN[:, ~allowed_N] = np.inf
    order_BxN = np.argsort(d_BxN, axis=1, kind="stable")[:, :kk]
    rows_QxK[s:s + step, :kk] = rows[order_BxN]
    dist_QxK[s:s + step, :kk] = np.take_along_axis(d_BxN, order_BxN, axis=1)
  return rows_QxK, dist_QxK
