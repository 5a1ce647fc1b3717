"""One query step: the pool filter, then the base strategy. What `anchoral run` (al/loop.py),
`anchoral label` (label/steps.py) and the library's `Selector` (api.py) all call; no JAX here.

Rows are pool rows. `view.outputs(rows, keys)` gives the model's outputs for the rows a filter
or strategy reads (the loop's come from the trained classifier, the Selector's from the user's
scoring function).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from anchoral_jax.al import filters, strategies


@dataclasses.dataclass
class Selection:
  rows: np.ndarray  # the picks, pool rows, in the strategy's order
  subpool: np.ndarray  # the rows the strategy chose from
  info: dict[str, Any]  # filter/strategy statistics; AnchorAL's anchors as "anchor_rows"
  timers: dict[str, float]  # seconds per step (compilation excluded, as "compile")


def select(fc: filters.FilterConfig, strategy: str, view: filters.PoolView,
           filter_state: filters.FilterState, strategy_rng: np.random.Generator,
           unlabelled: np.ndarray, labelled_rows: np.ndarray, labelled_labels: np.ndarray,
           exclude: np.ndarray, query_size: int, timers: dict[str, float] | None = None,
           info: dict[str, Any] | None = None) -> Selection:
  """`query_size` rows of `unlabelled` to label next. Advances `filter_state`'s and
  `strategy_rng`'s generators; the caller marks the picks labelled for SEALS
  (`filter_state.seals.mark_labelled`) once they are. `exclude`: rows never proposed."""
  timers = {} if timers is None else timers
  info = {} if info is None else info
  subpool = filters.build_subpool(fc, view, filter_state, unlabelled, labelled_rows,
                                  labelled_labels, exclude=exclude, timers=timers, info=info)
  rows = strategies.acquire(strategy, view.outputs, subpool, unlabelled, query_size,
                            strategy_rng, timers, info)
  return Selection(rows, subpool, info, timers)
