"""`anchoral label`'s steps: init, next (`step`) and status, around `propose`, which chooses
a batch.

Each step runs the very `api.Selector` (hence `al.selection.select`, the query step the
simulation runs), with a human's answers in place of the oracle and the linear head of
label/classifier.py as the model.

Cold start (no labels for some class yet): a model trained on one class has nothing to say
about the other, and AnchorAL has no anchors for an absent class, so the batch is a diverse
sample instead: greedy k-means++ seeding (`clustering.kmeans_pp`) over the embeddings of the
rows not yet asked, seeded by the session seed and the batch number. Once every class has a
label, every batch comes from the model + filter + strategy.

Audit: a fifth of each batch (rounded up) comes from the audit sample until it is all served:
rows drawn uniformly at random once, the only labels that are a sample of the pool, from which
`status` estimates how many minority rows the pool holds (label/estimate.py).

Corrections: `next` reads every recorded batch file back; an answer edited there is appended to
answers.jsonl as a correction (the old answer stays in the file; the last one counts) and
listed in the step's message; a recorded file that no longer reads cleanly stops the step with
its problems (nothing recorded).

Order of a step: answers appended (with the closing line) -> head trained -> next batch chosen
-> state.json -> batch file. A step killed anywhere re-runs from where it stopped; a batch
whose closing line is written is never appended twice (the files: label_workdir.py).

Shape letters: N pool rows, E embedding width.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from anchoral_jax.al import filters, stopping
from anchoral_jax.fileio import publish, write_text_atomic
from anchoral_jax.label.classifier import probs_of, train_head
from anchoral_jax.label.inputs import read_batch_answers, read_seed, read_texts
from anchoral_jax.label.workdir import (
  LabelError,
  Pool,
  Settings,
  append_answers,
  append_corrections,
  batch_path,
  check_answers,
  labelled_rows,
  last_answers,
  load_embeddings,
  load_pool,
  load_settings,
  load_state,
  now,
  pool_ids,
  read_answers,
  save_head,
  save_state,
  write_batch_file,
)


def make_selector(s: Settings, pool: Pool, workdir: Path):
  """The very `api.Selector` the simulation runs (filter + strategy), on the session's pool."""
  from anchoral_jax.api import Selector
  from anchoral_jax.retrieval.index import PoolIndex

  index = None
  if filters.needs_index(s.filter):
    index = PoolIndex.load(workdir / "index.usearch")
  return Selector(filter=s.filter, strategy=s.strategy, embeddings=pool.emb_NxE, index=index,
                  minority=s.minority_idx, subpool_size=s.cap(len(pool.ids)),
                  num_anchors=s.num_anchors, num_neighbours=s.num_neighbours,
                  strategy_seed=s.seed, subset_seed=s.seed, anchor_seed=s.seed)


