"""The paper's tasks from small files in the exact public layouts (SPEC.md §7).

Fixtures mimic the Hugging Face copies (pietrolesci/{agnews,wikitoxic,amazoncat-13k}, default
config, `data/{split}-0000k-of-0000n-<hash>.parquet`) and the original AG News CSVs. The golden
reference for the sampling is an independent re-implementation of the official
prepare_data.py with pandas + sklearn.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.utils import check_random_state

from anchoral_jax.data import errors, paper, paper_files, registry, sampling
from anchoral_jax.data.errors import DataFormatError
from anchoral_jax.data.sampling import minority_count
from anchoral_jax.data.task import TextTask

AG_CLASSES = ("World", "Sports", "Business", "Sci/Tech")


def _write_split(root, local: str, split: str, df: pd.DataFrame, shards: int = 1) -> None:
  folder = root / local / "data"
  folder.mkdir(parents=True, exist_ok=True)
  for k, part in enumerate(np.array_split(np.arange(len(df)), shards)):
    table = pa.Table.from_pandas(df.iloc[part].reset_index(drop=True), preserve_index=False)
    pq.write_table(table, folder / f"{split}-{k:05d}-of-{shards:05d}-{k:04x}beef.parquet")


def _agnews_frames(n_train: int = 400, n_test: int = 80) -> dict[str, pd.DataFrame]:
  """Processed-copy layout: text, labels (0-3), uid; uid counts over train then test."""
  out, uid = {}, 0
  for split, n in (("train", n_train), ("test", n_test)):
    labels = np.arange(n) % 4
    texts = [f"{AG_CLASSES[c]} headline {uid + i}, with a comma \\ and \"quotes\" text"
             for i, c in enumerate(labels)]
    out[split] = pd.DataFrame({"text": texts, "labels": labels.astype(np.int64),
                               "uid": np.arange(uid, uid + n, dtype=np.int64)})
    uid += n
  return out


@pytest.fixture
def agnews_dir(tmp_path):
  frames = _agnews_frames()
  _write_split(tmp_path, "agnews", "train", frames["train"], shards=2)
  _write_split(tmp_path, "agnews", "test", frames["test"])
  return tmp_path, frames


def _wikitoxic_frames() -> dict[str, pd.DataFrame]:
  rng = np.random.default_rng(0)
  out, uid = {}, 0
  for split, n, n_tox in (("train", 300, 30), ("validation", 50, 5), ("test", 200, 40)):
    labels = np.zeros(n, np.int64)
    labels[rng.choice(n, n_tox, replace=False)] = 1
    out[split] = pd.DataFrame({"id": [f"{split}{i:x}" for i in range(n)],
                               "text": [f"comment {uid + i} tox={y}" for i, y in enumerate(labels)],
                               "labels": labels, "uid": np.arange(uid, uid + n, dtype=np.int64)})
    uid += n
  return out


@pytest.fixture
def wikitoxic_dir(tmp_path):
  frames = _wikitoxic_frames()
  for split, df in frames.items():
    _write_split(tmp_path, "wikitoxic", split, df)
  return tmp_path, frames


# Category-id lists with a known multi-class answer (priority audio > agriculture > archaeology >
# philosophy) and the agriculture flag.
PRIORITY_CASES = [
    ([677, 246, 538, 413], "audio", 1),
    ([246, 538, 413], "agriculture", 1),
    ([8601, 13319], "archaeology", 0),
    ([538, 539], "archaeology", 0),
    ([10990, 1, 2], "philosophy", 0),
    ([246], "agriculture", 1),
    ([2460, 24, 6], "others", 0),
    ([], "others", 0),
    ([677, 5881], "audio", 0),
]


def _amazon_frames(with_text: bool = True) -> dict[str, pd.DataFrame]:
  rng = np.random.default_rng(1)
  out, uid = {}, 0
  for split, n in (("train", 240), ("test", 160)):
    lists = [list(map(int, rng.choice(np.arange(1000, 1100), size=rng.integers(1, 4),
                                      replace=False))) for _ in range(n)]
    for i, (cats, _, _) in enumerate(PRIORITY_CASES * 2):  # sprinkle the known cases
      lists[7 * i + 3] = cats + lists[7 * i + 3]
    titles = [f"Product {uid + i}" for i in range(n)]
    contents = [f"Description of item {uid + i}." for i in range(n)]
    df = pd.DataFrame({"uid_original": [f"B{uid + i:09d}" for i in range(n)],
                       "title": titles, "content": contents,
                       "target_ind": pd.Series(lists, dtype=object),
                       "target_rel": pd.Series([[1.0] * len(x) for x in lists], dtype=object)})
    if with_text:
      df["text"] = df["title"] + "\n" + df["content"]
    df["uid"] = np.arange(uid, uid + n, dtype=np.int64)
    out[split] = df
    uid += n
  return out


@pytest.fixture
def amazon_dir(tmp_path):
  frames = _amazon_frames()
  _write_split(tmp_path, "amazoncat-13k", "train", frames["train"], shards=3)
  _write_split(tmp_path, "amazoncat-13k", "test", frames["test"], shards=2)
  return tmp_path, frames


# --- golden reference: the official prepare_data.py logic, re-done with pandas ---------------


def _official_pool_uids(df: pd.DataFrame, prop: float) -> set[int]:
  rng = check_random_state(42)
  n = math.ceil((prop * (df["labels"] == 0).sum()) / (1 - prop))
  ids = df.loc[df["labels"] == 1].sample(n, random_state=rng).index
  return set(df.loc[(df["labels"] != 1) | (df.index.isin(ids)), "uid"].tolist())


def _official_test_uids(df: pd.DataFrame, size: int, maj_id: int) -> set[int]:
  rng = check_random_state(42)
  ids = df.loc[df["labels"] == maj_id].sample(size, random_state=rng).index
  return set(df.loc[(df["labels"] != maj_id) | (df.index.isin(ids)), "uid"].tolist())


def _by_uid(df: pd.DataFrame) -> dict[int, pd.Series]:
  return {int(r.uid): r for r in df.itertuples(index=False)}


# --- AG News -----------------------------------------------------------------------------------


def test_agnews_counts_alignment_and_official_sample(agnews_dir):
  root, frames = agnews_dir
  task = paper.build_agnews_business(manual_dir=root)
  train = frames["train"]
  n_neg = int((train["labels"] != 2).sum())
  assert task.name == "agnews-business-.01"
  assert task.class_names == ("other", "business") and task.minority_classes == (1,)
  counts = np.bincount(task.train.labels, minlength=2)
  assert counts[0] == n_neg == 300
  assert counts[1] == minority_count(n_neg, 0.01) == math.ceil(0.01 * 300 / 0.99) == 4
  assert len(task.test) == len(frames["test"])  # AG News test is kept whole
  assert task.test.labels.mean() == pytest.approx(0.25)
  # uid alignment: each row's text and label are those of its uid in the source files.
  src = _by_uid(pd.concat([frames["train"], frames["test"]]))
  for split in (task.train, task.test):
    for t, y, u in zip(split.text, split.labels, split.uid, strict=True):
      assert src[int(u)].text == t and int(src[int(u)].labels == 2) == y
  # Same uids as the official script on the same rows (binarised first, as it does).
  ref = train.assign(labels=(train["labels"] == 2).astype(int))
  assert set(task.train.uid.tolist()) == _official_pool_uids(ref, 0.01)


def test_agnews_prevalence_share_and_determinism(agnews_dir):
  root, _ = agnews_dir
  a = paper.build_agnews_business(manual_dir=root, prevalence=0.05)
  b = paper.build_agnews_business(manual_dir=root, prevalence=0.05)
  assert a.name == "agnews-business-.05"
  n_pos = int(a.train.labels.sum())
  assert n_pos == math.ceil(0.05 * 300 / 0.95) == 16
  assert n_pos / len(a.train) == pytest.approx(0.05, abs=0.002)
  np.testing.assert_array_equal(a.train.uid, b.train.uid)
  assert a.train.text == b.train.text and a.fingerprint() == b.fingerprint()
  c = paper.build_agnews_business(manual_dir=root, prevalence=0.05, seed=7)
  assert set(c.train.uid.tolist()) != set(a.train.uid.tolist())


def test_agnews_raw_csv_matches_processed_copy(tmp_path):
  """The original CSV (class 1-4, title, description) gives the processed copy's task."""
  frames = _agnews_frames()
  folder = tmp_path / "ag_news_csv"
  folder.mkdir()
  for split, df in frames.items():
    with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
      w = csv.writer(f, quoting=csv.QUOTE_ALL)
      for text, y in zip(df["text"], df["labels"], strict=True):
        cut = text.index(", ") + 1  # title keeps its comma; the description follows a space
        w.writerow([int(y) + 1, text[:cut], text[cut + 1:]])
  raw = paper.build_agnews_business_raw(manual_dir=tmp_path)
  texts, labels = paper_files.read_ag_news_csv(folder / "train.csv")
  assert texts == tuple(frames["train"]["text"])  # title + " " + description, unescaped
  assert labels.tolist() == frames["train"]["labels"].tolist()
  for split in ("train", "test"):
    _write_split(tmp_path, "agnews", split, frames[split])
  processed = paper.build_agnews_business(manual_dir=tmp_path)
  np.testing.assert_array_equal(raw.train.uid, processed.train.uid)
  np.testing.assert_array_equal(raw.test.uid, processed.test.uid)
  assert raw.train.text == processed.train.text
  np.testing.assert_array_equal(raw.train.labels, processed.train.labels)
  assert raw.test.uid[0] == len(frames["train"])  # one uid counter over train then test


