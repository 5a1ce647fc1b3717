"""AnchorAL (or SEALS, RandomSubset, the full pool) around your own model, without the loop.

  import anchoral_jax
  sel = anchoral_jax.Selector(embeddings=emb_NxE, filter="anchoral", strategy="entropy",
                              minority=(1,), subpool_size=2000)
  for step in range(10):
    model = my_train(labelled_rows, labels)
    pick = sel.select(lambda rows: my_logits(model, rows), labelled_rows, labels, query_size=25)
    labels += ask_a_human(pick.rows); labelled_rows += pick.rows

Rows are positions in the pool (row r of `embeddings`). The scoring function takes an int64
array of pool rows and returns their logits [n, C] (enough for random and the uncertainty
strategies), or a dict of outputs when called with the output names a strategy needs
(`strategies.STRATEGY_OUTPUTS`: BADGE needs "logits" and "pooled", FTbertKM "cls"):
`outputs(rows, keys) -> {key: array}`. The same query step as `anchoral run`'s
(`al.selection.select`: the filter, then the strategy) runs underneath, with the same
generators: a `Selector` given a run's settings picks what the run picks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from anchoral_jax.al import filters, strategies
from anchoral_jax.al.selection import Selection
from anchoral_jax.al.selection import select as select_batch
from anchoral_jax.config import (
  PAPER_NUM_ANCHORS,
  PAPER_NUM_NEIGHBOURS,
  PAPER_SEED,
  PAPER_SUBPOOL_SIZE,
)


def _as_outputs(fn: Callable) -> strategies.Outputs:
  """`outputs(rows, keys) -> dict` from either a logits function or a dict-returning one."""
  try:
    n_args = len(inspect.signature(fn).parameters)
  except (TypeError, ValueError):
    n_args = 2
  if n_args >= 2:
    def outputs(rows, keys):
      out = fn(rows, tuple(keys))
      return out if isinstance(out, dict) else {"logits": np.asarray(out)}
  else:
    def outputs(rows, keys):
      out = fn(rows)
      out = out if isinstance(out, dict) else {"logits": out}
      missing = [k for k in keys if k not in out]
      if missing:
        raise ValueError(f"The strategy needs outputs {list(keys)}; the scoring function "
                         f"returned {sorted(out)}: give it a second argument `keys` and return "
                         "a dict with them.")
      return out
  return lambda rows, keys: {k: np.asarray(v, np.float32) for k, v in outputs(rows, keys).items()}


class Selector:
  """A pool filter + a base strategy, with the state they carry between steps.

  `embeddings` (unit-norm or not: the index is cosine) are needed by SEALS and AnchorAL; the
  usearch index is built from them once (or pass a prebuilt `index` whose keys are pool rows,
  e.g. `anchoral_jax.retrieval.index.PoolIndex.load(...)`). `pool_size` is needed only when there are
  no embeddings. Defaults are the paper's (anchoral_jax/config.py).
  """

  def __init__(self, *, filter: str = "anchoral", strategy: str = "entropy",  # noqa: A002
               embeddings: np.ndarray | None = None, index: filters.SearchIndex | None = None,
               pool_size: int | None = None, minority: tuple[int, ...] = (),
               subpool_size: int = PAPER_SUBPOOL_SIZE, num_anchors: int = PAPER_NUM_ANCHORS,
               num_neighbours: int = PAPER_NUM_NEIGHBOURS,
               seals_neighbours: int = PAPER_NUM_NEIGHBOURS, anchor_strategy: str = "kmeans_pp",
               minority_anchor_strategy: str = "", majority_anchor_strategy: str = "",
               sampling: str = "topk", strategy_seed: int = PAPER_SEED,
               subset_seed: int = PAPER_SEED, anchor_seed: int = PAPER_SEED,
               index_threads: int = 0):
    strategies.strategy_kind(strategy)  # fails early on an unknown name
    self.strategy = strategy
    self.config = filters.FilterConfig(
        name=filter, subpool_size=subpool_size, num_anchors=num_anchors,
        num_neighbours=num_neighbours, seals_neighbours=seals_neighbours, sampling=sampling,
        anchor_strategy=anchor_strategy, minority_anchor_strategy=minority_anchor_strategy,
        majority_anchor_strategy=majority_anchor_strategy, minority=tuple(minority))
    if embeddings is not None:
      embeddings = np.asarray(embeddings, np.float32)
      pool_size = len(embeddings)
    if pool_size is None:
      raise ValueError("Give `embeddings` (SEALS and AnchorAL need them) or `pool_size`.")
    self.pool_size = int(pool_size)
    if filters.needs_index(filter):
      if embeddings is None:
        raise ValueError(f"The {filter} filter needs the pool's `embeddings`.")
      if index is None:
        from anchoral_jax.retrieval.index import PoolIndex

        index = PoolIndex.build(embeddings, np.arange(self.pool_size), progress=False,
                                threads=index_threads)
    self.embeddings, self.index = embeddings, index
    self.strategy_rng = np.random.default_rng(strategy_seed)
    self.filter_state = filters.FilterState.initial(subset_seed, anchor_seed)

  def select(self, scores: Callable, labelled_rows, labelled_labels, query_size: int = 25,
             unlabelled=None, exclude=None) -> Selection:
    """The next `query_size` pool rows to label, given the labels so far.

    `scores`: the current model's outputs for pool rows (see the module docstring).
    `unlabelled`: candidate rows (default: every pool row not labelled or excluded);
    `exclude`: rows never to propose (e.g. ones a human skipped, a validation set).
    """
    labelled_rows = np.asarray(labelled_rows, np.int64).ravel()
    labelled_labels = np.asarray(labelled_labels, np.int64).ravel()
    if labelled_rows.shape != labelled_labels.shape:
      raise ValueError(f"{labelled_rows.size} labelled rows but {labelled_labels.size} labels.")
    if labelled_rows.size and (labelled_rows.min() < 0 or labelled_rows.max() >= self.pool_size):
      raise ValueError(f"Labelled rows must be pool rows in [0, {self.pool_size}).")
    exclude = np.union1d(labelled_rows, np.asarray(
        [] if exclude is None else exclude, np.int64))
    if unlabelled is None:
      mask = np.ones(self.pool_size, bool)
      mask[exclude] = False
      unlabelled = np.flatnonzero(mask)
    unlabelled = np.asarray(unlabelled, np.int64)
    outputs = _as_outputs(scores)
    view = filters.PoolView(outputs=outputs, emb_NxE=self.embeddings, index=self.index)
    picked = select_batch(self.config, self.strategy, view, self.filter_state, self.strategy_rng,
                          unlabelled, labelled_rows, labelled_labels, exclude, query_size)
    self.filter_state.seals.mark_labelled(picked.rows)  # SEALS searches from the new picks next
    return picked

  def state_dict(self) -> dict[str, Any]:
    """JSON-able generator and SEALS state, to resume a session (`load_state_dict`)."""
    from anchoral_jax.run import checkpoint

    return {"strategy_rng": checkpoint.rng_state(self.strategy_rng),
            **self.filter_state.to_dict()}

  def load_state_dict(self, d: dict[str, Any]) -> None:
    from anchoral_jax.run import checkpoint

    self.strategy_rng = checkpoint.rng_from_state(d["strategy_rng"])
    self.filter_state = filters.FilterState.from_dict(d)


def select(scores: Callable, labelled_rows, labelled_labels, *, query_size: int = 25,
           **selector_kwargs) -> Selection:
  """One step of `Selector(**selector_kwargs).select(...)` (a fresh state: for repeated steps
  keep a Selector, whose generators and SEALS union carry over)."""
  return Selector(**selector_kwargs).select(scores, labelled_rows, labelled_labels, query_size)
