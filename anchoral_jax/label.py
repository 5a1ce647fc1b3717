"""`anchoral label`: AnchorAL on data nobody has labelled yet (a human answers, not an oracle).

  anchoral label init   --workdir W --data pool.csv --text-column text [--id-column id]
                        --classes neg,pos --minority pos [--seed-labels seed.csv]
                        [--filter anchoral] [--strategy entropy] [--query-size 25]
                        [--model all-MiniLM-L6-v2] [--max-length 64] [--subpool-size N]
  anchoral label next   --workdir W   (read the filled-in batch, retrain, write the next one)
  anchoral label status --workdir W
  anchoral label export --workdir W --out DIR
  anchoral label apply  --model DIR --data new.csv --text-column text [--id-column id]
                        --out preds.csv

One algorithm, two drivers: each step runs the very `api.Selector` (hence
`filters.build_subpool` + `strategies.acquire`, as `loop.query`) that the simulation runs,
with a human's answers in place of the oracle, and the frozen-encoder regime
(`regimes.HeadRegime`: a linear head on cached encoder features, SPEC.md §5 "Here") as the
model. The features are the encoder's unit-norm mean-pooled sentence embeddings, computed once
at `init`; they serve both the head and the retrieval index (SPEC.md §4).

Cold start (no labels for some class yet): a model trained on one class has nothing to say
about the other, and AnchorAL has no anchors for an absent class, so the batch is a diverse
sample instead: greedy k-means++ seeding (`clustering.kmeans_pp`) over the embeddings of the
rows not yet asked, seeded by the session seed and the batch number. Once every class has a
label, every batch comes from the model + filter + strategy.

The workdir (the unit of resume, like a run's):
  settings.json      the session's settings (written once, by init)
  pool.parquet       ids and texts of the pool, in row order (rows are Selector rows)
  embeddings.npy     emb_NxE, float32, unit-norm (embeddings.json: what they were made from)
  index.usearch      the cosine HNSW index over them (AnchorAL/SEALS retrieval)
  answers.jsonl      append-only: one line per answer {"batch", "id", "label" (null when
                     skipped), "time"}; then one {"batch", "ingested": true, ...} line closing
                     the batch. Lines of a batch without its closing line are ignored (a
                     killed append), so a re-run appends that batch again, whole.
  state.json         every batch asked (ids, hints) and the Selector's generators, written
                     atomically *before* the batch file: a missing batch file is re-written
  batches/batch_NNN.csv  the file to fill in: id, text, label (empty), guess, score
  head.npz           the last trained head (for status' estimate)

Order of a step: answers appended (with the closing line) -> head trained -> next batch chosen
-> state.json -> batch file. A step killed anywhere re-runs from where it stopped; a batch
whose closing line is written is never appended twice.

Shape letters: N pool rows, E embedding width, C classes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from anchoral_jax.data.user import DataFormatError, read_table
from anchoral_jax.fileio import write_text_atomic

log = logging.getLogger(__name__)

SKIP_WORDS = ("?", "skip", "-")  # explicit "don't know" (a blank cell means the same)
BATCH_COLUMNS = ("id", "text", "label", "guess", "score")
HEAD_LR = 1e-2  # a linear head from scratch (configs/reproduce_cpu.py); 4e-5 is for fine-tuning
PAPER_POOL, PAPER_SUBPOOL = 90_910, 10_000  # AG News and its cap M (configs/reproduce_cpu.py)


class LabelError(DataFormatError):
  """A labelling-session input (answer file, seed file, settings, workdir) cannot be used; the
  message names the file, the line and the fix (CLI exit 2, nothing written)."""


# ---------------------------------------------------------------------------------------------
# Settings and workdir files.


@dataclasses.dataclass
class Settings:
  data: str
  text_column: str
  id_column: str | None
  classes: list[str]
  minority: list[str]
  filter: str = "anchoral"
  strategy: str = "entropy"
  query_size: int = 25
  model: str = "all-MiniLM-L6-v2"
  max_length: int = 64
  subpool_size: int = 0  # 0: the paper's 10,000 scaled to the pool
  num_anchors: int = 10
  num_neighbours: int = 50
  seed: int = 42

  @property
  def minority_idx(self) -> tuple[int, ...]:
    return tuple(self.classes.index(c) for c in self.minority)

  def cap(self, pool_size: int) -> int:
    """The subpool cap M: the paper's 10,000 of 90,910 scaled to the pool, as
    configs/reproduce_cpu.py does, never below 4 query sizes."""
    if self.subpool_size:
      return self.subpool_size
    return max(4 * self.query_size, round(PAPER_SUBPOOL * pool_size / PAPER_POOL))


def _now() -> str:
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _batch_path(workdir: Path, n: int) -> Path:
  return workdir / "batches" / f"batch_{n:03d}.csv"


def _load_settings(workdir: Path) -> Settings:
  path = workdir / "settings.json"
  if not path.is_file():
    raise LabelError(f"{workdir} is not a labelling session ({path.name} is missing): start "
                     f"one with `anchoral label init --workdir {workdir} --data FILE ...`.")
  return Settings(**json.loads(path.read_text()))


def _load_state(workdir: Path) -> dict:
  return json.loads((workdir / "state.json").read_text())


def _save_state(workdir: Path, state: dict) -> None:
  write_text_atomic(workdir / "state.json", json.dumps(state, indent=1))


def read_answers(workdir: Path) -> tuple[list[dict], set[int]]:
  """(answer records of closed batches, closed batch numbers) from answers.jsonl.

  A batch's lines count only once its closing line is there (a killed append leaves some
  lines without one; the re-run appends the batch again, whole). Unparsable lines (a torn
  last write) are skipped."""
  path = workdir / "answers.jsonl"
  records, closed = [], set()
  if not path.exists():
    return records, closed
  pending: dict[int, list[dict]] = {}
  for line in path.read_text().splitlines():
    try:
      r = json.loads(line)
    except json.JSONDecodeError:
      continue
    if r.get("ingested"):
      if r["batch"] not in closed:
        closed.add(r["batch"])
        records += pending.get(r["batch"], [])
      pending.pop(r["batch"], None)
    else:
      pending.setdefault(r["batch"], []).append(r)
  return records, closed


def _append_answers(workdir: Path, batch: int, answers: list[tuple[str, str | None]],
                    extra: dict) -> None:
  """Appends one batch's answers and its closing line in one write (append-only file)."""
  path = workdir / "answers.jsonl"
  t = _now()
  lines = [json.dumps({"batch": batch, "id": i, "label": lab, "time": t}) for i, lab in answers]
  lines.append(json.dumps({"batch": batch, "ingested": True, "time": t, **extra}))
  text = "\n".join(lines) + "\n"
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    if os.fstat(fd).st_size:  # a torn last line (killed mid-write) must not swallow ours
      with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
          text = "\n" + text
    os.write(fd, text.encode())
    os.fsync(fd)
  finally:
    os.close(fd)


