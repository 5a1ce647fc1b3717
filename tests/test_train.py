"""`train.fit`: the paper's epoch count, early stopping, the three model selections, and the
asynchronous loop (no host round trip per step, same results as fetching after every step).

A tiny random BERT (small vocabulary, one length bucket) on random tokens keeps each fit to a
few seconds on a CPU."""

import dataclasses

import conftest
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchoral_jax import config as config_lib
from anchoral_jax import metrics, parallel
from anchoral_jax.models import bert, hf
from anchoral_jax.training import many as train_many
from anchoral_jax.training import train
from anchoral_jax.training.scoring import forward_rows
from anchoral_jax.training.train import TrainConfig, fit, num_epochs

N = 96
BUCKETS = (32,)  # one compiled shape per program
ROWS = np.arange(0, 48, dtype=np.int64)
VAL_ROWS = np.arange(48, 96, dtype=np.int64)


def _tokens(rng):
  return conftest.marker_tokens(rng, N, 0.3, vocab_high=1100)


@pytest.fixture(scope="module")
def setting():
  tok, labels = _tokens(np.random.default_rng(0))
  cfg = dataclasses.replace(bert.PRESETS["tiny"], vocab_size=1100, max_position_embeddings=32)
  return tok, labels, cfg, bert.init_params(cfg, jax.random.key(1))


def _fit(setting, val=True, **tc):
  tok, labels, cfg, params = setting
  tc = TrainConfig(**{"learning_rate": 3e-3, "batch_size": 16, "epochs": 4, "min_steps": 0,
                      "patience": 10, "eval_batch_size": 48, **tc})
  v = (tok, VAL_ROWS, labels[VAL_ROWS]) if val else None
  return fit(params, cfg, tc, tok, ROWS, labels[ROWS], num_classes=2, minority_classes=(1,),
             data_seed=5, dropout_key=jax.random.key(3), val=v, buckets=BUCKETS)


def _same_params(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in
             zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b)),
                 strict=True))


def test_num_epochs_is_the_papers_max_of_epochs_and_min_steps():
  tc = TrainConfig(batch_size=32, epochs=10, min_steps=100)
  assert num_epochs(100, tc) == 25  # 4 batches: ceil(100 / 4)
  assert num_epochs(288, tc) == 12  # 9 batches: ceil(100 / 9)
  for n in (289, 320, 1000, 5000):  # >= 10 batches: the 10 epochs already make 100 steps
    assert num_epochs(n, tc) == 10
  assert num_epochs(1, tc) == 100
  assert num_epochs(0, tc) == 0


def test_train_config_defaults_are_the_base_config_s():
  """One source of truth: `TrainConfig()` is what a run gets from `c.train` of `config.base()`
  (the two once drifted: eval_batch_size 128 vs 256), field for field, nothing more or less."""
  c_train = config_lib.base().train.to_dict()
  assert {f.name for f in dataclasses.fields(TrainConfig)} == set(c_train)
  assert dataclasses.asdict(TrainConfig()) == c_train
  assert TrainConfig(**c_train) == TrainConfig()  # what regimes.make builds for a run
  assert TrainConfig().eval_batch_size == 0  # the backend's default (scoring.eval_batch_size)
  # Every field is documented for `--help`, and the split-out vmapped fit is still `train.`'s.
  assert all(f"train.{f.name}" in config_lib.FIELD_DOCS for f in dataclasses.fields(TrainConfig))
  assert train_many.fit_many is train_many.fit_many
  assert train_many.train_step_many is train_many.train_step_many


def test_last_runs_every_epoch_and_keeps_the_final_params(setting):
  got = _fit(setting, val=False, model_selection="last", epochs=3)
  assert (got.epochs_run, got.best_epoch, got.steps) == (3, 2, 3 * 3)
  assert [h["epoch"] for h in got.history] == [0, 1, 2]
  # min_steps adds whole epochs: 3 batches per epoch, 20 steps -> ceil(20 / 3) = 7 epochs.
  assert _fit(setting, val=False, model_selection="last", epochs=3, min_steps=20).epochs_run == 7


@pytest.mark.parametrize("selection,key", [("train_minority_f1", "train/minority_f1"),
                                           ("val_minority_f1", "val/minority_f1")])