def test_agnews_raw_csv_bad_row(tmp_path):
  folder = tmp_path / "ag_news_csv"
  folder.mkdir()
  (folder / "train.csv").write_text('"3","title only"\n')
  (folder / "test.csv").write_text('"1","t","d"\n')
  with pytest.raises(DataFormatError, match=r"train.csv, line 1: expected 3 fields"):
    paper.build_agnews_business_raw(manual_dir=tmp_path)


# --- WikiToxic -----------------------------------------------------------------------------


def test_wikitoxic_pool_and_test_downsampling(wikitoxic_dir):
  root, frames = wikitoxic_dir
  task = paper.build_wikitoxic(manual_dir=root, test_majority_size=50)
  assert task.name == "wikitoxic-.01" and task.minority_classes == (1,)
  assert np.bincount(task.train.labels).tolist() == [270, minority_count(270, 0.01)]
  assert np.bincount(task.test.labels).tolist() == [50, 40]  # all toxic kept
  assert set(task.train.uid.tolist()) == _official_pool_uids(frames["train"], 0.01)
  assert set(task.test.uid.tolist()) == _official_test_uids(frames["test"], 50, 0)
  val_uids = set(frames["validation"]["uid"].tolist())
  assert not val_uids & (set(task.train.uid.tolist()) | set(task.test.uid.tolist()))
  src = _by_uid(frames["test"])
  assert all(src[int(u)].text == t for t, u in zip(task.test.text, task.test.uid, strict=True))
  again = paper.build_wikitoxic(manual_dir=root, test_majority_size=50)
  np.testing.assert_array_equal(task.test.uid, again.test.uid)


