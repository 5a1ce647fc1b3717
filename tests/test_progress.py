"""Training says what it is doing: one INFO line per epoch from `train.fit` (a round trains for
minutes on a CPU, silently before), one per round from the frozen-encoder regime (its round is
one compiled call). Tiny random BERT, as in tests/test_train.py."""

import dataclasses
import logging
import re

import conftest
import jax
import numpy as np
import pytest

from anchoral_jax.models import bert
from anchoral_jax.training import head as regimes_head
from anchoral_jax.training import train

N = 96
ROWS = np.arange(0, 48, dtype=np.int64)


@pytest.fixture(scope="module")
def setting():
  tok, labels = conftest.marker_tokens(np.random.default_rng(0), N, 0.3, vocab_high=1100)
  cfg = dataclasses.replace(bert.PRESETS["tiny"], vocab_size=1100, max_position_embeddings=32)
  return tok, labels, cfg, bert.init_params(cfg, jax.random.key(1))


def test_fit_logs_one_line_per_epoch(setting, caplog):
  tok, labels, cfg, params = setting
  tc = train.TrainConfig(learning_rate=3e-3, batch_size=16, epochs=3, min_steps=0, patience=10,
                         model_selection="last", eval_batch_size=48)
  with caplog.at_level(logging.INFO, logger="anchoral_jax.training.train"):
    got = train.fit(params, cfg, tc, tok, ROWS, labels[ROWS], num_classes=2,
                    minority_classes=(1,), data_seed=5, dropout_key=jax.random.key(3),
                    buckets=(32,))
  lines = [r.getMessage() for r in caplog.records if r.name == "anchoral_jax.training.train"]
  assert len(lines) == got.epochs_run == 3
  pattern = re.compile(r"epoch (\d+)/3: train loss ([\d.]+), train minority F1 ([\d.]+|nan), "
                       r"[\d.]+ s")
  for i, (line, record) in enumerate(zip(lines, got.history, strict=True)):
    m = pattern.fullmatch(line)
    assert m, line
    assert int(m[1]) == i + 1
    assert float(m[2]) == pytest.approx(record["train/loss"], abs=1e-4)


def test_head_regime_logs_one_line_per_round(setting, caplog, tmp_path):
  tok, labels, cfg, params = setting
  feats = regimes_head.encoder_features(params, cfg, tok, tmp_path / "k", 48)
  tc = train.TrainConfig(learning_rate=5e-3, batch_size=16, epochs=3, min_steps=0, patience=10,
                         trainable="head")
  head = regimes_head.HeadRegime(cfg, tc, {"pool": feats, "test": feats}, 2, (1,), data_seed=5,
                            dropout_key=jax.random.key(3))
  with caplog.at_level(logging.INFO, logger="anchoral_jax.training.regimes"):
    got = head.fit(params, ROWS, labels[ROWS])
  (line,) = [r.getMessage() for r in caplog.records if r.name == "anchoral_jax.training.regimes"
             and r.getMessage().startswith("head trained")]
  assert f"{got.epochs_run}/3 epochs run, best epoch {got.best_epoch + 1} " in line