def test_selection_keeps_the_best_epochs_params(setting, selection, key):
  got = _fit(setting, model_selection=selection)
  scores = [h[key] for h in got.history]
  assert got.best_epoch == int(np.argmax(scores))  # the first best: later ties do not replace it
  assert got.history[0].keys() >= {"train/loss", "train/minority_f1", "val/minority_f1"}
  # The kept params are those after epoch `best_epoch`: a run stopped there (same data order,
  # same dropout keys) ends with exactly them.
  ref = _fit(setting, model_selection="last", epochs=got.best_epoch + 1)
  assert _same_params(got.params, ref.params)


def test_patience_stops_early(setting):
  # No learning (lr 0, no dropout): the score never improves after epoch 0.
  tok, labels, cfg, params = setting
  quiet = (tok, labels, dataclasses.replace(cfg, hidden_dropout_prob=0.0,
                                            attention_probs_dropout_prob=0.0), params)
  got = _fit(quiet, val=False, learning_rate=0.0, epochs=20, patience=2)
  assert (got.best_epoch, got.epochs_run, got.steps) == (0, 3, 3 * 3)
  assert _same_params(got.params, params)


def test_fit_fetches_once_per_epoch_and_matches_a_per_step_fetch(setting, monkeypatch):
  """No device-to-host transfer per step: implicit ones are disallowed, explicit ones counted
  (`parallel.to_host` fetches through `jax.device_get`). The result equals a loop that fetches
  the logits and loss after every step (the synchronous loop this replaced), bit for bit."""
  calls = []
  device_get = jax.device_get
  monkeypatch.setattr(jax, "device_get", lambda x: calls.append(1) or device_get(x))
  with jax.transfer_guard_device_to_host("disallow"):
    got = _fit(setting, val=False, model_selection="last", epochs=3)
  monkeypatch.undo()
  assert len(calls) == got.epochs_run == 3

  tok, labels, cfg, params = setting
  tc = TrainConfig(learning_rate=3e-3, batch_size=16, epochs=3, min_steps=0)
  opt = train.make_optimizer(tc)
  state = train.TrainState(jax.tree.map(jnp.array, params), opt.init(params),
                           jnp.zeros((), jnp.int32))
  order_rng = np.random.default_rng(5)
  y_all = labels[ROWS]
  for epoch in range(3):
    perm = order_rng.permutation(len(ROWS))
    preds, losses = np.empty(len(ROWS), np.int32), []
    for s in range(0, len(perm), 16):
      chunk = perm[s:s + 16]
      ids, mask = tok.batch(ROWS[chunk], BUCKETS, 16)
      y = np.zeros(16, np.int32)
      y[:len(chunk)] = y_all[chunk]
      w = np.zeros(16, np.float32)
      w[:len(chunk)] = 1.0
      state, loss, preds_B = train.train_step(state, ids, mask, y, w, jax.random.key(3), cfg=cfg,
                                              opt=opt)
      preds[chunk] = parallel.to_host(preds_B)[:len(chunk)]
      losses.append(float(loss))
    f1 = metrics.classification_metrics_from_probs(
        y_all, np.eye(2, dtype=np.float32)[preds], 2, (1,), prefix="train/")["train/minority_f1"]
    assert got.history[epoch]["train/loss"] == float(np.mean(losses))
    assert got.history[epoch]["train/minority_f1"] == f1
  assert _same_params(got.params, state.params)


