"""Trackers: JSONL round trips, mode resolution, and one real offline W&B run (plus its resume).

The W&B part reads back what the offline run wrote. In wandb 0.31 an offline run leaves its
`files/` folder empty (no wandb-summary.json or config.yaml: wandb-core writes those only when
syncing), so everything lives in `run-<id>.wandb`: a LevelDB-style log of protobuf `Record`s,
parsed below with the protobuf classes that ship with wandb.
"""

from __future__ import annotations

import json
import os
import pathlib
import struct
import warnings

import numpy as np
import pytest

from anchoral_jax.tracking import jsonl as tracking_jsonl
from anchoral_jax.tracking import tracker as tracking
from anchoral_jax.tracking import wandb_sink as tracking_wandb_sink

# ---------------------------------------------------------------------------------------------
# JSONL, no W&B.


def test_to_jsonable_converts_numpy_and_nonfinite():
  import jax.numpy as jnp

  value = {
      "f32": np.float32(0.5), "i64": np.int64(3), "b": np.bool_(True), "f64": np.float64(2.0),
      "arr": np.arange(3, dtype=np.int32), "nan": float("nan"), "inf": np.float32(np.inf),
      "nested": {"x": (np.float16(1.5), [np.nan])}, "path": pathlib.Path("/a/b"),
      "jax": jnp.array([1.0, 2.0]), 7: "int key",
  }
  out = tracking_jsonl.to_jsonable(value)
  assert out == {
      "f32": 0.5, "i64": 3, "b": True, "f64": 2.0, "arr": [0, 1, 2], "nan": None, "inf": None,
      "nested": {"x": [1.5, [None]]}, "path": "/a/b", "jax": [1.0, 2.0], "7": "int key",
  }
  assert type(out["i64"]) is int and type(out["b"]) is bool
  json.dumps(out, allow_nan=False)  # strict JSON
  kept = tracking_jsonl.to_jsonable({"nan": np.float32("nan")}, nan_as_none=False)
  assert np.isnan(kept["nan"])
  with pytest.raises(TypeError, match="convert it"):
    tracking_jsonl.to_jsonable({"obj": object()})


def test_jsonl_round_trip(tmp_path: pathlib.Path):
  path = tmp_path / "sub" / "metrics.jsonl"
  t = tracking_jsonl.JsonlTracker(path)
  t.log({"test/f1": np.float32(0.25), "counts": np.array([90, 10]), "loss": np.nan}, step=0)
  t.log({"budget": np.int64(125), "time/query": 1.5}, step=1)
  t.log({"test/f1": 0.5}, step=1)  # a second record for the same round
  t.summary({"auc/minority_f1": np.float64(0.75)})
  t.finish()
  t.finish()  # idempotent

  lines = path.read_text().splitlines()
  assert len(lines) == 4
  assert "NaN" not in path.read_text()
  assert tracking_jsonl.read_jsonl(path) == [
      {"step": 0, "test/f1": 0.25, "counts": [90, 10], "loss": None},
      {"step": 1, "budget": 125, "time/query": 1.5},
      {"step": 1, "test/f1": 0.5},
      {"summary": {"auc/minority_f1": 0.75}},
  ]
  history, summary = tracking_jsonl.load_metrics(path)
  assert history == [
      {"step": 0, "test/f1": 0.25, "counts": [90, 10], "loss": None},
      {"step": 1, "budget": 125, "time/query": 1.5, "test/f1": 0.5},
  ]
  assert summary == {"auc/minority_f1": 0.75}

  # Appending after reopen (a resumed run) continues the same file; a re-logged round wins.
  t = tracking_jsonl.JsonlTracker(path)
  t.log({"test/f1": 0.6}, step=1)
  t.log({"test/f1": 0.7}, step=2)
  t.finish()
  history, _ = tracking_jsonl.load_metrics(path)
  assert [(h["step"], h["test/f1"]) for h in history] == [(0, 0.25), (1, 0.6), (2, 0.7)]
  with pytest.raises(ValueError, match="step"):
    tracking_jsonl.JsonlTracker(tmp_path / "x.jsonl").log({"step": 3}, step=4)


def test_jsonl_survives_a_torn_last_line(tmp_path: pathlib.Path):
  path = tmp_path / "metrics.jsonl"
  path.write_text('{"step": 0, "a": 1}\n{"step": 1, "a"')  # killed mid-write
  with pytest.warns(UserWarning, match="torn"):
    assert tracking_jsonl.read_jsonl(path) == [{"step": 0, "a": 1}]
  with pytest.warns(UserWarning, match="torn"):
    t = tracking_jsonl.JsonlTracker(path)  # cut off on reopen, so appends never bury it mid-file
  t.log({"a": 2}, step=1)
  t.finish()
  assert tracking_jsonl.read_jsonl(path) == [{"step": 0, "a": 1}, {"step": 1, "a": 2}]


