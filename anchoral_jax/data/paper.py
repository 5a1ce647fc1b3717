"""The paper's four tasks (SPEC.md §7), built from local copies of public files.

Nothing is downloaded here: the files are fetched once, by the user, on a networked machine
(`huggingface-cli download ...`, see `MissingDataFile`), into the manual directory
(`data.manual_dir`, else $ANCHORAL_DATA_DIR, else ~/anchoral_data/manual):

  <manual_dir>/agnews/data/{train,test}-*.parquet         pietrolesci/agnews (default config)
  <manual_dir>/wikitoxic/data/{train,test}-*.parquet      pietrolesci/wikitoxic
  <manual_dir>/amazoncat-13k/data/{train,test}-*.parquet  pietrolesci/amazoncat-13k
  <manual_dir>/ag_news_csv/{train,test}.csv               original AG News CSV (optional)

File layouts, from the dataset cards and the official code (github.com/pietrolesci/anchoral,
scripts/process_data.py and scripts/prepare_data.py):
- agnews: text, labels (ClassLabel World=0, Sports=1, Business=2, Sci/Tech=3), uid. It is the
  Hugging Face `ag_news` (text = title + " " + description) plus a uid, `label` renamed `labels`.
- wikitoxic: id, text, labels (non=0, tox=1), uid; splits train/validation/test (OxAISH-AL-LLM/
  wiki_toxic, `comment_text` renamed `text`). The validation split is not used.
- amazoncat-13k: uid_original, title, content, target_ind (list of category ids), target_rel,
  text (= title + "\\n" + content), uid. Category ids index the label names of the raw
  AmazonCat-13K release (Yf.txt; the hub repo's `labels` config), e.g. 246 = agricultural
  sciences.

Construction (official prepare_data.py): the pool keeps every negative and
ceil(p * N_neg / (1 - p)) positives; the test keeps every minority row and 5,000 of the rest.
Both samples are drawn as `DataFrame.sample(n, random_state=check_random_state(42))` was, i.e.
`RandomState(42).choice(len, n, replace=False)` over the rows in file order (a fresh RandomState
per sample). We keep that legacy RNG on purpose: with the same files it gives the paper's exact
uids, which no Generator-based draw could.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from anchoral_jax.data.task import Split, TextTask, minority_count
from anchoral_jax.data.user import DataFileNotFound, DataFormatError, check_texts, require_columns

DEFAULT_MANUAL_DIR = "~/anchoral_data/manual"
ENV_MANUAL_DIR = "ANCHORAL_DATA_DIR"
PAPER_SEED = 42  # check_random_state(42) in the official prepare_data.py
TEST_MAJORITY_SIZE = 5_000  # --downsample_test_size 5000 (wikitoxic, amazoncat-*)

AGNEWS_BUSINESS = 2  # 0-based label of "Business" in the processed copy (CSV class index 3)
AMAZON_AGRICULTURE = (246,)  # `agricultural sciences`
# Official src/utilities.py AMAZON_CATEGORIES, in its dict order. The multi-class label is the
# LAST matching entry (the loop overwrites), so priority is audio > agriculture > archaeology >
# philosophy. Class indices are the sorted names, then "others".
AMAZON_CATEGORIES: dict[str, tuple[int, ...]] = {
    "philosophy": (413, 3999, 4044, 5881, 8900, 8901, 10990, 13319),
    "archaeology": (538, 539, 8601),
    "agriculture": (246,),
    "audio": (677,),
}
AMAZON_MULTI_CLASSES = (*sorted(AMAZON_CATEGORIES), "others")


class MissingDataFile(DataFileNotFound):
  """A file of the paper's data is not in the manual directory; says where to get it."""


# ---------------------------------------------------------------------------------------------
# Where the files are.

HUB_SOURCES = {  # local folder name -> Hugging Face dataset repo
    "agnews": "pietrolesci/agnews",
    "wikitoxic": "pietrolesci/wikitoxic",
    "amazoncat-13k": "pietrolesci/amazoncat-13k",
}


def resolve_manual_dir(manual_dir: str | os.PathLike | None = None) -> Path:
  """`manual_dir` (config `data.manual_dir`), else $ANCHORAL_DATA_DIR, else the default."""
  return Path(manual_dir or os.environ.get(ENV_MANUAL_DIR) or DEFAULT_MANUAL_DIR).expanduser()