def test_paper_sample_is_pandas_sample():
  rows = np.arange(1000, 1400)
  df = pd.DataFrame({"x": rows}, index=rows)
  for n in (1, 17, 399):
    ref = df.sample(n, random_state=check_random_state(42)).index.to_numpy()
    np.testing.assert_array_equal(sampling.paper_sample(rows, n), np.sort(ref))
  np.testing.assert_array_equal(sampling.paper_sample(rows, 10_000), rows)  # all if fewer


# --- AmazonCat-13K -------------------------------------------------------------------------


def test_amazon_multi_priority_and_test(amazon_dir):
  root, frames = amazon_dir
  task = paper.build_amazoncat_multi(manual_dir=root, test_majority_size=30)
  assert task.class_names == ("agriculture", "archaeology", "audio", "philosophy", "others")
  assert task.minority_classes == (0, 1, 2, 3)
  train = _by_uid(frames["train"])
  label_of = dict(zip(task.train.uid.tolist(), task.train.labels.tolist(), strict=True))
  assert len(task.train) == len(frames["train"])  # natural prevalence: the pool is all of train
  seen = set()
  for u, row in train.items():
    cats = set(row.target_ind)
    for case, name, _ in PRIORITY_CASES:
      if case and set(case) <= cats and not cats - set(case) - set(range(1000, 1100)):
        assert task.class_names[label_of[u]] == name, (row.target_ind, name)
        seen.add(name)
  assert seen == set(task.class_names)
  # Test: every minority row kept, "others" cut to 30, exactly as the official script.
  test_counts = np.bincount(task.test.labels, minlength=5)
  assert test_counts[4] == 30
  ref = frames["test"].assign(labels=paper.amazon_multi_labels(
      pa.array(frames["test"]["target_ind"].tolist(), pa.list_(pa.int64()))))
  assert test_counts[:4].sum() == int((ref["labels"] != 4).sum()) > 0
  assert set(task.test.uid.tolist()) == _official_test_uids(ref, 30, 4)


