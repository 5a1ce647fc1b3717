"""`anchoral label`: AnchorAL on data nobody has labelled yet (a human answers, not an oracle).

  anchoral label init   --workdir W --data pool.csv --text-column text [--id-column id]
                        --classes neg,pos --minority pos [--seed-labels seed.csv]
                        [--filter anchoral] [--strategy entropy] [--query-size 25]
                        [--model all-MiniLM-L6-v2] [--max-length 64] [--subpool-size N]
                        [--audit-size 50]
  anchoral label next   --workdir W   (read the filled-in batch, retrain, write the next one)
  anchoral label status --workdir W   (labels, the minority found and an interval for the pool)
  anchoral label export --workdir W --out DIR [--recall-target R]
  anchoral label apply  --model DIR --data new.csv --text-column text [--id-column id]
                        --out preds.csv [--threshold T]

One algorithm, two drivers: each step runs the very `api.Selector` (hence
`al.selection.select`: the filter, then the strategy, the simulation's query step), with a human's answers in place of the oracle, and the frozen-encoder regime
(`training.head.HeadRegime`: a linear head on cached encoder features, SPEC.md §5 "Here") as the
model. The features are the encoder's unit-norm mean-pooled sentence embeddings, computed once
at `init`; they serve both the head and the retrieval index (SPEC.md §4).

The job is split by module: label_workdir.py (the session's files, crash-safe: each is written
atomically or appended whole), label_inputs.py (the user's files, checked), label_steps.py
(init, next, status), label_classifier.py (the head; export and apply); this one is the CLI.
`load_classifier(DIR).predict_proba(texts)` is the exported classifier from Python.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from anchoral_jax import fileio
from anchoral_jax.errors import UserError
from anchoral_jax.label.classifier import apply, export
from anchoral_jax.label.steps import init, status, step
from anchoral_jax.label.workdir import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="anchoral label", description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest="command", required=True)
  i = sub.add_parser("init", help="start a session: embed the pool, write batch 1")
  i.add_argument("--workdir", required=True)
  i.add_argument("--data", required=True, help="the unlabelled file (CSV/TSV/parquet/JSONL)")
  i.add_argument("--text-column", default="text")
  i.add_argument("--id-column", default=None, help="default: 0-based row numbers")
  i.add_argument("--classes", required=True, help="comma-separated class names")
  i.add_argument("--minority", required=True, help="the rare class(es) to find, comma-separated")
  i.add_argument("--seed-labels", default=None, help="a file with columns id,label")
  i.add_argument("--filter", default="anchoral")
  i.add_argument("--strategy", default="entropy")
  i.add_argument("--query-size", type=int, default=25)
  i.add_argument("--model", default="all-MiniLM-L6-v2")
  i.add_argument("--max-length", type=int, default=64)
  i.add_argument("--subpool-size", type=int, default=0,
                 help="AnchorAL's cap M (default: 10,000 scaled to the pool)")
  i.add_argument("--num-neighbours", type=int, default=Settings.num_neighbours)
  i.add_argument("--seed", type=int, default=Settings.seed)
  i.add_argument("--audit-size", type=int, default=50,
                 help="random rows asked a few per batch, for status' estimate (0: none)")
  for name, text in (("next", "record the filled-in batch, retrain, write the next batch"),
                     ("status", "labels so far, batches, the minority found")):
    sub.add_parser(name, help=text).add_argument("--workdir", required=True)
  e = sub.add_parser("export", help="the classifier, your labels, predictions over the pool")
  e.add_argument("--workdir", required=True)
  e.add_argument("--out", required=True)
  e.add_argument("--recall-target", type=float, default=None,
                 help="minority threshold: the highest reaching this cross-validated recall "
                 "(default: the best cross-validated minority F1)")
  a = sub.add_parser("apply", help="score a new file with an exported classifier")
  a.add_argument("--model", required=True)
  a.add_argument("--data", required=True)
  a.add_argument("--text-column", default="text")
  a.add_argument("--id-column", default=None)
  a.add_argument("--out", required=True)
  a.add_argument("--threshold", type=float, default=None,
                 help="P(minority) at which a row is predicted minority (default: the model's)")
  return p


def _split(v: str) -> list[str]:
  return [x.strip() for x in v.split(",") if x.strip()]


def run(args: argparse.Namespace) -> str:

  if args.command == "apply":
    return apply(Path(args.model), args.data, args.text_column, args.id_column, Path(args.out),
                 args.threshold)
  wd = Path(args.workdir)
  if args.command != "init" and not (wd / "settings.json").is_file():
    load_settings(wd)  # the "not a session" message, before the lock creates the folder
  with fileio.lock(wd):
    if args.command == "init":
      s = Settings(data=args.data, text_column=args.text_column, id_column=args.id_column,
                   classes=_split(args.classes), minority=_split(args.minority),
                   filter=args.filter, strategy=args.strategy, query_size=args.query_size,
                   model=args.model, max_length=args.max_length,
                   subpool_size=args.subpool_size, num_neighbours=args.num_neighbours,
                   seed=args.seed, audit_size=args.audit_size)
      path = init(wd, s, args.seed_labels)
      return (f"Batch 1 is ready: {path}\nFill in its label column ({', '.join(s.classes)}; "
              f"blank or '?' skips a row), then run `anchoral label next --workdir {wd}`.")
    if args.command == "next":
      return step(wd)[0]
    if args.command == "status":
      return status(wd)
    return export(wd, Path(args.out), args.recall_target)


def main(argv: list[str]) -> None:
  """`anchoral label ...`: input errors are one line (or one list) on stderr and exit 2."""
  args = _parser().parse_args(argv)
  logging.getLogger("anchoral_jax").setLevel(logging.WARNING)
  try:
    print(run(args))
  except (UserError, FileNotFoundError) as e:  # LabelError is a DataFormatError
    print(f"anchoral label {args.command}: {e}", file=sys.stderr)
    sys.exit(2)