def _hub_help(local: str, root: Path) -> str:
  repo = HUB_SOURCES[local]
  return (f"Get it once on a machine with network access (runs never download):\n"
          f"  huggingface-cli download {repo} --repo-type dataset --include 'data/*' "
          f"--local-dir {root / local}\n"
          f"(the parquet files of the default config of https://huggingface.co/datasets/{repo}, "
          f"folder data/). If that machine is another one, copy the folder to {root / local}. "
          f"Set data.manual_dir or ${ENV_MANUAL_DIR} if the data lives elsewhere.")


_SHARD = re.compile(r"-(\d{5})-of-(\d{5})")


def split_files(local: str, split: str, manual_dir: str | os.PathLike | None = None) -> list[Path]:
  """The parquet shards of one split, in shard order; every shard of `N` must be there."""
  root = resolve_manual_dir(manual_dir)
  folder = root / local / "data"
  files = sorted(folder.glob(f"{split}-*.parquet"))
  if not files:
    raise MissingDataFile(
        f"No {split!r} parquet file for {HUB_SOURCES[local]}: expected "
        f"{folder}/{split}-00000-of-0000N[-hash].parquet.\n" + _hub_help(local, root))
  shards: dict[int, Path] = {}
  totals = set()
  for f in files:
    m = _SHARD.search(f.name)
    if m is None:
      if len(files) > 1:
        raise DataFormatError(f"Cannot order the shards {[f.name for f in files]} in {folder}.")
      return files
    k, n = int(m.group(1)), int(m.group(2))
    if k in shards:
      raise DataFormatError(
          f"Two files for shard {k} of {split!r} in {folder}: {shards[k].name}, {f.name}. "
          f"Keep the ones of a single download.")
    shards[k] = f
    totals.add(n)
  if len(totals) != 1:
    raise DataFormatError(
        f"The {split!r} files in {folder} come from different downloads (shard counts "
        f"{sorted(totals)}): {[f.name for f in files]}. Keep the files of a single download.")
  if set(shards) != set(range(next(iter(totals)))):
    missing = sorted(set(range(max(totals))) - set(shards))
    raise MissingDataFile(
        f"Incomplete {split!r} split of {HUB_SOURCES[local]} in {folder}: shards {missing} of "
        f"{max(totals)} are missing (found {[f.name for f in files]}).\n" + _hub_help(local, root))
  return [shards[k] for k in sorted(shards)]