def test_noop_and_multi(tmp_path: pathlib.Path):
  class Boom(tracking.NoOpTracker):
    def finish(self) -> None:
      raise RuntimeError("boom")

  noop = tracking.NoOpTracker()
  assert isinstance(noop, tracking.Tracker)
  jsonl = tracking_jsonl.JsonlTracker(tmp_path / "m.jsonl")
  multi = tracking.MultiTracker([Boom(), jsonl, noop])
  multi.log({"a": 1}, step=0)
  multi.summary({"b": 2})
  with pytest.raises(RuntimeError, match="boom"):
    multi.finish()
  assert jsonl._f.closed  # finished despite the failing tracker before it
  assert tracking_jsonl.read_jsonl(tmp_path / "m.jsonl") == [{"step": 0, "a": 1}, {"summary": {"b": 2}}]


def test_resolve_wandb_mode(monkeypatch: pytest.MonkeyPatch):
  monkeypatch.delenv("WANDB_MODE", raising=False)
  assert tracking_wandb_sink.resolve_wandb_mode(None) == "offline"
  assert tracking_wandb_sink.resolve_wandb_mode("online") == "online"
  assert tracking_wandb_sink.resolve_wandb_mode("dryrun") == "offline"
  monkeypatch.setenv("WANDB_MODE", "offline")
  assert tracking_wandb_sink.resolve_wandb_mode("online") == "offline"  # env can only make it more private
  assert tracking_wandb_sink.resolve_wandb_mode("disabled") == "disabled"
  monkeypatch.setenv("WANDB_MODE", "online")
  assert tracking_wandb_sink.resolve_wandb_mode(None) == "online"  # the user asked, through the env
  assert tracking_wandb_sink.resolve_wandb_mode("offline") == "offline"
  monkeypatch.setenv("WANDB_MODE", "disabled")
  assert tracking_wandb_sink.resolve_wandb_mode("online") == "disabled"
  with pytest.raises(ValueError, match="not one of"):
    tracking_wandb_sink.resolve_wandb_mode("cloud")


def test_run_id_is_stored_and_new_for_a_new_workdir(tmp_path: pathlib.Path):
  a = tmp_path / "a"
  run_id = tracking_wandb_sink.load_or_create_run_id(a)
  assert len(run_id) == 16 and int(run_id, 16) >= 0
  assert tracking_wandb_sink.load_or_create_run_id(a) == run_id  # a resume keeps it
  moved = tmp_path / "moved"
  a.rename(moved)
  assert tracking_wandb_sink.load_or_create_run_id(moved) == run_id  # survives moving the workdir
  # Deleted and run again at the same path: a new W&B run, not the old one re-synced.
  import shutil

  shutil.rmtree(moved)
  again = tracking_wandb_sink.load_or_create_run_id(moved)
  assert again != run_id and tracking_wandb_sink.load_or_create_run_id(moved) == again


def test_make_tracker_without_wandb(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch):
  monkeypatch.setenv("WANDB_MODE", "offline")
  for cfg in (None, {"mode": "disabled"}, {"mode": None, "project": "p"}):
    t = tracking.make_tracker(tmp_path, cfg, {"lr": 1e-3})
    assert [type(x) for x in t.trackers] == [tracking_jsonl.JsonlTracker]
    t.log({"a": 1}, step=0)
    t.finish()
  assert len(tracking_jsonl.read_jsonl(tmp_path / tracking_jsonl.JSONL_NAME)) == 3
  assert not (tmp_path / "wandb").exists()
  with pytest.raises(ValueError, match="Unknown wandb config keys"):
    tracking.make_tracker(tmp_path, {"mdoe": "offline"}, {})


# ---------------------------------------------------------------------------------------------
# A real offline W&B run (one per module: wandb-core startup is the slow part).

_BLOCK = 32768  # LevelDB log block size used by wandb's transaction log


def _wandb_records(path: pathlib.Path) -> list:
  """Protobuf records of a `.wandb` file: 7-byte `:W&B` header, then LevelDB log records
  (crc32c, uint16 length, type FULL=1/FIRST=2/MIDDLE=3/LAST=4), never crossing 32 KiB blocks."""
  from wandb.proto import wandb_internal_pb2

  data = path.read_bytes()
  assert data[:4] == b":W&B", data[:7]
  records, pos, parts = [], 7, b""
  while pos + 7 <= len(data):
    if _BLOCK - pos % _BLOCK < 7:  # block trailer too small for a header: zero padding
      pos += _BLOCK - pos % _BLOCK
      continue
    _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
    chunk = data[pos + 7:pos + 7 + length]
    pos += 7 + length
    if kind == 0:
      break
    parts = chunk if kind in (1, 2) else parts + chunk
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(parts)
      records.append(record)
  return records