@dataclasses.dataclass
class Pool:
  ids: np.ndarray  # str, [N]
  texts: np.ndarray  # str, [N]
  emb_NxE: np.ndarray

  @functools.cached_property
  def _pos(self) -> dict[str, int]:
    return {i: r for r, i in enumerate(self.ids)}

  def rows_of(self, ids: Sequence[str]) -> np.ndarray:
    return np.asarray([self._pos[i] for i in ids], np.int64)


def _load_pool(workdir: Path) -> Pool:
  df = pd.read_parquet(workdir / "pool.parquet")
  emb = np.load(workdir / "embeddings.npy", mmap_mode="r")  # read-only: a big pool stays on disk
  return Pool(df["id"].to_numpy(str), df["text"].to_numpy(object), emb)


# ---------------------------------------------------------------------------------------------
# Reading the user's files.


def _read_texts(path: str, text_column: str, id_column: str | None) -> tuple[np.ndarray,
                                                                           np.ndarray]:
  """(ids as str, texts) of a data file; ids default to the 0-based row number."""
  from anchoral_jax.data.user import check_texts

  cols = [text_column] + ([id_column] if id_column else [])
  df = read_table(path, cols)
  texts = np.asarray(check_texts(df[text_column], f"{path}, column {text_column!r}"), object)
  if id_column:
    raw = df[id_column]
    if raw.isna().any():
      bad = np.flatnonzero(raw.isna().to_numpy())[:5]
      raise LabelError(f"{path}: column {id_column!r} is empty in data row(s) "
                       f"{', '.join(str(b) for b in bad)} (0-based): every row needs an id.")
    ids = raw.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer()
                  else str(v).strip()).to_numpy(str)
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
      raise LabelError(f"{path}: ids repeat in column {id_column!r} (e.g. "
                       f"{sorted(set(ids[dup]))[:5]}): ids are the key of every answer, so "
                       "they must be unique; fix the file or drop --id-column.")
  else:
    ids = np.arange(len(texts)).astype(str)
  return ids, texts


