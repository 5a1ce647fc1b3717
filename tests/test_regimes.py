"""Training regimes: the cached frozen-encoder ("head") regime against the full model with the
encoder frozen (an independent path: the Flax forward over tokens, `train.fit`), the encoder
left untouched, and every strategy x filter running in the head regime end to end."""

import dataclasses

import conftest
import jax
import numpy as np
import pytest

from anchoral_jax.al import loop
from anchoral_jax.models import bert, hf
from anchoral_jax.tracking.jsonl import load_metrics
from anchoral_jax.training import head as regimes_head
from anchoral_jax.training import regimes
from anchoral_jax.training.train import TrainConfig, fit

N = 320


def _tokens(rng):
  return conftest.marker_tokens(rng, N, 0.15)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
  rng = np.random.default_rng(0)
  tok, labels = _tokens(rng)
  cfg = dataclasses.replace(bert.PRESETS["tiny"], hidden_dropout_prob=0.0,
                            attention_probs_dropout_prob=0.0)
  params = bert.init_params(cfg, jax.random.key(1))
  cache = tmp_path_factory.mktemp("features")
  feats = regimes_head.encoder_features(params, cfg, tok, cache / "k", 64)
  return tok, labels, cfg, params, {"pool": feats, "test": feats}


@pytest.mark.parametrize("selection", ["train_minority_f1", "val_minority_f1", "last"])
def test_head_regime_equals_full_model_with_frozen_encoder(setting, selection):
  tok, labels, cfg, params, feats = setting
  tc = TrainConfig(learning_rate=5e-3, batch_size=16, epochs=3, min_steps=40, patience=2,
                   model_selection=selection, eval_batch_size=64, trainable="head")
  rows = np.arange(0, 150, dtype=np.int64)
  val_rows = np.arange(200, 260, dtype=np.int64)
  val = (val_rows, labels[val_rows]) if selection == "val_minority_f1" else None
  key = jax.random.key(3)
  head = regimes_head.HeadRegime(cfg, tc, feats, 2, (1,), data_seed=5, dropout_key=key)
  got = head.fit(params, rows, labels[rows], val=val)
  ref = fit(params, cfg, tc, tok, rows, labels[rows], num_classes=2, minority_classes=(1,),
            data_seed=5, dropout_key=key,
            val=None if val is None else (tok, *val))
  assert (got.best_epoch, got.epochs_run, got.steps) == (ref.best_epoch, ref.epochs_run,
                                                         ref.steps)
  assert ref.epochs_run >= 2 and ref.steps == ref.epochs_run * 10  # 150 rows / 16 = 10 batches
  for g, r in zip(got.history, ref.history, strict=True):
    assert g["train/minority_f1"] == r["train/minority_f1"]
    assert g["train/loss"] == pytest.approx(r["train/loss"], rel=1e-4, abs=1e-6)
  for name in ("kernel", "bias"):
    np.testing.assert_allclose(got.params["classifier"][name], ref.params["classifier"][name],
                               rtol=1e-4, atol=1e-5)
  # The encoder is bit-identical to the initial one, in both paths.
  for path, leaf in hf.flatten(params).items():
    if path[0] != "classifier":
      assert np.array_equal(hf.flatten(got.params)[path], leaf)
      assert np.array_equal(hf.flatten(ref.params)[path], leaf)
  # The head regime's outputs are the full model's outputs with the same params.
  full = regimes.FullRegime(cfg, tc, {"pool": tok, "test": tok}, 2, (1,), 5, key)
  for k in ("logits", "pooled", "cls", "mean"):
    np.testing.assert_allclose(head.outputs(got.params, "pool", rows, (k,))[k],
                               full.outputs(got.params, "pool", rows, (k,))[k],
                               rtol=1e-4, atol=1e-5)


