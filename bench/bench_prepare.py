"""Preparation pipeline at scale: mmap'd embeddings cache -> streamed index build -> search.

  TQDM_MININTERVAL=30 nohup .venv/bin/python bench/bench_prepare.py --n 1200000 --dim 768 \
      > bench/prepare_1200000.log 2>&1 &
  .venv/bin/python bench/bench_prepare.py --n 20000 --dim 64 --no-record   # smoke, ~1 min

Writes synthetic unit vectors (AmazonCat's pool: 1,186,239 x 768, all-mpnet-base-v2) as the real
embeddings cache file (`cache.open_embeddings`/`commit_embeddings`, chunk by chunk), opens it
with mmap as the loop does, builds the usearch index with `prepare.build_index` (official settings:
cosine, M=64, ef_construction=200) and saves it, then measures what an AL round does: search
k=50 with 1,000 labelled (excluded) ids, queries being labelled items as AnchorAL's anchors
are. Recall@k is against an exact numpy scan streamed over the mmap (independent of usearch)
on `--recall-queries` of them. Memory: peak RSS (VmHWM, includes mapped file pages) and peak
anonymous RSS (sampled every 0.2 s; what cannot be paged out). Expected on 2 shared cores:
build roughly 30-60 min at full size. Appends one row to bench/RESULTS.md under
"## Preparation pipeline at scale".
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import subprocess
import threading
import time
from pathlib import Path

import harness  # bench/harness.py: bench/ is sys.path[0] when run as a script
import numpy as np
import usearch

from anchoral_jax import cache
from anchoral_jax import config as config_lib
from anchoral_jax.retrieval import embed, prepare
from anchoral_jax.retrieval.index import PoolIndex

RESULTS = harness.RESULTS
HEADING = "## Preparation pipeline at scale"
COLUMNS = ("date", "machine", "load_avg", "versions", "n", "dim", "M", "dtype", "data", "write_s",
           "build_s", "build_vec_per_s", "index_gib", "peak_rss_gib", "peak_anon_gib", "load_s",
           "ef", "queries_per_s", "recall_at_k")
CHUNK = 65536


class AnonPeak:
  """Samples RssAnon in a thread: VmHWM alone mixes in reclaimable mmap'd file pages."""

  def __init__(self, every_s: float = 0.2):
    self.peak_mib = 0.0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
    self._thread.start()

  def _run(self, every_s: float) -> None:
    while not self._stop.is_set():
      self.peak_mib = max(self.peak_mib, prepare.memory_mib().get("anon", 0.0))
      self._stop.wait(every_s)

  def stop(self) -> float:
    self._stop.set()
    self._thread.join()
    return max(self.peak_mib, prepare.memory_mib().get("anon", 0.0))


def write_cache(directory: Path, key: str, n: int, dim: int, kind: str, seed: int) -> np.ndarray:
  """Synthetic unit vectors written chunk by chunk into the cache format; returns the mmap."""
  rng = np.random.default_rng(seed)
  centres_CxE = rng.standard_normal((200, dim), dtype=np.float32)
  out_NxE = cache.open_embeddings(directory, key, n, dim)
  for s in range(0, n, CHUNK):
    m = min(CHUNK, n - s)
    if kind == "isotropic":
      x = rng.standard_normal((m, dim), dtype=np.float32)
    else:  # around 200 centres: closer to sentence embeddings than isotropic noise
      x = centres_CxE[rng.integers(0, 200, m)] + 0.6 * rng.standard_normal((m, dim),
                                                                          dtype=np.float32)
    out_NxE[s:s + m] = embed.normalise(x)
  return cache.commit_embeddings(directory, key, out_NxE, np.arange(n, dtype=np.int64),
                                 source="synthetic")


