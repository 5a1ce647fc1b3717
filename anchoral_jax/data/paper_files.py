"""Where the paper's raw files are, how to read them, and what to do when they are missing.

Nothing is downloaded: each `MissingDataFile` names the file and the command that fetches it once
on a networked machine. The layouts are listed in `paper.py`'s docstring. Readers return the
columns as they are (texts, raw label values, uids); `paper.py` turns them into tasks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from anchoral_jax.data.errors import DataFormatError, MissingDataFile, check_texts, require_columns
from anchoral_jax.data.task import Split

DEFAULT_MANUAL_DIR = "~/anchoral_data/manual"
ENV_MANUAL_DIR = "ANCHORAL_DATA_DIR"

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


# ---------------------------------------------------------------------------------------------
# The processed copies on the Hugging Face hub (parquet shards).

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


def read_single_label(local: str, split: str, manual_dir, text_column: str,
                      label_column: str | None, uid_column: str,
                      to_binary: Callable[[np.ndarray], np.ndarray]) -> Split:
  """agnews or wikitoxic: one integer label per row, mapped by `to_binary`."""
  present = _schema(local, split, manual_dir)
  label_column = label_column or _first_present(present, ("labels", "label"), "label",
                                                f"{HUB_SOURCES[local]} {split}")
  table = read_split(local, split, [text_column, label_column, uid_column], manual_dir)
  source = f"{HUB_SOURCES[local]} ({split})"
  raw = table.column(label_column).to_numpy().astype(np.int64)
  return Split(_texts(table, text_column, source), to_binary(raw).astype(np.int32),
               _uids(table, uid_column, source))


def read_amazon(split: str, manual_dir, text_column: str | None, label_column: str | None,
                uid_column: str, to_labels: Callable) -> Split:
  """amazoncat-13k: a list of category ids per row, mapped to labels by `to_labels`."""
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


def raw_amazon_file(root: Path, split: str) -> Path:
  """trn/tst.json(.gz) of the raw release in `root`."""
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


# ---------------------------------------------------------------------------------------------
# AG News from the original CSV files.

AG_NEWS_CSV_FOLDER = "ag_news_csv"
AG_NEWS_CSV_HELP = (
    "The original AG News CSV files (Zhang, Zhao & LeCun 2015; no header; columns class index "
    "1-4, title, description) come in ag_news_csv.tar.gz of the char-CNN release; mirrors: "
    "https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz (fast.ai) and "
    "data/ag_news_csv/{train,test}.csv of the GitHub repository mhjabreel/CharCnn_Keras (the "
    "files the Hugging Face `ag_news` script read). Fetch them on a networked machine and put "
    "train.csv and test.csv in the folder named above.")


def ag_news_csv_file(root: Path, split: str) -> Path:
  """`root`/{train,test}.csv of the original AG News release."""
  path = root / f"{split}.csv"
  if not path.is_file():
    raise MissingDataFile(f"Missing AG News file {path}.\n{AG_NEWS_CSV_HELP}")
  return path


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


# ---------------------------------------------------------------------------------------------
# All files of a task, checked up front.

_HUB_FOLDER = {"agnews_business": "agnews", "wikitoxic": "wikitoxic",
               "amazoncat_agri": "amazoncat-13k", "amazoncat_multi": "amazoncat-13k"}


def required_files(task: str, manual_dir: str | os.PathLike | None = None) -> list[Path]:
  """All files a task reads; raises `MissingDataFile` naming the first one absent."""
  if task == "agnews_business_raw":
    root = resolve_manual_dir(manual_dir) / AG_NEWS_CSV_FOLDER
    return [ag_news_csv_file(root, split) for split in ("train", "test")]
  if task in ("amazoncat_agri_raw", "amazoncat_multi_raw"):
    root = resolve_manual_dir(manual_dir) / AMAZONCAT_RAW_FOLDER
    return [raw_amazon_file(root, split) for split in ("train", "test")]
  local = _HUB_FOLDER[task]
  return [f for split in ("train", "test") for f in split_files(local, split, manual_dir)]
