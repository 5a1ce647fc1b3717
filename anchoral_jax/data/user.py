"""Any labelled text file (CSV/TSV, parquet, JSON lines) -> `TextTask`, with loud, fixable errors.

`build_user_task` is the one entry point (registry name `user`). A user task follows the paper's
recipe where it applies (SPEC.md §7): optional minority down-sampling of the pool to a
prevalence with ceil(p * N_rest / (1 - p)) rows per minority class, and optional down-sampling of
the non-minority test rows. Everything random uses one seeded numpy Generator (default seed 42).

The readers and column checks here are shared with `paper.py`.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from anchoral_jax.data.task import Split, TextTask, minority_count

_MAX_EXAMPLES = 5  # rows/values quoted in an error message


class DataFileNotFound(FileNotFoundError):
  """A data file is missing; the message says which file and what to do."""


class DataFormatError(ValueError):
  """A data file is there but its content cannot make a task; the message names the fix."""


# ---------------------------------------------------------------------------------------------
# Reading files.


def _format_of(path: Path) -> str:
  suffixes = [s.lower() for s in path.suffixes]
  if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst", ".xz", ".zip"):
    suffixes = suffixes[:-1]
  ext = suffixes[-1] if suffixes else ""
  formats = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
             ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
  if ext not in formats:
    raise DataFormatError(
        f"Cannot tell the format of {path}: use a .csv, .tsv, .parquet, .jsonl or .json file "
        f"(optionally .gz-compressed), or pass file_format='csv'|'tsv'|'parquet'|'jsonl'.")
  return formats[ext]


def read_table(path: str | Path, columns: Sequence[str] | None = None,
               file_format: str | None = None) -> pd.DataFrame:
  """Read a CSV/TSV/parquet/JSON-lines file; `columns` are checked (and, for parquet, selected)."""
  path = Path(path).expanduser()
  if not path.is_file():
    where = "exists but is not a file" if path.exists() else "does not exist"
    raise DataFileNotFound(f"Data file {path} {where} (resolved: {path.resolve()}).")
  fmt = file_format or _format_of(path)
  try:
    df = _read(path, fmt, columns)
  except DataFormatError:
    raise
  except UnicodeDecodeError as e:
    raise DataFormatError(
        f"{path} is not UTF-8 text (byte {e.start}: {e.reason}). Re-save it as UTF-8, e.g. "
        f"`iconv -f latin1 -t utf-8 {path.name} > fixed{''.join(path.suffixes)}`.") from e
  except Exception as e:  # pandas/pyarrow parse errors: name the file, keep the parser's words
    import pandas.errors as pd_errors

    if isinstance(e, pd_errors.EmptyDataError):
      raise DataFormatError(f"{path} is empty: it needs a header row and data rows.") from e
    if isinstance(e, pd_errors.ParserError):
      raise DataFormatError(
          f"{path} is not a well-formed {fmt.upper()} file ({str(e).strip()}): every line needs "
          "the header's number of fields; quote fields that contain the separator.") from e
    if type(e).__module__.startswith("pyarrow") or isinstance(e, (ValueError, OSError)):
      raise DataFormatError(f"{path} cannot be read as {fmt} ({type(e).__name__}: "
                            f"{str(e).strip()}): check the file is complete and in that format "
                            "(or pass file_format=...).") from e
    raise
  if columns is not None:
    require_columns(list(df.columns), columns, path)
  return df


def _read(path: Path, fmt: str, columns: Sequence[str] | None) -> pd.DataFrame:
  if fmt == "parquet":
    import pyarrow.parquet as pq

    present = pq.read_schema(path).names
    if columns is not None:
      require_columns(present, columns, path)
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()
  if fmt in ("csv", "tsv"):
    # keep_default_na=False + na_values=[""]: the literal word "NA"/"null" is text, an empty
    # cell is missing. Labels/uids are parsed below, so read every column as text first.
    return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", dtype=str,
                       keep_default_na=False, na_values=[""], encoding="utf-8")
  if fmt == "jsonl":
    return pd.read_json(path, lines=True, dtype=False)
  if fmt == "json":
    try:
      return pd.read_json(path, lines=True, dtype=False)
    except ValueError:
      return pd.read_json(path, dtype=False)
  raise DataFormatError(f"Unknown file_format {fmt!r} for {path}: use csv, tsv, parquet, jsonl.")


def require_columns(present: Sequence[str], wanted: Sequence[str], source: str | Path) -> None:
  missing = [c for c in wanted if c not in present]
  if missing:
    raise DataFormatError(
        f"{source}: missing column(s) {missing}. Columns present: {list(present)}. "
        f"Pass the right names (e.g. text_column=..., label_column=..., uid_column=...).")


# ---------------------------------------------------------------------------------------------
# Column checks: texts, labels, uids.


def _rows(idx: np.ndarray) -> str:
  shown = ", ".join(str(i) for i in idx[:_MAX_EXAMPLES])
  return shown + (f", ... ({len(idx)} in all)" if len(idx) > _MAX_EXAMPLES else "")


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
    examples = ", ".join(f"{v} (x{n})" for v, n in bad_values.most_common(_MAX_EXAMPLES))
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
    shown = [values.iloc[i] for i in idx[:_MAX_EXAMPLES]]
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
    rows = {int(u): np.flatnonzero(uid == u)[:3].tolist() for u in dup[:_MAX_EXAMPLES]}
    raise DataFormatError(
        f"{source}: {len(dup)} duplicated uid(s) (uid -> rows): {rows}. "
        f"uids identify documents in the labelled set and caches, so they must be unique.")


# ---------------------------------------------------------------------------------------------
# Sampling.


def stratified_test_split(labels: np.ndarray, fraction: float,
                          rng: np.random.Generator) -> np.ndarray:
  """Row mask of a test split holding round(fraction * n_c) rows of every class c."""
  is_test = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    is_test[rng.choice(idx, size=round(fraction * len(idx)), replace=False)] = True
  return is_test


def downsample_minorities(split: Split, minority: Sequence[int], prevalence: float,
                          rng: np.random.Generator) -> Split:
  """Keep every non-minority row and ceil(p * N_rest / (1 - p)) rows of each minority class.

  N_rest counts rows of no minority class. With one minority class this is exactly
  `task.downsample_minority` (same draws from `rng`), the paper's construction.
  """
  is_min = np.isin(split.labels, minority)
  n_rest = int((~is_min).sum())
  keep = [np.flatnonzero(~is_min)]
  for c in minority:
    pos = np.flatnonzero(split.labels == c)
    keep.append(rng.choice(pos, size=min(len(pos), minority_count(n_rest, prevalence)),
                           replace=False))
  return split.subset(np.sort(np.concatenate(keep)))


def downsample_majority(split: Split, minority: Sequence[int], size: int,
                        rng: np.random.Generator) -> Split:
  """Keep every minority row and `size` of the others (all if fewer): the paper's test recipe."""
  is_min = np.isin(split.labels, minority)
  rest = np.flatnonzero(~is_min)
  chosen = rng.choice(rest, size=min(size, len(rest)), replace=False)
  return split.subset(np.sort(np.concatenate([np.flatnonzero(is_min), chosen])))


