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

Modules: `paper_files.py` finds and reads the files (and says how to get a missing one),
`sampling.py` draws the samples, this module builds the tasks (`TASKS`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from anchoral_jax.data.errors import DataFormatError, check_texts
from anchoral_jax.data.paper_files import (
  AG_NEWS_CSV_FOLDER,
  AMAZONCAT_RAW_FOLDER,
  HUB_SOURCES,
  ag_news_csv_file,
  raw_amazon_file,
  read_ag_news_csv,
  read_amazon,
  read_amazoncat_json,
  read_single_label,
  resolve_manual_dir,
)
from anchoral_jax.data.sampling import PAPER_SEED, paper_pool, paper_test
from anchoral_jax.data.task import Split, TextTask

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
# The four tasks.


def build_agnews_business(manual_dir: str | os.PathLike | None = None, prevalence: float = 0.01,
                          seed: int = PAPER_SEED, text_column: str = "text",
                          label_column: str | None = None, uid_column: str = "uid") -> TextTask:
  """agnews-business-.01: Business (1) vs rest; 90,000 negatives + 910 positives; full test."""
  def binary(raw: np.ndarray) -> np.ndarray:
    return (raw == AGNEWS_BUSINESS).astype(np.int32)

  train = read_single_label("agnews", "train", manual_dir, text_column, label_column,
                            uid_column, binary)
  test = read_single_label("agnews", "test", manual_dir, text_column, label_column,
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

  train = read_single_label("wikitoxic", "train", manual_dir, text_column, label_column,
                            uid_column, identity)
  test = read_single_label("wikitoxic", "test", manual_dir, text_column, label_column,
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
    return read_amazon(split, manual_dir, text_column, label_column, uid_column, to_labels)

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


def _raw_amazon(multi: bool, manual_dir, test_majority_size: int, seed: int,
                folder: str) -> TextTask:
  import pyarrow as pa

  root = resolve_manual_dir(manual_dir) / folder
  paths = {split: raw_amazon_file(root, split) for split in ("train", "test")}  # fail early
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


def build_agnews_business_raw(manual_dir: str | os.PathLike | None = None,
                              prevalence: float = 0.01, seed: int = PAPER_SEED,
                              folder: str = AG_NEWS_CSV_FOLDER) -> TextTask:
  """agnews-business-.01 from the original CSVs (Business = class index 3 -> label 1).

  uids follow the processed copy's numbering (one counter over train then test rows), so they
  should coincide with pietrolesci/agnews uids; the pool is drawn the same way.
  """
  root = resolve_manual_dir(manual_dir) / folder
  splits = {}
  offset = 0
  for split in ("train", "test"):
    path = ag_news_csv_file(root, split)
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
