"""Retrieval index benchmark: usearch (ours) vs hnswlib (the official code's), same settings.

  .venv/bin/python bench/bench_index.py --n 100000 --dim 768 --k 50

Builds both indexes with the official parameters (cosine, M=64, ef_construction=200) on
synthetic embeddings, then measures batched search throughput and recall@k against exact
numpy search, with query-time ef = k as the official code ended up using (SPEC.md §4).
hnswlib is optional (`pip install -e .[bench]`): it is skipped if it does not
import. Appends one row per library to bench/RESULTS.md under "## Index: usearch vs hnswlib".

Data: "clustered" (default) draws unit vectors around 200 random centres, closer to sentence
embeddings than isotropic noise; "isotropic" is the HNSW worst case. Queries are held-out
draws from the same distribution, never indexed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import time

import harness  # bench/harness.py: bench/ is sys.path[0] when run as a script
import numpy as np
import usearch

from anchoral_jax.retrieval.index import PoolIndex, brute_force_knn

RESULTS = harness.RESULTS
HEADING = "## Index: usearch vs hnswlib"
COLUMNS = ("date", "machine", "versions", "n", "dim", "k", "data", "library", "build_s",
           "queries_per_s", "recall_at_k")


def make_data(n: int, dim: int, kind: str, rng: np.random.Generator) -> np.ndarray:
  """Unit-norm float32 [n, dim] synthetic embeddings."""
  if kind == "isotropic":
    x = rng.standard_normal((n, dim), dtype=np.float32)
  else:
    centres = rng.standard_normal((200, dim), dtype=np.float32)
    x = centres[rng.integers(0, 200, n)]
    x += 0.6 * rng.standard_normal((n, dim), dtype=np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  return x


def bench_usearch(emb, uids, queries, k):
  t0 = time.perf_counter()
  index = PoolIndex.build(emb, uids, connectivity=64, expansion_add=200, expansion_search=k,
                          progress=False)
  build_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  found, _ = index.search(queries, k, ef_search=k)
  return build_s, len(queries) / (time.perf_counter() - t0), found


def bench_hnswlib(hnswlib, emb, uids, queries, k):
  t0 = time.perf_counter()
  index = hnswlib.Index(space="cosine", dim=emb.shape[1])
  index.init_index(max_elements=emb.shape[0], M=64, ef_construction=200, random_seed=42)
  index.add_items(emb, uids)
  build_s = time.perf_counter() - t0
  index.set_ef(k)
  t0 = time.perf_counter()
  found, _ = index.knn_query(queries, k=k)
  return build_s, len(queries) / (time.perf_counter() - t0), found.astype(np.int64)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=100_000, help="indexed vectors")
  p.add_argument("--dim", type=int, default=768, help="embedding dim (768: all-mpnet-base-v2)")
  p.add_argument("--k", type=int, default=50, help="neighbours per query (paper: 50)")
  p.add_argument("--queries", type=int, default=2000, help="queries for the throughput timing")
  p.add_argument("--recall-queries", type=int, default=200, help="queries scored vs brute force")
  p.add_argument("--data", choices=("clustered", "isotropic"), default="clustered")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no-record", action="store_true", help="print only, do not touch RESULTS.md")
  args = p.parse_args()

  rng = np.random.default_rng(args.seed)
  data = make_data(args.n + args.queries, args.dim, args.data, rng)
  emb, queries = data[:args.n], data[args.n:]
  uids = np.arange(args.n, dtype=np.int64)
  scored = queries[:args.recall_queries]
  t0 = time.perf_counter()
  truth, _ = brute_force_knn(emb, uids, scored, args.k)
  print(f"brute force: {len(scored)} queries in {time.perf_counter() - t0:.1f}s")

  results = {}
  build_s, qps, found = bench_usearch(emb, uids, queries, args.k)
  results["usearch"] = (build_s, qps, harness.recall(found[:len(scored)], truth))
  versions = f"usearch {usearch.__version__}, numpy {np.__version__}"
  try:
    import hnswlib
  except ImportError:
    print("hnswlib not installed: usearch only")
  else:
    build_s, qps, found = bench_hnswlib(hnswlib, emb, uids, queries, args.k)
    results["hnswlib"] = (build_s, qps, harness.recall(found[:len(scored)], truth))
    versions += f", hnswlib {importlib.metadata.version('hnswlib')}"

  date = subprocess.run(["date", "+%Y-%m-%d %H:%M"], capture_output=True, text=True).stdout.strip()
  machine = f"{platform.machine()}, {os.cpu_count()} cpus"
  rows = []
  print(f"n={args.n} dim={args.dim} k={args.k} data={args.data} ef=k; {machine}; {versions}")
  for lib, (build_s, qps, rec) in results.items():
    print(f"{lib:8s} build {build_s:8.1f}s  search {qps:10.0f} q/s  recall@{args.k} {rec:.4f}")
    rows.append({"date": date, "machine": machine, "versions": versions, "n": str(args.n),
                 "dim": str(args.dim), "k": str(args.k), "data": args.data, "library": lib,
                 "build_s": f"{build_s:.1f}", "queries_per_s": f"{qps:.0f}",
                 "recall_at_k": f"{rec:.4f}"})
  if not args.no_record:
    harness.append_rows(HEADING.removeprefix("## "), COLUMNS, rows)
    print(f"appended to {RESULTS}")


if __name__ == "__main__":
  main()
