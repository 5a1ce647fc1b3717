"""`anchoral label`'s workdir: the session's files, read and written crash-safely.

The workdir (the unit of resume, like a run's):
  settings.json      the session's settings (written once, by init)
  pool.parquet       ids and texts of the pool, in row order (rows are Selector rows)
  embeddings.npy     emb_NxE, float32, unit-norm (embeddings.json: what they were made from)
  index.usearch      the cosine HNSW index over them (AnchorAL/SEALS retrieval)
  answers.jsonl      append-only: one line per answer {"batch", "id", "label" (null when
                     skipped), "time"}; then one {"batch", "ingested": true, ...} line closing
                     the batch. Lines of a batch without its closing line are ignored (a
                     killed append), so a re-run appends that batch again, whole. An answer
                     edited in a recorded batch file is appended the same way as a
                     correction ({"batch", "id", "label", "time", "correction": N}, closed by
                     {"correction": N, "ingested": true}): the history stays, the last wins.
  state.json         every batch asked (ids, hints, which are audit rows), the audit sample
                     (ids, how many served) and the Selector's generators, written
                     atomically *before* the batch file: a missing batch file is re-written
  batches/batch_NNN.csv  the file to fill in: id, text, label (empty), guess, score
  head.npz           the last trained head (for status' estimate)

Every file is written under a temporary name and published by os.replace (text through
`fileio.write_text_atomic`, arrays and tables through `publish`), or appended whole.

Shape letters: N pool rows, E embedding width, C classes.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from anchoral_jax.config import (
  PAPER_NUM_ANCHORS,
  PAPER_NUM_NEIGHBOURS,
  PAPER_SEED,
  PAPER_SUBPOOL_SIZE,
)
from anchoral_jax.data.errors import DataFormatError
from anchoral_jax.fileio import publish, write_text_atomic

BATCH_COLUMNS = ("id", "text", "label", "guess", "score")
PAPER_POOL = 90_910  # AG News, whose cap M is PAPER_SUBPOOL_SIZE (configs/reproduce_cpu.py)


class LabelError(DataFormatError):
  """A labelling-session input (answer file, seed file, settings, workdir) cannot be used; the
  message names the file, the line and the fix (CLI exit 2, nothing written)."""


@dataclasses.dataclass
class Settings:
  """The session's choices (settings.json), fixed by init: every step reads the same."""

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
  num_anchors: int = PAPER_NUM_ANCHORS
  num_neighbours: int = PAPER_NUM_NEIGHBOURS
  seed: int = PAPER_SEED
  audit_size: int = 50  # rows drawn at random once, labelled a few per batch (status' estimate)

  @property
  def minority_idx(self) -> tuple[int, ...]:
    return tuple(self.classes.index(c) for c in self.minority)

  def cap(self, pool_size: int) -> int:
    """The subpool cap M: the paper's 10,000 of 90,910 scaled to the pool, as
    configs/reproduce_cpu.py does, never below 4 query sizes, nor below what the anchors
    retrieve (anchors x classes x neighbours).

    The last floor is the paper's regime: its 10 anchors x 2 classes x 50 neighbours = 1,000
    retrieved rows never reach M = 10,000, so its subpool is every neighbour retrieved. Scaled
    down to a small pool (220 at 2,000 rows) the cap bites, and the cut by mean similarity keeps
    the majority anchors' neighbours (dense classes: mean similarity 0.26-0.44 on BBC) and
    drops the minority anchors' (a sparse class: 0.19-0.28), so the subpool held no minority
    row at all and a warm start found none (tests/test_label_session.py)."""
    if self.subpool_size:
      return self.subpool_size
    retrieved = self.num_anchors * len(self.classes) * self.num_neighbours
    return max(4 * self.query_size, round(PAPER_SUBPOOL_SIZE * pool_size / PAPER_POOL), retrieved)


def now() -> str:
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def batch_path(workdir: Path, n: int) -> Path:
  return workdir / "batches" / f"batch_{n:03d}.csv"


