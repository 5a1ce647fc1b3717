"""Training the S runs of a table cell at once: `fit_many`, one vmapped program (SPEC.md §5).

The seeds of a cell in lockstep have equal labelled-set sizes, hence equal batches per epoch:
their params are stacked and every step is one vmapped `train_step_many`. Each run gets what its
own `train.fit` gives (its data order, dropout keys and model selection), within float tolerance
(tests/test_train.py). The single-run pieces (`train_step`, the padded batches, the epoch
records, model selection) are `train.py`'s, shared, so the two cannot drift apart.

Shape letters: S runs, K of them stepping together (those of one batch length), B batch,
L bucketed length.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from anchoral_jax import parallel
from anchoral_jax.data.tokenize import DEFAULT_BUCKETS, TokenizedTexts
from anchoral_jax.models import ModelConfig, Params
from anchoral_jax.training import train


@functools.partial(jax.jit, static_argnames=("cfg", "opt", "masked"), donate_argnums=(0,))
def train_step_many(state_S: train.TrainState, idx_K, ids_xBxL, mask_xBxL, labels_xB, weight_xB,
                    keys_S: jax.Array, *, cfg: ModelConfig, opt: optax.GradientTransformation,
                    masked: bool = False):
  """`train_step` for K of S runs at once (every leaf of `state_S` has a leading seed axis; the
  runs `idx_K`, sorted, take a step, the others keep their state): one program for the seeds of
  a table cell (`fit_many`). A run sits out a step whose batch length is not its own, or once it
  has stopped early; K = S (every run) skips the gather and scatter of the state.

  The batches hold the K stepping runs' rows (x = K), or with `masked` all S runs' (x = S; a run
  that sits out gets a stand-in batch): then all S compute and a select keeps the K runs' new
  state, the others' old one. That is the layout for runs split over devices
  (`parallel.seed_mesh`), where gathering K runs' state would collect every run's on every
  device; the extra compute falls on the devices of runs that sit out, idle otherwise.
  Returns the new state and the K stepping runs' losses and predictions."""
  step = jax.vmap(functools.partial(train.train_step.__wrapped__, cfg=cfg, opt=opt))
  n_runs = keys_S.shape[0]
  if idx_K.shape[0] == n_runs:  # shapes, not data: every run steps
    return step(state_S, ids_xBxL, mask_xBxL, labels_xB, weight_xB, keys_S)
  if masked:
    new_S, loss_S, preds_SxB = step(state_S, ids_xBxL, mask_xBxL, labels_xB, weight_xB, keys_S)
    on_S = jnp.zeros((n_runs,), bool).at[idx_K].set(True)
    state_S = jax.tree.map(
        lambda n, o: jnp.where(on_S.reshape(on_S.shape + (1,) * (o.ndim - 1)), n, o),
        new_S, state_S)
    return state_S, loss_S[idx_K], preds_SxB[idx_K]
  sub_K = jax.tree.map(lambda x: x[idx_K], state_S)
  new_K, loss_K, preds_KxB = step(sub_K, ids_xBxL, mask_xBxL, labels_xB, weight_xB,
                                  keys_S[idx_K])
  state_S = jax.tree.map(lambda x, n: x.at[idx_K].set(n), state_S, new_K)
  return state_S, loss_K, preds_KxB


@functools.partial(jax.jit, donate_argnums=(2,))
def _keep_better(better_S, params_S: Params, best_S: Params) -> Params:
  """Per run model selection on stacked params: run s takes `params_S[s]` where `better_S[s]`."""
  return jax.tree.map(
      lambda a, b: jnp.where(better_S.reshape(better_S.shape + (1,) * (a.ndim - 1)), a, b),
      params_S, best_S)




def _place(tree, layout: Mesh | None, spec: PartitionSpec):
  """Puts arrays on fit_many's mesh (`parallel.seed_mesh`) with `spec`; identity on one device."""
  if layout is None:
    return tree
  sharding = NamedSharding(layout, spec)
  return jax.tree.map(lambda a: jax.device_put(a, sharding), tree)


