"""The frozen-encoder regime (`train.trainable="head"`): cached features, the head trained in one
compiled program per round (SPEC.md §5 "Here"; `regimes.py` has the regime interface).

The encoder's outputs for the whole pool and test split are computed once per (encoder, task,
split, max length, pooling), in eval mode, and cached on disk (`encoder_features`); each round
trains only the linear head on the cached features, the whole fit of a round (every epoch, model
selection, early stopping) one compiled program (`fit_head`), and the S seeds of a table cell
one vmapped program (`fit_head_group`). Scoring is the head applied to the cached features.

Shape letters: N split rows, P padded labelled capacity, Q = P + B, E epochs, V validation
rows, H hidden, C classes, B batch.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from anchoral_jax import cache, metrics, models
from anchoral_jax.data.tokenize import ENCODE_BUCKETS, TokenizedTexts
from anchoral_jax.models import ModelConfig, Params
from anchoral_jax.training.scoring import forward_rows
from anchoral_jax.training.train import FitResult, TrainConfig, make_optimizer, num_epochs

# One logger for both regimes' progress lines (what log filters and tests/test_progress.py name).
log = logging.getLogger("anchoral_jax.training.regimes")

FEATURE_KEYS = ("cls", "pooled", "mean")


def _minority_f1(preds_N, labels_N, valid_N, minority: tuple[int, ...]) -> jax.Array:
  """Mean F1 over the minority classes on the valid rows (zero_division=0, as `metrics`)."""
  f1s = []
  for c in minority:
    pred_c, true_c = (preds_N == c) & valid_N, (labels_N == c) & valid_N
    tp = (pred_c & true_c).sum()
    den = pred_c.sum() + true_c.sum()  # = 2tp + fp + fn
    f1s.append(jnp.where(den > 0, 2.0 * tp / jnp.maximum(den, 1), 0.0))
  return jnp.mean(jnp.stack(f1s))


@functools.partial(jax.jit, static_argnames=("opt", "batch_size", "minority", "selection",
                                             "patience", "dropout"))
def fit_head(head: Params, x_PxH, y_P, n, perms_ExQ, epochs, key, xval_VxH, yval_V, nval, *,
             opt: optax.GradientTransformation, batch_size: int, minority: tuple[int, ...],
             selection: str, patience: int, dropout: float):
  """Trains the linear head on `n` labelled feature rows (padded to P), the paper's way.

  Epoch e visits rows in the order `perms_ExQ[e, :n]` in batches of `batch_size` (the last one
  padded, weight 0); AdamW as `train.fit`; after every epoch the model-selection score (train
  minority F1 from the epoch's own training-mode predictions, validation minority F1, or
  "last") keeps the best head, and `patience` epochs without improvement stop early.
  Returns (best head, best epoch, epochs run, steps, mean loss per epoch [E], training
  predictions per epoch [E, P]).
  """
  p = x_PxH.shape[0]
  e_max = perms_ExQ.shape[0]
  pos_B = jnp.arange(batch_size)
  valid_P = jnp.arange(p) < n
  nb = (n + batch_size - 1) // batch_size

  def loss_fn(h, x_BxH, y_B, w_B, k):
    if dropout > 0:  # the head's input dropout, as the model's (models.head_dropout)
      keep = jax.random.bernoulli(k, 1.0 - dropout, x_BxH.shape)
      x_BxH = jnp.where(keep, x_BxH / (1.0 - dropout), 0.0)
    logits_BxC = x_BxH @ h["kernel"] + h["bias"][None]
    ce_B = optax.softmax_cross_entropy_with_integer_labels(logits_BxC, y_B)
    return (ce_B * w_B).sum() / jnp.maximum(w_B.sum(), 1.0), logits_BxC

  def batch(b, carry):
    h, opt_state, step, preds_P, loss_sum, perm_Q = carry
    start = b * batch_size
    idx_B = jax.lax.dynamic_slice(perm_Q, (start,), (batch_size,))
    valid_B = start + pos_B < n
    (loss, logits_BxC), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        h, x_PxH[idx_B], y_P[idx_B], valid_B.astype(jnp.float32), jax.random.fold_in(key, step))
    updates, opt_state = opt.update(grads, opt_state, h)
    h = optax.apply_updates(h, updates)
    preds_P = preds_P.at[jnp.where(valid_B, idx_B, p)].set(
        logits_BxC.argmax(-1).astype(jnp.int32), mode="drop")
    return h, opt_state, step + 1, preds_P, loss_sum + loss, perm_Q

  def epoch(carry):
    (h, opt_state, step, best, best_score, best_epoch, since, e, _, losses_E, preds_ExP) = carry
    h, opt_state, step, preds_P, loss_sum, _ = jax.lax.fori_loop(
        0, nb, batch, (h, opt_state, step, jnp.zeros(p, jnp.int32), jnp.zeros(()), perms_ExQ[e]))
    losses_E = losses_E.at[e].set(loss_sum / nb)
    preds_ExP = preds_ExP.at[e].set(preds_P)
    if selection == "train_minority_f1":
      score = _minority_f1(preds_P, y_P, valid_P, minority)
    elif selection == "val_minority_f1":
      vpred_V = (xval_VxH @ h["kernel"] + h["bias"][None]).argmax(-1)
      score = _minority_f1(vpred_V, yval_V, jnp.arange(len(yval_V)) < nval, minority)
    else:  # "last"
      score = jnp.inf
    better = (score > best_score) | (selection == "last")
    best = jax.tree.map(lambda a, b: jnp.where(better, a, b), h, best)
    since = jnp.where(better, 0, since + 1)
    return (h, opt_state, step, best, jnp.where(better, score, best_score),
            jnp.where(better, e, best_epoch), since, e + 1, since >= patience, losses_E,
            preds_ExP)

  init = (head, opt.init(head), jnp.zeros((), jnp.int32), head, jnp.array(-jnp.inf),
          jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32),
          jnp.zeros((), bool), jnp.zeros(e_max), jnp.zeros((e_max, p), jnp.int32))
  out = jax.lax.while_loop(lambda c: (c[7] < epochs) & ~c[8], epoch, init)
  _, _, step, best, _, best_epoch, _, e, _, losses_E, preds_ExP = out
  return best, best_epoch, e, step, losses_E, preds_ExP


def encoder_features(params: Params, cfg: ModelConfig, tok: TokenizedTexts, folder: Path,
                     batch_size: int) -> dict[str, np.ndarray]:
  """The frozen encoder's outputs for every row of `tok` (read-only memmaps), cached.

  One folder (`cache.feature_dir`) with a float32 `<name>.npy` per output; `DONE` is written last, so a
  folder without it (a killed build) is rebuilt. Per-process temporary names: runs of one task
  racing on a cold cache each write whole files, and the last rename wins with equal content.
  """
  if not (folder / "DONE").exists():
    n = len(tok)
    log.info("Encoding %d rows once for the frozen-encoder regime (%s).", n, folder)
    out = forward_rows(params, cfg, tok, np.arange(n), FEATURE_KEYS, batch_size, ENCODE_BUCKETS,
                       progress=n > 2000, desc="encode")
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in out.items():
      cache.save_array(folder / f"{name}.npy", np.asarray(arr, np.float32))
    (folder / "DONE").write_text(f"{n}\n")
  feats = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in FEATURE_KEYS}
  if any(f.shape[0] != len(tok) for f in feats.values()):
    raise ValueError(f"Cached features in {folder} do not match the split ({len(tok)} rows): "
                     "delete that folder and run again.")
  return feats


def _capacity(n: int) -> int:
  """Padded labelled-set size: a power of two >= 128, so `fit_head` compiles once per run when
  the regime knows the run's final labelled size, and a few times otherwise, never per round."""
  return max(128, 1 << (max(n, 1) - 1).bit_length())