T = TypeVar("T")
# What a truncated or garbled session file raises while it is read: json (ValueError), numpy's
# header and mmap length checks (ValueError, EOFError), pyarrow (ArrowInvalid is a ValueError),
# npz (BadZipFile), a JSON of the wrong shape (TypeError, KeyError, AttributeError).
CORRUPT = (ValueError, EOFError, OSError, TypeError, KeyError, AttributeError, zipfile.BadZipFile)


def read_session_file(path: Path, read: Callable[[Path], T], fix: str = "") -> T:
  """`read(path)`, or a LabelError naming the file when it is missing, truncated or garbled
  (a bare JSONDecodeError, ArrowInvalid or mmap-length traceback named no file)."""
  where = path.parent
  fix = fix or (f"restore it from a backup, or start a new session (another --workdir) with "
                f"`anchoral label init`; the answers so far are in {where / 'answers.jsonl'}")
  if not path.is_file():
    raise LabelError(f"{path} is missing: the labelling session in {where} cannot go on without "
                     f"it; {fix}.")
  try:
    return read(path)
  except CORRUPT as e:
    raise LabelError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}); {fix}.") from e


def load_settings(workdir: Path) -> Settings:
  path = workdir / "settings.json"
  if not path.is_file():
    raise LabelError(f"{workdir} is not a labelling session ({path.name} is missing): start "
                     f"one with `anchoral label init --workdir {workdir} --data FILE ...`.")
  return read_session_file(path, lambda p: Settings(**json.loads(p.read_text())))


def load_state(workdir: Path) -> dict:
  def read(path: Path) -> dict:
    state = json.loads(path.read_text())
    if not state["batches"] or any("ids" not in b for b in state["batches"]):
      raise ValueError("no batch records")
    return state

  return read_session_file(workdir / "state.json", read)


def check_answers(workdir: Path, state: dict, closed: set[int]) -> None:
  """Every batch before the last one asked was recorded (its closing line is written before
  the next batch is chosen): a batch missing from answers.jsonl means the file lost lines."""
  lost = [b["batch"] for b in state["batches"][:-1] if b["batch"] not in closed]
  if lost:
    raise LabelError(f"{workdir / 'answers.jsonl'} lacks the answers of batch(es) "
                     f"{', '.join(map(str, lost))}, which were recorded before (the file was "
                     "truncated or edited): restore it from a backup; the filled-in files "
                     f"{', '.join(batch_path(workdir, b).name for b in lost)} hold those answers.")


def load_embeddings(workdir: Path, rows: int | None = None) -> np.ndarray:
  """embeddings.npy memory-mapped read-only (a big pool stays on disk), checked against the
  pool's `rows`."""
  def read(path: Path) -> np.ndarray:
    emb = np.load(path, mmap_mode="r")
    if emb.ndim != 2 or (rows is not None and emb.shape[0] != rows):
      raise ValueError(f"shape {emb.shape}, for a pool of {rows} rows")
    return emb

  return read_session_file(workdir / "embeddings.npy", read)


def pool_ids(workdir: Path) -> np.ndarray:
  return read_session_file(workdir / "pool.parquet",
                           lambda p: pd.read_parquet(p, columns=["id"])["id"].to_numpy(str))


def save_state(workdir: Path, state: dict) -> None:
  write_text_atomic(workdir / "state.json", json.dumps(state, indent=1))


def _group(r: dict) -> int | str:
  """A line's append group: its batch, or "cN" for the Nth set of corrections."""
  return f"c{r['correction']}" if "correction" in r else r["batch"]