def audit_picks(s: Settings, pool: Pool, state: dict, answered: set[str], room: int
                ) -> tuple[list[int], np.ndarray]:
  """(audit rows to serve in this batch, audit rows not yet answered), advancing
  state["audit"]["served"] (label/estimate.py: the served prefix is a random sample).

  An old session (no audit in its state.json) gets its audit sample at its next step."""
  from anchoral_jax.label.estimate import audit_order

  if "audit" not in state:
    rows = audit_order(len(pool.ids), s.audit_size, s.seed)
    state["audit"] = {"ids": [str(pool.ids[r]) for r in rows], "served": 0}
  ids, m = state["audit"]["ids"], state["audit"]["served"]
  want = 0 if s.query_size < 2 else min(room, -(-s.query_size // 5))  # a fifth of each batch
  picks: list[int] = []
  while m < len(ids) and len(picks) < want:
    if ids[m] not in answered:  # a seed label (or an old answer) in the prefix is served as is
      picks.append(int(pool.rows_of([ids[m]])[0]))
    m += 1
  state["audit"]["served"] = m
  waiting = [i for i in ids[m:] if i not in answered]
  return picks, pool.rows_of(waiting) if waiting else np.zeros(0, np.int64)


def propose(workdir: Path, s: Settings, pool: Pool, state: dict, records: list[dict],
            batch: int) -> dict:
  """Chooses batch `batch` from the answers so far; returns its record for state.json and
  updates state["selector"] when the Selector ran, state["audit"] when audit rows are served.

  A batch is the Selector's (or the cold start's) rows then the next audit rows, query_size in
  all; the Selector never proposes an audit row."""
  rows, labels, skipped = labelled_rows(records, pool, s)
  asked = pool.rows_of([i for b in state["batches"] for i in b["ids"]])
  n = len(pool.ids)
  t0 = time.perf_counter()
  audit, waiting = audit_picks(s, pool, state, set(last_answers(records)),
                               min(s.query_size, n - len(rows) - len(skipped)))
  exclude = np.union1d(np.union1d(skipped, asked),
                       np.concatenate([waiting, np.asarray(audit, np.int64)]))
  k = s.query_size - len(audit)
  guess = score = None
  if len(set(labels.tolist())) < len(s.classes):  # cold start (module docstring)
    from anchoral_jax.al.clustering import kmeans_pp

    mask = np.ones(n, bool)
    mask[np.concatenate([rows, exclude]).astype(np.int64)] = False
    cand = np.flatnonzero(mask)
    rng = np.random.default_rng([s.seed, batch])
    picks = cand[kmeans_pp(pool.emb_NxE[cand], min(k, len(cand)), rng)] if k else cand[:0]
    kind = "cold start (k-means++)"  # no hints: a head that saw one class only says that class
  else:
    regime, params = train_head(pool.emb_NxE, rows, labels, s)
    save_head(workdir, params)
    state["stopping"] = stopping.label_update(  # status's advice: do the models settle?
        state.get("stopping"), probs_of(params, pool.emb_NxE[stopping.stop_set(np.arange(n))]))
    sel = make_selector(s, pool, workdir)
    if state.get("selector"):
      sel.load_state_dict(state["selector"])
    # Rows already asked (answered, skipped or deleted from a batch file) are never proposed
    # again, nor audit rows; labelled ones are excluded by the Selector itself.
    free = n - len(np.union1d(rows, exclude))
    picks = np.zeros(0, np.int64)
    if k and free:
      pick = sel.select(lambda r, keys: regime.outputs(params, "pool", r, keys), rows, labels,
                        query_size=min(k, free), exclude=exclude)
      picks = pick.rows
      state["selector"] = sel.state_dict()
      kind = f"{s.filter} + {s.strategy} (subpool {len(pick.subpool)})"
    else:
      kind = "audit only"
    both = np.concatenate([picks, audit]).astype(np.int64)
    p = probs_of(params, pool.emb_NxE[both])
    guess, score = p.argmax(-1), p.max(-1)
  picks = np.concatenate([picks, audit]).astype(np.int64)
  if audit:
    kind += f" + {len(audit)} audit"
  rec = {"batch": batch, "ids": [str(pool.ids[r]) for r in picks], "kind": kind,
         "time": now(), "seconds": round(time.perf_counter() - t0, 2),
         "audit": [str(pool.ids[r]) for r in audit]}
  if guess is not None:
    rec["guess"] = [s.classes[g] for g in guess]
    rec["score"] = [round(float(x), 4) for x in score]
  return rec


def init(workdir: Path, s: Settings, seed_labels: str | None = None) -> Path:
  """Embeds the pool once, builds the index, writes batch 1."""
  from anchoral_jax.al.strategies import strategy_kind
  from anchoral_jax.retrieval.embed import SentenceEncoder
  from anchoral_jax.retrieval.index import PoolIndex

  if (workdir / "settings.json").exists():
    raise LabelError(f"{workdir} already holds a labelling session: continue it with "
                     f"`anchoral label next --workdir {workdir}`, or choose a new --workdir.")
  if len(s.classes) < 2 or len(set(s.classes)) != len(s.classes):
    raise LabelError(f"--classes {','.join(s.classes)}: give two or more distinct class names, "
                     "comma-separated (e.g. --classes neg,pos).")
  for flag, value, least in (("--query-size", s.query_size, 1), ("--max-length", s.max_length, 1),
                             ("--num-neighbours", s.num_neighbours, 1),
                             ("--subpool-size", s.subpool_size, 0)):
    if value < least:  # --query-size 0 wrote an empty batch the session never got past
      raise LabelError(f"{flag} must be at least {least} (got {value}).")
  bad = [m for m in s.minority if m not in s.classes]
  if bad or not s.minority:
    raise LabelError(f"--minority {','.join(bad) or '(empty)'} is not among --classes "
                     f"{','.join(s.classes)}: name the rare class(es) you are looking for.")
  if s.audit_size < 0:
    raise LabelError(f"--audit-size {s.audit_size}: give 0 (no estimate) or more random rows.")
  from anchoral_jax.al.filters import FILTERS
  if s.filter not in FILTERS:
    raise LabelError(f"Unknown --filter {s.filter!r}; choose from {', '.join(FILTERS)}.")
  try:
    strategy_kind(s.strategy)
  except ValueError as e:
    raise LabelError(f"--strategy: {e}") from e
  ids, texts = read_texts(s.data, s.text_column, s.id_column)
  if len(ids) <= s.query_size:
    raise LabelError(f"{s.data} has {len(ids)} rows, not more than --query-size "
                     f"{s.query_size}: label it by hand, or lower --query-size.")
  s.data = str(Path(s.data).expanduser().resolve())
  pool_tmp = Pool(ids, texts, np.zeros((len(ids), 1), np.float32))
  seeds = read_seed(seed_labels, pool_tmp, s.classes) if seed_labels else []
  workdir.mkdir(parents=True, exist_ok=True)
  # What the embeddings depend on: a re-run of a killed init reuses them (`embeddings.json`
  # is written after the matrix, so its presence means the matrix is whole).
  ident = {"model": s.model, "max_length": s.max_length, "n": len(ids),
           "texts_sha1": hashlib.sha1("\0".join(texts).encode()).hexdigest()}
  meta = workdir / "embeddings.json"
  emb = None
  if meta.is_file() and json.loads(meta.read_text()) == ident:
    try:
      emb = np.asarray(load_embeddings(workdir, len(ids)))
      print(f"Reusing the embeddings in {workdir / 'embeddings.npy'}.", flush=True)
    except LabelError as e:  # derived from the data file: embed again
      print(f"{e.args[0].split(';')[0]}: embedding again.", flush=True)
  if emb is None:
    t0 = time.perf_counter()
    enc = SentenceEncoder(s.model, max_length=s.max_length)
    print(f"Embedding {len(ids)} texts with {s.model} (max {s.max_length} tokens), once...",
          flush=True)
    emb = enc.encode(list(texts), progress=True)
    publish(workdir / "embeddings.npy", lambda tmp: np.save(tmp, emb))
    write_text_atomic(meta, json.dumps(ident))
    print(f"Embedded in {time.perf_counter() - t0:.1f} s.", flush=True)
  publish(workdir / "pool.parquet", pd.DataFrame({"id": ids, "text": texts}).to_parquet)
  if filters.needs_index(s.filter):
    print("Building the retrieval index...", flush=True)
    # One thread: the same graph for the same pool every time (retrieval/prepare.py).
    PoolIndex.build(emb, np.arange(len(ids)), progress=len(ids) > 2000, threads=1).save(
        workdir / "index.usearch")
  state = {"batches": [], "selector": None}
  pool = Pool(ids, texts, emb)
  if seeds and 0 not in read_answers(workdir)[1]:  # a re-run of a killed init: once only
    append_answers(workdir, 0, seeds, {"source": str(seed_labels)})
  records, _ = read_answers(workdir)
  rec = propose(workdir, s, pool, state, records, 1)
  state["batches"].append(rec)
  # settings.json last: its presence means the session is whole (init re-runs otherwise).
  save_state(workdir, state)
  path = write_batch_file(workdir, pool, rec)
  write_text_atomic(workdir / "settings.json", json.dumps(dataclasses.asdict(s), indent=1))
  return path


def corrections(workdir: Path, s: Settings, state: dict, records: list[dict], closed: set[int]
                ) -> tuple[list[tuple[int, str, str | None]], list[str]]:
  """Answers edited in recorded batch files: ([(batch, id, new answer)], notes).

  Every recorded batch file is read back (checked like a new one: a bad file stops the step
  with its message, nothing recorded) and compared with the last recorded answer of each id.
  A row deleted from a recorded file keeps its answer (a note says so)."""
  from anchoral_jax.data.user import read_table

  last = last_answers(records)
  changes, notes = [], []
  for b in state["batches"]:
    path = batch_path(workdir, b["batch"])
    if b["batch"] not in closed or not path.is_file():
      continue
    answers, _ = read_batch_answers(path, b["ids"], s.classes)
    present = set(read_table(path, file_format="csv")["id"].astype(str).str.strip())
    for i, a in answers:
      if i not in present:
        if i in last:
          notes.append(f"batch {b['batch']}: id {i} is no longer in {path.name}; its recorded "
                       f"answer ({last[i] or 'skipped'}) stands")
      elif i in last and a != last[i]:
        changes.append((b["batch"], i, a))
  return changes, notes


def step(workdir: Path) -> tuple[str, Path]:
  """Records corrections to recorded batch files, ingests the latest batch file (if filled
  in) and writes the next one."""
  s = load_settings(workdir)
  state = load_state(workdir)
  pool = load_pool(workdir)
  last = state["batches"][-1]
  n = last["batch"]
  path = batch_path(workdir, n)
  records, closed = read_answers(workdir)
  check_answers(workdir, state, closed)
  changes, notes = corrections(workdir, s, state, records, closed)
  said = []
  if changes:
    number = 1 + max((r.get("correction", 0) for r in records), default=0)
    before = last_answers(records)
    append_corrections(workdir, number, changes)
    said.append(f"Recorded {len(changes)} correction(s) to answered batches (answers.jsonl "
                "keeps the old answers too):\n" + "\n".join(
                    f"  batch {b}, id {i}: {before[i] or 'skipped'} -> {a or 'skipped'}"
                    for b, i, a in changes))
  said += notes
  head = "\n".join(said) + ("\n" if said else "")
  if n not in closed:
    if not path.exists():  # killed between state.json and the batch file: write it again
      write_batch_file(workdir, pool, last)
      return head + (f"Re-wrote {path} (it was missing). Fill in its label column, then run "
                     "next."), path
    answers, filled = read_batch_answers(path, last["ids"], s.classes)
    if filled == 0:
      return head + (f"Nothing to do: {path} has no answers yet. Fill in its label column (a "
                     f"class: {', '.join(s.classes)}; blank or '?' skips a row) and run this "
                     "again."), path
    found = sum(a in s.minority for _, a in answers)
    append_answers(workdir, n, answers, {"answered": filled, "minority": found})
  records, _ = read_answers(workdir)
  rec = propose(workdir, s, pool, state, records, n + 1)
  if not rec["ids"]:
    return head + "Every row of the pool has been asked: export the classifier.", path
  state["batches"].append(rec)
  save_state(workdir, state)
  out = write_batch_file(workdir, pool, rec)
  return head + (f"Recorded batch {n}. Batch {n + 1} ({len(rec['ids'])} rows, {rec['kind']}, "
                 f"{rec['seconds']:.1f} s): {out}"), out


def minority_estimate(s: Settings, state: dict, records: list[dict], n_pool: int):
  """label_estimate.estimate from the answered audit prefix and every label so far."""
  from anchoral_jax.label.estimate import estimate

  last = last_answers(records)
  served = state.get("audit", {}).get("ids", [])[:state.get("audit", {}).get("served", 0)]
  audit = [last[i] in s.minority for i in served if last.get(i) is not None]
  found = sum(v in s.minority for v in last.values())
  majority = sum(v is not None and v not in s.minority for v in last.values())
  return estimate(n_pool, audit, found, majority)


def status(workdir: Path) -> str:
  s = load_settings(workdir)
  state = load_state(workdir)
  records, closed = read_answers(workdir)
  check_answers(workdir, state, closed)
  last = last_answers(records)
  counts = {c: sum(v == c for v in last.values()) for c in s.classes}
  skipped = sum(v is None for v in last.values())
  n_pool = len(pool_ids(workdir))
  lines = [f"session {workdir}: {len(last)} answered ({skipped} skipped) of {n_pool} rows",
           "labels: " + ", ".join(f"{c} {k}" for c, k in counts.items())]
  name = ",".join(s.minority)
  est = minority_estimate(s, state, records, n_pool)
  audit = state.get("audit", {"ids": [], "served": 0})
  if est.audited:
    verdict = ("the interval says all are found" if est.all_found else
               f"between {est.low - est.found} and {est.high - est.found} still unfound")
    lines.append(
        f"minority ({name}): {est.found} found; about {est.total} in the pool "
        f"({est.level:.0%} interval {est.low}-{est.high}: {verdict}), from {est.audited} "
        f"random audit rows answered ({est.audit_minority} {name}) of {len(audit['ids'])}")
  elif audit["ids"]:
    lines.append(f"minority ({name}): {est.found} found (no estimate yet: the audit's "
                 f"{len(audit['ids'])} random rows come a few per batch)")
  else:
    lines.append(f"minority ({name}): {est.found} found (no estimate: this session has no "
                 "audit sample, --audit-size 0)")
  n_corr = len({r["correction"] for r in records if "correction" in r})
  if n_corr:
    lines.append(f"corrections: {sum('correction' in r for r in records)} answer(s) changed "
                 f"in {n_corr} step(s) (answers.jsonl)")
  if state.get("stopping"):
    lines.append(stopping.advice(state["stopping"]["kappas"], state["stopping"]["uncertainty"]))
  lines.append("batch  size  answered  skipped  minority  chosen by")
  by_batch: dict[int, list] = {}
  for r in records:
    if "correction" not in r:
      by_batch.setdefault(r["batch"], []).append(r["label"])
  if 0 in by_batch:
    v = by_batch[0]
    lines.append(f"{'seed':>5}  {len(v):>4}  {len(v):>8}  {0:>7}  "
                 f"{sum(x in s.minority for x in v):>8}  seed labels")
  for b in state["batches"]:
    v = by_batch.get(b["batch"])
    if v is None:
      lines.append(f"{b['batch']:>5}  {len(b['ids']):>4}  {'(waiting for answers)':>27}  "
                   f"{b['kind']}")
    else:
      ans = sum(x is not None for x in v)
      lines.append(f"{b['batch']:>5}  {len(b['ids']):>4}  {ans:>8}  {len(v) - ans:>7}  "
                   f"{sum(x in s.minority for x in v):>8}  {b['kind']}")
  return "\n".join(lines)
