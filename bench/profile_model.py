"""Where a jitted MiniLM program spends its time on XLA:CPU, op by op (run by hand).

  XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true .venv/bin/python bench/profile_model.py \
      --what train --batch 32 --length 64

Compiles `train.train_step` (AdamW, dropout on: what `fit` runs) or the scoring forward on
all-MiniLM-L6-v2 (real weights), runs it `--calls` times under `jax.profiler.trace`, and sums
each HLO instruction's trace events by the JAX source op it came from (the `op_name` metadata
of the compiled HLO), grouped by `--depth` trailing path parts. Prints the table (ms per call,
share of op time) and, with --out, writes it as markdown. Without the XLA flag the CPU thunks
emit no trace events and the table is empty.

A second table sums the ops by kind (matmul, dropout + PRNG, gelu, optimizer, ...; see
`KINDS`). The dropout key's PRNG can be chosen (`--prng threefry2x32|philox4x32|rbg|...`) to
see what the random bits cost.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from anchoral_jax import models
from anchoral_jax.models import bert
from anchoral_jax.training import train

OP_NAME = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?metadata=\{[^}]*op_name="([^"]+)"')


def op_names(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> its JAX source op (`op_name` metadata)."""
  out = {}
  for line in hlo_text.splitlines():
    m = OP_NAME.match(line)
    if m:
      out[m.group(1)] = m.group(2)
  return out


def trace_events(trace_dir: str) -> list[dict]:
  files = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
  if not files:
    return []
  with gzip.open(max(files, key=os.path.getmtime)) as f:
    return [e for e in json.load(f).get("traceEvents", []) if e.get("ph") == "X"]


# (kind, substrings of the op_name), first match wins; the rest is "other (elementwise,
# transposes, backward adds, ...)". Fusions are named by their root op, so a fusion that draws
# dropout bits and scales the activations is attributed to Dropout.
KINDS = (
    ("dropout + PRNG", ("Dropout", "threefry", "random_bits", "philox", "rng_bit", "closed_call")),
    ("matmul", ("dot_general",)),
    ("gelu (erf)", ("erf",)),
    ("LayerNorm", ("_ln/", "LayerNorm")),
    ("embedding lookup and its gradient", ("embeddings/",)),
    ("softmax", ("softmax", "reduce_max", "/exp")),
)


def kind(op_name: str) -> str:
  for name, needles in KINDS:
    if any(n in op_name for n in needles):
      return name
  if "jvp(" not in op_name and "transpose(" not in op_name:
    return "optimizer update and step bookkeeping (outside the model)"
  return "other (elementwise, transposes, backward adds, ...)"


def group(op_name: str, depth: int) -> str:
  parts = [p for p in op_name.split("/") if not p.startswith("jit(")]
  return "/".join(parts[-depth:]) if parts else op_name


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--what", choices=("train", "forward"), default="train")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--length", type=int, default=64)
  p.add_argument("--calls", type=int, default=3)
  p.add_argument("--depth", type=int, default=3, help="trailing op_name parts to group by")
  p.add_argument("--top", type=int, default=25)
  p.add_argument("--prng", default="threefry2x32",
                 help="the dropout key's PRNG (train only): threefry2x32, philox4x32, rbg, ...")
  p.add_argument("--out", default="", help="also write the table here (markdown)")
  args = p.parse_args()

  cfg, params = bert.load_pretrained("all-MiniLM-L6-v2", 2, jax.random.key(0))
  rng = np.random.default_rng(0)
  ids = rng.integers(1000, 20000, (args.batch, args.length)).astype(np.int32)
  mask = np.ones_like(ids)
  labels = rng.integers(0, 2, args.batch).astype(np.int32)
  params = jax.tree.map(jnp.asarray, params)
  if args.what == "train":
    tc = train.TrainConfig()
    opt = train.make_optimizer(tc)
    state = train.TrainState(params, opt.init(params), jnp.zeros((), jnp.int32))
    key = jax.random.key(0, impl=args.prng)
    weight = np.ones(args.batch, np.float32)
    fn = jax.jit(lambda s, i, m, y: train.train_step(s, i, m, y, weight, key, cfg=cfg, opt=opt))
    operands = (state, ids, mask, labels)
  else:
    model = models.classifier(cfg)
    fn = jax.jit(lambda prm, i, m: model.apply({"params": prm}, i, m, deterministic=True)[0])
    operands = (params, ids, mask)
  compiled = fn.lower(*operands).compile()
  names = op_names(compiled.as_text())
  jax.block_until_ready(compiled(*operands))  # warm

  walls = []
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      for _ in range(args.calls):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*operands))
        walls.append(time.perf_counter() - t0)
    events = trace_events(tmp)
  per_op, per_kind = collections.Counter(), collections.Counter()
  for e in events:
    name = e.get("name", "")
    if name in names:
      ms = e.get("dur", 0) / 1e3 / args.calls  # us -> ms
      per_op[group(names[name], args.depth)] += ms
      per_kind[kind(names[name])] += ms
  total = sum(per_op.values())
  wall = 1000 * float(np.median(walls))
  lines = [f"{args.what}, batch {args.batch} x length {args.length}, dropout PRNG {args.prng}: "
           f"wall {wall:.0f} ms per call (median of {args.calls}), op time {total:.0f} ms "
           f"({len(events)} events; load {' '.join(f'{x:.2f}' for x in os.getloadavg())})", "",
           "| kind | ms per call | share |", "|---|---|---|"]
  for k, ms in per_kind.most_common():
    lines.append(f"| {k} | {ms:.1f} | {100 * ms / max(total, 1e-9):.1f}% |")
  lines += ["", "| op (grouped by source) | ms per call | share |", "|---|---|---|"]
  for op, ms in per_op.most_common(args.top):
    lines.append(f"| `{op}` | {ms:.1f} | {100 * ms / max(total, 1e-9):.1f}% |")
  text = "\n".join(lines)
  print(text)
  if not events:
    print("\nNo trace events: set XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true.")
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  main()