@dataclasses.dataclass
class HeadRegime:
  """Frozen encoder, cached features, the linear head trained in one program per round."""

  cfg: ModelConfig
  tc: TrainConfig
  features: dict[str, dict[str, np.ndarray]]  # split -> FEATURE_KEYS -> [N, H]
  num_classes: int
  minority: tuple[int, ...]
  data_seed: int
  dropout_key: jax.Array
  max_labelled: int = 0  # the run's final labelled size (al.budget): one padded shape per run

  def fit(self, init_params, rows, labels, val=None) -> FitResult:
    t0 = time.perf_counter()
    args, static = self._program_inputs(init_params, rows, labels, val)
    out = jax.device_get(fit_head(*args, **static))
    return self._result(init_params, labels, val, out, args[5], time.perf_counter() - t0)

  def _program_inputs(self, init_params, rows, labels, val) -> tuple[tuple, dict]:
    """`fit_head`'s arguments: (arrays and sizes, static settings)."""
    tc = self.tc
    rows = np.asarray(rows, np.int64)
    labels = np.asarray(labels, np.int32)
    n = len(rows)
    p, bs = _capacity(max(n, self.max_labelled)), tc.batch_size
    pooled = self.features["pool"]["pooled"]
    x_PxH = np.zeros((p, pooled.shape[1]), np.float32)
    x_PxH[:n] = pooled[rows]
    y_P = np.zeros(p, np.int32)
    y_P[:n] = labels
    epochs = num_epochs(n, tc)
    # The same data order as `train.fit`: a fresh generator, one permutation per epoch.
    order_rng = np.random.default_rng(self.data_seed)
    perms_ExQ = np.zeros((max(tc.epochs, tc.min_steps), p + bs), np.int32)
    for e in range(epochs):
      perms_ExQ[e, :n] = order_rng.permutation(n)
    vrows, vlabels = val if val is not None else (np.zeros(0, np.int64), np.zeros(0, np.int32))
    nv = len(vrows)
    xval = np.zeros((max(nv, 1), pooled.shape[1]), np.float32)
    xval[:nv] = pooled[np.asarray(vrows, np.int64)]
    yval = np.zeros(max(nv, 1), np.int32)
    yval[:nv] = vlabels
    args = (init_params["classifier"], x_PxH, y_P, n, perms_ExQ, epochs, self.dropout_key, xval,
            yval, nv)
    # The optimiser sees only the head's parameters here: plain AdamW (tc's, unmasked).
    static = dict(opt=make_optimizer(dataclasses.replace(tc, trainable="all")), batch_size=bs,
                  minority=self.minority, selection=tc.model_selection, patience=tc.patience,
                  dropout=models.head_dropout(self.cfg))
    return args, static

  def _result(self, init_params, labels, val, out, epochs: int, seconds: float) -> FitResult:
    head, best_epoch, run, steps, losses_E, preds_ExP = out
    labels = np.asarray(labels, np.int32)
    n = len(labels)
    params = {**init_params, "classifier": head}  # the encoder: the very same arrays
    eye = np.eye(self.num_classes, dtype=np.float32)
    history = []
    for e in range(int(run)):  # the same per-epoch records as `train.fit`
      m = metrics.classification_metrics_from_probs(labels, eye[preds_ExP[e, :n]],
                                                    self.num_classes, self.minority,
                                                    prefix="train/")
      history.append({"epoch": e, "train/loss": float(losses_E[e]),
                      **{k: v for k, v in m.items() if k not in ("train/loss", "train/ece")}})
    if val is not None and len(val[0]):  # the selected head's validation metrics (as train.fit)
      vlogits = self.outputs(params, "pool", val[0], ("logits",))["logits"]
      history[int(best_epoch)].update(metrics.classification_metrics(
          val[1], vlogits, self.num_classes, self.minority, prefix="val/"))
    # Progress: the round is one compiled call, so one line for it (train.fit logs per epoch).
    log.info("head trained: %d/%d epochs run, best epoch %d (train minority F1 %.3f), %.1f s",
             int(run), epochs, int(best_epoch) + 1,
             history[int(best_epoch)].get("train/minority_f1", float("nan")) if history else
             float("nan"), seconds)
    return FitResult(params, int(best_epoch), int(run), int(steps), history)

  def group_key(self, rows) -> tuple:
    """Fits whose keys are equal can run as one vmapped program (`fit_group`): the same
    static settings and the same array shapes (labelled size, padding, feature width)."""
    n = len(rows)
    return (type(self), self.tc, self.num_classes, self.minority, models.head_dropout(self.cfg),
            n, _capacity(max(n, self.max_labelled)), self.features["pool"]["pooled"].shape[1])


  def outputs(self, params, split, rows, keys):
    feats = self.features[split]
    rows = np.asarray(rows, np.int64)
    out = {}
    for k in keys:
      if k == "logits":
        h = params["classifier"]
        x = np.asarray(feats["pooled"][rows], np.float32)
        out[k] = x @ np.asarray(h["kernel"], np.float32) + np.asarray(h["bias"], np.float32)
      elif k in ("pooled", "pre_logits"):  # eval mode: no dropout between the two
        out[k] = np.asarray(feats["pooled"][rows], np.float32)
      elif k in feats:
        out[k] = np.asarray(feats[k][rows], np.float32)
      else:
        raise KeyError(f"The head regime caches {list(FEATURE_KEYS)} and logits, not {k!r}.")
    return out