def test_amazon_agri_binary(amazon_dir):
  root, frames = amazon_dir
  task = paper.build_amazoncat_agri(manual_dir=root, test_majority_size=20)
  assert task.name == "amazoncat-agri" and task.minority_classes == (1,)
  expected = {int(r.uid): int(246 in r.target_ind) for r in frames["train"].itertuples()}
  assert dict(zip(task.train.uid.tolist(), task.train.labels.tolist(), strict=True)) == expected
  n_pos_test = sum(246 in x for x in frames["test"]["target_ind"])
  assert np.bincount(task.test.labels).tolist() == [20, n_pos_test]
  assert task.train.text[0] == "Product 0\nDescription of item 0."


def test_amazon_text_from_title_and_content(tmp_path):
  frames = _amazon_frames(with_text=False)
  for split, df in frames.items():
    _write_split(tmp_path, "amazoncat-13k", split, df)
  task = paper.build_amazoncat_agri(manual_dir=tmp_path, test_majority_size=20)
  src = _by_uid(frames["train"])
  assert all(t == f"{src[int(u)].title}\n{src[int(u)].content}"
             for t, u in zip(task.train.text, task.train.uid, strict=True))


def test_amazon_label_column_configurable(tmp_path):
  frames = _amazon_frames()
  for split, df in frames.items():
    _write_split(tmp_path, "amazoncat-13k", split, df.rename(columns={"target_ind": "labels"}))
  auto = paper.build_amazoncat_agri(manual_dir=tmp_path, test_majority_size=20)
  named = paper.build_amazoncat_agri(manual_dir=tmp_path, test_majority_size=20,
                                     label_column="labels")
  assert auto.train.labels.sum() == named.train.labels.sum() > 0


def _write_amazon_raw(root, frames, gz: bool) -> None:
  """The raw release's JSON lines: uid (the ASIN), title, content, target_ind, target_rel."""
  import gzip
  import json

  folder = root / "AmazonCat-13K.raw"
  folder.mkdir(parents=True)
  for split, stem in (("train", "trn"), ("test", "tst")):
    df = frames[split]
    lines = "".join(json.dumps({"uid": r.uid_original, "title": r.title, "content": r.content,
                                "target_ind": list(r.target_ind), "target_rel": list(r.target_rel)})
                    + "\n" for r in df.itertuples(index=False))
    if gz:
      with gzip.open(folder / f"{stem}.json.gz", "wt", encoding="utf-8") as f:
        f.write(lines)
    else:
      (folder / f"{stem}.json").write_text(lines, encoding="utf-8")


@pytest.mark.parametrize("gz", [True, False])
def test_amazoncat_raw_json_matches_processed_copy(amazon_dir, gz):
  """trn/tst JSON of AmazonCat-13K.raw give the processed copy's tasks, uids included."""
  root, frames = amazon_dir
  _write_amazon_raw(root, frames, gz)
  for name in ("amazoncat_agri", "amazoncat_multi"):
    processed = registry.load(name, manual_dir=root, test_majority_size=50)
    raw = registry.load(f"{name}_raw", manual_dir=root, test_majority_size=50)
    assert raw.name == processed.name and raw.class_names == processed.class_names
    for a, b in ((raw.train, processed.train), (raw.test, processed.test)):
      np.testing.assert_array_equal(a.uid, b.uid)
      np.testing.assert_array_equal(a.labels, b.labels)
      assert a.text == b.text
    assert raw.train.uid[0] == 0 and min(raw.test.uid) >= len(frames["train"])
    assert 0 < len(raw.test) < len(frames["test"])  # the test sample did down-sample
  assert paper_files.required_files("amazoncat_agri_raw", root)[0].name.startswith("trn.json")