def read_split(local: str, split: str, columns: Sequence[str],
               manual_dir: str | os.PathLike | None = None):
  """One split as a pyarrow Table with `columns`, shards concatenated in file order."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  tables = []
  for f in split_files(local, split, manual_dir):
    require_columns(pq.read_schema(f).names, columns, f)
    tables.append(pq.read_table(f, columns=list(columns)))
  return pa.concat_tables(tables)


def _first_present(present: Sequence[str], options: Sequence[str], what: str, source) -> str:
  for c in options:
    if c in present:
      return c
  raise DataFormatError(f"{source}: no {what} column (tried {list(options)}); columns present: "
                        f"{list(present)}. Pass its name explicitly.")


def _schema(local: str, split: str, manual_dir) -> list[str]:
  import pyarrow.parquet as pq

  return pq.read_schema(split_files(local, split, manual_dir)[0]).names


# ---------------------------------------------------------------------------------------------
# The paper's sampling (official prepare_data.py).


def paper_sample(rows: np.ndarray, n: int, seed: int = PAPER_SEED) -> np.ndarray:
  """`n` of `rows` (all if fewer) as `df.loc[rows].sample(n, random_state=RandomState(seed))`."""
  rows = np.asarray(rows)
  if n >= len(rows):
    return np.sort(rows)
  return np.sort(rows[np.random.RandomState(seed).choice(len(rows), size=n, replace=False)])


def paper_pool(split: Split, prevalence: float, seed: int = PAPER_SEED) -> Split:
  """Keep every label-0 row and ceil(p * N_0 / (1 - p)) label-1 rows (--downsample_prop)."""
  neg = np.flatnonzero(split.labels != 1)
  pos = paper_sample(np.flatnonzero(split.labels == 1),
                     minority_count(int((split.labels == 0).sum()), prevalence), seed)
  return split.subset(np.sort(np.concatenate([neg, pos])))


def paper_test(split: Split, majority: int, size: int, seed: int = PAPER_SEED) -> Split:
  """Keep every row not of class `majority` and `size` of its rows (--downsample_test_size)."""
  rest = np.flatnonzero(split.labels != majority)
  maj = paper_sample(np.flatnonzero(split.labels == majority), size, seed)
  return split.subset(np.sort(np.concatenate([rest, maj])))


# ---------------------------------------------------------------------------------------------
# Label functions.


def rows_with_any(label_lists, categories: Sequence[int]) -> np.ndarray:
  """Rows whose list of category ids holds any of `categories` (vectorised over pyarrow lists)."""
  import pyarrow as pa
  import pyarrow.compute as pc

  if isinstance(label_lists, pa.ChunkedArray):
    label_lists = label_lists.combine_chunks()
  flat = pc.list_flatten(label_lists).to_numpy(zero_copy_only=False)
  parent = pc.list_parent_indices(label_lists).to_numpy(zero_copy_only=False)
  return np.unique(parent[np.isin(flat, np.asarray(categories, dtype=flat.dtype))])


def amazon_multi_labels(label_lists) -> np.ndarray:
  """Multi-class labels: the last matching AMAZON_CATEGORIES entry wins, else "others"."""
  labels = np.full(len(label_lists), AMAZON_MULTI_CLASSES.index("others"), np.int32)
  for name, ids in AMAZON_CATEGORIES.items():  # order matters: later entries overwrite
    labels[rows_with_any(label_lists, ids)] = AMAZON_MULTI_CLASSES.index(name)
  return labels


# ---------------------------------------------------------------------------------------------
# Reading the processed copies.


def _uids(table, uid_column: str, source: str) -> np.ndarray:
  uid = table.column(uid_column).to_numpy().astype(np.int64)
  if len(np.unique(uid)) != len(uid):
    raise DataFormatError(f"{source}: duplicated values in uid column {uid_column!r}.")
  return uid


def _texts(table, text_column: str | None, source: str) -> tuple[str, ...]:
  """The text column, or title + "\\n" + content as the official load_amazoncat built it."""
  if text_column is not None:
    return check_texts(table.column(text_column).to_pandas(), source)
  title = table.column("title").to_pandas()
  content = table.column("content").to_pandas()
  return check_texts(title + "\n" + content, source)


def _read_single_label(local: str, split: str, manual_dir, text_column: str,
                       label_column: str | None, uid_column: str,
                       to_binary: Callable[[np.ndarray], np.ndarray]) -> Split:
  present = _schema(local, split, manual_dir)
  label_column = label_column or _first_present(present, ("labels", "label"), "label",
                                                f"{HUB_SOURCES[local]} {split}")
  table = read_split(local, split, [text_column, label_column, uid_column], manual_dir)
  source = f"{HUB_SOURCES[local]} ({split})"
  raw = table.column(label_column).to_numpy().astype(np.int64)
  return Split(_texts(table, text_column, source), to_binary(raw).astype(np.int32),
               _uids(table, uid_column, source))


def _read_amazon(split: str, manual_dir, text_column: str | None, label_column: str | None,
                 uid_column: str, to_labels: Callable) -> Split:
  local = "amazoncat-13k"
  source = f"{HUB_SOURCES[local]} ({split})"
  present = _schema(local, split, manual_dir)
  label_column = label_column or _first_present(present, ("target_ind", "labels"),
                                                "category-id list", source)
  if text_column is None and "text" in present:
    text_column = "text"
  text_cols = [text_column] if text_column else ["title", "content"]
  table = read_split(local, split, [*text_cols, label_column, uid_column], manual_dir)
  return Split(_texts(table, text_column, source), to_labels(table.column(label_column)),
               _uids(table, uid_column, source))


# ---------------------------------------------------------------------------------------------
# The four tasks.


def build_agnews_business(manual_dir: str | os.PathLike | None = None, prevalence: float = 0.01,
                          seed: int = PAPER_SEED, text_column: str = "text",
                          label_column: str | None = None, uid_column: str = "uid") -> TextTask:
  """agnews-business-.01: Business (1) vs rest; 90,000 negatives + 910 positives; full test."""
  def binary(raw: np.ndarray) -> np.ndarray:
    return (raw == AGNEWS_BUSINESS).astype(np.int32)

  train = _read_single_label("agnews", "train", manual_dir, text_column, label_column,
                             uid_column, binary)
  test = _read_single_label("agnews", "test", manual_dir, text_column, label_column,
                            uid_column, binary)
  return TextTask(
      name=f"agnews-business-{_pct(prevalence)}",
      class_names=("other", "business"),
      minority_classes=(1,),
      train=paper_pool(train, prevalence, seed),
      test=test,
      provenance=f"{HUB_SOURCES['agnews']} (default config) in {resolve_manual_dir(manual_dir)}",
  )


def build_wikitoxic(manual_dir: str | os.PathLike | None = None, prevalence: float = 0.01,
                    test_majority_size: int = TEST_MAJORITY_SIZE, seed: int = PAPER_SEED,
                    text_column: str = "text", label_column: str | None = None,
                    uid_column: str = "uid") -> TextTask:
  """wikitoxic-.01: toxic (1) cut to 1% of the pool; test: 5,000 non-toxic + all toxic."""
  def identity(raw: np.ndarray) -> np.ndarray:
    bad = ~np.isin(raw, (0, 1))
    if bad.any():
      raise DataFormatError(f"wikitoxic labels must be 0/1, found {np.unique(raw[bad])[:5]}.")
    return raw

  train = _read_single_label("wikitoxic", "train", manual_dir, text_column, label_column,
                             uid_column, identity)
  test = _read_single_label("wikitoxic", "test", manual_dir, text_column, label_column,
                            uid_column, identity)
  return TextTask(
      name=f"wikitoxic-{_pct(prevalence)}",
      class_names=("non-toxic", "toxic"),
      minority_classes=(1,),
      train=paper_pool(train, prevalence, seed),
      test=paper_test(test, 0, test_majority_size, seed),
      provenance=f"{HUB_SOURCES['wikitoxic']} (default config) in {resolve_manual_dir(manual_dir)}",
  )


def _agri_labels(lists) -> np.ndarray:
  labels = np.zeros(len(lists), np.int32)
  labels[rows_with_any(lists, AMAZON_AGRICULTURE)] = 1
  return labels


def _amazon_task(multi: bool, read: Callable[[str, Callable], Split], test_majority_size: int,
                 seed: int, provenance: str) -> TextTask:
  """amazoncat-agri or -multi from a split reader: natural prevalence, test down-sampled."""
  if multi:
    others = AMAZON_MULTI_CLASSES.index("others")
    name, class_names, minority, to_labels = ("amazoncat-multi", AMAZON_MULTI_CLASSES,
                                              tuple(range(others)), amazon_multi_labels)
  else:
    others = 0
    name, class_names, minority, to_labels = ("amazoncat-agri", ("other", "agriculture"), (1,),
                                              _agri_labels)
  return TextTask(
      name=name,
      class_names=class_names,
      minority_classes=minority,
      train=read("train", to_labels),
      test=paper_test(read("test", to_labels), others, test_majority_size, seed),
      provenance=provenance,
  )


def _hub_amazon(multi: bool, manual_dir, test_majority_size: int, seed: int,
                text_column: str | None, label_column: str | None, uid_column: str) -> TextTask:
  def read(split: str, to_labels: Callable) -> Split:
    return _read_amazon(split, manual_dir, text_column, label_column, uid_column, to_labels)

  return _amazon_task(multi, read, test_majority_size, seed,
                      f"{HUB_SOURCES['amazoncat-13k']} (default config) in "
                      f"{resolve_manual_dir(manual_dir)}")


def build_amazoncat_agri(manual_dir: str | os.PathLike | None = None,
                         test_majority_size: int = TEST_MAJORITY_SIZE, seed: int = PAPER_SEED,
                         text_column: str | None = None, label_column: str | None = None,
                         uid_column: str = "uid") -> TextTask:
  """amazoncat-agri: category 246 vs rest at natural prevalence; test: 5,000 negatives + all pos."""
  return _hub_amazon(False, manual_dir, test_majority_size, seed, text_column, label_column,
                     uid_column)


def build_amazoncat_multi(manual_dir: str | os.PathLike | None = None,
                          test_majority_size: int = TEST_MAJORITY_SIZE, seed: int = PAPER_SEED,
                          text_column: str | None = None, label_column: str | None = None,
                          uid_column: str = "uid") -> TextTask:
  """amazoncat-multi: agriculture/archaeology/audio/philosophy (0-3) vs others (4)."""
  return _hub_amazon(True, manual_dir, test_majority_size, seed, text_column, label_column,
                     uid_column)


# ---------------------------------------------------------------------------------------------
# AmazonCat-13K from the original release (Extreme Classification Repository).

AMAZONCAT_RAW_FOLDER = "AmazonCat-13K.raw"
AMAZONCAT_RAW_HELP = (
    "The raw AmazonCat-13K release (McAuley & Leskovec 2013, as distributed by the Extreme "
    "Classification Repository, http://manikvarma.org/downloads/XC/XMLRepository.html: "
    "AmazonCat-13K.raw.zip, Google Drive id 17rVRDarPwlMpb3l5zof9h34FlwbpTu4l, the file the "
    "official bin/download_data.sh fetches) unzips to AmazonCat-13K.raw/ with trn.json.gz, "
    "tst.json.gz and Yf.txt. Fetch it on a networked machine (e.g. `gdown 17rVRDarPwlMpb3l5zof9h34"
    "FlwbpTu4l && unzip AmazonCat-13K.raw.zip`) and put the folder where named above; trn.json / "
    "tst.json (gunzipped, as the official script leaves them) work too.")


def _raw_amazon_file(root: Path, split: str) -> Path:
  stem = {"train": "trn", "test": "tst"}[split]
  for name in (f"{stem}.json", f"{stem}.json.gz"):
    if (root / name).is_file():
      return root / name
  raise MissingDataFile(f"Missing AmazonCat-13K file {root / stem}.json.gz (or {stem}.json).\n"
                        f"{AMAZONCAT_RAW_HELP}")


def read_amazoncat_json(path: Path) -> tuple[tuple[str, ...], list[list[int]]]:
  """(texts, category-id lists) of one JSON-lines file, as the official load_amazoncat read it.

  Each line is {"uid", "title", "content", "target_ind", "target_rel"}; text = title + "\\n" +
  content.
  """
  import gzip
  import json

  opener = gzip.open if path.suffix == ".gz" else open
  texts, lists = [], []
  with opener(path, "rt", encoding="utf-8") as f:
    for i, line in enumerate(f):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
        texts.append(row["title"] + "\n" + row["content"])
        lists.append([int(c) for c in row["target_ind"]])
      except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DataFormatError(
            f"{path}, line {i + 1}: expected a JSON object with string title and content and a "
            f"list of category ids target_ind ({type(e).__name__}: {e}).") from None
  return tuple(texts), lists


def _raw_amazon(multi: bool, manual_dir, test_majority_size: int, seed: int,
                folder: str) -> TextTask:
  import pyarrow as pa

  root = resolve_manual_dir(manual_dir) / folder
  paths = {split: _raw_amazon_file(root, split) for split in ("train", "test")}  # fail early
  rows, start = {}, 0
  for split, path in paths.items():
    texts, lists = read_amazoncat_json(path)
    check_texts(_series(texts), str(path))
    # uids: one counter over train then test rows, as the official process_data.py numbered
    # them (sequential_numbers over the DatasetDict), so they match pietrolesci/amazoncat-13k.
    rows[split] = texts, lists, np.arange(start, start + len(texts), dtype=np.int64)
    start += len(texts)

  def read(split: str, to_labels: Callable) -> Split:
    texts, lists, uid = rows.pop(split)
    return Split(texts, to_labels(pa.array(lists, type=pa.list_(pa.int64()))), uid)

  return _amazon_task(multi, read, test_majority_size, seed, f"AmazonCat-13K raw JSON in {root}")


def build_amazoncat_agri_raw(manual_dir: str | os.PathLike | None = None,
                             test_majority_size: int = TEST_MAJORITY_SIZE,
                             seed: int = PAPER_SEED, folder: str = AMAZONCAT_RAW_FOLDER) -> TextTask:
  """amazoncat-agri from the raw trn/tst JSON: same task and uids as the processed copy."""
  return _raw_amazon(False, manual_dir, test_majority_size, seed, folder)


def build_amazoncat_multi_raw(manual_dir: str | os.PathLike | None = None,
                              test_majority_size: int = TEST_MAJORITY_SIZE,
                              seed: int = PAPER_SEED,
                              folder: str = AMAZONCAT_RAW_FOLDER) -> TextTask:
  """amazoncat-multi from the raw trn/tst JSON: same task and uids as the processed copy."""
  return _raw_amazon(True, manual_dir, test_majority_size, seed, folder)


# ---------------------------------------------------------------------------------------------
# AG News from the original CSV files.

AG_NEWS_CSV_HELP = (
    "The original AG News CSV files (Zhang, Zhao & LeCun 2015; no header; columns class index "
    "1-4, title, description) come in ag_news_csv.tar.gz of the char-CNN release; mirrors: "
    "https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz (fast.ai) and "
    "data/ag_news_csv/{train,test}.csv of the GitHub repository mhjabreel/CharCnn_Keras (the "
    "files the Hugging Face `ag_news` script read). Fetch them on a networked machine and put "
    "train.csv and test.csv in the folder named above.")


def read_ag_news_csv(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
  """(texts, 0-based labels) as the Hugging Face `ag_news` script reads the CSV.

  text = title + " " + description, unescaped as the csv module does (the paper's processed copy
  was made from `ag_news`, so texts match it byte for byte).
  """
  import csv

  texts, labels = [], []
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.reader(f, quotechar='"', delimiter=",", quoting=csv.QUOTE_ALL,
                        skipinitialspace=True)
    for i, row in enumerate(reader):
      if len(row) != 3 or not row[0].strip().isdigit() or not 1 <= int(row[0]) <= 4:
        raise DataFormatError(
            f"{path}, line {i + 1}: expected 3 fields (class index 1-4, title, description), "
            f"got {row[:4]!r}.")
      labels.append(int(row[0]) - 1)
      texts.append(" ".join((row[1], row[2])))
  return tuple(texts), np.asarray(labels, np.int64)


def build_agnews_business_raw(manual_dir: str | os.PathLike | None = None,
                              prevalence: float = 0.01, seed: int = PAPER_SEED,
                              folder: str = "ag_news_csv") -> TextTask:
  """agnews-business-.01 from the original CSVs (Business = class index 3 -> label 1).

  uids follow the processed copy's numbering (one counter over train then test rows), so they
  should coincide with pietrolesci/agnews uids; the pool is drawn the same way.
  """
  root = resolve_manual_dir(manual_dir) / folder
  splits = {}
  offset = 0
  for split in ("train", "test"):
    path = root / f"{split}.csv"
    if not path.is_file():
      raise MissingDataFile(f"Missing AG News file {path}.\n{AG_NEWS_CSV_HELP}")
    texts, raw = read_ag_news_csv(path)
    check_texts(_series(texts), str(path))
    uid = np.arange(offset, offset + len(texts), dtype=np.int64)
    offset += len(texts)
    splits[split] = Split(texts, (raw == AGNEWS_BUSINESS).astype(np.int32), uid)
  return TextTask(
      name=f"agnews-business-{_pct(prevalence)}",
      class_names=("other", "business"),
      minority_classes=(1,),
      train=paper_pool(splits["train"], prevalence, seed),
      test=splits["test"],
      provenance=f"AG News original CSV in {root}",
  )


def _series(texts: Sequence[str]):
  import pandas as pd

  return pd.Series(list(texts), dtype=object)


def _pct(prevalence: float) -> str:
  """0.01 -> ".01", the paper's task-name suffix."""
  s = f"{prevalence:g}"
  return s[1:] if s.startswith("0.") else s


