"""BADGE's memory and time: k-means++ on materialised gradient embeddings vs on (r, h), run by hand.

  .venv/bin/python bench/bench_badge.py --n 100000 --ways materialised,factorised
  .venv/bin/python bench/bench_badge.py --n 1200000 --ways factorised --k 10

Random probabilities [N, C] and pooled features [N, H] (float32, as the scoring pass hands
them over) are made first; then each way picks k rows with the same seed: "materialised" =
`kmeans_pp(badge_embeddings(p, h))` (BADGE before issue 22: an [N, C*H] float32 matrix),
"factorised" = `badge_select` (`clustering.kmeans_pp_outer`). Peak memory is what numpy
allocated on top of the inputs (tracemalloc, which numpy reports to), wall time is the pick.
Appends a dated section to bench/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import harness  # bench/harness.py: bench/ is sys.path[0] when run as a script
import numpy as np

from anchoral_jax.al import strategies as S
from anchoral_jax.al.clustering import kmeans_pp

WAYS = {"materialised": lambda p, h, k, rng: kmeans_pp(S.badge_embeddings(p, h), k, rng),
        "factorised": S.badge_select}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=100_000)
  p.add_argument("--h", type=int, default=768)
  p.add_argument("--c", type=int, default=2)
  p.add_argument("--k", type=int, default=25)
  p.add_argument("--ways", default="materialised,factorised")
  p.add_argument("--no-record", action="store_true")
  args = p.parse_args()
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((args.n, args.c), dtype=np.float32) * 2
  probs_NxC = S.softmax(logits)
  pooled_NxH = rng.standard_normal((args.n, args.h), dtype=np.float32)
  rows, picks = [], {}
  for way in args.ways.split(","):
    ld = harness.load()
    tracemalloc.start()
    t0 = time.perf_counter()
    picks[way] = WAYS[way](probs_NxC, pooled_NxH, args.k, np.random.default_rng(1))
    secs = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rows.append({"date": harness.now(), "load 1/5/15": ld, "N": f"{args.n:,}", "H": str(args.h),
                 "C": str(args.c), "k": str(args.k), "way": way,
                 "peak MiB above inputs": f"{peak / 2**20:,.0f}", "pick s": f"{secs:.1f}"})
  same = ("same picks" if len(picks) == 2 and np.array_equal(*picks.values()) else
          "picks differ" if len(picks) == 2 else "")
  for r in rows:
    r["picks"] = same
  cols = list(rows[0])
  print(harness.markdown_table(cols, rows))
  if not args.no_record:
    pre = (f"`bench/bench_badge.py --n {args.n} --h {args.h} --c {args.c} --k {args.k} --ways "
           f"{args.ways}`. Machine: {harness.machine()}; {harness.versions(['numpy'])}. Inputs "
           f"(probs [N, C], pooled [N, H], float32: {args.n * (args.c + args.h) * 4 / 2**20:,.0f}"
           " MiB) are not counted.")
    harness.append_section("BADGE: materialised vs factorised k-means++ (issue 22)", pre, cols,
                           rows)


if __name__ == "__main__":
  main()