def _canonical(value, classes: Sequence[str]) -> str | None:
  """A label cell -> a class name, None for "skipped", or raises KeyError if unknown."""
  if value is None or (isinstance(value, float) and np.isnan(value)):
    return None
  s = str(value).strip()
  if not s or s.lower() in SKIP_WORDS:
    return None
  lower = {c.lower(): c for c in classes}
  if s.lower() in lower:
    return lower[s.lower()]
  raise KeyError(s)


def read_batch_answers(path: Path, asked: Sequence[str], classes: Sequence[str]
                       ) -> tuple[list[tuple[str, str | None]], int]:
  """Validated answers of a filled-in batch file: ([(id, class or None)], #filled in).

  Rows are matched by id (an edited text is fine). Rows the user deleted count as skipped.
  Every problem is reported at once, with its line, before anything is written.
  """
  df = read_table(path, file_format="csv")
  df.columns = [str(c).lstrip("\ufeff").strip() for c in df.columns]  # a spreadsheet's BOM
  missing = [c for c in ("id", "label") if c not in df.columns]
  if missing:
    raise LabelError(f"{path}: column(s) {missing} missing (columns: {list(df.columns)}): "
                     f"restore the batch file's header, {','.join(BATCH_COLUMNS)}, and run "
                     "`anchoral label next` again.")
  problems = []
  ids = df["id"].fillna("").astype(str).str.strip().to_numpy()
  asked_set = set(asked)
  seen: dict[str, int] = {}
  answers: dict[str, str | None] = {}
  for k, (i, value) in enumerate(zip(ids, df["label"].to_numpy(object), strict=True)):
    line = k + 2  # the header is line 1; texts are written without line breaks
    if i not in asked_set:
      problems.append(f"line {line}: id {i!r} was not asked in this batch (an id edited, or a "
                      "row added): restore the id as written; only the label column is yours")
      continue
    if i in seen:
      problems.append(f"line {line}: id {i!r} repeats line {seen[i]}: keep one of the rows")
      continue
    seen[i] = line
    try:
      answers[i] = _canonical(value, classes)
    except KeyError:
      problems.append(f"line {line}: unknown label {str(value).strip()!r} for id {i!r}: use "
                      f"one of {', '.join(classes)} (or leave it blank / '?' to skip)")
  if problems:
    shown = "\n  ".join(problems[:10])
    more = f"\n  ... ({len(problems)} problems in all)" if len(problems) > 10 else ""
    raise LabelError(f"{path} has {len(problems)} problem(s); nothing was recorded:\n  {shown}"
                     f"{more}\nFix the file and run `anchoral label next` again.")
  filled = sum(v is not None for v in answers.values())
  return [(i, answers.get(i)) for i in asked], filled


def _read_seed(path: str, pool: Pool, classes: Sequence[str]) -> list[tuple[str, str]]:
  df = read_table(path, ["id", "label"])
  known = set(pool.ids)
  problems, out = [], []
  for k, (i, value) in enumerate(zip(df["id"].astype(str).str.strip(),
                                     df["label"].to_numpy(object), strict=True)):
    try:
      lab = _canonical(value, classes)
    except KeyError:
      problems.append(f"line {k + 2}: unknown label {str(value).strip()!r}: use one of "
                      f"{', '.join(classes)}")
      continue
    if i not in known:
      problems.append(f"line {k + 2}: id {i!r} is not in the pool (ids come from --id-column, "
                      "or are 0-based row numbers without it)")
    elif lab is not None:
      out.append((i, lab))
  if problems:
    raise LabelError(f"Seed labels {path}: {len(problems)} problem(s):\n  " +
                     "\n  ".join(problems[:10]) + "\nFix the file and run init again.")
  return out