TASKS: dict[str, Callable[..., TextTask]] = {
    "agnews_business": build_agnews_business,
    "wikitoxic": build_wikitoxic,
    "amazoncat_agri": build_amazoncat_agri,
    "amazoncat_multi": build_amazoncat_multi,
    "agnews_business_raw": build_agnews_business_raw,
    "amazoncat_agri_raw": build_amazoncat_agri_raw,
    "amazoncat_multi_raw": build_amazoncat_multi_raw,
}


def required_files(task: str, manual_dir: str | os.PathLike | None = None) -> list[Path]:
  """All files a task reads; raises `MissingDataFile` naming the first one absent."""
  if task == "agnews_business_raw":
    root = resolve_manual_dir(manual_dir) / "ag_news_csv"
    files = [root / "train.csv", root / "test.csv"]
    for f in files:
      if not f.is_file():
        raise MissingDataFile(f"Missing AG News file {f}.\n{AG_NEWS_CSV_HELP}")
    return files
  if task in ("amazoncat_agri_raw", "amazoncat_multi_raw"):
    root = resolve_manual_dir(manual_dir) / AMAZONCAT_RAW_FOLDER
    return [_raw_amazon_file(root, split) for split in ("train", "test")]
  local = {"agnews_business": "agnews", "wikitoxic": "wikitoxic",
           "amazoncat_agri": "amazoncat-13k", "amazoncat_multi": "amazoncat-13k"}[task]
  return [f for split in ("train", "test") for f in split_files(local, split, manual_dir)]