def _run_params(params_S: Params, s: int, layout: Mesh | None) -> Params:
  """Run s's params out of the stacked ones, replicated as a single run's are (`train.fit`)."""
  params = jax.tree.map(lambda x: x[s], params_S)
  return params if layout is None else parallel.replicate(params)


def fit_many(init_params: Sequence[Params], cfg: ModelConfig, tc: train.TrainConfig,
             toks: Sequence[TokenizedTexts], rows: Sequence[np.ndarray],
             labels: Sequence[np.ndarray], *, num_classes: int,
             minority_classes: Sequence[int], data_seeds: Sequence[int],
             dropout_keys: Sequence[jax.Array],
             vals: Sequence[tuple[TokenizedTexts, np.ndarray, np.ndarray] | None] | None = None,
             buckets: Sequence[int] = DEFAULT_BUCKETS) -> list[train.FitResult]:
  """`train.fit` for S runs at once (the seeds of a table cell in lockstep: equal labelled-set sizes,
  hence equal batches per epoch): S params pytrees stacked, one vmapped `train_step_many` per
  step. Run s gets what `fit(init_params[s], ..., data_seed=data_seeds[s],
  dropout_key=dropout_keys[s], val=vals[s])` gives, within float tolerance (batched matmuls may
  sum in another order): its own data order, dropout keys and model selection.

  Batch lengths: a step's batches of the S runs may fall in different length buckets; each
  distinct length is one vmapped call over the runs of that length only (the others keep their
  state), so every run sees exactly its own padded batch and its own dropout masks (whose bits
  depend on the batch's shape), and the compute is never more than S separate fits'. Runs that
  stop early sit out the rest.
  As `train.fit`, one host fetch per epoch; model selection per run on the stacked params
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
  opt = train.make_optimizer(tc)
  # On several devices the runs are split over them (`parallel.seed_mesh`); when no device
  # holds every run, a step of K < S runs is a masked step of all S (`train_step_many`).
  layout = parallel.seed_mesh(n_runs) if parallel.num_devices() > 1 else None
  masked = layout is not None and layout.shape["seeds"] > 1
  # Stacking copies: `init_params` survive for the next round.
  params = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *init_params)
  state = _place(train.TrainState(params, jax.vmap(opt.init)(params),
                                  jnp.zeros((n_runs,), jnp.int32)), layout, parallel.SEED_STATE)
  keys_S = _place(jnp.stack(list(dropout_keys)), layout, parallel.SEED_STATE)
  order_rngs = [np.random.default_rng(seed) for seed in data_seeds]
  bs = parallel.round_batch(tc.batch_size)
  epochs = train.num_epochs(n, tc)
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
        batches = {s: train.padded_batch(toks[s], rows[s], labels[s],
                                    perms[s][start:start + tc.batch_size], buckets, bs)
                   for s in live}
        for length in sorted({b[0].shape[1] for b in batches.values()}):
          idx = np.array([s for s in live if batches[s][0].shape[1] == length], np.int32)
          rows_of = ([s if s in idx else idx[0] for s in range(n_runs)]  # stand-ins sit out
                     if masked and len(idx) < n_runs else idx)
          stacked = tuple(np.stack([batches[s][i] for s in rows_of]) for i in range(4))
          state, loss_K, preds_KxB = train_step_many(
              state, idx, *_place(stacked, layout, parallel.SEED_BATCH), keys_S, cfg=cfg,
              opt=opt, masked=masked)
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
      record = train.epoch_record(epoch, labels[s], preds[s], losses[s], num_classes,
                             minority_classes)
      if vals[s] is not None:
        train.add_val_metrics(record, _run_params(state.params, s, layout), cfg, tc, vals[s],
                              num_classes, minority_classes, buckets)
      histories[s].append(record)
      train.log_epoch(record, epoch, epochs, seconds, run=f"run {s + 1}/{n_runs}: ")
      if tc.model_selection == "last":
        continue
      score = train.selection_score(record, tc)
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
    params_s = _run_params(source, s, layout)
    chosen = int(best_epoch[s]) if has_best[s] else len(histories[s]) - 1
    results.append(train.FitResult(params_s, chosen, len(histories[s]), int(steps[s]),
                                   histories[s]))
  return results
