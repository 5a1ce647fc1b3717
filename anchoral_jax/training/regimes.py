"""Training regimes: which parameters train each round, and what may be computed only once.

A regime owns `fit` (train on the labelled rows, from the same initial weights every round)
and `outputs` (named outputs of a trained classifier for rows of the pool or the test split:
`logits`; `pooled`, the head's input features, for BADGE; `cls`, the last-layer [CLS], for
FTbertKM; `mean`, the sentence embedding), so the round never knows which regime runs:

- `FullRegime` (`train.trainable="all"`, the paper): every parameter is fine-tuned
  (`train.fit`); every output is an encoder forward over the tokens (`scoring.forward_rows`).
  The S seeds of a table cell in lockstep train as one vmapped program (`fit_group`,
  `train_many.fit_many`).
- `HeadRegime` (`train.trainable="head"`, in `regimes_head.py`): the encoder is frozen. Its
  outputs for the whole pool and test split are computed once and cached on disk; each round
  trains only the linear head on the cached features, in one compiled program (`fit_head`).
  Scoring is the head applied to the cached features: no encoder forward after set-up. With
  dropout off it equals `train.fit` with `trainable="head"` (the full model with the encoder
  frozen: tests/test_regimes.py); with dropout on, only the head's input is dropped out, as in
  a linear probe, since the encoder's features were computed once in eval mode. The head runs
  in float32 whatever `model.dtype` (the features are stored in float32).

Query time under "head" excludes the encoder's forward over the subpool (done once, at
set-up), which is the cost the paper's Time column is about: compare filters' costs through
`query/rows_scored` (rows a full-regime run would push through the encoder) or with "all".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import jax
import numpy as np

from anchoral_jax import cache
from anchoral_jax.data.tokenize import TokenizedTexts
from anchoral_jax.models import ModelConfig, Params
from anchoral_jax.training.head import HeadRegime, encoder_features, fit_head_group
from anchoral_jax.training.many import fit_many
from anchoral_jax.training.scoring import forward_rows
from anchoral_jax.training.train import FitResult, TrainConfig, fit


class Regime(Protocol):
  def fit(self, init_params: Params, rows: np.ndarray, labels: np.ndarray,
          val: tuple[np.ndarray, np.ndarray] | None = None) -> FitResult: ...

  def outputs(self, params: Params, split: str, rows: np.ndarray,
              keys: Sequence[str]) -> dict[str, np.ndarray]: ...


@dataclasses.dataclass
class FullRegime:
  """The paper's regime: fine-tune everything; every output is an encoder forward."""

  cfg: ModelConfig
  tc: TrainConfig
  tokens: dict[str, TokenizedTexts]  # "pool" / "test"
  num_classes: int
  minority: tuple[int, ...]
  data_seed: int
  dropout_key: jax.Array

  def fit(self, init_params, rows, labels, val=None) -> FitResult:
    vt = None if val is None else (self.tokens["pool"], *val)
    return fit(init_params, self.cfg, self.tc, self.tokens["pool"], rows, labels,
               num_classes=self.num_classes, minority_classes=self.minority,
               data_seed=self.data_seed, dropout_key=self.dropout_key, val=vt)

  def group_key(self, rows) -> tuple:
    """Fits whose keys are equal can run as one vmapped program (`fit_group`, `train.fit_many`):
    the same model, training settings and labelled-set size (hence batches per epoch)."""
    return (type(self), self.cfg, self.tc, self.num_classes, self.minority, len(rows))

  def outputs(self, params, split, rows, keys):
    return forward_rows(params, self.cfg, self.tokens[split], rows, keys,
                        self.tc.eval_batch_size)


def fit_group(regimes_: Sequence[HeadRegime | FullRegime],
              requests: Sequence[tuple]) -> list[FitResult]:
  """Trains S runs' round (one per run; `requests[s]` = (init_params, rows, labels, val)) as one
  vmapped program: the S runs of a table cell, whose `group_key`s are equal. Every run gets
  what its own `fit` would give (float tolerance: batched matmuls may sum in another order)."""
  keys = {r.group_key(req[1]) for r, req in zip(regimes_, requests, strict=True)}
  if len(keys) != 1:
    raise ValueError("fit_group needs runs with equal group keys (regime, settings, labelled "
                     "size); fit the others one at a time.")
  if isinstance(regimes_[0], FullRegime):
    return _fit_full_group(regimes_, requests)
  return fit_head_group(regimes_, requests)


def _fit_full_group(regimes_: Sequence[FullRegime], requests: Sequence[tuple]
                    ) -> list[FitResult]:
  """S full fine-tunings as `train.fit_many`: stacked params, one vmapped step per batch."""
  r0 = regimes_[0]
  pool = [r.tokens["pool"] for r in regimes_]
  return fit_many([req[0] for req in requests], r0.cfg, r0.tc, pool,
                  [req[1] for req in requests], [req[2] for req in requests],
                  num_classes=r0.num_classes, minority_classes=r0.minority,
                  data_seeds=[r.data_seed for r in regimes_],
                  dropout_keys=[r.dropout_key for r in regimes_],
                  vals=[None if req[3] is None else (tok, *req[3])
                        for tok, req in zip(pool, requests, strict=True)])


def make(c, task, cfg: ModelConfig, init_params: Params, dropout_key: jax.Array,
         tokens: dict[str, TokenizedTexts], cache_dir: Path, encoder_id: str) -> Regime:
  """The regime `c.train.trainable` names; "head" encodes (or loads) the cached features."""
  tc = TrainConfig(**c.train.to_dict())
  shared = dict(cfg=cfg, tc=tc, num_classes=task.num_classes,
                minority=tuple(task.minority_classes), data_seed=c.data.seed,
                dropout_key=dropout_key)
  if tc.trainable == "all":
    return FullRegime(tokens=tokens, **shared)
  splits = {"pool": "train", "test": "test"}
  features = {
      split: encoder_features(init_params, cfg, tok, cache.feature_dir(
          cache_dir, encoder_id, cfg.pooling, cfg.dtype, cfg.hidden_size,
          task.fingerprint(splits[split]), split, c.data.max_length), tc.eval_batch_size)
      for split, tok in tokens.items()}
  return HeadRegime(features=features, max_labelled=c.al.budget, **shared)