# ---------------------------------------------------------------------------------------------
# The model: a linear head on the frozen encoder's features (regimes.HeadRegime).


def head_regime(emb_NxE: np.ndarray, num_classes: int, minority: tuple[int, ...], seed: int):
  """`regimes.HeadRegime` over the cached embeddings (every feature key is the embedding)."""
  import jax

  from anchoral_jax import models
  from anchoral_jax.regimes import HeadRegime
  from anchoral_jax.train import TrainConfig

  cfg = models.preset("tiny")  # only hidden_dropout_prob is read: BERT's 0.1
  tc = TrainConfig(learning_rate=HEAD_LR, trainable="head")
  feats = {"pooled": emb_NxE, "mean": emb_NxE, "cls": emb_NxE}
  return HeadRegime(cfg=cfg, tc=tc, features={"pool": feats}, num_classes=num_classes,
                    minority=minority, data_seed=seed, dropout_key=jax.random.key(seed))


def init_head(e: int, c: int, seed: int) -> dict:
  """BERT's head initialiser (normal, std 0.02; zero bias), the same weights every step."""
  rng = np.random.default_rng(seed)
  return {"classifier": {"kernel": (rng.standard_normal((e, c)) * 0.02).astype(np.float32),
                         "bias": np.zeros(c, np.float32)}}


def train_head(emb_NxE: np.ndarray, rows: np.ndarray, labels: np.ndarray, s: Settings):
  """(regime, params) trained on the labelled rows, from the same initial head every step."""
  regime = head_regime(emb_NxE, len(s.classes), s.minority_idx, s.seed)
  fit = regime.fit(init_head(emb_NxE.shape[1], len(s.classes), s.seed), rows, labels)
  return regime, fit.params


def probs_of(params: dict, emb_NxE: np.ndarray) -> np.ndarray:
  h = params["classifier"]
  logits = np.asarray(emb_NxE, np.float32) @ np.asarray(h["kernel"]) + np.asarray(h["bias"])
  logits -= logits.max(-1, keepdims=True)
  p = np.exp(logits)
  return p / p.sum(-1, keepdims=True)


def make_selector(s: Settings, pool: Pool, workdir: Path):
  from anchoral_jax.api import Selector
  from anchoral_jax.index import PoolIndex

  index = None
  if s.filter in ("anchoral", "seals"):
    index = PoolIndex.load(workdir / "index.usearch")
  return Selector(filter=s.filter, strategy=s.strategy, embeddings=pool.emb_NxE, index=index,
                  minority=s.minority_idx, subpool_size=s.cap(len(pool.ids)),
                  num_anchors=s.num_anchors, num_neighbours=s.num_neighbours,
                  strategy_seed=s.seed, subset_seed=s.seed, anchor_seed=s.seed)


# ---------------------------------------------------------------------------------------------
# One step.


def _labelled(records: list[dict], pool: Pool, s: Settings):
  """(labelled rows, their class indices, skipped rows): the last answer for an id wins."""
  last: dict[str, str | None] = {}
  for r in records:
    last[r["id"]] = r["label"]
  lab = {i: v for i, v in last.items() if v is not None}
  skipped = [i for i, v in last.items() if v is None]
  rows = pool.rows_of(list(lab))
  labels = np.asarray([s.classes.index(v) for v in lab.values()], np.int64)
  return rows, labels, pool.rows_of(skipped)


