"""The data errors, and the column checks that raise them, in one place.

Every data builder fails through these classes, so the CLI maps them all to exit status 2
(`errors.UserError`): an input problem the user can fix, not a bug. Each message names the file,
the rows or values at fault and the fix (CONTRIBUTING.md §9).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from anchoral_jax.errors import UserError

MAX_EXAMPLES = 5  # rows/values quoted in an error message


class DataFileNotFound(UserError, FileNotFoundError):
  """A data file is missing; the message says which file and what to do."""


class DataFormatError(UserError, ValueError):
  """A data file is there but its content cannot make a task; the message names the fix."""


class MissingDataFile(DataFileNotFound):
  """A file of the paper's data is not in the manual directory; says where to get it."""


# ---------------------------------------------------------------------------------------------
# Column checks: columns, texts, labels, uids.


def require_columns(present: Sequence[str], wanted: Sequence[str], source: str | Path) -> None:
  missing = [c for c in wanted if c not in present]
  if missing:
    raise DataFormatError(
        f"{source}: missing column(s) {missing}. Columns present: {list(present)}. "
        f"Pass the right names (e.g. text_column=..., label_column=..., uid_column=...).")


def _rows(idx: np.ndarray) -> str:
  shown = ", ".join(str(i) for i in idx[:MAX_EXAMPLES])
  return shown + (f", ... ({len(idx)} in all)" if len(idx) > MAX_EXAMPLES else "")


def check_texts(values: pd.Series, source: str) -> tuple[str, ...]:
  """Texts as str; missing or blank texts are an error (an empty document cannot be labelled)."""
  arr = values.to_numpy(dtype=object)
  numeric = np.array([isinstance(t, (int, float, np.number)) and not isinstance(t, bool)
                      and not pd.isna(t) for t in arr])
  if numeric.any():  # a number is not a missing text: most likely the wrong column
    idx = np.flatnonzero(numeric)
    raise DataFormatError(
        f"{source}: the text column {values.name!r} holds numbers, not text ({len(idx)} value(s), "
        f"e.g. {arr[idx[0]]!r} at row {idx[0]}): check text_column names the column with the "
        "documents, or store the texts as strings.")
  bad = np.array([not isinstance(t, str) or not t.strip() for t in arr])
  if bad.any():
    idx = np.flatnonzero(bad)
    raise DataFormatError(
        f"{source}: {len(idx)} empty or missing (NaN/None) text(s), at rows {_rows(idx)} "
        f"(0-based data rows; add 2 for the CSV line number with a header). "
        f"Drop or fill these rows.")
  return tuple(arr.tolist())


def _as_index(value, class_names: Sequence[str]) -> int | None:
  """A label value -> class index: a declared class name, or an integer index in [0, C)."""
  if isinstance(value, str):
    if value in class_names:
      return class_names.index(value)
    s = value.strip()
    if s in class_names:
      return class_names.index(s)
    if s.lstrip("-").isdigit():
      value = int(s)
    else:
      return None
  if isinstance(value, (bool, np.bool_)) or value is None:
    return None
  if isinstance(value, (int, np.integer)):
    return int(value) if 0 <= value < len(class_names) else None
  if isinstance(value, (float, np.floating)):
    if math.isfinite(value) and float(value).is_integer() and 0 <= value < len(class_names):
      return int(value)
  return None


def map_labels(values: pd.Series, class_names: Sequence[str], source: str) -> np.ndarray:
  """Label values (class names or integer indices) -> int32 indices; unknown values are an error."""
  lookup: dict = {}
  out = np.empty(len(values), np.int32)
  bad_rows: list[int] = []
  bad_values: collections.Counter = collections.Counter()
  for i, v in enumerate(values.to_numpy(dtype=object)):
    key = ("nan",) if isinstance(v, float) and math.isnan(v) else (type(v).__name__, v)
    if key not in lookup:
      lookup[key] = _as_index(v, class_names)
    k = lookup[key]
    if k is None:
      bad_rows.append(i)
      bad_values[repr(v)] += 1
      out[i] = -1
    else:
      out[i] = k
  if bad_rows:
    examples = ", ".join(f"{v} (x{n})" for v, n in bad_values.most_common(MAX_EXAMPLES))
    raise DataFormatError(
        f"{source}: {len(bad_rows)} label(s) outside the declared classes {list(class_names)} "
        f"(a label must be a class name or an integer index 0..{len(class_names) - 1}). "
        f"Unknown values: {examples}; at rows {_rows(np.asarray(bad_rows))}. "
        f"Declare every class in class_names, or drop these rows.")
  return out


def check_uids(values: pd.Series, source: str) -> np.ndarray:
  """Integer uids (the stable identity of a document); non-integers and duplicates are errors."""
  num = pd.to_numeric(values, errors="coerce")
  arr = num.to_numpy(dtype=np.float64, na_value=np.nan)
  bad = ~np.isfinite(arr) | (arr != np.round(arr))
  if bad.any():
    idx = np.flatnonzero(bad)
    shown = [values.iloc[i] for i in idx[:MAX_EXAMPLES]]
    raise DataFormatError(
        f"{source}: {len(idx)} uid(s) are not integers, e.g. {shown} at rows {_rows(idx)}. "
        f"uids must be int64; leave uid_column=None to use row numbers.")
  uid = pd.to_numeric(values).to_numpy(dtype=np.int64)
  check_unique(uid, source)
  return uid


def check_unique(uid: np.ndarray, source: str) -> None:
  vals, first, counts = np.unique(uid, return_index=True, return_counts=True)
  if (counts > 1).any():
    dup = vals[counts > 1]
    rows = {int(u): np.flatnonzero(uid == u)[:3].tolist() for u in dup[:MAX_EXAMPLES]}
    raise DataFormatError(
        f"{source}: {len(dup)} duplicated uid(s) (uid -> rows): {rows}. "
        f"uids identify documents in the labelled set and caches, so they must be unique.")
