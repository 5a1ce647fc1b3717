"""What the optional tensorflow-datasets path costs against the registry's default path.

  nice -n 19 .venv/bin/python bench/bench_tfds.py            # ~5-10 min on 2 shared cores
  nice -n 19 .venv/bin/python bench/bench_tfds.py --n-train 4000 --no-record   # smoke

A synthetic stand-in for AG News, in both layouts tests/test_paper_data.py fabricates (no
network): the processed copy (Hugging Face parquet: task `agnews_business`) and the original
release's CSVs (class 1-4, title, description: task `agnews_business_raw`). `--n-train`
training rows (AG News: 120,000) and `--n-test` test rows (7,600), 4 balanced classes, texts of
20-70 words (AG News averages about 40). For each task, times, median of `--reps` (wall s):
  (a) registry: `data.registry.load(task)` from the manual files (what a run does);
  (b) tfds build: `tfds_builders.prepare` into an empty data_dir (the same construction, then
      written as ArrayRecord): once per machine and builder version;
  (c) tfds load: `tfds_builders.load_task` of the built dataset (read back, numpy only).
Checks that (a) and (c) give the same task. Appends a section to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import harness  # bench/harness.py: bench/ is sys.path[0] when run as a script
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from anchoral_jax.data import registry, tfds_builders

WORDS = np.array("the market shares rose after company reported quarterly profit while team won "
                 "match in final minute as scientists found new planet near star officials said "
                 "government talks resumed on oil prices amid rally".split())


def fabricate(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
  """`<root>/agnews/data/{train,test}-*.parquet` (text, labels 0-3, uid over train then test)
  and the same rows as `<root>/ag_news_csv/{train,test}.csv` (class 1-4, title, description)."""
  rng = np.random.default_rng(seed)
  folder = root / "agnews" / "data"
  folder.mkdir(parents=True)
  (root / "ag_news_csv").mkdir()
  uid = 0
  for split, n in (("train", n_train), ("test", n_test)):
    lengths = rng.integers(20, 71, n)
    words = rng.integers(0, len(WORDS), int(lengths.sum()))
    ends = np.cumsum(lengths)
    titles = [" ".join(WORDS[words[e - k:e - k + 6]]) + "," for e, k in zip(ends, lengths,
                                                                          strict=True)]
    bodies = [" ".join(WORDS[words[e - k + 6:e]]) + f" {uid + i}."
              for i, (e, k) in enumerate(zip(ends, lengths, strict=True))]
    texts = [f"{t} {b}" for t, b in zip(titles, bodies, strict=True)]
    df = pd.DataFrame({"text": texts, "labels": (np.arange(n) % 4).astype(np.int64),
                       "uid": np.arange(uid, uid + n, dtype=np.int64)})
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False),
                   folder / f"{split}-00000-of-00001-0000beef.parquet")
    with open(root / "ag_news_csv" / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
      csv.writer(f, quoting=csv.QUOTE_ALL).writerows(
          zip(df["labels"] + 1, titles, bodies, strict=True))
    uid += n


def timed(fn) -> tuple[float, object]:
  t0 = time.perf_counter()
  out = fn()
  return time.perf_counter() - t0, out


def measure(task: str, manual: Path, work: Path, reps: int) -> dict[str, str]:
  loads = [harness.load()]
  t_reg, t_build, t_load = [], [], []
  for rep in range(reps):
    dt, reg = timed(lambda: registry.load(task, manual_dir=manual))
    t_reg.append(dt)
    data_dir = work / f"tfds-{task}-{rep}"
    dt, _ = timed(lambda d=data_dir: tfds_builders.prepare(task, manual, d))
    t_build.append(dt)
    dt, via_tfds = timed(lambda d=data_dir: tfds_builders.load_task(task, manual, d))
    t_load.append(dt)
    loads.append(harness.load())
    print(f"{task} rep {rep}: registry {t_reg[-1]:.2f} s, tfds build {t_build[-1]:.2f} s, "
          f"tfds load {t_load[-1]:.2f} s, load {loads[-1]}", flush=True)
  for a, b in ((reg.train, via_tfds.train), (reg.test, via_tfds.test)):
    assert a.text == b.text and (a.labels == b.labels).all() and (a.uid == b.uid).all()
  built_mb = sum(f.stat().st_size for f in (work / f"tfds-{task}-0").rglob("*")
                 if f.is_file()) / 2**20
  med = {k: statistics.median(v) for k, v in
         (("reg", t_reg), ("build", t_build), ("load", t_load))}
  return {"date": harness.now(), "task (files)": task,
          "pool/test": f"{len(reg.train.labels):,}/{len(reg.test.labels):,}",
          "(a) registry load": f"{med['reg']:.2f} s",
          "(b) tfds first build": f"{med['build']:.2f} s",
          "(c) tfds load (built)": f"{med['load']:.2f} s",
          "ArrayRecord": f"{built_mb:.1f} MiB",
          "load avg (start .. end)": f"{loads[0]} .. {loads[-1]}"}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--n-train", type=int, default=120_000)
  p.add_argument("--n-test", type=int, default=7_600)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--tasks", default="agnews_business,agnews_business_raw")
  p.add_argument("--no-record", action="store_true")
  args = p.parse_args()
  work = Path(tempfile.mkdtemp(prefix="bench_tfds_"))
  try:
    manual = work / "manual"
    fabricate(manual, args.n_train, args.n_test)
    size_mb = sum(f.stat().st_size for f in manual.rglob("*.parquet")) / 2**20
    rows = []
    for task in args.tasks.split(","):
      rows.append(measure(task, manual, work, args.reps))
    if args.no_record:
      return
    harness.append_section(
        "tensorflow-datasets path vs the registry (bench/bench_tfds.py)",
        f"Machine: {harness.machine()}; "
        f"{harness.versions(['tensorflow-datasets', 'array-record', 'pyarrow', 'pandas'])}. "
        f"Synthetic AG News-size task ({args.n_train:,} train / {args.n_test:,} test rows, "
        f"20-70 words a text; processed parquet {size_mb:.1f} MiB): wall seconds, median of "
        f"{args.reps}, (a) (b) (c) in turn per repetition. Both paths give the same task "
        "(checked).", list(rows[0]), rows)
  finally:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main()