def test_head_regime_learns_and_uses_dropout(setting):
  tok, labels, cfg, params, feats = setting
  tc = TrainConfig(learning_rate=5e-3, batch_size=16, epochs=5, min_steps=60,
                   model_selection="last", trainable="head")
  rows = np.arange(0, 200, dtype=np.int64)
  runs = {}
  for p in (0.0, 0.5):
    head = regimes_head.HeadRegime(dataclasses.replace(cfg, hidden_dropout_prob=p), tc, feats, 2,
                              (1,), 5, jax.random.key(0))
    runs[p] = head.fit(params, rows, labels[rows])
  assert runs[0.0].history[-1]["train/loss"] < runs[0.0].history[0]["train/loss"]
  assert not np.allclose(runs[0.0].params["classifier"]["kernel"],
                         runs[0.5].params["classifier"]["kernel"])


def test_fit_head_compiles_once_per_capacity(setting, monkeypatch):
  tok, labels, cfg, params, feats = setting
  tc = TrainConfig(batch_size=16, epochs=1, min_steps=4, trainable="head")
  head = regimes_head.HeadRegime(cfg, tc, feats, 2, (1,), 5, jax.random.key(0))
  static = {"static_argnames": ("opt", "batch_size", "minority", "selection", "patience",
                                "dropout")}
  conftest.max_traces(monkeypatch, regimes_head, "fit_head", 1, **static)  # 2nd trace raises
  for n in (100, 101, 125, 128):  # same padded capacity (128): no new program
    head.fit(params, np.arange(n), labels[:n])
  # Knowing the run's final labelled size: one shape from the first round to the last.
  sized = dataclasses.replace(head, max_labelled=300)
  conftest.max_traces(monkeypatch, regimes_head, "fit_head", 1, **static)
  for n in (100, 150, 260, 300):
    sized.fit(params, np.arange(n), labels[:n])


def test_fit_group_needs_equal_group_keys(setting):
  """`fit_group` trains runs as one program only when their group keys (shapes, settings) are
  equal, and refuses the rest before training. That a full-regime group equals its separate
  fits is tests/test_train.py::test_fit_many_equals_separate_fits (the program) and
  tests/test_seeds.py::test_full_regime_seeds_train_as_one_program_and_equal_separate_runs
  (whole runs through `fit_group`)."""
  tok, labels, cfg, params, _ = setting
  tc = TrainConfig(learning_rate=3e-3, batch_size=16, epochs=2, min_steps=0, patience=1)
  full = [regimes.FullRegime(cfg, tc, {"pool": tok, "test": tok}, 2, (1,), data_seed=5 + s,
                             dropout_key=jax.random.key(s)) for s in range(2)]
  assert full[0].group_key(np.arange(40)) == full[1].group_key(np.arange(40, 80))
  with pytest.raises(ValueError, match="equal group keys"):
    regimes.fit_group(full, [(params, np.arange(40), labels[:40], None),
                             (params, np.arange(50), labels[:50], None)])


POOL, TEST = 1500, 200


@pytest.mark.parametrize("filter_,strategy", [
    ("none", "entropy"), ("randomsubset", "margin"), ("seals", "badge"),
    ("anchoral", "entropy"), ("anchoral", "ftbertkm")])
def test_every_filter_and_strategy_in_the_head_regime(tmp_path, cache_dir, filter_, strategy):
  c = conftest.tiny_config(cache_dir, POOL, TEST, **{
      "data.test_size": 0, "al.budget": 150, "al.subpool_size": 400, "al.filter": filter_,
      "al.strategy": strategy, "train.trainable": "head"})
  records = loop.run(c, tmp_path)
  assert [r["round"] for r in records] == [0, 1, 2]
  assert [r["budget"] for r in records] == [100, 125, 150]
  history, _ = load_metrics(tmp_path / "metrics.jsonl")
  assert all(0 < r["query/rows_scored"] for r in history[:-1])
  assert all(0.0 <= r["pool/minority_share"] <= 1.0 for r in history[:-1])