def read_answers(workdir: Path) -> tuple[list[dict], set[int]]:
  """(answer records of closed batches and corrections, in file order; closed batch numbers)
  from answers.jsonl.

  A group's lines (a batch, or a set of corrections: lines with a "correction" number) count
  only once its closing line is there (a killed append leaves some lines without one; the
  re-run appends the group again, whole). Unparsable lines (a torn last write) are skipped.
  The last record of an id is its answer: a correction follows what it corrects."""
  path = workdir / "answers.jsonl"
  records, closed, done = [], set(), set()
  if not path.exists():
    return records, closed
  pending: dict[int | str, list[dict]] = {}
  for line in path.read_text().splitlines():
    try:
      r = json.loads(line)
    except json.JSONDecodeError:
      continue
    g = _group(r)
    if r.get("ingested"):
      if g not in done:
        done.add(g)
        if "correction" not in r:
          closed.add(r["batch"])
        records += pending.get(g, [])
      pending.pop(g, None)
    else:
      pending.setdefault(g, []).append(r)
  return records, closed


def last_answers(records: list[dict]) -> dict[str, str | None]:
  """id -> its last answer (None: skipped), in first-answer order."""
  last: dict[str, str | None] = {}
  for r in records:
    last[r["id"]] = r["label"]
  return last


def append_corrections(workdir: Path, number: int, changes: list[tuple[int, str, str | None]]
                       ) -> None:
  """Appends correction set `number` ([(batch, id, new label)]) whole, like a batch."""
  path = workdir / "answers.jsonl"
  t = now()
  lines = [json.dumps({"batch": b, "id": i, "label": lab, "time": t, "correction": number})
           for b, i, lab in changes]
  lines.append(json.dumps({"correction": number, "ingested": True, "time": t,
                           "changed": len(changes)}))
  _append(path, "\n".join(lines) + "\n")


def append_answers(workdir: Path, batch: int, answers: list[tuple[str, str | None]],
                    extra: dict) -> None:
  """Appends one batch's answers and its closing line in one write (append-only file)."""
  path = workdir / "answers.jsonl"
  t = now()
  lines = [json.dumps({"batch": batch, "id": i, "label": lab, "time": t}) for i, lab in answers]
  lines.append(json.dumps({"batch": batch, "ingested": True, "time": t, **extra}))
  _append(path, "\n".join(lines) + "\n")


def _append(path: Path, text: str) -> None:
  """One write at the end of `path`, after a newline if a torn last line lacks one."""
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


def load_pool(workdir: Path) -> Pool:
  df = read_session_file(workdir / "pool.parquet", pd.read_parquet)
  if not {"id", "text"} <= set(df.columns):
    raise LabelError(f"{workdir / 'pool.parquet'} lacks its id and text columns (columns: "
                     f"{list(df.columns)}): restore it from a backup.")
  emb = load_embeddings(workdir, len(df))
  return Pool(df["id"].to_numpy(str), df["text"].to_numpy(object), emb)


def labelled_rows(records: list[dict], pool: Pool, s: Settings):
  """(labelled rows, their class indices, skipped rows): the last answer for an id wins."""
  last = last_answers(records)
  lab = {i: v for i, v in last.items() if v is not None}
  skipped = [i for i, v in last.items() if v is None]
  rows = pool.rows_of(list(lab))
  labels = np.asarray([s.classes.index(v) for v in lab.values()], np.int64)
  return rows, labels, pool.rows_of(skipped)


def save_head(folder: Path, params: dict) -> None:
  """`folder`/head.npz: the linear head (kernel [E, C], bias [C]), the encoder being frozen."""
  h = params["classifier"]
  publish(folder / "head.npz",
          lambda tmp: np.savez(tmp, kernel=np.asarray(h["kernel"]), bias=np.asarray(h["bias"])))


def load_head(path: Path) -> dict:
  """The params `save_head` wrote (only the head: what `probs_of` reads)."""
  def read(p: Path) -> dict:
    with np.load(p) as z:
      return {"classifier": {"kernel": z["kernel"], "bias": z["bias"]}}

  return read_session_file(path, read, "it is rewritten by the next `anchoral label next`; "
                           "delete it to go on (or restore it from a backup)")


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
  path = batch_path(workdir, rec["batch"])
  write_text_atomic(path, df.to_csv(index=False))
  return path