def test_amazoncat_raw_errors(tmp_path):
  with pytest.raises(errors.MissingDataFile,
                     match=r"(?s)AmazonCat-13K.raw/trn.json.gz.*17rVRDarPwlMpb3l5zof9h34FlwbpTu4l"):
    paper.build_amazoncat_agri_raw(manual_dir=tmp_path)
  folder = tmp_path / "AmazonCat-13K.raw"
  folder.mkdir()
  (folder / "trn.json").write_text('{"uid": "a", "title": "t", "content": "c", '
                                   '"target_ind": [246]}\n{"uid": "b", "title": "t2"}\n')
  (folder / "tst.json").write_text('{"uid": "c", "title": "t", "content": "c", '
                                   '"target_ind": [1]}\n')
  with pytest.raises(DataFormatError, match=r"trn.json, line 2: expected a JSON object"):
    paper.build_amazoncat_multi_raw(manual_dir=tmp_path)


# --- errors, manual dir, registry ------------------------------------------------------------


def test_missing_files_name_file_source_and_command(tmp_path, monkeypatch):
  monkeypatch.setenv("ANCHORAL_DATA_DIR", str(tmp_path / "manual"))
  with pytest.raises(errors.MissingDataFile) as e:
    paper.build_wikitoxic()
  msg = str(e.value)
  assert isinstance(e.value, FileNotFoundError)
  assert str(tmp_path / "manual" / "wikitoxic" / "data") + "/train-00000-of-0000N" in msg
  assert ("huggingface-cli download pietrolesci/wikitoxic --repo-type dataset "
          f"--include 'data/*' --local-dir {tmp_path / 'manual' / 'wikitoxic'}") in msg
  assert "ANCHORAL_DATA_DIR" in msg
  with pytest.raises(errors.MissingDataFile, match=r"(?s)ag_news_csv/train.csv.*CharCnn_Keras"):
    paper.build_agnews_business_raw(manual_dir=tmp_path)


def test_missing_shard_and_duplicate_shard(amazon_dir):
  root, _ = amazon_dir
  folder = root / "amazoncat-13k" / "data"
  shard = sorted(folder.glob("train-00001-of-00003-*.parquet"))[0]
  moved = shard.rename(root / "elsewhere.parquet")
  with pytest.raises(errors.MissingDataFile, match=r"shards \[1\] of 3 are missing"):
    paper.build_amazoncat_agri(manual_dir=root)
  moved.rename(shard)
  (folder / "train-00001-of-00003-0000dup.parquet").write_bytes(shard.read_bytes())
  with pytest.raises(DataFormatError, match="Two files for shard 1"):
    paper.build_amazoncat_agri(manual_dir=root)


def test_missing_column_lists_columns(agnews_dir):
  root, _ = agnews_dir
  with pytest.raises(DataFormatError, match=r"missing column\(s\) \['body'\].*'labels', 'uid'"):
    paper.build_agnews_business(manual_dir=root, text_column="body")


def test_registry_names(agnews_dir):
  root, _ = agnews_dir
  for name in ("agnews_business", "wikitoxic", "amazoncat_agri", "amazoncat_multi",
               "agnews_business_raw", "amazoncat_agri_raw", "amazoncat_multi_raw", "user"):
    assert name in registry.BUILDERS
  task = registry.load("agnews_business", manual_dir=root)
  assert isinstance(task, TextTask) and task.train.labels.sum() == 4


def _cli_run(workdir, *overrides: str) -> subprocess.CompletedProcess:
  root = Path(__file__).resolve().parents[1]
  cmd = [sys.executable, "-m", "anchoral_jax.cli", "run", "--workdir", str(workdir),
         "--config", "configs/main.py:dataset=agnews_business,strategy=entropy,filter=anchoral",
         *overrides]
  return subprocess.run(cmd, cwd=root, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                        capture_output=True, text=True, timeout=900)


