"""A run's files in its workdir: what `loop.run` writes, and how a resume treats them.

  hparams.json      the resolved config; a resume with another config is refused (or, for a
                    larger al.budget only, extends the run: `check_config`)
  classes.json      what the metrics' class indices are called
  metrics.jsonl     one line per round (tracking.py writes it; cut back here on resume)
  subpools.jsonl    each query round's subpool, in uids
  anchors.jsonl     AnchorAL's anchors per round, in uids, with their classes
  labelled.parquet  the labelled set after the last committed round (uid, label, round)
  summary.json, DONE  written once the last round is logged

Every line is appended before the round's checkpoint (the commit point), so a kill between the
two leaves lines of an uncommitted round, which `truncate_logs` drops on resume. The workdir's
integrity (lock, data fingerprint, provenance) is workdir.py's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anchoral_jax.errors import ConfigError
from anchoral_jax.fileio import write_text_atomic
from anchoral_jax.run import checkpoint
from anchoral_jax.run import workdir as workdir_lib
from anchoral_jax.tracking import jsonl as tracking_jsonl

log = logging.getLogger(__name__)

HPARAMS_NAME = "hparams.json"
ROUND_LOGS = ("metrics.jsonl", "subpools.jsonl", "anchors.jsonl")


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
  return out


# Fields added after runs existed, with the value a run written before them behaved as: a run
# with index.dtype unset built an f32 index, so it resumes with --config.index.dtype=f32.
LEGACY = {"index.dtype": "f32"}


def _inert(key: str) -> bool:
  """Keys that only say where things are kept or logged: resuming with them changed cannot mix
  results (the caches are keyed by content; index.path/view load the same graph)."""
  return key.startswith("wandb.") or key in ("data.cache_dir", "index.path", "index.view",
                                              "index.build_threads")  # the graph: index.json


def check_config(workdir: Path, resolved: dict[str, Any]) -> int | None:
  """Compares the run's resolved config with the workdir's hparams.json: the old al.budget when
  only a larger budget differs (the run is extended), else None. Fails with ConfigError when a
  committed run used a different config; settings that cannot change results may differ."""
  hparams = workdir / HPARAMS_NAME
  try:
    previous = json.loads(hparams.read_text()) if hparams.exists() else resolved
  except ValueError:  # hand-edited into invalid JSON: not the same config
    previous = None
  if previous == resolved:
    return None
  old, new = _flat(previous or {}), _flat(resolved)
  if previous is not None:
    old = {**{k: v for k, v in LEGACY.items() if k in new}, **old}
  changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k, "<unset>") !=
             new.get(k, "<unset>")]
  blocking = [k for k in changed if not _inert(k)] if previous is not None else ["<all>"]
  if blocking == ["al.budget"] and new["al.budget"] > old["al.budget"]:
    # A larger budget continues the run: its rounds so far are the first rounds of the
    # longer run (same seeds, same picks), except that the old last round did not query.
    log.info("%s: extending the run from al.budget %d to %d.", workdir, old["al.budget"],
             new["al.budget"])
    return int(old["al.budget"])
  if not blocking:
    log.info("%s: only settings that cannot change results differ (%s); resuming with them "
             "updated.", hparams, ", ".join(changed))
  elif workdir_lib.has_committed_round(workdir):
    diff = ("; ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
                      for k in blocking) if previous is not None
            else f"{hparams} is not valid JSON")
    raise ConfigError(f"{workdir} holds a run with a different config ({diff}). Use a new "
                      "--workdir, or the workdir's config to resume (see its hparams.json).")
  else:
    # No round committed (an earlier try failed in its set-up, or before its first
    # checkpoint): nothing to mix, so the corrected command may take the workdir over.
    log.warning("%s: no round committed yet; replacing the config of an earlier try.", hparams)
  return None


INDEX_NAME = "index.json"


def record_index(workdir: Path, sha256: str, path: str, round_: int) -> None:
  """Records which retrieval graph the run searches (its file's sha256) in `index.json`, one
  entry per graph, with the first round that searched it; warns when a resumed run finds
  another graph than its rounds so far searched.

  A corrupt cached index is rebuilt, and a build with index.build_threads=0 (or resumed from
  a partial build) is another graph: the remaining rounds' subpools may then differ from an
  uninterrupted run's. A warning, not a refusal: the run stays a valid run, and this file says
  from which round on it searched which graph."""
  file = workdir / INDEX_NAME
  try:
    entries = json.loads(file.read_text()) if file.exists() else []
  except ValueError:
    entries = None
  if not isinstance(entries, list):
    log.warning("%s is unreadable; starting a new record of the run's index.", file)
    entries = []
  if entries and entries[-1].get("sha256") == sha256:
    return
  if entries and round_ > 0:
    before = entries[-1]
    log.warning("The retrieval index changed since round %d of this run: %s now has sha256 "
                "%s..., the rounds so far searched %s... (%s). Rounds from %d on search another "
                "graph, so their subpools can differ from an uninterrupted run's (recorded in "
                "%s). For an exact resume restore the old index file; an index built with "
                "index.build_threads=1 (the default) is the same graph at every build.",
                before.get("from_round", 0), path, sha256[:12],
                str(before.get("sha256"))[:12], before.get("path"), round_, file)
  if entries and round_ == 0:  # no round searched the old graph: nothing to keep
    entries = []
  entries.append({"sha256": sha256, "path": str(path), "from_round": int(round_),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
  write_text_atomic(file, json.dumps(entries, indent=2) + "\n")


def write_hparams(workdir: Path, resolved: dict[str, Any]) -> None:
  write_text_atomic(workdir / HPARAMS_NAME, json.dumps(resolved, indent=2, sort_keys=True))


def write_classes(workdir: Path, task) -> None:
  """Metrics index classes (`f1/class_1`): what the indices are called."""
  write_text_atomic(workdir / "classes.json", json.dumps(
      {"class_names": list(task.class_names),
       "minority": [task.class_names[k] for k in task.minority_classes],
       "minority_indices": list(task.minority_classes)}, indent=2) + "\n")


def append_jsonl(path: Path, record: dict) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def truncate_jsonl(path: Path, keep_round_below: int) -> None:
  """Drops records of rounds that were not committed (a kill between log and checkpoint).

  A torn last line (a kill or full disk mid-append) goes too, with a warning; a damaged line
  before it fails naming file and line (tracking.read_jsonl, the one JSONL reader).
  """
  if not path.exists():
    return
  records = tracking_jsonl.read_jsonl(path)
  text = "".join(json.dumps(r) + "\n" for r in records if r.get("round", -1) < keep_round_below)
  if text.encode() != path.read_bytes():  # the same lines re-dumped are the same bytes
    write_text_atomic(path, text)


def truncate_logs(workdir: Path, next_round: int) -> None:
  """Cuts every per-round log back to the committed rounds (those before `next_round`)."""
  for name in ROUND_LOGS:
    truncate_jsonl(workdir / name, next_round)


def rewind_last_round(workdir: Path, old_rounds: int, primary: bool) -> None:
  """Makes a run that ended after round `old_rounds` (its last: train and test, no query)
  resumable into a longer run: drops the checkpoint committed after that round, so the round
  runs again and queries; the JSONL files are cut back on resume; DONE and summary.json go.
  Idempotent (a kill part-way through is redone by the next try)."""
  ckpt = checkpoint.RoundCheckpointer(workdir / "checkpoints")
  try:
    ckpt.delete(old_rounds + 1)
  finally:
    ckpt.close()
  if primary:
    for name in ("DONE", "summary.json"):
      (workdir / name).unlink(missing_ok=True)


def write_round_files(workdir: Path, task, r: int, subpool: np.ndarray | None,
                      info: dict[str, Any]) -> None:
  """The round's subpool and anchors (in uids), appended before the round's checkpoint."""
  if subpool is not None:
    append_jsonl(workdir / "subpools.jsonl",
                 {"round": r, "uids": task.train.uid[subpool].tolist()})
  if "anchor_rows" in info:
    append_jsonl(workdir / "anchors.jsonl",
                 {"round": r, "uids": task.train.uid[info["anchor_rows"]].tolist(),
                  "classes": np.asarray(info["anchor_classes"]).tolist()})


def write_labelled(path: Path, task, labelled_rows: np.ndarray,
                   labelling_round: np.ndarray) -> None:
  df = pd.DataFrame({"uid": task.train.uid[labelled_rows],
                     "label": task.train.labels[labelled_rows],
                     "labelling_round": labelling_round})
  tmp = path.with_suffix(".tmp")
  df.to_parquet(tmp, index=False)
  os.replace(tmp, path)


def write_done(workdir: Path, summary: dict[str, Any]) -> None:
  """summary.json, then DONE (a finished run: re-running it does nothing)."""
  write_text_atomic(workdir / "summary.json", json.dumps(summary, indent=2))
  write_text_atomic(workdir / "DONE", time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
