"""FTbertKM's k-means: cluster sums by np.add.at (before 2026-12-06) vs one matmul, and
scikit-learn's KMeans beside them, run by hand.

  .venv/bin/python bench/bench_kmeans.py                 # bbc-tech's full pool: 23,923 x 384
  .venv/bin/python bench/bench_kmeans.py --n 12421 --reps 5

Standardised [CLS]-like features (random blobs, float32 -> float64 as `ftbertkm_select` does),
k = 25 (a query); every way runs Lloyd from the same k-means++ start to scikit-learn's
tolerance, timed in turn (A B C A B C ...). "add.at" is `clustering.kmeans` as it was (the
only change is the cluster sums), "matmul" the current one, "sklearn" `KMeans(n_init=1)` on
the same data (its own seeding: compare its inertia, not its centres). Appends a dated
section to bench/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse

import harness  # bench/harness.py: bench/ is sys.path[0] when run as a script
import numpy as np

from anchoral_jax.al import clustering


def add_at_sums(X: np.ndarray, assign_N: np.ndarray, k: int) -> np.ndarray:
  """`clustering._cluster_sums` before 2026-12-06: through np.add.at."""
  sums = np.zeros((k, X.shape[1]), X.dtype)
  np.add.at(sums, assign_N, X)
  return sums


def kmeans_add_at(X: np.ndarray, k: int, rng) -> np.ndarray:
  """`clustering.kmeans` with its cluster sums as they were (everything else the same code)."""
  current = clustering._cluster_sums
  clustering._cluster_sums = add_at_sums
  try:
    return clustering.kmeans(X, k, rng)
  finally:
    clustering._cluster_sums = current


def inertia(X: np.ndarray, centres: np.ndarray) -> float:
  xx_N = np.einsum("nd,nd->n", X, X)
  return float(clustering._sq_dist_to(centres, X, xx_N).min(axis=0).sum())


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=23_923)
  p.add_argument("--h", type=int, default=384)
  p.add_argument("--k", type=int, default=25)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--no-record", action="store_true")
  args = p.parse_args()
  rng = np.random.default_rng(0)
  centres = rng.standard_normal((40, args.h)) * 0.5
  X = (centres[rng.integers(0, 40, args.n)]
       + rng.standard_normal((args.n, args.h))).astype(np.float32)
  Z = clustering.standardise(X)
  out: dict[str, np.ndarray] = {}
  ways = {"add.at": lambda: out.__setitem__("add.at", kmeans_add_at(Z, args.k,
                                                                      np.random.default_rng(1))),
          "matmul": lambda: out.__setitem__("matmul", clustering.kmeans(
              Z, args.k, np.random.default_rng(1)))}
  try:
    from sklearn.cluster import KMeans

    ways["sklearn"] = lambda: out.__setitem__("sklearn", KMeans(
        args.k, n_init=1, random_state=1).fit(Z).cluster_centers_)
  except ImportError:
    pass
  ld = harness.load()
  secs = harness.interleaved(ways, args.reps)
  same = np.allclose(out["add.at"], out["matmul"], rtol=0, atol=1e-9)
  rows = [{"date": harness.now(), "load 1/5/15": ld, "N x H": f"{args.n:,} x {args.h}",
           "k": str(args.k), "way": way, "median s": f"{secs[way]:.2f}",
           "x add.at": f"{secs['add.at'] / secs[way]:.1f}",
           "inertia": f"{inertia(Z, out[way]):,.0f}",
           "centres": ("same as add.at (1e-9)" if same else "differ") if way == "matmul" else ""}
          for way in ways]
  cols = list(rows[0])
  print(harness.markdown_table(cols, rows))
  if not args.no_record:
    harness.append_section(
        f"FTbertKM's k-means: np.add.at vs matmul cluster sums ({harness.now()})",
        f"bench/bench_kmeans.py --n {args.n} --reps {args.reps} on {harness.machine()}, "
        f"{harness.versions(['numpy', 'scikit-learn'])}; median of {args.reps} interleaved "
        "runs. Full-pool FTbertKM runs this every round.", cols, rows)


if __name__ == "__main__":
  main()