def test_cli_run_main_config_on_paper_files(agnews_dir, tmp_path_factory, cache_dir):
  """`anchoral run --config configs/main.py:dataset=agnews_business` on files in the manual dir.

  The paper config unchanged but for size (tiny random model, a few rounds): the task is built
  from the parquet shards, the AL loop runs to DONE, labels come from the files' rows.
  """
  root, frames = agnews_dir
  work = tmp_path_factory.mktemp("run")
  small = [f"--config.data.kwargs.manual_dir={root}", f"--config.data.cache_dir={cache_dir}",
           "--config.model.name=tiny", "--config.model.pretrained=False",
           "--config.model.tokenizer=all-MiniLM-L6-v2", "--config.data.max_length=32",
           "--config.train.epochs=1", "--config.train.min_steps=2", "--config.train.batch_size=16",
           "--config.al.budget=30", "--config.al.query_size=5", "--config.al.initial_size=20",
           "--config.al.initial_per_minority=2", "--config.al.subpool_size=60",
           "--config.anchoral.num_anchors=2", "--config.anchoral.num_neighbours=10",
           "--config.wandb.mode=disabled"]
  done = _cli_run(work, *small)
  assert done.returncode == 0, done.stderr[-3000:]
  assert (work / "DONE").exists()
  rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
  assert [r["round"] for r in rows if "round" in r] == [0, 1, 2]  # initial + 2 queries of 5
  assert "auc/minority_f1" in rows[-1]["summary"]
  labelled = pd.read_parquet(work / "labelled.parquet")
  assert len(labelled) == 30
  src = _by_uid(frames["train"])
  for u, y in zip(labelled["uid"], labelled["label"], strict=True):
    assert int(src[int(u)].labels == 2) == int(y)  # the oracle's labels are the files' labels
  # Without the files: exit 2 and the message says what to fetch, no traceback.
  missing = _cli_run(tmp_path_factory.mktemp("run"), *small[1:],
                     f"--config.data.kwargs.manual_dir={root / 'nowhere'}")
  assert missing.returncode == 2
  assert "huggingface-cli download pietrolesci/agnews" in missing.stderr
  assert "Traceback" not in missing.stderr


# --- tfds ------------------------------------------------------------------------------------


def test_tfds_builder_matches_plain_builder(wikitoxic_dir, tmp_path_factory):
  pytest.importorskip("array_record")  # ArrayRecord is what makes tfds work without TensorFlow
  from anchoral_jax.data import tfds_builders

  root, _ = wikitoxic_dir
  data_dir = tmp_path_factory.mktemp("tfds")
  # The tfds builder runs the paper construction with its defaults (test 5,000 non-toxic: all
  # 160 here), so compare with the plain builder at the same settings.
  plain = paper.build_wikitoxic(manual_dir=root)
  via_tfds = tfds_builders.load_task("wikitoxic", manual_dir=root, data_dir=data_dir)
  for a, b in ((plain.train, via_tfds.train), (plain.test, via_tfds.test)):
    order = np.argsort(a.uid)
    np.testing.assert_array_equal(a.uid[order], b.uid)
    np.testing.assert_array_equal(a.labels[order], b.labels)
    assert tuple(a.text[i] for i in order) == b.text
  assert (via_tfds.name, via_tfds.class_names) == (plain.name, plain.class_names)
  # Prepared once: a second load reads the ArrayRecord files even without the manual files.
  again = tfds_builders.load_task("wikitoxic", manual_dir=data_dir / "nowhere", data_dir=data_dir)
  np.testing.assert_array_equal(again.train.uid, via_tfds.train.uid)
  assert "pietrolesci/wikitoxic" in tfds_builders.AnchoralWikitoxic.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_tfds_missing_manual_files(tmp_path):
  pytest.importorskip("array_record")
  from anchoral_jax.data import tfds_builders

  with pytest.raises(errors.MissingDataFile, match="pietrolesci/agnews"):
    tfds_builders.load_task("agnews_business", manual_dir=tmp_path / "m", data_dir=tmp_path / "t")


def test_tfds_raw_amazoncat_builder(amazon_dir, tmp_path_factory):
  """The raw-release builders go through tfds too, into their own dataset name."""
  pytest.importorskip("array_record")
  from anchoral_jax.data import tfds_builders

  root, frames = amazon_dir
  _write_amazon_raw(root, frames, gz=True)
  data_dir = tmp_path_factory.mktemp("tfds")
  plain = paper.build_amazoncat_multi_raw(manual_dir=root)
  via_tfds = tfds_builders.load_task("amazoncat_multi_raw", manual_dir=root, data_dir=data_dir)
  order = np.argsort(plain.train.uid)
  np.testing.assert_array_equal(plain.train.labels[order], via_tfds.train.labels)
  np.testing.assert_array_equal(plain.test.uid, np.sort(via_tfds.test.uid))
  assert via_tfds.class_names == paper.AMAZON_MULTI_CLASSES
  assert (data_dir / "anchoral_amazoncat_multi_raw").is_dir()
  assert "<manual_dir>/AmazonCat-13K.raw/" in (
      tfds_builders.AnchoralAmazoncatMultiRaw.MANUAL_DOWNLOAD_INSTRUCTIONS)