def propose(workdir: Path, s: Settings, pool: Pool, state: dict, records: list[dict],
            batch: int) -> dict:
  """Chooses batch `batch` from the answers so far; returns its record for state.json and
  updates state["selector"] when the Selector ran."""
  rows, labels, skipped = _labelled(records, pool, s)
  asked = pool.rows_of([i for b in state["batches"] for i in b["ids"]])
  n = len(pool.ids)
  t0 = time.perf_counter()
  guess = score = None
  if len(set(labels.tolist())) < len(s.classes):  # cold start (module docstring)
    from anchoral_jax.clustering import kmeans_pp

    mask = np.ones(n, bool)
    mask[np.concatenate([rows, skipped, asked]).astype(np.int64)] = False
    cand = np.flatnonzero(mask)
    rng = np.random.default_rng([s.seed, batch])
    picks = cand[kmeans_pp(pool.emb_NxE[cand], min(s.query_size, len(cand)), rng)]
    kind = "cold start (k-means++)"  # no hints: a head that saw one class only says that class
  else:
    regime, params = train_head(pool.emb_NxE, rows, labels, s)
    _save_head(workdir, params)
    sel = make_selector(s, pool, workdir)
    if state.get("selector"):
      sel.load_state_dict(state["selector"])
    # Rows already asked (answered, skipped or deleted from a batch file) are never proposed
    # again; labelled ones are excluded by the Selector itself.
    pick = sel.select(lambda r, keys: regime.outputs(params, "pool", r, keys), rows, labels,
                      query_size=s.query_size, exclude=np.union1d(skipped, asked))
    picks = pick.rows
    state["selector"] = sel.state_dict()
    p = probs_of(params, pool.emb_NxE[picks])
    guess, score = p.argmax(-1), p.max(-1)
    kind = f"{s.filter} + {s.strategy} (subpool {len(pick.subpool)})"
  rec = {"batch": batch, "ids": [str(pool.ids[r]) for r in picks], "kind": kind,
         "time": _now(), "seconds": round(time.perf_counter() - t0, 2)}
  if guess is not None:
    rec["guess"] = [s.classes[g] for g in guess]
    rec["score"] = [round(float(x), 4) for x in score]
  return rec


def _save_head(workdir: Path, params: dict) -> None:
  tmp = workdir / f"head.{os.getpid()}.tmp.npz"
  np.savez(tmp, kernel=np.asarray(params["classifier"]["kernel"]),
           bias=np.asarray(params["classifier"]["bias"]))
  os.replace(tmp, workdir / "head.npz")


def write_batch_file(workdir: Path, pool: Pool, rec: dict) -> Path:
  rows = pool.rows_of(rec["ids"])
  k = len(rows)
  df = pd.DataFrame({
      "id": rec["ids"],
      # One line per row, so error messages' line numbers are the editor's; the id is the key.
      "text": [" ".join(str(t).split()) for t in pool.texts[rows]],
      "label": [""] * k,
      "guess": rec.get("guess", [""] * k),
      "score": [f"{x:.3f}" for x in rec["score"]] if "score" in rec else [""] * k})
  path = _batch_path(workdir, rec["batch"])
  write_text_atomic(path, df.to_csv(index=False))
  return path


# ---------------------------------------------------------------------------------------------
# Commands.


