"""The AL loop end to end with a tiny random model on a small slice of the embedded default:
every filter and strategy, outputs, resume after a kill, corrupt checkpoints, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anchoral_jax import errors
from anchoral_jax.al import loop
from anchoral_jax.run import files as run_files
from anchoral_jax.run.checkpoint import CorruptCheckpointError
from anchoral_jax.tracking.jsonl import load_metrics

ROOT = Path(__file__).resolve().parents[1]
import conftest  # noqa: E402

POOL, TEST = 1500, 200


def tiny_config(cache_dir, **overrides):
  return conftest.tiny_config(cache_dir, POOL, TEST, **{
      "data.test_size": 0, "al.budget": 150, "al.subpool_size": 400, **overrides})


def _records(workdir):
  history, _ = load_metrics(Path(workdir) / "metrics.jsonl")
  return history


def _read_jsonl(path):
  return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def _check_outputs(workdir, c):
  workdir = Path(workdir)
  rounds = (c.al.budget - c.al.initial_size) // c.al.query_size
  recs = _records(workdir)
  assert [r["round"] for r in recs] == list(range(rounds + 1))
  assert [r["budget"] for r in recs] == [100 + 25 * r for r in range(rounds + 1)]
  lab = pd.read_parquet(workdir / "labelled.parquet")
  assert lab.uid.is_unique and len(lab) == c.al.budget
  assert lab.labelling_round.value_counts().sort_index().tolist() == [100] + [25] * rounds
  subpools = _read_jsonl(workdir / "subpools.jsonl")
  assert [s["round"] for s in subpools] == list(range(rounds))
  for s in subpools:  # a subpool never holds what was labelled before that round
    before = set(lab.uid[lab.labelling_round <= s["round"]])
    assert not before & set(s["uids"])
    picked = set(lab.uid[lab.labelling_round == s["round"] + 1])
    if c.al.filter != "none" and not recs[s["round"]].get("anchoral/topped_up"):
      assert picked <= set(s["uids"])
  assert (workdir / "DONE").exists() and (workdir / "summary.json").exists()
  # The stopping criteria, every round (the previous model's kappa from round 1 on).
  assert all({"stop/uncertainty", "stop/stable_rounds", "stop/stabilised"} <= set(r) for r in recs)
  assert "stop/kappa" not in recs[0] and all(-1 <= r["stop/kappa"] <= 1 for r in recs[1:])
  summary = json.loads((workdir / "summary.json").read_text())
  assert {"stop/stabilised_round", "stop/confident_round", "stop/final_f1"} <= set(summary)
  assert json.loads((workdir / "hparams.json").read_text())["al"]["filter"] == c.al.filter
  classes = json.loads((workdir / "classes.json").read_text())  # names for `class_<k>` keys
  assert len(classes["class_names"]) == sum(k.startswith("labelled/count_class_") for k in recs[0])
  assert classes["minority"] == [classes["class_names"][k] for k in classes["minority_indices"]]
  return recs, lab


@pytest.mark.parametrize("filter_", ["none", "randomsubset", "seals", "anchoral"])
def test_every_filter_with_entropy(tmp_path, cache_dir, filter_):
  c = tiny_config(cache_dir, **{"al.filter": filter_})
  loop.run(c, tmp_path)
  recs, lab = _check_outputs(tmp_path, c)
  sizes = [r["subpool/size"] for r in recs[:-1]]
  if filter_ == "randomsubset":
    assert sizes == [400, 400]
  if filter_ == "none":
    assert sizes == [POOL - 100, POOL - 125]
  if filter_ == "seals":  # round 0 queries = all 100 labelled, then the 25 new ones
    assert [r["anchoral/num_queries"] for r in recs[:-1]] == [100, 25]
    assert sizes[1] >= sizes[0] - 25  # the union grows (minus what got labelled)
  if filter_ == "anchoral":
    anchors = _read_jsonl(tmp_path / "anchors.jsonl")
    for a in anchors:  # anchors are labelled items, at most 10 per present class
      known = set(lab.uid[lab.labelling_round <= a["round"]])
      assert set(a["uids"]) <= known
      assert max(np.bincount(a["classes"])) <= 10
    assert all(0 < s <= 20 * 50 for s in sizes)
    assert recs[0]["anchoral/num_anchors"] == 15  # 5 minority (all) + 10 majority
  if filter_ in ("seals", "anchoral"):  # the graph the rounds searched, by its file's sha256
    from anchoral_jax import cache

    (entry,) = json.loads((tmp_path / "index.json").read_text())
    assert entry["from_round"] == 0 and entry["sha256"] == cache.file_sha256(entry["path"])


# The strategies that read more than logits from the model (BADGE: logits + pooled; FTbertKM:
# the [CLS] state), end to end with the full model; entropy is above, and random, least
# confidence and margin read what entropy reads: every strategy x filter x anchor strategy runs
# on the query step in tests/test_api.py (the grid on the Selector).
@pytest.mark.parametrize("strategy", ["badge", "ftbertkm"])
def test_strategies_reading_hidden_states_with_anchoral(tmp_path, cache_dir, strategy):
  c = tiny_config(cache_dir, **{"al.strategy": strategy, "al.budget": 125})
  loop.run(c, tmp_path)
  _check_outputs(tmp_path, c)


def test_minority_anchor_strategy_takes_effect(tmp_path, cache_dir):
  c = tiny_config(cache_dir, **{"al.budget": 125, "anchoral.num_anchors": 3,
                                "anchoral.minority_anchor_strategy": "entropy",
                                "anchoral.majority_anchor_strategy": "random"})
  loop.run(c, tmp_path)
  anchors = _read_jsonl(tmp_path / "anchors.jsonl")[0]
  assert len(anchors["uids"]) == 6
  c2 = tiny_config(cache_dir, **{"al.budget": 125, "anchoral.num_anchors": 3})
  loop.run(c2, tmp_path / "b")
  anchors2 = _read_jsonl(tmp_path / "b" / "anchors.jsonl")[0]
  assert anchors["uids"] != anchors2["uids"]


def test_class_absent_from_labelled_set_gets_no_anchors(tmp_path, cache_dir):
  c = tiny_config(cache_dir, **{"al.budget": 125, "al.initial_per_minority": 0})
  loop.run(c, tmp_path)
  lab = pd.read_parquet(tmp_path / "labelled.parquet")
  initial = lab[lab.labelling_round == -1]
  anchors = _read_jsonl(tmp_path / "anchors.jsonl")[0]
  assert set(anchors["classes"]) == set(initial.label)


def _cli(workdir, cache_dir, env_extra=None, budget=175):
  env = {**os.environ, **(env_extra or {})}
  cmd = [sys.executable, "-m", "anchoral_jax.cli", "run", "--config",
         str(ROOT / "configs/default.py") + ":tiny", "--workdir", str(workdir),
         f"--config.data.cache_dir={cache_dir}", f"--config.data.kwargs.pool_size={POOL}",
         f"--config.data.kwargs.test_size={TEST}", "--config.data.test_size=0",
         f"--config.al.budget={budget}", "--config.al.subpool_size=400",
         "--config.wandb.mode=offline"]
  return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)


def _comparable(recs):
  return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in recs]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path, cache_dir):
  full = _cli(tmp_path / "full", cache_dir)
  assert full.returncode == 0, full.stderr[-3000:]
  killed = _cli(tmp_path / "killed", cache_dir, {"ANCHORAL_KILL_AFTER_ROUND": "1"})
  assert killed.returncode == 17, killed.stderr[-3000:]
  assert not (tmp_path / "killed" / "DONE").exists()
  assert len(_records(tmp_path / "killed")) == 2
  resumed = _cli(tmp_path / "killed", cache_dir)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resuming" in resumed.stderr + resumed.stdout
  a, b = tmp_path / "full", tmp_path / "killed"
  pd.testing.assert_frame_equal(pd.read_parquet(a / "labelled.parquet"),
                                pd.read_parquet(b / "labelled.parquet"))
  assert _comparable(_records(a)) == _comparable(_records(b))
  assert _read_jsonl(a / "subpools.jsonl") == _read_jsonl(b / "subpools.jsonl")
  assert _read_jsonl(a / "anchors.jsonl") == _read_jsonl(b / "anchors.jsonl")
  # The resumed run continued the same offline W&B run (same id, two offline dirs).
  runs = sorted((b / "wandb").glob("offline-run-*"))
  assert len(runs) == 2 and runs[0].name.split("-")[-1] == runs[1].name.split("-")[-1]


def test_corrupt_checkpoint_falls_back_then_fails_clearly(tmp_path, cache_dir):
  c = tiny_config(cache_dir, **{"al.budget": 125, "al.filter": "randomsubset"})
  loop.run(c, tmp_path)
  ckpts = tmp_path / "checkpoints"
  steps = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  assert steps == [1, 2]
  # Corrupt the newest: resuming must fall back to step 1 and redo the last round identically.
  for f in (ckpts / "2").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  (tmp_path / "DONE").unlink()
  before = _comparable(_records(tmp_path))
  loop.run(c, tmp_path)
  assert _comparable(_records(tmp_path)) == before
  # Everything corrupt: a clear error that names the fix.
  for f in ckpts.rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  (tmp_path / "DONE").unlink()
  with pytest.raises(CorruptCheckpointError, match="Delete that directory"):
    loop.run(c, tmp_path)


def test_bad_input_fails_clearly(tmp_path, cache_dir):
  with pytest.raises(errors.ConfigError, match="Budget larger than the pool"):
    loop.run(tiny_config(cache_dir, **{"al.budget": 5000}), tmp_path / "a")
  with pytest.raises(errors.ConfigError, match="Unknown al.strategy"):
    loop.run(tiny_config(cache_dir, **{"al.strategy": "entrop"}), tmp_path / "b")
  with pytest.raises(errors.ConfigError, match="Unknown al.filter"):
    loop.run(tiny_config(cache_dir, **{"al.filter": "anchor"}), tmp_path / "c")
  with pytest.raises(errors.ConfigError, match="multiple of al.query_size"):
    loop.run(tiny_config(cache_dir, **{"al.budget": 130}), tmp_path / "d")
  with pytest.raises(errors.ConfigError, match="total labelled size"):  # budget counts initial
    loop.run(tiny_config(cache_dir, **{"al.budget": 100}), tmp_path / "f")
  # Same workdir, different config: refuse instead of mixing two runs.
  c = tiny_config(cache_dir, **{"al.budget": 125, "al.filter": "randomsubset"})
  loop.run(c, tmp_path / "e")
  with pytest.raises(errors.ConfigError, match="different config"):
    loop.run(tiny_config(cache_dir, **{"al.budget": 150}), tmp_path / "e")


def test_unknown_config_key_fails_on_the_command_line(tmp_path):
  r = subprocess.run([sys.executable, "-m", "anchoral_jax.cli", "run", "--config",
                      str(ROOT / "configs/default.py") + ":tiny", "--workdir", str(tmp_path),
                      "--config.al.budgte=10"], capture_output=True, text=True, cwd=ROOT)
  assert r.returncode != 0 and "budgte" in r.stderr


def test_query_larger_than_subpool_is_topped_up(tmp_path, cache_dir):
  c = tiny_config(cache_dir, **{"al.budget": 125, "anchoral.num_anchors": 1,
                                "anchoral.num_neighbours": 5})
  loop.run(c, tmp_path)
  rec = _records(tmp_path)[0]
  assert rec["subpool/size"] <= 10 and rec["anchoral/topped_up"] == 25 - rec["subpool/size"]
  _check_outputs(tmp_path, c)


def test_finished_run_extends_to_a_larger_budget(tmp_path, cache_dir):
  """A DONE run re-run with a larger al.budget continues (its last round, which did not query,
  runs again and queries) and ends exactly where a fresh run of the larger budget ends."""
  ext, fresh = tmp_path / "ext", tmp_path / "fresh"
  loop.run(tiny_config(cache_dir, **{"al.budget": 125}), ext)
  assert (ext / "DONE").exists()
  longer = tiny_config(cache_dir, **{"al.budget": 175})
  run_files.rewind_last_round(ext, 1, True)  # as if an extension was killed right after its rewind
  assert not (ext / "DONE").exists()
  loop.run(longer, ext)
  loop.run(longer, fresh)
  assert (ext / "DONE").exists() and [r["round"] for r in _records(ext)] == [0, 1, 2, 3]
  assert _comparable(_records(ext)) == _comparable(_records(fresh))
  pd.testing.assert_frame_equal(pd.read_parquet(ext / "labelled.parquet"),
                                pd.read_parquet(fresh / "labelled.parquet"))
  assert _read_jsonl(ext / "subpools.jsonl") == _read_jsonl(fresh / "subpools.jsonl")
  def summary(d):
    return {k: v for k, v in json.loads((d / "summary.json").read_text()).items() if "time" not in k}

  assert summary(ext) == summary(fresh)
  with pytest.raises(errors.ConfigError, match=r"al.budget: 175 -> 150"):  # shrinking is refused
    loop.run(tiny_config(cache_dir, **{"al.budget": 150}), ext)