def exact_knn(emb_NxE: np.ndarray, q_QxE: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
  """Exact top-k rows by cosine (unit vectors), streaming row blocks of the mmap."""
  num_q = q_QxE.shape[0]
  best_d = np.full((num_q, 0), np.inf, np.float32)
  best_i = np.zeros((num_q, 0), np.int64)
  for s in range(0, emb_NxE.shape[0], CHUNK):
    blk = np.asarray(emb_NxE[s:s + CHUNK])
    d_QxB = 1.0 - q_QxE @ blk.T
    drop = exclude[(exclude >= s) & (exclude < s + len(blk))] - s
    d_QxB[:, drop] = np.inf
    d = np.concatenate([best_d, d_QxB], axis=1)
    i = np.concatenate([best_i, np.broadcast_to(np.arange(s, s + len(blk)), d_QxB.shape)], axis=1)
    top = np.argsort(d, axis=1, kind="stable")[:, :k]
    best_d, best_i = np.take_along_axis(d, top, 1), np.take_along_axis(i, top, 1)
  return best_i


def machine_info() -> tuple[str, str]:
  mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  machine = f"{platform.machine()}, {os.cpu_count()} cpus, {mem_gib:.0f} GiB"
  return machine, "/".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=1_200_000, help="pool rows (AmazonCat: 1,186,239)")
  p.add_argument("--dim", type=int, default=768, help="embedding dim (768: all-mpnet-base-v2)")
  p.add_argument("--connectivity", type=int, default=64, help="HNSW M (official: 64)")
  p.add_argument("--expansion-add", type=int, default=200, help="ef_construction (official)")
  p.add_argument("--dtype", choices=("f16", "f32"), default="f16",
                 help="index vector storage (index.dtype; f32 = the official index's)")
  p.add_argument("--k", type=int, default=50, help="neighbours per query (paper: 50)")
  p.add_argument("--excluded", type=int, default=1000, help="labelled ids hidden from results")
  p.add_argument("--recall-queries", type=int, default=200, help="queries scored vs exact scan")
  p.add_argument("--ef", default="50,200", help="query-time ef values (50 = official QUIRK)")
  p.add_argument("--data", choices=("clustered", "isotropic"), default="clustered")
  p.add_argument("--workdir", default="/tmp/anchoral_bench_prepare", help="scratch (GBs)")
  p.add_argument("--keep", action="store_true", help="keep the cache and index files")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no-record", action="store_true", help="print only, do not touch RESULTS.md")
  args = p.parse_args()

  date = subprocess.run(["date", "+%Y-%m-%d %H:%M"], capture_output=True, text=True).stdout.strip()
  machine, load_start = machine_info()
  versions = f"usearch {usearch.__version__}, numpy {np.__version__}"
  print(f"{date}; {machine}; load avg at start {load_start}; {versions}", flush=True)
  work = Path(args.workdir) / f"n{args.n}-d{args.dim}-{args.data}"
  shutil.rmtree(work, ignore_errors=True)
  directory, key = work / "embeddings", f"synthetic-{args.n}x{args.dim}"
  cfg = config_lib.base()
  cfg.index.connectivity = args.connectivity
  cfg.index.expansion_add = args.expansion_add
  cfg.index.ef_search = args.k
  cfg.index.dtype = args.dtype
  peak = AnonPeak()

  t0 = time.perf_counter()
  write_cache(directory, key, args.n, args.dim, args.data, args.seed)
  write_s = time.perf_counter() - t0
  emb_NxE = cache.load_embeddings(directory, key, np.arange(args.n, dtype=np.int64))
  assert isinstance(emb_NxE, np.memmap)
  print(f"cache written: {emb_NxE.shape} in {write_s:.1f}s, {prepare.memory_mib()}", flush=True)

  path = work / "index" / f"{key}-M{args.connectivity}-{args.dtype}.usearch"
  t0 = time.perf_counter()
  built = prepare.build_index(cfg, emb_NxE, path, progress=True)
  build_s = time.perf_counter() - t0
  mem_build = prepare.memory_mib()
  print(f"index built+saved in {build_s:.1f}s ({args.n / build_s:.0f} vec/s), "
        f"{path.stat().st_size / 2**30:.2f} GiB file, {mem_build}", flush=True)
  del built
  gc.collect()

  t0 = time.perf_counter()
  PoolIndex.load(path, view=True)
  view_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  idx = PoolIndex.load(path)
  load_s = time.perf_counter() - t0
  print(f"load: view {view_s:.2f}s, full {load_s:.1f}s", flush=True)

  rng = np.random.default_rng(args.seed + 1)
  excl = np.sort(rng.choice(args.n, size=min(args.excluded, args.n), replace=False))
  q_QxE = np.asarray(emb_NxE[excl])  # labelled items as queries, like AnchorAL's anchors
  scored = rng.choice(len(excl), size=min(args.recall_queries, len(excl)), replace=False)
  t0 = time.perf_counter()
  truth = exact_knn(emb_NxE, q_QxE[scored], args.k, excl)
  exact_s = time.perf_counter() - t0
  print(f"exact scan: {len(scored)} queries in {exact_s:.1f}s", flush=True)

  rows = []
  for ef in [int(x) for x in args.ef.split(",")]:
    idx.search(q_QxE[:10], args.k, excl, ef_search=ef)  # warm-up
    t0 = time.perf_counter()
    found, _ = idx.search(q_QxE, args.k, excl, ef_search=ef)
    qps = len(q_QxE) / (time.perf_counter() - t0)
    assert not np.isin(found, excl).any()
    rec = harness.recall(found[scored], truth)
    print(f"ef={ef}: {qps:.0f} queries/s (Q={len(q_QxE)}, k={args.k}, {len(excl)} excluded), "
          f"recall@{args.k} {rec:.4f}", flush=True)
    rows.append({"ef": str(ef), "queries_per_s": f"{qps:.0f}", "recall_at_k": f"{rec:.4f}"})
  anon_gib = peak.stop() / 1024
  peak_gib = prepare.memory_mib()["peak"] / 1024
  _, load_end = machine_info()
  print(f"peak RSS {peak_gib:.2f} GiB (incl. mapped pages), peak anon {anon_gib:.2f} GiB; "
        f"load avg at end {load_end}", flush=True)
  common = {"date": date, "machine": machine, "load_avg": f"{load_start} -> {load_end}",
            "versions": versions, "n": str(args.n), "dim": str(args.dim),
            "M": str(args.connectivity), "dtype": args.dtype, "data": args.data, "write_s": f"{write_s:.1f}",
            "build_s": f"{build_s:.1f}", "build_vec_per_s": f"{args.n / build_s:.0f}",
            "index_gib": f"{path.stat().st_size / 2**30:.2f}", "peak_rss_gib": f"{peak_gib:.2f}",
            "peak_anon_gib": f"{anon_gib:.2f}", "load_s": f"{load_s:.1f}"}
  rows = [{**common, **r} for r in rows]
  if not args.no_record:
    harness.append_rows(HEADING.removeprefix("## "), COLUMNS, rows)
    print(f"appended to {RESULTS}")
  if not args.keep:
    del idx, emb_NxE
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main()