def init(workdir: Path, s: Settings, seed_labels: str | None = None) -> Path:
  """Embeds the pool once, builds the index, writes batch 1."""
  from anchoral_jax.embed import SentenceEncoder
  from anchoral_jax.index import PoolIndex
  from anchoral_jax.strategies import strategy_kind

  if (workdir / "settings.json").exists():
    raise LabelError(f"{workdir} already holds a labelling session: continue it with "
                     f"`anchoral label next --workdir {workdir}`, or choose a new --workdir.")
  if len(s.classes) < 2 or len(set(s.classes)) != len(s.classes):
    raise LabelError(f"--classes {','.join(s.classes)}: give two or more distinct class names, "
                     "comma-separated (e.g. --classes neg,pos).")
  bad = [m for m in s.minority if m not in s.classes]
  if bad or not s.minority:
    raise LabelError(f"--minority {','.join(bad) or '(empty)'} is not among --classes "
                     f"{','.join(s.classes)}: name the rare class(es) you are looking for.")
  from anchoral_jax.loop import FILTERS
  if s.filter not in FILTERS:
    raise LabelError(f"Unknown --filter {s.filter!r}; choose from {', '.join(FILTERS)}.")
  try:
    strategy_kind(s.strategy)
  except ValueError as e:
    raise LabelError(f"--strategy: {e}") from e
  ids, texts = _read_texts(s.data, s.text_column, s.id_column)
  if len(ids) <= s.query_size:
    raise LabelError(f"{s.data} has {len(ids)} rows, not more than --query-size "
                     f"{s.query_size}: label it by hand, or lower --query-size.")
  s.data = str(Path(s.data).expanduser().resolve())
  pool_tmp = Pool(ids, texts, np.zeros((len(ids), 1), np.float32))
  seeds = _read_seed(seed_labels, pool_tmp, s.classes) if seed_labels else []
  workdir.mkdir(parents=True, exist_ok=True)
  # What the embeddings depend on: a re-run of a killed init reuses them (`embeddings.json`
  # is written after the matrix, so its presence means the matrix is whole).
  ident = {"model": s.model, "max_length": s.max_length, "n": len(ids),
           "texts_sha1": hashlib.sha1("\0".join(texts).encode()).hexdigest()}
  meta = workdir / "embeddings.json"
  if meta.is_file() and json.loads(meta.read_text()) == ident:
    emb = np.load(workdir / "embeddings.npy")
    print(f"Reusing the embeddings in {workdir / 'embeddings.npy'}.", flush=True)
  else:
    t0 = time.perf_counter()
    enc = SentenceEncoder(s.model, max_length=s.max_length)
    print(f"Embedding {len(ids)} texts with {s.model} (max {s.max_length} tokens), once...",
          flush=True)
    emb = enc.encode(list(texts), progress=True)
    tmp = workdir / f"embeddings.{os.getpid()}.tmp.npy"
    np.save(tmp, emb)
    os.replace(tmp, workdir / "embeddings.npy")
    write_text_atomic(meta, json.dumps(ident))
    print(f"Embedded in {time.perf_counter() - t0:.1f} s.", flush=True)
  tmp = workdir / "pool.tmp.parquet"
  pd.DataFrame({"id": ids, "text": texts}).to_parquet(tmp)
  os.replace(tmp, workdir / "pool.parquet")
  if s.filter in ("anchoral", "seals"):
    print("Building the retrieval index...", flush=True)
    PoolIndex.build(emb, np.arange(len(ids)), progress=len(ids) > 2000).save(
        workdir / "index.usearch")
  state = {"batches": [], "selector": None}
  pool = Pool(ids, texts, emb)
  if seeds and 0 not in read_answers(workdir)[1]:  # a re-run of a killed init: once only
    _append_answers(workdir, 0, seeds, {"source": str(seed_labels)})
  records, _ = read_answers(workdir)
  rec = propose(workdir, s, pool, state, records, 1)
  state["batches"].append(rec)
  # settings.json last: its presence means the session is whole (init re-runs otherwise).
  _save_state(workdir, state)
  path = write_batch_file(workdir, pool, rec)
  write_text_atomic(workdir / "settings.json", json.dumps(dataclasses.asdict(s), indent=1))
  return path


def step(workdir: Path) -> tuple[str, Path]:
  """Ingests the latest batch file (if filled in) and writes the next one."""
  s = _load_settings(workdir)
  state = _load_state(workdir)
  pool = _load_pool(workdir)
  last = state["batches"][-1]
  n = last["batch"]
  path = _batch_path(workdir, n)
  _, closed = read_answers(workdir)
  if n not in closed:
    if not path.exists():  # killed between state.json and the batch file: write it again
      write_batch_file(workdir, pool, last)
      return f"Re-wrote {path} (it was missing). Fill in its label column, then run next.", path
    answers, filled = read_batch_answers(path, last["ids"], s.classes)
    if filled == 0:
      return (f"Nothing to do: {path} has no answers yet. Fill in its label column (a class: "
              f"{', '.join(s.classes)}; blank or '?' skips a row) and run this again."), path
    found = sum(a in s.minority for _, a in answers)
    _append_answers(workdir, n, answers, {"answered": filled, "minority": found})
  records, _ = read_answers(workdir)
  rec = propose(workdir, s, pool, state, records, n + 1)
  if not rec["ids"]:
    return "Every row of the pool has been asked: export the classifier.", path
  state["batches"].append(rec)
  _save_state(workdir, state)
  out = write_batch_file(workdir, pool, rec)
  return (f"Recorded batch {n}. Batch {n + 1} ({len(rec['ids'])} rows, {rec['kind']}, "
          f"{rec['seconds']:.1f} s): {out}"), out


