"""A killed index build, resumed: what `anchoral index` loses when its process dies mid-build.

  TQDM_MININTERVAL=60 nohup .venv/bin/python bench/bench_resume.py --n 1200000 --dim 768 \
      --kill-after-s 1200 --save-every-s 300 > bench/resume_1200000.log 2>&1 &
  .venv/bin/python bench/bench_resume.py --n 20000 --dim 64 --kill-after-s 20 \
      --save-every-s 5 --no-record                                       # smoke, ~1 min

Writes the synthetic embeddings cache as bench_prepare.py does, starts `prepare.build_index`
(partial index saved every `--save-every-s`) in a child process and SIGKILLs it after
`--kill-after-s`, then runs the same build again in this process: it restores the last
partial and adds only the remaining rows. Records the row it resumed from, the work lost
(rows added after the last partial), the time of each part and recall@k of the finished
index against an exact scan. Appends one row to bench/RESULTS.md under
"## Index build killed and resumed".
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import bench_prepare  # bench/ is sys.path[0] when run as a script
import harness
import numpy as np
import usearch

from anchoral_jax import cache
from anchoral_jax import config as config_lib
from anchoral_jax.retrieval import prepare

HEADING = "Index build killed and resumed"
COLUMNS = ("date", "machine", "load_avg", "versions", "n", "dim", "M", "save_every_s",
           "killed_after_s", "resumed_from_row", "rows_lost", "resume_s", "total_build_s",
           "queries_per_s", "recall_at_k")


def _child_build(directory: str, key: str, n: int, path: str, cfg_json: str,
                 save_every_s: float, progress_file: str) -> None:
  """The build that gets killed; writes the rows it has added to `progress_file`."""
  import ml_collections

  cfg = ml_collections.ConfigDict(__import__("json").loads(cfg_json))
  emb = cache.load_embeddings(Path(directory), key, np.arange(n, dtype=np.int64))
  done = Path(progress_file)

  from anchoral_jax.retrieval.index import PoolIndex

  real_build = PoolIndex.build.__func__

  def build(cls, *a, **kw):
    kw["on_chunk"] = lambda start, stop: done.write_text(str(stop))
    return real_build(cls, *a, **kw)

  PoolIndex.build = classmethod(build)
  prepare.build_index(cfg, emb, path, progress=True, save_every_s=save_every_s)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=1_200_000)
  p.add_argument("--dim", type=int, default=768)
  p.add_argument("--connectivity", type=int, default=64, help="HNSW M (official: 64)")
  p.add_argument("--kill-after-s", type=float, default=1200.0)
  p.add_argument("--save-every-s", type=float, default=600.0, help="anchoral index: 600")
  p.add_argument("--k", type=int, default=50)
  p.add_argument("--queries", type=int, default=1000)
  p.add_argument("--recall-queries", type=int, default=200)
  p.add_argument("--workdir", default="/tmp/anchoral_bench_resume")
  p.add_argument("--no-record", action="store_true")
  args = p.parse_args()

  date = harness.now()
  machine, load_start = bench_prepare.machine_info()
  versions = f"usearch {usearch.__version__}, numpy {np.__version__}"
  print(f"{date}; {machine}; load avg at start {load_start}; {versions}", flush=True)
  work = Path(args.workdir) / f"n{args.n}-d{args.dim}"
  shutil.rmtree(work, ignore_errors=True)
  directory, key = work / "embeddings", f"synthetic-{args.n}x{args.dim}"
  emb = bench_prepare.write_cache(directory, key, args.n, args.dim, "clustered", 0)
  cfg = config_lib.base()
  cfg.index.connectivity = args.connectivity
  cfg.index.ef_search = args.k
  path = work / "index" / f"{key}-M{args.connectivity}.usearch"
  progress_file = work / "child_rows.txt"

  ctx = multiprocessing.get_context("spawn")
  child = ctx.Process(target=_child_build, args=(str(directory), key, args.n, str(path),
                                                 cfg.to_json(), args.save_every_s,
                                                 str(progress_file)))
  t0 = time.perf_counter()
  child.start()
  child.join(timeout=args.kill_after_s)
  if not child.is_alive():
    raise SystemExit(f"The build ended before the kill ({time.perf_counter() - t0:.0f} s): "
                     "raise --n or lower --kill-after-s.")
  os.kill(child.pid, signal.SIGKILL)
  child.join()
  killed_s = time.perf_counter() - t0
  rows_at_kill = int(progress_file.read_text()) if progress_file.exists() else 0
  print(f"killed after {killed_s:.0f} s with {rows_at_kill} rows added", flush=True)

  resumed_from = []
  t1 = time.perf_counter()
  import logging

  class Grab(logging.Handler):
    def emit(self, record):
      if "Resuming the index build at row" in record.getMessage():
        resumed_from.append(int(record.args[0]))

  logging.getLogger("anchoral_jax.cache").addHandler(Grab())
  logging.getLogger("anchoral_jax.cache").setLevel(logging.INFO)
  idx = prepare.build_index(cfg, emb, path, progress=True, save_every_s=args.save_every_s)
  resume_s = time.perf_counter() - t1
  start_row = resumed_from[0] if resumed_from else 0
  assert len(idx) == args.n and not Path(str(path) + ".partial").exists()
  print(f"resumed from row {start_row}, finished in {resume_s:.0f} s", flush=True)

  rng = np.random.default_rng(1)
  excl = np.sort(rng.choice(args.n, size=args.queries, replace=False))
  q = np.asarray(emb[excl])
  scored = rng.choice(len(excl), size=args.recall_queries, replace=False)
  truth = bench_prepare.exact_knn(emb, q[scored], args.k, excl)
  t2 = time.perf_counter()
  found, _ = idx.search(q, args.k, excl)
  qps = len(q) / (time.perf_counter() - t2)
  rec = harness.recall(found[scored], truth)
  _, load_end = bench_prepare.machine_info()
  row = {"date": date, "machine": machine, "load_avg": f"{load_start} -> {load_end}",
         "versions": versions, "n": str(args.n), "dim": str(args.dim),
         "M": str(args.connectivity), "save_every_s": f"{args.save_every_s:.0f}",
         "killed_after_s": f"{killed_s:.0f}", "resumed_from_row": str(start_row),
         "rows_lost": str(rows_at_kill - start_row), "resume_s": f"{resume_s:.0f}",
         "total_build_s": f"{killed_s + resume_s:.0f}", "queries_per_s": f"{qps:.0f}",
         "recall_at_k": f"{rec:.4f}"}
  print(row, flush=True)
  if not args.no_record:
    harness.append_rows(HEADING, COLUMNS, [row])
  del idx, emb
  shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main()