@functools.lru_cache(maxsize=8)
def _fit_head_vmapped(opt, batch_size: int, minority: tuple[int, ...], selection: str,
                      patience: int, dropout: float):
  """`fit_head` over a leading seed axis (one compiled program for S runs); cached per static
  settings so that every round of a process reuses it. Labelled size, epochs and validation
  size are shared (in_axes None): runs in lockstep have equal labelled-set sizes."""
  fn = functools.partial(fit_head.__wrapped__, opt=opt, batch_size=batch_size, minority=minority,
                         selection=selection, patience=patience, dropout=dropout)
  return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, None, 0, None, 0, 0, 0, None)))


def fit_head_group(regimes_: Sequence[HeadRegime], requests: Sequence[tuple]
                   ) -> list[FitResult]:
  """S heads as one vmapped `fit_head`."""
  t0 = time.perf_counter()
  inputs = [r._program_inputs(*req) for r, req in zip(regimes_, requests, strict=True)]
  static = inputs[0][1]
  stacked = []
  for i, first in enumerate(inputs[0][0]):
    if i in (3, 5, 9):  # n, epochs, nv: shared
      if any(a[i] != first for a, _ in inputs):
        raise ValueError("fit_group needs runs with equal labelled and validation sizes.")
      stacked.append(first)
    elif i == 6:  # PRNG keys
      stacked.append(jnp.stack([a[i] for a, _ in inputs]))
    else:
      stacked.append(jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                                  *[a[i] for a, _ in inputs]))
  out = jax.device_get(_fit_head_vmapped(**static)(*stacked))
  seconds = time.perf_counter() - t0
  return [r._result(req[0], req[2], req[3], jax.tree.map(lambda x, s=s: x[s], out),
                    stacked[5], seconds)
          for s, (r, req) in enumerate(zip(regimes_, requests, strict=True))]
