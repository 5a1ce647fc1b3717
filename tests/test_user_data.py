"""User files (CSV/TSV, parquet, JSON lines) -> TextTask: construction rules and every error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anchoral_jax.data import registry
from anchoral_jax.data.errors import DataFileNotFound, DataFormatError
from anchoral_jax.data.sampling import downsample_minorities, downsample_minority, minority_count
from anchoral_jax.data.user import build_user_task

CLASSES = ("ham", "spam", "promo")


def _frame(n: int = 300, uid_start: int = 10_000) -> pd.DataFrame:
  """80% ham, 15% spam, 5% promo (300 rows: 240/45/15); uids far from row numbers."""
  labels = np.resize(np.array(["ham"] * 16 + ["spam"] * 3 + ["promo"]), n)
  labels = labels[np.random.default_rng(3).permutation(n)]
  uid = uid_start + 7 * np.arange(len(labels))
  return pd.DataFrame({"body": [f"message {u} is {y}" for u, y in zip(uid, labels, strict=True)],
                       "kind": labels, "doc_id": uid})


def _write(df: pd.DataFrame, path) -> str:
  suffix = path.suffix
  if suffix == ".csv":
    df.to_csv(path, index=False)
  elif suffix == ".tsv":
    df.to_csv(path, index=False, sep="\t")
  elif suffix == ".parquet":
    df.to_parquet(path, index=False)
  elif suffix == ".jsonl":
    path.write_text("".join(json.dumps(r) + "\n" for r in df.to_dict(orient="records")))
  return str(path)


def _build(path, **kw):
  args = dict(text_column="body", label_column="kind", class_names=CLASSES,
              minority_classes=["spam"])
  args.update(kw)
  return build_user_task(path, **args)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_formats_labels_and_uids(tmp_path, suffix):
  df = _frame()
  task = _build(_write(df, tmp_path / f"msgs{suffix}"), uid_column="doc_id")
  assert task.name == "user-msgs" and task.class_names == CLASSES
  assert task.minority_classes == (1,)
  src = {int(u): (t, CLASSES.index(y)) for t, y, u in zip(df.body, df.kind, df.doc_id, strict=True)}
  for split in (task.train, task.test):
    for t, y, u in zip(split.text, split.labels, split.uid, strict=True):
      assert src[int(u)] == (t, y)  # uid alignment
  assert len(task.train) + len(task.test) == len(df)
  assert not set(task.train.uid.tolist()) & set(task.test.uid.tolist())


def test_integer_labels_and_row_number_uids(tmp_path):
  df = _frame().assign(kind=lambda d: d.kind.map(CLASSES.index))
  task = _build(_write(df, tmp_path / "ints.csv"), test_fraction=0.25)
  assert sorted(np.concatenate([task.train.uid, task.test.uid]).tolist()) == list(range(len(df)))
  row_of = {f"message {u}": i for i, u in enumerate(df.doc_id)}
  for t, y, u in zip(task.train.text, task.train.labels, task.train.uid, strict=True):
    assert row_of[t.rsplit(" is", 1)[0]] == u and df.kind[u] == y


def test_stratified_split_is_seeded(tmp_path):
  path = _write(_frame(), tmp_path / "m.csv")
  a, b = _build(path), _build(path)
  assert np.bincount(a.test.labels, minlength=3).tolist() == [48, 9, 3]  # round(0.2 * n_c)
  np.testing.assert_array_equal(a.test.uid, b.test.uid)
  assert a.fingerprint() == b.fingerprint()
  c = _build(path, seed=1)
  assert set(c.test.uid.tolist()) != set(a.test.uid.tolist())


def test_test_file_and_uid_offset(tmp_path):
  train = _write(_frame(), tmp_path / "train.parquet")
  test = _write(_frame(60), tmp_path / "test.parquet")
  task = _build(train, test_path=test)
  assert len(task.train) == 300 and len(task.test) == 60
  assert task.test.uid.tolist() == list(range(300, 360))  # continue after the pool's rows


def test_minority_downsampling_to_prevalence(tmp_path):
  path = _write(_frame(), tmp_path / "m.csv")
  full = _build(path, uid_column="doc_id")
  task = _build(path, uid_column="doc_id", prevalence=0.01)
  counts = np.bincount(task.train.labels, minlength=3)
  rest = int((full.train.labels != 1).sum())  # ham + promo (promo is not a minority here)
  assert counts[1] == minority_count(rest, 0.01) == 3
  assert counts[0] + counts[2] == rest
  assert 0.01 <= counts[1] / len(task.train) < 0.01 + 1 / len(task.train)
  np.testing.assert_array_equal(task.test.uid, full.test.uid)  # the test split is untouched
  again = _build(path, uid_column="doc_id", prevalence=0.01)
  np.testing.assert_array_equal(task.train.uid, again.train.uid)
  # Two minority classes: each cut to ceil(p * N_ham / (1 - p)).
  two = _build(path, minority_classes=["spam", "promo"], prevalence=0.02)
  n_ham = int((two.train.labels == 0).sum())
  assert np.bincount(two.train.labels).tolist() == [n_ham] + [minority_count(n_ham, 0.02)] * 2
  assert two.minority_classes == (1, 2)


def test_single_minority_equals_task_downsample_minority(tmp_path):
  split = _build(_write(_frame(), tmp_path / "m.csv")).train
  a = downsample_minorities(split, (1,), 0.05, np.random.default_rng(5))
  b = downsample_minority(split, 1, 0.05, np.random.default_rng(5))
  np.testing.assert_array_equal(a.uid, b.uid)


def test_test_majority_downsampling(tmp_path):
  path = _write(_frame(), tmp_path / "m.csv")
  task = _build(path, test_majority_size=20)
  counts = np.bincount(task.test.labels, minlength=3)
  assert counts[1] == 9 and counts[0] + counts[2] == 20  # all spam kept


def test_registry_user(tmp_path):
  path = _write(_frame(), tmp_path / "m.jsonl")
  task = registry.load("user", path=path, text_column="body", label_column="kind",
                       class_names=CLASSES, minority_classes=["promo"], task_name="mine")
  assert task.name == "mine" and task.minority_classes == (2,)


# --- errors ---------------------------------------------------------------------------------


def test_missing_file(tmp_path):
  with pytest.raises(DataFileNotFound, match=r"nope\.csv does not exist") as e:
    _build(tmp_path / "nope.csv")
  assert isinstance(e.value, FileNotFoundError)
  with pytest.raises(DataFileNotFound, match="test.csv"):
    _build(_write(_frame(), tmp_path / "m.csv"), test_path=tmp_path / "test.csv")


def test_missing_columns_lists_present(tmp_path):
  path = _write(_frame(), tmp_path / "m.csv")
  with pytest.raises(DataFormatError,
                     match=r"missing column\(s\) \['text'\]\. Columns present: \['body', 'kind', "
                           r"'doc_id'\]"):
    _build(path, text_column="text")
  with pytest.raises(DataFormatError, match=r"\['uid'\].*present"):
    _build(_write(_frame(), tmp_path / "m.parquet"), uid_column="uid")


def test_empty_and_nan_texts(tmp_path):
  df = _frame()
  df.loc[[4, 9], "body"] = None
  df.loc[17, "body"] = "   "
  for suffix in (".csv", ".parquet", ".jsonl"):
    with pytest.raises(DataFormatError, match=r"3 empty or missing .* rows 4, 9, 17"):
      _build(_write(df, tmp_path / f"m{suffix}"))


def test_labels_outside_classes(tmp_path):
  df = _frame()
  df.loc[[2, 5, 6], "kind"] = "eggs"
  df.loc[8, "kind"] = "7"
  with pytest.raises(DataFormatError) as e:
    _build(_write(df, tmp_path / "m.csv"))
  msg = str(e.value)
  assert "4 label(s) outside the declared classes ['ham', 'spam', 'promo']" in msg
  assert "'eggs' (x3)" in msg and "'7' (x1)" in msg and "rows 2, 5, 6, 8" in msg
  df = _frame()
  df.loc[0, "kind"] = None
  with pytest.raises(DataFormatError, match=r"1 label\(s\) outside.*rows 0"):
    _build(_write(df, tmp_path / "m.parquet"))


def test_duplicate_and_bad_uids(tmp_path):
  df = _frame()
  df.loc[[3, 11], "doc_id"] = df.doc_id[1]
  with pytest.raises(DataFormatError, match=r"1 duplicated uid\(s\) \(uid -> rows\): \{10007: \[1, 3, 11\]\}"):
    _build(_write(df, tmp_path / "m.csv"), uid_column="doc_id")
  df = _frame().astype({"doc_id": str})
  df.loc[5, "doc_id"] = "x5"
  with pytest.raises(DataFormatError, match=r"1 uid\(s\) are not integers, e\.g\. \['x5'\]"):
    _build(_write(df, tmp_path / "m.csv"), uid_column="doc_id")
  train = _write(_frame(), tmp_path / "tr.csv")
  test = _write(_frame(40), tmp_path / "te.csv")  # same uid_start: overlapping uids
  with pytest.raises(DataFormatError, match=r"40 uid\(s\) appear in both"):
    _build(train, test_path=test, uid_column="doc_id")


def test_bad_declarations(tmp_path):
  path = _write(_frame(), tmp_path / "m.csv")
  with pytest.raises(DataFormatError, match=r"unknown: \['eggs'\]"):
    _build(path, minority_classes=["eggs"])
  with pytest.raises(DataFormatError, match="distinct"):
    _build(path, class_names=("ham", "ham", "spam"))
  only_ham = _frame().assign(kind="ham")
  with pytest.raises(DataFormatError, match="pool split has no row of the minority"):
    _build(_write(only_ham, tmp_path / "h.csv"))
  _frame().to_csv(tmp_path / "m.txt", index=False)
  with pytest.raises(DataFormatError, match="Cannot tell the format"):
    _build(tmp_path / "m.txt")
  assert len(_build(tmp_path / "m.txt", file_format="csv").train) == 240


def test_user_config_runs_through_the_registry(tmp_path):
  """configs/user.py's flat values (comma strings, "" = unset) reach build_user_task."""
  import sys

  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
  from anchoral_jax.data import load_task
  from configs import user as user_config

  rows = [{"review": f"text number {i}", "stars": "pos" if i % 10 == 0 else "neg"}
          for i in range(200)]
  pd.DataFrame(rows).to_csv(tmp_path / "r.csv", index=False)
  c = user_config.get_config()
  c.data.kwargs.path = str(tmp_path / "r.csv")
  c.data.kwargs.text_column = "review"
  c.data.kwargs.label_column = "stars"
  c.data.kwargs.class_names = "neg,pos"
  c.data.kwargs.minority_classes = "pos"
  task = load_task(c.data.name, **c.data.kwargs.to_dict())
  assert task.class_names == ("neg", "pos") and task.minority_classes == (1,)
  assert len(task.train) + len(task.test) == 200
  c.data.kwargs.path = ""
  with pytest.raises(ValueError, match="data.kwargs.path is required"):
    load_task(c.data.name, **c.data.kwargs.to_dict())
