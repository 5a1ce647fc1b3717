"""Training one classifier on the labelled set (one AL round), the paper's way.

Shape letters: B batch, L bucketed length, C classes.

- AdamW (lr 4e-5, betas (0.9, 0.999), eps 1e-8, weight decay 0.01 on all params), no schedule,
  no clipping, unweighted cross-entropy (SPEC.md §5).
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
- Seeds together: `fit_many` trains the S runs of a table cell (equal labelled-set sizes) with
  stacked params and one vmapped `train_step_many` per batch, each run as its own `fit`
  (float tolerance; tests/test_train.py).

Shape letters (`fit_many`): S runs, K of them stepping together (those of one batch length).
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

from anchoral_jax import metrics, models, parallel
from anchoral_jax.models import ModelConfig, Params
from anchoral_jax.scoring import forward_rows
from anchoral_jax.tokenize import DEFAULT_BUCKETS, TokenizedTexts

TRAINABLE = ("all", "head")
MODEL_SELECTIONS = ("train_minority_f1", "val_minority_f1", "last")
HEAD = ("classifier",)  # the parameters a "head" regime trains


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  learning_rate: float = 4e-5
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.01
  batch_size: int = 32
  epochs: int = 10
  min_steps: int = 100
  patience: int = 10  # epochs without improvement of the selection metric
  model_selection: str = "train_minority_f1"  # or "val_minority_f1", "last"
  eval_batch_size: int = 128
  trainable: str = "all"  # "all" (the paper) | "head" (encoder frozen: `regimes.HeadRegime`)

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
  # the slow reference `regimes.HeadRegime` (cached encoder outputs) is checked against.
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


@functools.partial(jax.jit, static_argnames=("cfg", "opt"), donate_argnums=(0,))
def train_step_many(state_S: TrainState, idx_K, ids_KxBxL, mask_KxBxL, labels_KxB, weight_KxB,
                    keys_S: jax.Array, *, cfg: ModelConfig, opt: optax.GradientTransformation):
  """`train_step` for K of S runs at once (every leaf of `state_S` has a leading seed axis; the
  runs `idx_K`, sorted, take a step, the others keep their state): one program for the seeds of
  a table cell (`fit_many`). A run sits out a step whose batch length is not its own, or once it
  has stopped early; K = S (every run) skips the gather and scatter of the state."""
  step = jax.vmap(functools.partial(train_step.__wrapped__, cfg=cfg, opt=opt))
  if idx_K.shape[0] == keys_S.shape[0]:  # shapes, not data: every run steps
    return step(state_S, ids_KxBxL, mask_KxBxL, labels_KxB, weight_KxB, keys_S)
  sub_K = jax.tree.map(lambda x: x[idx_K], state_S)
  new_K, loss_K, preds_KxB = step(sub_K, ids_KxBxL, mask_KxBxL, labels_KxB, weight_KxB,
                                  keys_S[idx_K])
  state_S = jax.tree.map(lambda x, n: x.at[idx_K].set(n), state_S, new_K)
  return state_S, loss_K, preds_KxB


@functools.partial(jax.jit, donate_argnums=(2,))
def _keep_better(better_S, params_S: Params, best_S: Params) -> Params:
  """Per run model selection on stacked params: run s takes `params_S[s]` where `better_S[s]`."""
  return jax.tree.map(
      lambda a, b: jnp.where(better_S.reshape(better_S.shape + (1,) * (a.ndim - 1)), a, b),
      params_S, best_S)


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


def _padded_batch(tok: TokenizedTexts, rows: np.ndarray, labels: np.ndarray, chunk: np.ndarray,
                  buckets: Sequence[int], bs: int) -> tuple[np.ndarray, ...]:
  """(ids_BxL, mask_BxL, labels_B, weight_B) for positions `chunk`, padded to `bs` rows with
  weight 0."""
  ids, mask = tok.batch(rows[chunk], buckets, bs)
  y = np.zeros(bs, np.int32)
  y[:len(chunk)] = labels[chunk]
  w = np.zeros(bs, np.float32)
  w[:len(chunk)] = 1.0
  return ids, mask, y, w


def _epoch_record(epoch: int, labels: np.ndarray, preds: np.ndarray, losses, num_classes: int,
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


def _add_val_metrics(record: dict, params: Params, cfg: ModelConfig, tc: TrainConfig, val,
                     num_classes: int, minority_classes: Sequence[int],
                     buckets: Sequence[int]) -> None:
  vtok, vrows, vlabels = val
  vlogits = forward_rows(params, cfg, vtok, vrows, ("logits",), tc.eval_batch_size,
                         buckets)["logits"]
  record.update(metrics.classification_metrics(
      vlabels, vlogits, num_classes, minority_classes, prefix="val/"))


def _log_epoch(record: dict, epoch: int, epochs: int, seconds: float, run: str = "") -> None:
  # Progress (a round trains for minutes on a CPU): from the epoch's one fetch, no extra sync.
  log.info("%sepoch %d/%d: train loss %.4f, train minority F1 %.3f%s, %.1f s", run, epoch + 1,
           epochs, record["train/loss"], record.get("train/minority_f1", float("nan")),
           f", val minority F1 {record['val/minority_f1']:.3f}" if "val/minority_f1" in record
           else "", seconds)


def _selection_score(record: dict, tc: TrainConfig) -> float:
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
        batch = parallel.shard_batch(_padded_batch(tok, rows, labels, chunk, buckets, bs))
        state, loss, preds_B = train_step(state, *batch, dropout_key, cfg=cfg, opt=opt)
        chunks.append(chunk)
        preds_dev.append(preds_B)
        losses_dev.append(loss)
        steps += 1
    preds_host, losses_host = parallel.to_host((preds_dev, losses_dev))  # the epoch's one fetch
    preds = np.empty(len(rows), np.int32)
    for chunk, preds_B in zip(chunks, preds_host, strict=True):
      preds[chunk] = preds_B[:len(chunk)]
    record = _epoch_record(epoch, labels, preds, losses_host, num_classes, minority_classes)
    if val is not None:
      _add_val_metrics(record, state.params, cfg, tc, val, num_classes, minority_classes,
                       buckets)
    history.append(record)
    _log_epoch(record, epoch, epochs, time.perf_counter() - t_epoch)
    if tc.model_selection == "last":
      continue
    score = _selection_score(record, tc)
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


def _shard_seed_batch(arrays):
  """Places [S, B, ...] host arrays with the batch axis (1) split over the mesh (identity on one
  device), as `parallel.shard_batch` does for one run's [B, ...] batch."""
  if parallel.num_devices() == 1:
    return arrays
  from jax.sharding import NamedSharding, PartitionSpec

  sharding = NamedSharding(parallel.mesh(), PartitionSpec(None, "data"))
  return jax.tree.map(lambda a: jax.device_put(np.asarray(a), sharding), arrays)


