"""Is the usearch build reproducible, and what does a reproducible build cost? Builds the
index of `n` clustered 768-d vectors (bench_index.py's data; cosine, M=64, ef_construction=200,
f16, the pool index's settings) `--reps` times with all threads (threads=0) and with one
(threads=1), interleaved, and prints each build's seconds, the file's sha256 and recall@50
against exact search. Prints only (rows copied to RESULTS.md by hand).

  .venv/bin/python bench/bench_index_threads.py --n 100000 --reps 2
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time

import numpy as np
from bench_index import make_data  # bench/ is sys.path[0] when run as a script

from anchoral_jax.retrieval.index import PoolIndex, brute_force_knn


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--n", type=int, default=100_000)
  ap.add_argument("--dim", type=int, default=768)
  ap.add_argument("--reps", type=int, default=2)
  ap.add_argument("--threads", default="0,1")
  args = ap.parse_args()
  k = 50
  data = make_data(args.n + 200, args.dim, "clustered", np.random.default_rng(0))
  emb, q = data[:args.n], data[args.n:]
  rows = np.arange(args.n, dtype=np.int64)
  exact, _ = brute_force_knn(emb, rows, q, k)
  digests: dict[int, set[str]] = {}
  with tempfile.TemporaryDirectory() as tmp:
    for rep in range(args.reps):
      for threads in (int(t) for t in args.threads.split(",")):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        idx = PoolIndex.build(emb, rows, connectivity=64, expansion_add=200, expansion_search=k,
                              progress=False, dtype="f16", threads=threads)
        build_s = time.perf_counter() - t0
        path = os.path.join(tmp, f"i{threads}-{rep}.usearch")
        idx.save(path)
        with open(path, "rb") as f:
          digest = hashlib.sha256(f.read()).hexdigest()[:16]
        digests.setdefault(threads, set()).add(digest)
        found, _ = idx.search(q, k, ef_search=k)
        recall = np.mean([len(set(found[i]) & set(exact[i])) / k for i in range(len(q))])
        print(f"n={args.n} dim={args.dim} threads={threads} rep={rep} build {build_s:.1f} s "
              f"sha256 {digest} recall@50 {recall:.4f} load {load:.2f}->"
              f"{os.getloadavg()[0]:.2f}", flush=True)
  for threads, ds in digests.items():
    print(f"threads={threads}: {len(ds)} distinct file(s) in {args.reps} builds")


if __name__ == "__main__":
  main()
