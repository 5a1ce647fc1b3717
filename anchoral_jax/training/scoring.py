"""Pool scoring: one jitted forward over fixed-shape, length-bucketed batches.

Shape letters: B batch, L bucketed length, C classes, H hidden.

One forward pass returns every output a strategy needs (logits for uncertainty, `pooled` for
BADGE, `cls` for FTbertKM, `mean` for sentence embeddings), so scoring a subpool costs one pass.
Batches always have `batch_size` rows (the last one padded and masked) and one of a few bucket
lengths, so the jitted function compiles once per bucket and never per pool size. On one CPU
device a batch above 32 rows is computed as a loop over 32-row slices inside that one program
(`micro_batch`: XLA's CPU backend is faster per text at 32 rows).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np

from anchoral_jax import models, parallel
from anchoral_jax.data.tokenize import DEFAULT_BUCKETS, TokenizedTexts
from anchoral_jax.models import ModelConfig, Params

# Rows per scoring batch when `train.eval_batch_size` is 0, by JAX backend. CPU: measured
# (bench/RESULTS.md, "Eval batch per platform"): per text, batch 32 beat 64, 128 and 256 (a
# larger batch pads more rows to its longest text and leaves the caches). Other backends keep
# the former default, 256, unmeasured here (no GPU/TPU was lent).
EVAL_BATCH = {"cpu": 32}
EVAL_BATCH_OTHER = 256


def eval_batch_size(requested: int = 0, platform: str | None = None) -> int:
  """`requested` rows, or with 0 the default batch of `platform` (default: the backend in use;
  EVAL_BATCH)."""
  if requested > 0:
    return requested
  return EVAL_BATCH.get(platform or jax.default_backend(), EVAL_BATCH_OTHER)


# XLA's CPU backend scores a text fastest in batches of about 32 rows (MiniLM, 2026-12-05: 139
# texts/s at 32, 90 at 256, bench/RESULTS.md): a large batch's activations leave the caches. So
# on one CPU device a larger batch runs as a loop over 32-row slices inside its one compiled
# program (`predict`'s `micro`, chosen by `micro_batch`); batch sizes, buckets and outputs stay
# the caller's. Not on accelerators, nor on a multi-device mesh (the slices would not be split).
CPU_MICRO_BATCH = 32


def micro_batch(batch_size: int) -> int:
  """`predict`'s `micro` for batches of `batch_size` rows on this backend (0: whole)."""
  m = CPU_MICRO_BATCH
  if jax.default_backend() != "cpu" or parallel.num_devices() > 1:
    return 0
  return m if batch_size > m and batch_size % m == 0 else 0


@functools.partial(jax.jit, static_argnames=("cfg", "keys", "micro"))
def predict(params: Params, ids_BxL: jax.Array, mask_BxL: jax.Array, *, cfg: ModelConfig,
            keys: tuple[str, ...] = ("logits",), micro: int = 0) -> dict[str, jax.Array]:
  """Eval-mode forward (dropout off) returning the requested outputs; `micro` > 0: computed as a
  loop over slices of `micro` rows (the same outputs; `micro_batch`)."""

  def forward(ids_bxL, mask_bxL):
    logits_bxC, out = models.classifier(cfg).apply({"params": params}, ids_bxL, mask_bxL,
                                                   deterministic=True)
    out = {"logits": logits_bxC, **out}
    return {k: out[k] for k in keys}

  b, length = ids_BxL.shape
  if not micro or b <= micro:
    return forward(ids_BxL, mask_BxL)
  out = jax.lax.map(lambda x: forward(*x), (ids_BxL.reshape(b // micro, micro, length),
                                            mask_BxL.reshape(b // micro, micro, length)))
  return {k: v.reshape((b,) + v.shape[2:]) for k, v in out.items()}


def forward_rows(params: Params, cfg: ModelConfig, tok: TokenizedTexts, rows: np.ndarray,
                 keys: Sequence[str] = ("logits",), batch_size: int = 0,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, progress: bool = False,
                 desc: str = "score") -> dict[str, np.ndarray]:
  """Runs `predict` over `rows` of `tok`; results are float32 numpy arrays in `rows` order.
  `batch_size` 0: the backend's default (`eval_batch_size`)."""
  from tqdm.auto import tqdm

  from anchoral_jax.parallel import show_bars

  rows = np.asarray(rows, np.int64)
  keys = tuple(keys)
  batch_size = parallel.round_batch(eval_batch_size(batch_size))
  micro = micro_batch(batch_size)
  results: dict[str, np.ndarray] = {}

  def store(chunk: np.ndarray, out_dev: dict[str, jax.Array]) -> None:
    for k, v in parallel.to_host(out_dev).items():
      if k not in results:
        results[k] = np.empty((len(rows),) + v.shape[1:], np.float32)
      results[k][chunk] = v[:len(chunk)]

  # Visit positions sorted by length (few pad tokens), scatter outputs back to `rows` order.
  # One batch stays in flight: batch i+1 is gathered and dispatched before batch i is fetched,
  # so the device never waits for the host. A new bucket length may compile, so the batch in
  # flight is fetched first: compilation then never overlaps device work, and the compile
  # clock (`parallel.compile_clock`) measures it alone.
  order = np.argsort(tok.lengths_N[rows], kind="stable")
  pending = None  # (chunk, device outputs, bucket length)
  for s in tqdm(range(0, len(order), batch_size), disable=not show_bars(progress), desc=desc,
                unit="batch"):
    chunk = order[s:s + batch_size]
    ids, mask = tok.batch(rows[chunk], buckets, batch_size)
    if pending is not None and pending[2] != ids.shape[1]:
      store(*pending[:2])
      pending = None
    ids, mask = parallel.shard_batch((ids, mask))
    out_dev = predict(params, ids, mask, cfg=cfg, keys=keys, micro=micro)
    if pending is not None:
      store(*pending[:2])
    pending = (chunk, out_dev, ids.shape[1])
  if pending is not None:
    store(*pending[:2])
  if not results:  # no rows: output widths unknown
    return {k: np.zeros((0,), np.float32) for k in keys}
  return results