def _read_offline_run(run_dir: pathlib.Path) -> dict:
  """The run header, history rows, metric definitions and final summary of one offline run."""
  (wandb_file,) = run_dir.glob("run-*.wandb")
  out = {"run": None, "history": [], "metrics": [], "summary": {}, "exit": False}
  for r in _wandb_records(wandb_file):
    kind = r.WhichOneof("record_type")
    if kind == "run":
      out["run"] = r.run
    elif kind == "history":
      out["history"].append({"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                             for i in r.history.item})
    elif kind == "metric":
      out["metrics"].append(r.metric)
    elif kind == "summary":
      for u in r.summary.update:
        out["summary"]["/".join(u.nested_key) or u.key] = json.loads(u.value_json)
    elif kind == "exit":
      out["exit"] = True
  out["history"].sort(key=lambda h: h["_step"])
  return out


def _round_record(r: int) -> dict:
  return {
      "budget": np.int64(100 + 25 * r), "test/minority_f1": np.float32(0.1 * r),
      "test/majority_f1": 0.9, "labelled/class_counts": np.array([95 + 20 * r, 5 + 5 * r]),
      "time/query": float("nan") if r == 5 else 1.0,
  }


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory: pytest.TempPathFactory):
  """Two processes' worth of one AL run: rounds 0-2, then a resume with rounds 3-5."""
  import ml_collections
  import wandb

  root = tmp_path_factory.mktemp("wandb_offline")
  workdir = root / "workdir"
  env = {
      "WANDB_MODE": "offline",
      "WANDB_DIR": str(root / "wandb_dir"),
      "WANDB_CACHE_DIR": str(root / "cache"),
      "WANDB_CONFIG_DIR": str(root / "config"),
      "WANDB_DATA_DIR": str(root / "data"),
      "WANDB_BASE_URL": "http://127.0.0.1:9",  # a trap: any network attempt fails fast
      "WANDB_SILENT": "true",
  }
  with pytest.MonkeyPatch.context() as mp:
    mp.delenv("WANDB_API_KEY", raising=False)
    for k, v in env.items():
      mp.setenv(k, v)
    cfg = {"mode": "offline", "project": "anchoral-test", "group": "g1", "tags": ["tiny", "ci"],
           "settings": {"x_disable_stats": True}}
    run_config = ml_collections.ConfigDict(
        {"al": {"query_size": 25, "strategy": "entropy"}, "train": {"lr": 4e-5}})
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # wandb's own deprecation chatter
      for rounds in (range(0, 3), range(3, 6)):
        tracker = tracking.make_tracker(workdir, cfg, run_config)
        for r in rounds:
          tracker.log(_round_record(r), step=r)
        tracker.summary({"auc/minority_f1": 0.5 * rounds[-1]})
        tracker.finish()
      wandb.teardown()  # stop wandb-core; later modules get a fresh singleton
  yield {"workdir": workdir, "wandb_dir": root / "wandb_dir" / "wandb",
         "run_id": tracking_wandb_sink.load_or_create_run_id(workdir), "run_config": run_config.to_dict()}


def test_offline_run_directory(offline_runs: dict):
  run_id = offline_runs["run_id"]
  run_dirs = sorted(offline_runs["wandb_dir"].glob(f"offline-run-*-{run_id}*"))
  assert len(run_dirs) == 2  # one per process, same run id
  for d in run_dirs:
    assert (d / f"run-{run_id}.wandb").stat().st_size > 0
  # The workdir holds the JSONL record of truth and the persisted run id.
  assert (offline_runs["workdir"] / tracking_wandb_sink.RUN_ID_NAME).read_text().strip() == run_id
  history, summary = tracking_jsonl.load_metrics(offline_runs["workdir"] / tracking_jsonl.JSONL_NAME)
  assert [h["step"] for h in history] == list(range(6))
  assert history[5]["time/query"] is None and history[2]["budget"] == 150
  assert summary == {"auc/minority_f1": 2.5}


def test_offline_run_content_and_resume(offline_runs: dict):
  run_id = offline_runs["run_id"]
  runs = [_read_offline_run(d)
          for d in offline_runs["wandb_dir"].glob(f"offline-run-*-{run_id}*")]
  runs.sort(key=lambda r: r["history"][0]["_step"])
  first, resumed = runs

  for run in runs:
    header = run["run"]
    assert header.run_id == run_id and header.project == "anchoral-test"
    assert header.run_group == "g1" and list(header.tags) == ["tiny", "ci"]
    assert header.display_name == "workdir" and header.job_type == "al"
    assert header.resume  # created with resume="allow" so a later process continues it
    config = {u.key: json.loads(u.value_json) for u in header.config.update}
    assert config["al"] == offline_runs["run_config"]["al"]
    assert config["train"]["lr"] == pytest.approx(4e-5)
    assert run["exit"]  # finish() completed
    assert any(m.name == "budget" for m in run["metrics"])
    assert any(m.glob_name == "*" and m.step_metric == "budget" for m in run["metrics"])

  # History: step == round, round and budget as fields, numpy values as plain numbers.
  for run, rounds in ((first, range(0, 3)), (resumed, range(3, 6))):
    assert [h["_step"] for h in run["history"]] == list(rounds)
    for h, r in zip(run["history"], rounds, strict=True):
      assert h["round"] == r and h["budget"] == 100 + 25 * r
      assert h["test/minority_f1"] == pytest.approx(0.1 * r, rel=1e-6)
      assert h["labelled/class_counts"] == [95 + 20 * r, 5 + 5 * r]
  assert np.isnan(resumed["history"][-1]["time/query"])  # W&B keeps NaN (JSONL writes null)

  assert first["summary"]["auc/minority_f1"] == 1.0
  assert resumed["summary"]["auc/minority_f1"] == 2.5
  assert resumed["summary"]["round"] == 5 and resumed["summary"]["budget"] == 225


def test_wandb_steps_shift_when_a_resumed_round_was_already_logged(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch):
  import wandb

  for k in ("DIR", "CACHE_DIR", "CONFIG_DIR", "DATA_DIR"):
    monkeypatch.setenv(f"WANDB_{k}", str(tmp_path / k.lower()))
  monkeypatch.setenv("WANDB_MODE", "disabled")
  tracker = tracking_wandb_sink.WandbTracker({"lr": 1.0}, mode="offline", dir=tmp_path)
  assert tracker.mode == "disabled"  # the environment's kill switch wins

  class FakeRun:
    def __init__(self):
      self.logged: list[tuple[dict, int]] = []

    def log(self, data: dict, step: int) -> None:
      self.logged.append((data, step))

  # As if W&B had already seen steps 0-5 but the AL checkpoint was taken after round 4.
  tracker.run, tracker._first_step = FakeRun(), 6
  for r in (5, 5, 6):
    tracker.log({"budget": 100 + 25 * r}, step=r)
  assert [(d["round"], s) for d, s in tracker.run.logged] == [(5, 6), (5, 6), (6, 7)]
  wandb.teardown()


def test_embed_and_index_log_runs_of_their_job_type(tmp_path: pathlib.Path):
  """`anchoral embed` / `anchoral index` each log an offline W&B run of job type embed/index
  (the AL runs' is "al"), grouped as the config says, with the config and what was built."""
  import subprocess
  import sys

  root = pathlib.Path(__file__).resolve().parents[1]
  env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_DIR")}
  env.update(JAX_PLATFORMS="cpu", WANDB_MODE="offline", WANDB_SILENT="true",
             WANDB_BASE_URL="http://127.0.0.1:9")
  cache = tmp_path / "cache"
  for job in ("embed", "index"):  # index finds the embeddings built: its own run all the same
    p = subprocess.run(
        [sys.executable, "-m", "anchoral_jax.cli", job, "--config", "configs/default.py:tiny",
         "--config.data.kwargs.pool_size=200", "--config.data.kwargs.test_size=40",
         f"--config.data.cache_dir={cache}", "--config.wandb.group=exp/cell"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
  runs = [_read_offline_run(d) for d in sorted((cache / "wandb" / "wandb").glob("offline-run-*"))]
  by_job = {r["run"].job_type: r for r in runs}
  assert sorted(by_job) == ["embed", "index"] and len(runs) == 2
  for job, run in by_job.items():
    header = run["run"]
    assert (header.run_group, header.display_name) == ("exp/cell", f"{job}:tweets_iphone")
    config = {u.key: json.loads(u.value_json) for u in header.config.update}
    assert config["data"]["name"] == "tweets_iphone" and config["al"]["filter"] == "anchoral"
    assert run["summary"]["seconds"] > 0 and run["exit"]
  assert by_job["embed"]["summary"]["path"].endswith(".npy")
  assert pathlib.Path(by_job["index"]["summary"]["path"]).exists()
