"""Any labelled text file (CSV/TSV, parquet, JSON lines) -> `TextTask`, with loud, fixable errors.

`build_user_task` is the one entry point (registry name `user`). A user task follows the paper's
recipe where it applies (SPEC.md §7): optional minority down-sampling of the pool to a
prevalence with ceil(p * N_rest / (1 - p)) rows per minority class, and optional down-sampling of
the non-minority test rows. Everything random uses one seeded numpy Generator (default seed 42).

The column checks live in `errors.py` and the draws in `sampling.py`, shared with
`paper.py` and the other builders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from anchoral_jax.data.errors import (
  MAX_EXAMPLES,
  DataFileNotFound,
  DataFormatError,
  check_texts,
  check_uids,
  map_labels,
  require_columns,
)
from anchoral_jax.data.sampling import (
  downsample_majority,
  downsample_minorities,
  stratified_test_split,
)
from anchoral_jax.data.task import Split, TextTask

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
          f"{both[:MAX_EXAMPLES].tolist()}: a document must be in one split only.")
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
