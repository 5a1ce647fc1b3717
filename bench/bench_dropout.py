"""Dropout masks: flax's threefry `nn.Dropout` vs the hash mask (models/dropout.py), run by hand.

  .venv/bin/python bench/bench_dropout.py --what step --reps 8     # train step, interleaved
  .venv/bin/python bench/bench_dropout.py --what fit --seeds 4     # fine-tuning results

step: `train.train_step` (AdamW, dropout on) on all-MiniLM-L6-v2, batch 32 x 64, compiled three
      times in one process (threefry masks, hash masks, no dropout: the bound) and timed in turn.
fit:  `train.fit` of all-MiniLM-L6-v2 on a stratified sample of tweets_iphone, then accuracy
      and minority F1 on test rows, per dropout seed, with each generator: the change must stay
      within the seed-to-seed spread.
Both append a dated section to bench/RESULTS.md (unless --no-record).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import flax.linen as nn
import harness  # bench/harness.py: bench/ is sys.path[0] when run as a script
import jax
import jax.numpy as jnp
import numpy as np

from anchoral_jax.data import load_task
from anchoral_jax.data.tokenize import load_tokenizer, tokenize
from anchoral_jax.models import albert, bert, deberta, dropout, gpt2, hf, t5
from anchoral_jax.training import train
from anchoral_jax.training.scoring import forward_rows

FAMILIES = (bert, albert, deberta, gpt2, t5)
GENERATORS = {"threefry (flax nn.Dropout)": nn.Dropout, "hash (models/dropout.py)": dropout.Dropout}
VERSIONS = ("jax", "jaxlib", "flax", "optax")


def use(drop_cls) -> None:
  """Every family's dropout becomes `drop_cls`; the jitted programs trace again."""
  for m in FAMILIES:
    m.Dropout = drop_cls
  train.train_step.clear_cache()


