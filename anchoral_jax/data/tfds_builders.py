"""tensorflow-datasets builders for the paper's four tasks: versioned snapshots of pool and test.

Also from the original releases (AG News CSV, AmazonCat-13K JSON): `*_raw`, same tasks and uids.

Each builder runs the plain builder of `paper.py` on the manual files (same construction, same
uids) and writes features {text, label, uid} with splits train (= the AL pool) and test.

Role: an optional, versioned snapshot of a constructed task (the builder's VERSION and release
notes, tfds' dataset_info with split sizes, ArrayRecord files) to archive or share with people
who want the exact pool and test rows, or to read from other tfds/grain pipelines. It is not the
run path: `anchoral run` builds the task from the manual files through the registry, which is
faster than reading the built copy back (bench/bench_tfds.py, bench/RESULTS.md: an AG News-size
task loads in about a second from parquet or CSV, against 11-13 s to build and 9-10 s to read
the ArrayRecord copy on 2 CPU cores), and a run caches its tokens by the task's content anyway.

Works without TensorFlow (tfds 4.9.10, TF not installed): the data is written with
`file_format="array_record"` and read back with `as_data_source()`, numpy only. What needs TF
and is not used: the default TFRecord format (writing fails: "No module named 'tensorflow'")
and `as_dataset()` (tf.data).

Usage: `load_task("agnews_business", manual_dir=..., data_dir=...)`, or with tfds directly:
`tfds.builder("anchoral_agnews_business", data_dir=..., file_format="array_record")` after
importing this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from anchoral_jax.data import paper, paper_files
from anchoral_jax.data.task import Split, TextTask

DEFAULT_TFDS_DIR = "~/anchoral_data/tfds"
ENV_TFDS_DIR = "ANCHORAL_TFDS_DIR"
_READ_CHUNK = 8192  # records per random-access batch when reading back

_CITATION = """\
@inproceedings{lesci-vlachos-2024-anchoral,
  title = {{AnchorAL}: Computationally Efficient Active Learning for Large and Imbalanced
           Datasets},
  author = {Lesci, Pietro and Vlachos, Andreas},
  booktitle = {Proceedings of NAACL 2024},
  year = {2024},
}"""


def _hub_instructions(local: str) -> str:
  repo = paper_files.HUB_SOURCES[local]
  return f"""\
Files: the parquet files of the default config of the Hugging Face dataset `{repo}`
(folder `data/`: `train-*.parquet`, `test-*.parquet`). On a machine with network access:

    huggingface-cli download {repo} --repo-type dataset --include 'data/*' \\
        --local-dir <manual_dir>/{local}