def test_fit_many_equals_separate_fits(setting):
  """Two runs trained as one vmapped program (`fit_many`: stacked params, one step for both)
  end as two `fit` calls: same epochs, selection and early stop (run 1 stops before run 0),
  logits within float32 rounding. Dropout is on, and run 0's batches are always shorter than
  run 1's (one bucket of 16 against 32): each step runs once per bucket length, the run of the
  other length sitting out, so each run keeps its own padded shapes and dropout masks."""
  _, _, cfg, _ = setting
  tok, labels = conftest.marker_tokens(np.random.default_rng(0), 240, 0.3, vocab_high=1100)
  rows = [np.flatnonzero(tok.lengths_N <= 16)[:40], np.arange(100, 140)]
  assert tok.lengths_N[rows[0]].max() <= 16 < tok.lengths_N[rows[1]].max()
  buckets = (16, 32)
  tc = TrainConfig(learning_rate=1e-2, batch_size=16, epochs=8, min_steps=0, patience=3)
  inits = [bert.init_params(cfg, jax.random.key(s)) for s in (1, 2)]
  keep = jax.device_get(inits)
  kw = dict(num_classes=2, minority_classes=(1,), buckets=buckets)
  sep = [fit(inits[s], cfg, tc, tok, rows[s], labels[rows[s]], data_seed=5 + s,
             dropout_key=jax.random.key(3 + s), **kw) for s in range(2)]
  got = train_many.fit_many(inits, cfg, tc, [tok, tok], rows, [labels[r] for r in rows],
                       data_seeds=[5, 6], dropout_keys=[jax.random.key(3), jax.random.key(4)],
                       **kw)
  # Pinned for these keys: the hash dropout masks (models/dropout.py) made run 0's best epoch 4
  # (it was 6 under flax's threefry masks); run 1 still stops early, before run 0.
  assert [(r.best_epoch, r.epochs_run, r.steps) for r in sep] == [(4, 8, 24), (3, 7, 21)]
  assert _same_params(inits, keep)  # the initial params survive (the next round starts there)
  for g, r in zip(got, sep, strict=True):
    assert (g.best_epoch, g.epochs_run, g.steps) == (r.best_epoch, r.epochs_run, r.steps)
    for hg, hr in zip(g.history, r.history, strict=True):
      assert hg["train/minority_f1"] == hr["train/minority_f1"]
      # Late epochs' losses are ~3e-3, where the rounding below shows as ~1.4e-6 absolute.
      assert hg["train/loss"] == pytest.approx(hr["train/loss"], rel=1e-4, abs=5e-6)
    # Batched matmuls round differently; over 24 AdamW steps at lr 1e-2 that grows to ~3e-6 in
    # the params and ~1e-4 in the logits (|logits| ~2; ~3e-8 after 9 steps at lr 3e-3).
    # Attention key biases are left out: their gradient is zero in exact arithmetic (softmax
    # ignores a per-query constant), so Adam turns their rounding noise into lr-sized steps that
    # change no output.
    fg, fr = hf.flatten(jax.device_get(g.params)), hf.flatten(jax.device_get(r.params))
    for path, leaf in fr.items():
      if path[-2:] != ("key", "bias"):
        np.testing.assert_allclose(fg[path], leaf, atol=1e-4, err_msg=str(path))
    every = np.arange(len(tok))
    np.testing.assert_allclose(
        forward_rows(g.params, cfg, tok, every, buckets=buckets)["logits"],
        forward_rows(r.params, cfg, tok, every, buckets=buckets)["logits"], atol=5e-4)


def test_fit_many_validation_selection_and_unequal_sizes(setting):
  """Per-run validation sets drive per-run selection; unequal labelled sizes are refused."""
  tok, labels, cfg, params = setting
  tc = TrainConfig(learning_rate=3e-3, batch_size=16, epochs=3, min_steps=0,
                   model_selection="val_minority_f1", eval_batch_size=48)
  rows = [ROWS[:32], ROWS[16:]]
  vals = [(tok, VAL_ROWS[:24], labels[VAL_ROWS[:24]]), (tok, VAL_ROWS, labels[VAL_ROWS])]
  kw = dict(num_classes=2, minority_classes=(1,), buckets=BUCKETS)
  got = train_many.fit_many([params, params], cfg, tc, [tok, tok], rows, [labels[r] for r in rows],
                       data_seeds=[5, 6], dropout_keys=[jax.random.key(3)] * 2, vals=vals, **kw)
  for s, g in enumerate(got):
    r = fit(params, cfg, tc, tok, rows[s], labels[rows[s]], data_seed=5 + s,
            dropout_key=jax.random.key(3), val=vals[s], **kw)
    assert (g.best_epoch, g.epochs_run) == (r.best_epoch, r.epochs_run)
    for hg, hr in zip(g.history, r.history, strict=True):
      assert hg["val/minority_f1"] == hr["val/minority_f1"]
      assert hg["val/loss"] == pytest.approx(hr["val/loss"], rel=1e-5)
  with pytest.raises(ValueError, match="equal labelled-set sizes"):
    train_many.fit_many([params, params], cfg, tc, [tok, tok], [ROWS, ROWS[:40]],
                   [labels[ROWS], labels[ROWS[:40]]], data_seeds=[5, 6],
                   dropout_keys=[jax.random.key(3)] * 2, **kw)
