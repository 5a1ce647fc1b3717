"""Issue-2 figures for the embedded default: pool embedding throughput (texts/s) and one
MiniLM train step, on this machine, appended to bench/RESULTS.md.

  python bench/bench_embed.py [--n 4096] [--steps 10] [--batches 128] [--reps 1] [--no-record]

Embeds `n` pool tweets with the Flax all-MiniLM-L6-v2 encoder exactly as `anchoral embed` does
(length-sorted, bucketed, mean pooling, L2 norm; tokenisation included) once per batch size to
compile every bucket, then timed: the batch sizes in turn, `reps` times, median per batch
(0 = the backend's default, `index.embed_batch_size = 0`). The train step is
`train.train_step` on 32 tweets at the demo's 64-token bucket, compile excluded, median of
`steps`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import harness  # bench/harness.py: bench/ is sys.path[0] when run as a script
import jax
import jax.numpy as jnp
import numpy as np

from anchoral_jax.data import load_task
from anchoral_jax.retrieval.embed import SentenceEncoder
from anchoral_jax.training import train

HEADING = "Embedded default: embedding throughput and train step (issue 2)"
COLUMNS = ("date", "machine", "load 1/5/15", "versions", "what", "value")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n", type=int, default=4096, help="pool tweets to embed")
  p.add_argument("--steps", type=int, default=10, help="timed train steps")
  p.add_argument("--batches", default="128", help="embedding batch sizes, comma-separated")
  p.add_argument("--reps", type=int, default=1, help="timed passes per batch size")
  p.add_argument("--no-record", action="store_true", help="print only")
  a = p.parse_args()
  task = load_task("tweets_iphone")
  texts = task.train.text[:a.n]
  enc = SentenceEncoder("all-MiniLM-L6-v2", max_length=256)
  batches = [int(b) for b in a.batches.split(",")]
  for b in batches:
    enc.encode(texts, batch_size=b)  # compile every bucket
  secs = harness.interleaved({b: lambda b=b: enc.encode(texts, batch_size=b) for b in batches},
                             a.reps)
  assert enc.encode(texts[:8], batch_size=batches[0]).shape == (8, 384)

  cfg, params = enc.cfg, enc.params
  tc = train.TrainConfig()
  opt = train.make_optimizer(tc)
  tok = enc.tokenize(texts[:32])
  ids, mask = tok.batch(np.arange(32), buckets=(64,), batch_size=32)
  y = np.asarray(task.train.labels[:32], np.int32)
  w = np.ones(32, np.float32)
  state = train.TrainState(params, opt.init(params), jnp.zeros((), jnp.int32))
  key = jax.random.key(0)
  times = []
  for i in range(a.steps + 1):
    t0 = time.perf_counter()
    state, loss, _ = train.train_step(state, ids, mask, y, w, key, cfg=cfg, opt=opt)
    jax.block_until_ready(loss)
    if i:  # step 0 compiles
      times.append(time.perf_counter() - t0)
  step_ms = 1000 * statistics.median(times)
  rows = [
      {"what": f"embed {len(texts)} pool tweets (MiniLM, batch {b or 'default'}, max 256 tokens"
               f"{', median of ' + str(a.reps) if a.reps > 1 else ''})",
       "value": f"{len(texts) / t:.1f} texts/s ({t:.1f} s)"} for b, t in secs.items()
  ] + [
      {"what": "MiniLM train step (batch 32 x 64 tokens, AdamW), median",
       "value": f"{step_ms:.0f} ms/step"},
  ]
  common = {"date": harness.now(), "machine": harness.machine(), "load 1/5/15": harness.load(),
            "versions": harness.versions(["jax", "flax", "optax"])}
  rows = [{**common, **r} for r in rows]
  for r in rows:
    print(f"{r['what']}: {r['value']}  (load {r['load 1/5/15']})")
  if not a.no_record:
    harness.append_rows(HEADING, COLUMNS, rows)


if __name__ == "__main__":
  main()