then copy `<manual_dir>/{local}/data/` to this machine. `<manual_dir>` is `data.manual_dir`,
else ${paper_files.ENV_MANUAL_DIR}, else `{paper_files.DEFAULT_MANUAL_DIR}`. Pass it to tfds as
`DownloadConfig(manual_dir=<manual_dir>)` (the builder looks for `<manual_dir>/{local}/data/`).
Nothing is downloaded when the dataset is prepared."""


class _PaperTaskBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A paper task, constructed by `paper.TASKS[TASK]` from the manual files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES: ClassVar[dict[str, str]] = {
      "1.0.0": "Construction of SPEC.md §7 (official prepare_data.py, seed 42).",
  }
  TASK: ClassVar[str]  # key of paper.TASKS
  TASK_NAME: ClassVar[str]  # TextTask.name
  CLASS_NAMES: ClassVar[tuple[str, ...]]
  MINORITY: ClassVar[tuple[int, ...]]
  # No checksums file (nothing is downloaded). Also dodges tfds 4.9.10's `code_path`, which
  # imports the `importlib_resources` backport (not a dependency on Python >= 3.9) and fails.
  code_path = None

  def _info(self) -> tfds.core.DatasetInfo:
    # DatasetInfo directly: `dataset_info_from_configs` wants a dataset folder with metadata files.
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{self.TASK_NAME} (AnchorAL, Lesci & Vlachos 2024): train = the AL pool.",
        features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=list(self.CLASS_NAMES)),
            "uid": np.int64,
        }),
        supervised_keys=("text", "label"),
        homepage="https://github.com/pietrolesci/anchoral",
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    task = paper.TASKS[self.TASK](manual_dir=dl_manager.manual_dir)
    return {"train": self._generate_examples(task.train),
            "test": self._generate_examples(task.test)}

  def _generate_examples(self, split: Split):
    for text, label, uid in zip(split.text, split.labels, split.uid, strict=True):
      yield int(uid), {"text": text, "label": int(label), "uid": int(uid)}


class AnchoralAgnewsBusiness(_PaperTaskBuilder):
  """agnews-business-.01."""

  TASK = "agnews_business"
  TASK_NAME = "agnews-business-.01"
  CLASS_NAMES = ("other", "business")
  MINORITY = (1,)
  MANUAL_DOWNLOAD_INSTRUCTIONS = _hub_instructions("agnews")


class AnchoralWikitoxic(_PaperTaskBuilder):
  """wikitoxic-.01."""

  TASK = "wikitoxic"
  TASK_NAME = "wikitoxic-.01"
  CLASS_NAMES = ("non-toxic", "toxic")
  MINORITY = (1,)
  MANUAL_DOWNLOAD_INSTRUCTIONS = _hub_instructions("wikitoxic")


class AnchoralAmazoncatAgri(_PaperTaskBuilder):
  """amazoncat-agri."""

  TASK = "amazoncat_agri"
  TASK_NAME = "amazoncat-agri"
  CLASS_NAMES = ("other", "agriculture")
  MINORITY = (1,)
  MANUAL_DOWNLOAD_INSTRUCTIONS = _hub_instructions("amazoncat-13k")


class AnchoralAmazoncatMulti(_PaperTaskBuilder):
  """amazoncat-multi."""

  TASK = "amazoncat_multi"
  TASK_NAME = "amazoncat-multi"
  CLASS_NAMES = paper.AMAZON_MULTI_CLASSES
  MINORITY = (0, 1, 2, 3)
  MANUAL_DOWNLOAD_INSTRUCTIONS = _hub_instructions("amazoncat-13k")


# From the original releases instead of the processed copies: same tasks, same uids.


class AnchoralAgnewsBusinessRaw(AnchoralAgnewsBusiness):
  """agnews-business-.01 from the original AG News CSVs (`<manual_dir>/ag_news_csv/`)."""

  TASK = "agnews_business_raw"
  MANUAL_DOWNLOAD_INSTRUCTIONS = paper_files.AG_NEWS_CSV_HELP.replace("the folder named above",
                                                                "<manual_dir>/ag_news_csv/")


_AMAZON_RAW_INSTRUCTIONS = paper_files.AMAZONCAT_RAW_HELP.replace(
    "where named above", f"in <manual_dir>/ (as <manual_dir>/{paper_files.AMAZONCAT_RAW_FOLDER}/)")


class AnchoralAmazoncatAgriRaw(AnchoralAmazoncatAgri):
  """amazoncat-agri from the raw AmazonCat-13K JSON."""

  TASK = "amazoncat_agri_raw"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _AMAZON_RAW_INSTRUCTIONS


class AnchoralAmazoncatMultiRaw(AnchoralAmazoncatMulti):
  """amazoncat-multi from the raw AmazonCat-13K JSON."""

  TASK = "amazoncat_multi_raw"
  MANUAL_DOWNLOAD_INSTRUCTIONS = _AMAZON_RAW_INSTRUCTIONS


BUILDERS: dict[str, type[_PaperTaskBuilder]] = {
    b.TASK: b for b in (AnchoralAgnewsBusiness, AnchoralWikitoxic, AnchoralAmazoncatAgri,
                        AnchoralAmazoncatMulti, AnchoralAgnewsBusinessRaw,
                        AnchoralAmazoncatAgriRaw, AnchoralAmazoncatMultiRaw)
}


def resolve_tfds_dir(data_dir: str | os.PathLike | None = None) -> Path:
  """`data_dir`, else $ANCHORAL_TFDS_DIR, else ~/anchoral_data/tfds."""
  return Path(data_dir or os.environ.get(ENV_TFDS_DIR) or DEFAULT_TFDS_DIR).expanduser()


def prepare(task: str, manual_dir: str | os.PathLike | None = None,
            data_dir: str | os.PathLike | None = None) -> _PaperTaskBuilder:
  """The prepared builder of `task`, building it from the manual files the first time."""
  if task not in BUILDERS:
    raise ValueError(f"No tfds builder for {task!r}. Known: {sorted(BUILDERS)}.")
  builder = BUILDERS[task](data_dir=str(resolve_tfds_dir(data_dir)), file_format="array_record")
  if not builder.is_prepared():
    paper_files.required_files(task, manual_dir)  # our clear error before tfds' generic one
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(paper_files.resolve_manual_dir(manual_dir))))
  return builder


def _read(source) -> Split:
  """An ArrayRecord data source -> Split, sorted by uid (tfds stores records in hashed order)."""
  n = len(source)
  text, labels, uid = [], np.empty(n, np.int32), np.empty(n, np.int64)
  for start in range(0, n, _READ_CHUNK):
    records = source.__getitems__(range(start, min(n, start + _READ_CHUNK)))
    for i, r in enumerate(records, start):
      t = r["text"]
      text.append(t.decode("utf-8") if isinstance(t, bytes) else str(t))
      labels[i], uid[i] = r["label"], r["uid"]
  order = np.argsort(uid, kind="stable")
  return Split(tuple(text[i] for i in order), labels[order], uid[order])


def load_task(task: str, manual_dir: str | os.PathLike | None = None,
              data_dir: str | os.PathLike | None = None) -> TextTask:
  """A paper task through tfds: prepared once into `data_dir`, then read back without TF."""
  builder = prepare(task, manual_dir, data_dir)
  cls = BUILDERS[task]
  sources = builder.as_data_source()
  return TextTask(
      name=cls.TASK_NAME,
      class_names=tuple(cls.CLASS_NAMES),
      minority_classes=tuple(cls.MINORITY),
      train=_read(sources["train"]),
      test=_read(sources["test"]),
      provenance=f"tfds {builder.name} {builder.version} (array_record) in {builder.data_dir}",
  )