# ---------------------------------------------------------------------------------------------
# The builder.


def _load_split(path: str | Path, text_column: str, label_column: str, uid_column: str | None,
                class_names: Sequence[str], file_format: str | None,
                uid_offset: int) -> Split:
  columns = [text_column, label_column] + ([uid_column] if uid_column else [])
  df = read_table(path, columns, file_format)
  source = str(path)
  if len(df) == 0:
    raise DataFormatError(f"{source}: the file has no rows.")
  text = check_texts(df[text_column], source)
  labels = map_labels(df[label_column], class_names, source)
  if uid_column:
    uid = check_uids(df[uid_column], source)
  else:
    uid = np.arange(uid_offset, uid_offset + len(df), dtype=np.int64)
  return Split(text, labels, uid)


def build_user_task(
    path: str | Path,
    text_column: str,
    label_column: str,
    class_names: Sequence[str],
    minority_classes: Sequence[str],
    test_path: str | Path | None = None,
    *,
    uid_column: str | None = None,
    test_fraction: float = 0.2,
    prevalence: float | None = None,
    test_majority_size: int | None = None,
    seed: int = 42,
    task_name: str | None = None,
    file_format: str | None = None,
) -> TextTask:
  """Build a task from the user's labelled file(s).

  Args:
    path: the pool file (also the source of the test split when `test_path` is None).
    text_column, label_column: column names; labels are class names or integer indices.
    class_names: every class, in index order.
    minority_classes: names of the rare classes (drive the initial set and headline metrics).
    test_path: optional separate test file (same columns).
    uid_column: optional integer id column; default: row numbers (test rows continue after the
      pool's, so uids never collide across splits).
    test_fraction: stratified test share when there is no `test_path`.
    prevalence: optional; down-sample each minority class of the pool to this prevalence.
    test_majority_size: optional; keep all minority test rows and this many of the others
      (the paper uses 5,000).
    seed: seeds the one numpy Generator used for the test split and both down-samplings.
    task_name: the task's name (default "user-<file stem>").
    file_format: csv/tsv/parquet/jsonl/json when the suffix does not tell.
  """
  class_names = tuple(str(c) for c in class_names)
  if len(class_names) < 2 or len(set(class_names)) != len(class_names):
    raise DataFormatError(f"class_names must be >= 2 distinct names, got {list(class_names)}.")
  if isinstance(minority_classes, str):
    minority_classes = (minority_classes,)
  unknown = [m for m in minority_classes if str(m) not in class_names]
  if unknown or not minority_classes:
    raise DataFormatError(
        f"minority_classes {list(minority_classes)} must name declared classes "
        f"{list(class_names)} (unknown: {unknown}).")
  minority = tuple(sorted(class_names.index(str(m)) for m in minority_classes))
  if prevalence is not None and not 0.0 < prevalence < 1.0:
    raise DataFormatError(f"prevalence must be in (0, 1), got {prevalence}.")

  rng = np.random.default_rng(seed)
  train = _load_split(path, text_column, label_column, uid_column, class_names, file_format, 0)
  if test_path is not None:
    test = _load_split(test_path, text_column, label_column, uid_column, class_names,
                       file_format, uid_offset=len(train))
    both = np.intersect1d(train.uid, test.uid)
    if len(both):
      raise DataFormatError(
          f"{len(both)} uid(s) appear in both {path} and {test_path}, e.g. "
          f"{both[:_MAX_EXAMPLES].tolist()}: a document must be in one split only.")
  else:
    if not 0.0 < test_fraction < 1.0:
      raise DataFormatError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    is_test = stratified_test_split(train.labels, test_fraction, rng)
    train, test = train.subset(np.flatnonzero(~is_test)), train.subset(np.flatnonzero(is_test))
  if prevalence is not None:
    train = downsample_minorities(train, minority, prevalence, rng)
  if test_majority_size is not None:
    test = downsample_majority(test, minority, test_majority_size, rng)
  for split_name, split in (("pool", train), ("test", test)):
    if not np.isin(split.labels, minority).any():
      raise DataFormatError(
          f"The {split_name} split has no row of the minority classes {list(minority_classes)}: "
          f"add minority examples (or lower test_fraction / raise prevalence).")
  return TextTask(
      name=task_name or f"user-{Path(path).name.split('.')[0]}",
      class_names=class_names,
      minority_classes=minority,
      train=train,
      test=test,
      provenance=f"user file {Path(path).expanduser().resolve()}"
      + (f" + test {Path(test_path).expanduser().resolve()}" if test_path else ""),
  )
