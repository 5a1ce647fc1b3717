"""`anchoral label`'s readers of the user's own files: the data file, a filled-in batch file
and the seed labels. Each checks everything before anything is written and reports every
problem with its file, line and fix (a LabelError: the CLI's exit 2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from anchoral_jax.data.errors import check_texts
from anchoral_jax.data.user import read_table
from anchoral_jax.label.workdir import BATCH_COLUMNS, LabelError, Pool

log = logging.getLogger(__name__)

SKIP_WORDS = ("?", "skip", "-")  # explicit "don't know" (a blank cell means the same)


def read_texts(path: str, text_column: str, id_column: str | None) -> tuple[np.ndarray,
                                                                           np.ndarray]:
  """(ids as str, texts) of a data file; ids default to the 0-based row number."""
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
  deleted = [i for i in asked if i not in seen]
  if deleted and filled:  # recorded as skipped (never asked again): say so, never silently
    log.warning("%s: %d asked row(s) are not in the file (deleted?), recorded as skipped and "
                "not asked again: id(s) %s.", path.name, len(deleted),
                ", ".join(deleted[:10]) + (" ..." if len(deleted) > 10 else ""))
  return [(i, answers.get(i)) for i in asked], filled


def read_seed(path: str, pool: Pool, classes: Sequence[str]) -> list[tuple[str, str]]:
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

