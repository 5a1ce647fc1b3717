"""Seeds in one process (loop.run_many): S runs of a table cell in lockstep, the classifiers of
a round (frozen-encoder heads, or fully fine-tuned models) trained as one vmapped program, end
where S separate runs end."""

import json

import conftest
import pandas as pd
import pytest

from anchoral_jax import errors
from anchoral_jax.al import loop
from anchoral_jax.tracking.jsonl import load_metrics

SEEDS = [{"model.seed": 1, "al.initial_seed": 11, "data.seed": 21},
         {"model.seed": 2, "al.initial_seed": 12, "data.seed": 22},
         {"model.seed": 3, "al.initial_seed": 13, "data.seed": 23}]


def _config(cache_dir, seed, regime="head", **overrides):
  return conftest.tiny_config(cache_dir, 1500, 200, **{
      "data.test_size": 0, "al.budget": 150, "al.subpool_size": 400, "al.filter": "anchoral",
      "train.trainable": regime, **seed, **overrides})


def _outputs(workdir):
  records, _ = load_metrics(workdir / "metrics.jsonl")
  metrics = [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]
  return (metrics, pd.read_parquet(workdir / "labelled.parquet"),
          (workdir / "subpools.jsonl").read_text(), records)


def _assert_same(a, b):
  ma, la, sa, _ = a
  mb, lb, sb, _ = b
  pd.testing.assert_frame_equal(la, lb)  # the same labelled uids, in the same rounds
  assert sa == sb
  assert [sorted(r) for r in ma] == [sorted(r) for r in mb]
  for ra, rb in zip(ma, mb, strict=True):
    for k, v in ra.items():
      assert rb[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k


def test_vmapped_seeds_equal_separate_runs(tmp_path, cache_dir):
  separate = []
  for i, seed in enumerate(SEEDS):
    loop.run(_config(cache_dir, seed), tmp_path / f"alone{i}")
    separate.append(_outputs(tmp_path / f"alone{i}"))
  for s in (2, 3):
    dirs = [tmp_path / f"together{s}-{i}" for i in range(s)]
    loop.run_many([_config(cache_dir, seed) for seed in SEEDS[:s]], dirs)
    for i, d in enumerate(dirs):
      got = _outputs(d)
      _assert_same(got, separate[i])
      assert {r["time/train_runs_in_program"] for r in got[3]} == {s}  # one program for all
      assert (d / "DONE").exists() and json.loads((d / "hparams.json").read_text())[
          "model"]["seed"] == SEEDS[i]["model.seed"]


def test_full_regime_seeds_train_as_one_program_and_equal_separate_runs(tmp_path, cache_dir):
  """The full fine-tuning regime (`train.fit_many`): two rounds, two epochs a round, dropout
  on; the same labelled rows, subpools and metrics as two separate runs. (Its own eval batch
  size: scoring programs compiled here would leave tests/test_compile_time.py nothing to
  compile in round 0.)"""
  configs = [_config(cache_dir, seed, "all", **{"al.budget": 125, "train.epochs": 2,
                                                "train.eval_batch_size": 64})
             for seed in SEEDS[:2]]
  separate = []
  for i, c in enumerate(configs):
    loop.run(c, tmp_path / f"alone{i}")
    separate.append(_outputs(tmp_path / f"alone{i}"))
  dirs = [tmp_path / f"together{i}" for i in range(2)]
  loop.run_many(configs, dirs)
  for i, d in enumerate(dirs):
    got = _outputs(d)
    _assert_same(got, separate[i])
    assert [r["round"] for r in got[3]] == [0, 1]
    assert {r["time/train_runs_in_program"] for r in got[3]} == {2}  # one program for both


def test_run_many_resumes_a_run_inside_a_group(tmp_path, cache_dir):
  """A run that ran alone for a while resumes inside a group (lockstep from different rounds:
  fits of unequal labelled sizes train apart) and ends as it would alone; one workdir twice
  is refused."""
  a, b = tmp_path / "a", tmp_path / "b"
  loop.run(_config(cache_dir, SEEDS[0]), tmp_path / "ref")
  short = conftest.tiny_config(cache_dir, 1500, 200, **{
      "data.test_size": 0, "al.budget": 125, "al.subpool_size": 400, "al.filter": "anchoral",
      "train.trainable": "head", **SEEDS[0]})
  loop.run(short, a)  # extended to 150 below: resumes at round 1 while b starts at round 0
  loop.run_many([_config(cache_dir, SEEDS[0]), _config(cache_dir, SEEDS[1])], [a, b])
  _assert_same(_outputs(a), _outputs(tmp_path / "ref"))
  assert (b / "DONE").exists()
  assert [r["round"] for r in load_metrics(b / "metrics.jsonl")[0]] == [0, 1, 2]
  with pytest.raises(errors.ConfigError, match="Two runs on one workdir"):
    loop.run_many([_config(cache_dir, SEEDS[0])] * 2, [a, a])
