"""Pool scoring: one jitted forward over fixed-shape, length-bucketed batches.

Shape letters: B batch, L bucketed length, C classes, H hidden.

One forward pass returns every output a strategy needs (logits for uncertainty, `pooled` for
BADGE, `cls` for FTbertKM, `mean` for sentence embeddings), so scoring a subpool costs one pass.
Batches always have `batch_size` rows (the last one padded and masked) and one of a few bucket
lengths, so the jitted function compiles once per bucket and never per pool size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import numpy as np

from anchoral_jax import parallel
from anchoral_jax.models.bert import BertClassifier, BertConfig, Params
from anchoral_jax.tokenize import DEFAULT_BUCKETS, TokenizedTexts


@functools.partial(jax.jit, static_argnames=("cfg", "keys"))
def predict(params: Params, ids_BxL: jax.Array, mask_BxL: jax.Array, *, cfg: BertConfig,
            keys: tuple[str, ...] = ("logits",)) -> dict[str, jax.Array]:
  """Eval-mode forward (dropout off) returning the requested outputs."""
  logits_BxC, out = BertClassifier(cfg).apply({"params": params}, ids_BxL, mask_BxL,
                                              deterministic=True)
  out = {"logits": logits_BxC, **out}
  return {k: out[k] for k in keys}


def forward_rows(params: Params, cfg: BertConfig, tok: TokenizedTexts, rows: np.ndarray,
                 keys: Sequence[str] = ("logits",), batch_size: int = 64,
                 buckets: Sequence[int] = DEFAULT_BUCKETS, progress: bool = False,
                 desc: str = "score") -> dict[str, np.ndarray]:
  """Runs `predict` over `rows` of `tok`; results are float32 numpy arrays in `rows` order."""
  from tqdm.auto import tqdm

  rows = np.asarray(rows, np.int64)
  keys = tuple(keys)
  batch_size = parallel.round_batch(batch_size)
  results: dict[str, np.ndarray] = {}
  # Visit positions sorted by length (few pad tokens), scatter outputs back to `rows` order.
  order = np.argsort(tok.lengths_N[rows], kind="stable")
  for s in tqdm(range(0, len(order), batch_size), disable=not progress, desc=desc, unit="batch"):
    chunk = order[s:s + batch_size]
    ids, mask = parallel.shard_batch(tok.batch(rows[chunk], buckets, batch_size))
    out = parallel.to_host(predict(params, ids, mask, cfg=cfg, keys=keys))
    for k, v in out.items():
      if k not in results:
        results[k] = np.empty((len(rows),) + v.shape[1:], np.float32)
      results[k][chunk] = v[:len(chunk)]
  if not results:  # no rows: output widths unknown
    return {k: np.zeros((0,), np.float32) for k in keys}
  return results
