"""usearch vector storage f32 / f16 / i8 at the official HNSW settings (cosine, M=64,
ef_construction=200, all threads): build s, search q/s at ef = k, recall@50 vs exact search, on
bench_index.py's clustered 768-d synthetic data. Prints only (rows copied to RESULTS.md by hand).

  .venv/bin/python bench/bench_index_dtype.py 100000 f32,f16,i8
"""
import os
import sys
import time

import numpy as np
from bench_index import make_data  # bench/ is sys.path[0] when run as a script
from usearch.index import Index

from anchoral_jax.retrieval.index import brute_force_knn

n, dim, k = int(sys.argv[1]), 768, 50
rng = np.random.default_rng(0)
data = make_data(n + 2000, dim, "clustered", rng)
emb, q = data[:n], data[n:]
rows = np.arange(n, dtype=np.int64)
exact, _ = brute_force_knn(emb, rows, q[:200], k)
for dt in sys.argv[2].split(","):
  t0 = time.perf_counter()
  ix = Index(ndim=dim, metric="cos", dtype=dt, connectivity=64, expansion_add=200,
             expansion_search=k)
  for s in range(0, n, 10000):
    ix.add(rows[s:s+10000].astype(np.uint64), emb[s:s+10000], threads=0)
  b = time.perf_counter() - t0
  t0 = time.perf_counter()
  m = ix.search(q, k, threads=0)
  qs = len(q) / (time.perf_counter() - t0)
  found = np.asarray(m.keys[:200]).astype(np.int64)
  rec = np.mean([len(set(found[i]) & set(exact[i])) / k for i in range(200)])
  print(f"n={n} dtype={dt} build {b:.1f} s  search {qs:.0f} q/s  recall@50 {rec:.4f}  "
        f"load {os.getloadavg()[0]:.2f}", flush=True)