def status(workdir: Path) -> str:
  s = _load_settings(workdir)
  state = _load_state(workdir)
  records, closed = read_answers(workdir)
  last: dict[str, str | None] = {}
  for r in records:
    last[r["id"]] = r["label"]
  counts = {c: sum(v == c for v in last.values()) for c in s.classes}
  skipped = sum(v is None for v in last.values())
  lines = [f"session {workdir}: {len(last)} answered ({skipped} skipped) of "
           f"{len(pd.read_parquet(workdir / 'pool.parquet', columns=['id']))} rows",
           "labels: " + ", ".join(f"{c} {k}" for c, k in counts.items())]
  found = sum(counts[m] for m in s.minority)
  head = workdir / "head.npz"
  if head.exists():
    with np.load(head) as z:
      params = {"classifier": {"kernel": z["kernel"], "bias": z["bias"]}}
    emb = np.load(workdir / "embeddings.npy", mmap_mode="r")
    p = probs_of(params, emb)
    # Rows the last head predicts as a minority class. Rough: the head is trained on a
    # labelled set the strategy enriched in the minority (the point of AnchorAL), so it
    # overestimates early on; the sum of probabilities overestimates far more (10x at 85 labels
    # on 20k BBC sentences, 1% tech), hence the argmax count.
    est = int(np.isin(p.argmax(-1), s.minority_idx).sum())
    lines.append(f"minority ({','.join(s.minority)}) found: {found} of an estimated "
                 f"{max(est, found)} in the pool (rows the last model predicts as minority)")
  else:
    lines.append(f"minority ({','.join(s.minority)}) found: {found} (no model yet: no estimate)")
  lines.append("batch  size  answered  skipped  minority  chosen by")
  by_batch: dict[int, list] = {}
  for r in records:
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


# Export and apply.


@dataclasses.dataclass
class LabelClassifier:
  """The exported classifier: the frozen encoder (by name) + the trained linear head."""

  classes: list[str]
  encoder: str
  max_length: int
  params: dict

  def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
    from anchoral_jax.embed import SentenceEncoder

    enc = SentenceEncoder(self.encoder, max_length=self.max_length)
    return probs_of(self.params, enc.encode(list(texts), progress=len(texts) > 2000))


def load_classifier(path: str | os.PathLike) -> LabelClassifier:
  """The classifier `anchoral label export` wrote to `path`, in one call."""
  path = Path(path)
  meta_path, head_path = path / "classifier.json", path / "head.npz"
  if not (meta_path.is_file() and head_path.is_file()):
    raise LabelError(f"{path} holds no exported classifier (classifier.json and head.npz): "
                     "write one with `anchoral label export --workdir W --out DIR`.")
  meta = json.loads(meta_path.read_text())
  with np.load(head_path) as z:
    params = {"classifier": {"kernel": z["kernel"], "bias": z["bias"]}}
  return LabelClassifier(meta["classes"], meta["encoder"], meta["max_length"], params)


