"""Training one classifier on the labelled set (one AL round), the paper's way.

Shape letters: B batch, L bucketed length, C classes.

- AdamW (lr 4e-5, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 on all params), no schedule,
  no clipping, unweighted cross-entropy (SPEC.md §5): the defaults of `c.train` (`config.base()`).
- steps = max(epochs x batches, min_steps), realised as whole epochs:
  epochs_run = max(epochs, ceil(min_steps / batches)) (100 labelled -> 4 batches -> 25 epochs).
- Data order: a numpy Generator seeded with `data_seed`, fresh every round -> same order.
- Model selection: keep the epoch with the best TRAIN minority F1 (computed from the epoch's
  own training-mode predictions), early stopping with `patience` epochs. Options: "val" (a
  held-out labelled validation set scored after every epoch) or "last".
- Fixed shapes: every batch has `batch_size` rows (the last one padded, weight 0) and a bucketed
  length, so `train_step` compiles once per bucket, not per batch.
- Asynchronous: `train_step` returns only the loss and the argmax predictions, left on device;
  `fit` fetches an epoch's worth once, at its end, so dispatch runs ahead of the device within
  an epoch (a fetch per step made the host wait for every step). Same numbers as before.
- Seeds together: `many.fit_many` trains the S runs of a table cell (equal labelled-set
  sizes) as one vmapped program, each run as its own `fit`.
- Defaults: `TrainConfig`'s are `c.train`'s in `config.base()`, written once there (with the
  `--help` docs beside them), so a run and a `TrainConfig()` never disagree.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from anchoral_jax import config as config_lib
from anchoral_jax import metrics, models, parallel
from anchoral_jax.data.tokenize import DEFAULT_BUCKETS, TokenizedTexts
from anchoral_jax.models import ModelConfig, Params
from anchoral_jax.training.scoring import forward_rows

TRAINABLE = ("all", "head")
MODEL_SELECTIONS = ("train_minority_f1", "val_minority_f1", "last")
HEAD = ("classifier",)  # the parameters a "head" regime trains


_DEFAULTS = config_lib.base().train  # the one place the defaults are written (and documented)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """`c.train` as a frozen (hashable: `make_optimizer`'s cache key), checked dataclass. Field
  docs: `config.FIELD_DOCS` (`anchoral run --help`); tests/test_train.py checks the fields."""

  learning_rate: float = _DEFAULTS.learning_rate
  b1: float = _DEFAULTS.b1
  b2: float = _DEFAULTS.b2
  eps: float = _DEFAULTS.eps
  weight_decay: float = _DEFAULTS.weight_decay
  batch_size: int = _DEFAULTS.batch_size
  epochs: int = _DEFAULTS.epochs
  min_steps: int = _DEFAULTS.min_steps
  patience: int = _DEFAULTS.patience
  model_selection: str = _DEFAULTS.model_selection  # one of MODEL_SELECTIONS
  eval_batch_size: int = _DEFAULTS.eval_batch_size
  trainable: str = _DEFAULTS.trainable  # one of TRAINABLE ("head": `training.head.HeadRegime`)

  def __post_init__(self):
    if self.trainable not in TRAINABLE:
      raise ValueError(f"Unknown train.trainable {self.trainable!r}; choose from "
                       f"{list(TRAINABLE)}.")
    if self.model_selection not in MODEL_SELECTIONS:
      raise ValueError(f"Unknown train.model_selection {self.model_selection!r}; use "
                       "'train_minority_f1' (paper), 'val_minority_f1' or 'last'.")


@functools.cache
def make_optimizer(tc: TrainConfig) -> optax.GradientTransformation:
  """Cached per config: `train_step` takes the optimiser as a static argument, hashed by
  identity (its init/update closures), so a fresh optimiser every round would retrace and
  recompile `train_step` every round."""
  # torch.optim.AdamW applies weight decay to every parameter here (the official code's default).
  adamw = optax.adamw(tc.learning_rate, b1=tc.b1, b2=tc.b2, eps=tc.eps,
                      weight_decay=tc.weight_decay)
  if tc.trainable == "all":
    return adamw
  # "head" on the full model: the encoder gets no update (nor weight decay). `fit` with this is
  # the slow reference `training.head.HeadRegime` (cached encoder outputs) is checked against.
  return optax.multi_transform(
      {"train": adamw, "frozen": optax.set_to_zero()},
      lambda params: {k: jax.tree.map(lambda _, k=k: "train" if k in HEAD else "frozen", v)
                      for k, v in params.items()})


@dataclasses.dataclass
class TrainState:
  params: Params
  opt_state: optax.OptState
  step: jax.Array


jax.tree_util.register_dataclass(TrainState, data_fields=["params", "opt_state", "step"],
                                 meta_fields=[])


@functools.partial(jax.jit, static_argnames=("cfg", "opt"), donate_argnums=(0,))
def train_step(state: TrainState, ids_BxL, mask_BxL, labels_B, weight_B, key: jax.Array, *,
               cfg: ModelConfig, opt: optax.GradientTransformation):
  """One AdamW step on a padded batch; returns the new state, the loss and the training-mode
  predictions (argmax, int32): all `fit` needs, kept small so that its once-per-epoch fetch is
  cheap, and left on device so that dispatch runs ahead of the host."""
  dropout_key = jax.random.fold_in(key, state.step)

  def loss_fn(params):
    logits_BxC, _ = models.classifier(cfg).apply({"params": params}, ids_BxL, mask_BxL,
                                                 deterministic=False,
                                                 rngs={"dropout": dropout_key})
    ce_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, labels_B)
    loss = (ce_B * weight_B).sum() / jnp.maximum(weight_B.sum(), 1.0)
    return loss, logits_BxC

  (loss, logits_BxC), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = opt.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  preds_B = logits_BxC.argmax(-1).astype(jnp.int32)
  return TrainState(params, opt_state, state.step + 1), loss, preds_B


def num_epochs(n: int, tc: TrainConfig) -> int:
  batches = math.ceil(n / tc.batch_size)
  return max(tc.epochs, math.ceil(tc.min_steps / batches)) if batches else 0


@dataclasses.dataclass
class FitResult:
  params: Params
  best_epoch: int
  epochs_run: int
  steps: int
  history: list[dict]  # per epoch: loss, train metrics, val metrics


log = logging.getLogger(__name__)


def padded_batch(tok: TokenizedTexts, rows: np.ndarray, labels: np.ndarray, chunk: np.ndarray,
                  buckets: Sequence[int], bs: int) -> tuple[np.ndarray, ...]:
  """(ids_BxL, mask_BxL, labels_B, weight_B) for positions `chunk`, padded to `bs` rows with
  weight 0."""
  ids, mask = tok.batch(rows[chunk], buckets, bs)
  y = np.zeros(bs, np.int32)
  y[:len(chunk)] = labels[chunk]
  w = np.zeros(bs, np.float32)
  w[:len(chunk)] = 1.0
  return ids, mask, y, w


def epoch_record(epoch: int, labels: np.ndarray, preds: np.ndarray, losses, num_classes: int,
                  minority_classes: Sequence[int]) -> dict:
  """An epoch's history record from its fetched training-mode predictions and step losses."""
  # float64 mean of the float32 step losses (what averaging them as Python floats gave).
  loss_mean = float(np.mean(np.asarray(losses, np.float64)))
  # Training-mode predictions of this epoch, as one-hot "probabilities" (F1 only needs argmax).
  train_m = metrics.classification_metrics_from_probs(
      labels, np.eye(num_classes, dtype=np.float32)[preds], num_classes, minority_classes,
      prefix="train/")
  train_m = {k: v for k, v in train_m.items() if k not in ("train/loss", "train/ece")}
  return {"epoch": epoch, "train/loss": loss_mean, **train_m}


def add_val_metrics(record: dict, params: Params, cfg: ModelConfig, tc: TrainConfig, val,
                     num_classes: int, minority_classes: Sequence[int],
                     buckets: Sequence[int]) -> None:
  vtok, vrows, vlabels = val
  vlogits = forward_rows(params, cfg, vtok, vrows, ("logits",), tc.eval_batch_size,
                         buckets)["logits"]
  record.update(metrics.classification_metrics(
      vlabels, vlogits, num_classes, minority_classes, prefix="val/"))


def log_epoch(record: dict, epoch: int, epochs: int, seconds: float, run: str = "") -> None:
  # Progress (a round trains for minutes on a CPU): from the epoch's one fetch, no extra sync.
  log.info("%sepoch %d/%d: train loss %.4f, train minority F1 %.3f%s, %.1f s", run, epoch + 1,
           epochs, record["train/loss"], record.get("train/minority_f1", float("nan")),
           f", val minority F1 {record['val/minority_f1']:.3f}" if "val/minority_f1" in record
           else "", seconds)


def selection_score(record: dict, tc: TrainConfig) -> float:
  return record["train/minority_f1" if tc.model_selection == "train_minority_f1"
                else "val/minority_f1"]


def fit(init_params: Params, cfg: ModelConfig, tc: TrainConfig, tok: TokenizedTexts,
        rows: np.ndarray, labels: np.ndarray, *, num_classes: int,
        minority_classes: Sequence[int], data_seed: int, dropout_key: jax.Array,
        val: tuple[TokenizedTexts, np.ndarray, np.ndarray] | None = None,
        buckets: Sequence[int] = DEFAULT_BUCKETS) -> FitResult:
  """Trains from `init_params` on `rows` of `tok` with `labels`; returns the selected params."""
  rows = np.asarray(rows, np.int64)
  labels = np.asarray(labels, np.int32)
  opt = make_optimizer(tc)
  # Copy: train_step donates its state, and `init_params` must survive for the next round.
  params = jax.tree.map(jnp.array, init_params)
  # Replicate the whole state, not just params: optax's scalar counters are created on one
  # device, and a state whose sharding changes after the first step costs a second compile.
  state = parallel.replicate(TrainState(params, opt.init(params), jnp.zeros((), jnp.int32)))
  order_rng = np.random.default_rng(data_seed)
  bs = parallel.round_batch(tc.batch_size)
  epochs = num_epochs(len(rows), tc)
  best, best_score, best_epoch, since_best = None, -np.inf, -1, 0
  history = []
  steps = 0
  for epoch in range(epochs):
    t_epoch = time.perf_counter()
    perm = order_rng.permutation(len(rows))
    chunks, preds_dev, losses_dev = [], [], []
    # No device-to-host transfer inside the epoch: the host prepares batch i+1 while the device
    # runs batch i. The guard turns an accidental implicit fetch (float(loss), np.asarray)
    # into an error; the one explicit fetch per epoch is below.
    with jax.transfer_guard_device_to_host("disallow"):
      for s in range(0, len(perm), tc.batch_size):
        chunk = perm[s:s + tc.batch_size]
        batch = parallel.shard_batch(padded_batch(tok, rows, labels, chunk, buckets, bs))
        state, loss, preds_B = train_step(state, *batch, dropout_key, cfg=cfg, opt=opt)
        chunks.append(chunk)
        preds_dev.append(preds_B)
        losses_dev.append(loss)
        steps += 1
    preds_host, losses_host = parallel.to_host((preds_dev, losses_dev))  # the epoch's one fetch
    preds = np.empty(len(rows), np.int32)
    for chunk, preds_B in zip(chunks, preds_host, strict=True):
      preds[chunk] = preds_B[:len(chunk)]
    record = epoch_record(epoch, labels, preds, losses_host, num_classes, minority_classes)
    if val is not None:
      add_val_metrics(record, state.params, cfg, tc, val, num_classes, minority_classes,
                       buckets)
    history.append(record)
    log_epoch(record, epoch, epochs, time.perf_counter() - t_epoch)
    if tc.model_selection == "last":
      continue
    score = selection_score(record, tc)
    if score > best_score:
      best_score, best_epoch, since_best = score, epoch, 0
      best = jax.tree.map(jnp.copy, state.params)
    else:
      since_best += 1
      if since_best >= tc.patience:
        break
  if best is None:
    best, best_epoch = state.params, len(history) - 1
  return FitResult(best, best_epoch, len(history), steps, history)