def fit_many(init_params: Sequence[Params], cfg: ModelConfig, tc: TrainConfig,
             toks: Sequence[TokenizedTexts], rows: Sequence[np.ndarray],
             labels: Sequence[np.ndarray], *, num_classes: int,
             minority_classes: Sequence[int], data_seeds: Sequence[int],
             dropout_keys: Sequence[jax.Array],
             vals: Sequence[tuple[TokenizedTexts, np.ndarray, np.ndarray] | None] | None = None,
             buckets: Sequence[int] = DEFAULT_BUCKETS) -> list[FitResult]:
  """`fit` for S runs at once (the seeds of a table cell in lockstep: equal labelled-set sizes,
  hence equal batches per epoch): S params pytrees stacked, one vmapped `train_step_many` per
  step. Run s gets what `fit(init_params[s], ..., data_seed=data_seeds[s],
  dropout_key=dropout_keys[s], val=vals[s])` gives, within float tolerance (batched matmuls may
  sum in another order): its own data order, dropout keys and model selection.

  Batch lengths: a step's batches of the S runs may fall in different length buckets; each
  distinct length is one vmapped call over the runs of that length only (the others keep their
  state), so every run sees exactly its own padded batch and its own dropout masks (whose bits
  depend on the batch's shape), and the compute is never more than S separate fits'. Runs that
  stop early sit out the rest.
  As `fit`, one host fetch per epoch; model selection per run on the stacked params
  (`_keep_better`: a mask, not a copy per run).
  """
  n_runs = len(init_params)
  rows = [np.asarray(r, np.int64) for r in rows]
  labels = [np.asarray(y, np.int32) for y in labels]
  vals = list(vals) if vals is not None else [None] * n_runs
  if not (len(toks) == len(rows) == len(labels) == len(data_seeds) == len(dropout_keys)
          == len(vals) == n_runs):
    raise ValueError("fit_many needs one tokens, rows, labels, data seed, dropout key and val "
                     "per run.")
  n = len(rows[0])
  if any(len(r) != n for r in rows):
    raise ValueError(f"fit_many needs equal labelled-set sizes, got {[len(r) for r in rows]}: "
                     "train runs of unequal sizes with `fit`, one at a time.")
  opt = make_optimizer(tc)
  # Stacking copies: `init_params` survive for the next round.
  params = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *init_params)
  state = parallel.replicate(TrainState(params, jax.vmap(opt.init)(params),
                                        jnp.zeros((n_runs,), jnp.int32)))
  keys_S = jnp.stack(list(dropout_keys))
  order_rngs = [np.random.default_rng(seed) for seed in data_seeds]
  bs = parallel.round_batch(tc.batch_size)
  epochs = num_epochs(n, tc)
  best = None  # stacked; run s's entry is meaningful once has_best[s]
  has_best = np.zeros(n_runs, bool)
  best_score = np.full(n_runs, -np.inf)
  best_epoch = np.full(n_runs, -1)
  since_best = np.zeros(n_runs, np.int64)
  running = np.ones(n_runs, bool)
  histories: list[list[dict]] = [[] for _ in range(n_runs)]
  steps = np.zeros(n_runs, np.int64)
  for epoch in range(epochs):
    if not running.any():
      break
    t_epoch = time.perf_counter()
    live = np.flatnonzero(running)
    perms = {s: order_rngs[s].permutation(n) for s in live}
    calls = []  # (batch start, runs idx_K, loss_K, preds_KxB on device)
    with jax.transfer_guard_device_to_host("disallow"):
      for start in range(0, n, tc.batch_size):
        batches = {s: _padded_batch(toks[s], rows[s], labels[s],
                                    perms[s][start:start + tc.batch_size], buckets, bs)
                   for s in live}
        for length in sorted({b[0].shape[1] for b in batches.values()}):
          idx = np.array([s for s in live if batches[s][0].shape[1] == length], np.int32)
          stacked = tuple(np.stack([batches[s][i] for s in idx]) for i in range(4))
          state, loss_K, preds_KxB = train_step_many(state, idx, *_shard_seed_batch(stacked),
                                                     keys_S, cfg=cfg, opt=opt)
          calls.append((start, idx, loss_K, preds_KxB))
        steps[live] += 1
    fetched = parallel.to_host([(c[2], c[3]) for c in calls])  # the epoch's one fetch
    preds = {s: np.empty(n, np.int32) for s in live}
    losses: dict[int, list] = {s: [] for s in live}
    for (start, idx, _, _), (loss_K, preds_KxB) in zip(calls, fetched, strict=True):
      for k, s in enumerate(idx):
        chunk = perms[s][start:start + tc.batch_size]
        preds[s][chunk] = preds_KxB[k, :len(chunk)]
        losses[s].append(loss_K[k])
    better = np.zeros(n_runs, bool)
    seconds = time.perf_counter() - t_epoch
    for s in live:
      record = _epoch_record(epoch, labels[s], preds[s], losses[s], num_classes,
                             minority_classes)
      if vals[s] is not None:
        _add_val_metrics(record, jax.tree.map(lambda x, s=s: x[s], state.params), cfg, tc,
                         vals[s], num_classes, minority_classes, buckets)
      histories[s].append(record)
      _log_epoch(record, epoch, epochs, seconds, run=f"run {s + 1}/{n_runs}: ")
      if tc.model_selection == "last":
        continue
      score = _selection_score(record, tc)
      if score > best_score[s]:
        best_score[s], best_epoch[s], since_best[s] = score, epoch, 0
        better[s] = has_best[s] = True
      else:
        since_best[s] += 1
        if since_best[s] >= tc.patience:
          running[s] = False
    if better.any():
      best = (jax.tree.map(jnp.copy, state.params) if best is None
              else _keep_better(better, state.params, best))
  results = []
  for s in range(n_runs):
    source = best if has_best[s] else state.params
    params_s = jax.tree.map(lambda x, s=s: x[s], source)
    chosen = int(best_epoch[s]) if has_best[s] else len(histories[s]) - 1
    results.append(FitResult(params_s, chosen, len(histories[s]), int(steps[s]), histories[s]))
  return results