def bench_step(reps: int) -> list[dict[str, str]]:
  cfg, params = bert.load_pretrained("all-MiniLM-L6-v2", 2, jax.random.key(0))
  rng = np.random.default_rng(0)
  B, L = 32, 64
  ids = rng.integers(1000, 20000, (B, L)).astype(np.int32)
  mask = np.ones((B, L), np.int32)
  mask[:, 40:] = 0
  labels = rng.integers(0, 2, B).astype(np.int32)
  weight = np.ones(B, np.float32)
  opt = train.make_optimizer(train.TrainConfig())
  raw = train.train_step.__wrapped__
  no_drop = dataclasses.replace(cfg, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  variants = {**{k: (v, cfg) for k, v in GENERATORS.items()}, "no dropout (bound)":
              (dropout.Dropout, no_drop)}
  progs, states = {}, {}
  for name, (drop_cls, c) in variants.items():
    use(drop_cls)
    p = jax.tree.map(jnp.array, params)
    states[name] = train.TrainState(p, opt.init(p), jnp.zeros((), jnp.int32))
    progs[name] = jax.jit(raw, static_argnames=("cfg", "opt")).lower(
        states[name], ids, mask, labels, weight, jax.random.key(0), cfg=c, opt=opt).compile()
  use(dropout.Dropout)
  key = jax.random.key(0)

  def run(name):
    def f():
      states[name], loss, _ = progs[name](states[name], ids, mask, labels, weight, key)
      float(loss)
    return f

  for name in progs:  # one untimed call each
    run(name)()
  ld = harness.load()
  secs = harness.interleaved({name: run(name) for name in progs}, reps)
  ld = f"{ld} -> {harness.load()}"
  base = secs["threefry (flax nn.Dropout)"]
  return [{"date": harness.now(), "load 1/5/15": ld, "dropout": name, "reps": str(reps),
           "ms/step (median)": f"{1000 * s:.0f}", "vs threefry": f"{base / s:.2f}x"}
          for name, s in secs.items()]


def bench_fit(seeds: int, n_train: int, n_test: int) -> list[dict[str, str]]:
  task = load_task("tweets_iphone")
  tokenizer = load_tokenizer(hf.resolve_model_dir("all-MiniLM-L6-v2"))
  rng = np.random.default_rng(0)
  y = task.train.labels.astype(np.int32)
  per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(task.num_classes)]
  half = n_train // task.num_classes
  rows = np.concatenate([p[:half] for p in per_class])  # balanced training sample
  test_rows = rng.choice(len(task.test.labels), n_test, replace=False)
  tok = tokenize(tokenizer, task.train.text, 64)
  test_tok = tokenize(tokenizer, task.test.text, 64)
  y_test = task.test.labels[test_rows].astype(np.int32)
  minority = int(task.minority_classes[0])
  cfg, params = bert.load_pretrained("all-MiniLM-L6-v2", task.num_classes, jax.random.key(0))
  tc = train.TrainConfig(batch_size=32, epochs=3, min_steps=0, learning_rate=3e-5)
  out = []
  for name, drop_cls in GENERATORS.items():
    use(drop_cls)
    accs, f1s = [], []
    t0 = time.perf_counter()
    for seed in range(seeds):
      res = train.fit(params, cfg, tc, tok, rows, y[rows], num_classes=task.num_classes,
                      minority_classes=task.minority_classes, data_seed=seed,
                      dropout_key=jax.random.key(100 + seed), buckets=(64,))
      logits = forward_rows(res.params, cfg, test_tok, test_rows, ("logits",),
                            batch_size=32)["logits"]
      pred = logits.argmax(1)
      accs.append(float((pred == y_test).mean()))
      tp = np.sum((pred == minority) & (y_test == minority))
      f1s.append(float(2 * tp / max(np.sum(pred == minority) + np.sum(y_test == minority), 1)))
    out.append({"date": harness.now(), "load 1/5/15": harness.load(), "dropout": name,
                "seeds": str(seeds), "train/test rows": f"{len(rows)}/{n_test}",
                "accuracy mean ± sd": f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f}",
                "minority F1 mean ± sd": f"{np.mean(f1s):.4f} ± {np.std(f1s, ddof=1):.4f}",
                "per seed accuracy": " ".join(f"{a:.3f}" for a in accs),
                "per seed F1": " ".join(f"{f:.3f}" for f in f1s),
                "wall s": f"{time.perf_counter() - t0:.0f}"})
  use(dropout.Dropout)
  return out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--what", choices=("step", "fit"), default="step")
  p.add_argument("--reps", type=int, default=8)
  p.add_argument("--seeds", type=int, default=4)
  p.add_argument("--train", type=int, default=128, help="training rows (balanced)")
  p.add_argument("--test", type=int, default=512)
  p.add_argument("--no-record", action="store_true")
  args = p.parse_args()
  jax.config.update("jax_platforms", "cpu")
  pre = (f"`bench/bench_dropout.py --what {args.what}`. Machine: {harness.machine()}; "
         f"{harness.versions(VERSIONS)}; CPU.")
  if args.what == "step":
    rows = bench_step(args.reps)
    heading = "Dropout masks: MiniLM train step, threefry vs hash (issue 22)"
    pre += (" `train.train_step` on all-MiniLM-L6-v2, batch 32 x 64, three programs compiled "
            "in one process and timed in turn (median of --reps).")
  else:
    rows = bench_fit(args.seeds, args.train, args.test)
    heading = "Dropout masks: fine-tuning results, threefry vs hash (issue 22)"
    pre += (" `train.fit` of all-MiniLM-L6-v2 (3 epochs, batch 32, lr 3e-5, max length 64) on "
            "a balanced tweets_iphone sample; accuracy and minority-class F1 on random test "
            "rows; data order seed = dropout seed index, the same per generator.")
  cols = list(rows[0])
  print(harness.markdown_table(cols, rows))
  if not args.no_record:
    harness.append_section(heading, pre, cols, rows)


if __name__ == "__main__":
  main()