def _predictions_frame(ids, texts, p_NxC: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
  return pd.DataFrame({"id": ids, "text": texts,
                       "label": [classes[g] for g in p_NxC.argmax(-1)],
                       "probability": np.round(p_NxC.max(-1), 6)})


def export(workdir: Path, out: Path) -> str:
  s = _load_settings(workdir)
  pool = _load_pool(workdir)
  records, _ = read_answers(workdir)
  rows, labels, _ = _labelled(records, pool, s)
  missing = [c for k, c in enumerate(s.classes) if k not in set(labels.tolist())]
  if missing:
    raise LabelError(f"No labels yet for class(es) {', '.join(missing)}: a classifier needs "
                     "at least one of each. Answer more batches (`anchoral label next`).")
  _, params = train_head(pool.emb_NxE, rows, labels, s)
  out.mkdir(parents=True, exist_ok=True)
  tmp = out / f"head.{os.getpid()}.tmp.npz"
  np.savez(tmp, kernel=np.asarray(params["classifier"]["kernel"]),
           bias=np.asarray(params["classifier"]["bias"]))
  os.replace(tmp, out / "head.npz")
  meta = {"classes": s.classes, "minority": s.minority, "encoder": s.model,
          "max_length": s.max_length, "features": "unit-norm mean-pooled last layer",
          "labels": len(rows), "settings": dataclasses.asdict(s), "time": _now()}
  write_text_atomic(out / "classifier.json", json.dumps(meta, indent=1))
  df = _predictions_frame(pool.ids, pool.texts, probs_of(params, pool.emb_NxE), s.classes)
  write_text_atomic(out / "predictions.csv", df.to_csv(index=False))
  return (f"Exported the classifier ({len(rows)} labels) to {out}; predictions over the "
          f"{len(pool.ids)} pool rows in {out / 'predictions.csv'}.")


def apply(model: Path, data: str, text_column: str, id_column: str | None, out: Path) -> str:
  clf = load_classifier(model)
  ids, texts = _read_texts(data, text_column, id_column)
  df = _predictions_frame(ids, texts, clf.predict_proba(list(texts)), clf.classes)
  write_text_atomic(Path(out), df.to_csv(index=False))
  return f"Scored {len(ids)} rows of {data}: {out}"


# ---------------------------------------------------------------------------------------------
# CLI.


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
  i.add_argument("--num-neighbours", type=int, default=50)
  i.add_argument("--seed", type=int, default=42)
  for name, text in (("next", "record the filled-in batch, retrain, write the next batch"),
                     ("status", "labels so far, batches, the minority found")):
    sub.add_parser(name, help=text).add_argument("--workdir", required=True)
  e = sub.add_parser("export", help="the classifier + predictions over the pool")
  e.add_argument("--workdir", required=True)
  e.add_argument("--out", required=True)
  a = sub.add_parser("apply", help="score a new file with an exported classifier")
  a.add_argument("--model", required=True)
  a.add_argument("--data", required=True)
  a.add_argument("--text-column", default="text")
  a.add_argument("--id-column", default=None)
  a.add_argument("--out", required=True)
  return p


def _split(v: str) -> list[str]:
  return [x.strip() for x in v.split(",") if x.strip()]


def run(args: argparse.Namespace) -> str:
  from anchoral_jax import workdir as workdir_lib

  if args.command == "apply":
    return apply(Path(args.model), args.data, args.text_column, args.id_column, Path(args.out))
  wd = Path(args.workdir)
  if args.command != "init" and not (wd / "settings.json").is_file():
    _load_settings(wd)  # the "not a session" message, before the lock creates the folder
  with workdir_lib.lock(wd):
    if args.command == "init":
      s = Settings(data=args.data, text_column=args.text_column, id_column=args.id_column,
                   classes=_split(args.classes), minority=_split(args.minority),
                   filter=args.filter, strategy=args.strategy, query_size=args.query_size,
                   model=args.model, max_length=args.max_length,
                   subpool_size=args.subpool_size, num_neighbours=args.num_neighbours,
                   seed=args.seed)
      path = init(wd, s, args.seed_labels)
      return (f"Batch 1 is ready: {path}\nFill in its label column ({', '.join(s.classes)}; "
              f"blank or '?' skips a row), then run `anchoral label next --workdir {wd}`.")
    if args.command == "next":
      return step(wd)[0]
    if args.command == "status":
      return status(wd)
    return export(wd, Path(args.out))


def main(argv: list[str]) -> None:
  """`anchoral label ...`: input errors are one line (or one list) on stderr and exit 2."""
  from anchoral_jax.cli import _user_errors

  args = _parser().parse_args(argv)
  logging.getLogger("anchoral_jax").setLevel(logging.WARNING)
  try:
    print(run(args))
  except (*_user_errors(), LabelError, FileNotFoundError) as e:
    print(f"anchoral label {args.command}: {e}", file=sys.stderr)
    sys.exit(2)
