"""Pool filters: build the subpool S the base strategy chooses from (SPEC.md §2).

Host-side bookkeeping on uid arrays: random subsets, SEALS' growing neighbourhood, and
AnchorAL's anchors -> neighbours -> scored subpool. Everything random takes an explicit
`np.random.Generator`.

Shape letters: L labelled items (of one class when selecting anchors), E embedding dim,
A anchors, K neighbours per anchor, U unique retrieved uids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from anchoral_jax.al.clustering import closest_distinct, kmeans, kmeans_pp, standardise
from anchoral_jax.al.strategies import topk
from anchoral_jax.config import (
  PAPER_NUM_ANCHORS,
  PAPER_NUM_NEIGHBOURS,
  PAPER_SEED,
  PAPER_SUBPOOL_SIZE,
)

ANCHOR_STRATEGIES = ("kmeans_pp", "random", "kmeans", "entropy")
SUBPOOL_SAMPLING = ("topk", "softmax")


class SearchIndex(Protocol):
  """What the filters need from an index (`anchoral_jax.retrieval.index.PoolIndex` satisfies it)."""

  def search(self, queries_QxE: np.ndarray, k: int,
             exclude_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...


def _uids(x: Iterable[int] | np.ndarray | None) -> np.ndarray:
  if x is None:
    return np.zeros((0,), np.int64)
  return np.asarray(x if isinstance(x, np.ndarray) else list(x), dtype=np.int64).ravel()


# ------------------------------------------------------------------------------- random subset
def random_subset(unlabelled_uids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """A fresh uniform sample of `size` unlabelled uids (all of them if fewer), sorted by uid.

  Sorting makes S canonical: the base strategy's tie-breaks do not depend on draw order.
  """
  pool = _uids(unlabelled_uids)
  if size >= pool.size:
    return np.sort(pool)
  return np.sort(rng.choice(pool, size=int(size), replace=False))


# ------------------------------------------------------------------------------- anchors
def select_anchors(emb_LxE: np.ndarray, k: int, strategy: str, rng: np.random.Generator,
                   scores_L: np.ndarray | None = None) -> np.ndarray:
  """Indices (into L) of up to k anchors for one class; all of L if |L| <= k.

  kmeans_pp (default): greedy k-means++ seeding on the retrieval embeddings.
  random: uniform without replacement.
  kmeans: standardise -> k-means -> the real point with the highest dot product per centre
    (the official `_get_nearest_to_centers` on standardised features), distinct.
  entropy: the k highest `scores_L` (predictive entropy under the just-trained model).
  """
  if strategy not in ANCHOR_STRATEGIES:
    raise ValueError(
        f"Unknown anchor strategy {strategy!r}; known: {', '.join(ANCHOR_STRATEGIES)}.")
  n = len(scores_L) if strategy == "entropy" and scores_L is not None else len(emb_LxE)
  if n <= k:
    return np.arange(n, dtype=np.int64)
  if strategy == "kmeans_pp":
    return kmeans_pp(np.asarray(emb_LxE), k, rng)
  if strategy == "random":
    return rng.choice(n, size=k, replace=False).astype(np.int64)
  if strategy == "kmeans":
    z_LxE = standardise(emb_LxE)
    return closest_distinct(kmeans(z_LxE, k, rng), z_LxE)
  if scores_L is None:
    raise ValueError("Anchor strategy 'entropy' needs scores_L (entropy of each labelled item).")
  return topk(scores_L, k)


def anchors_per_class(labelled_uids: np.ndarray, labelled_labels: np.ndarray,
                      emb_lookup: Callable[[np.ndarray], np.ndarray], num_anchors: int,
                      strategy_for_class: Callable[[int], str], rng: np.random.Generator,
                      scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Anchors for every class present in L, in sorted class order; absent classes get none.

  `rng` is the ONE persistent anchor generator (seed 42 in the paper), advanced across classes
  and rounds ("dynamic anchors"): pass the same object every round and checkpoint its state.
  `strategy_for_class(c)` lets minority and majority classes use different anchor strategies
  (the official config's QUIRK uses one for all). `scores` aligns with `labelled_uids` and is
  needed only by the 'entropy' strategy. `emb_lookup(uids) -> [n, E]` is called only when a
  strategy needs embeddings and the class has more than `num_anchors` items.
  Returns (anchor_uids, anchor_classes), both int64, grouped by class.
  """
  uids_L = _uids(labelled_uids)
  labels_L = np.asarray(labelled_labels, dtype=np.int64).ravel()
  if uids_L.shape != labels_L.shape:
    raise ValueError(f"{uids_L.size} labelled uids but {labels_L.size} labels.")
  if scores is not None:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.shape != uids_L.shape:
      raise ValueError(f"scores has {scores.size} entries for {uids_L.size} labelled uids.")
  out_uids, out_classes = [], []
  for c in np.unique(labels_L):
    rows = np.flatnonzero(labels_L == c)
    strategy = strategy_for_class(int(c))
    if strategy not in ANCHOR_STRATEGIES:
      raise ValueError(
          f"Unknown anchor strategy {strategy!r} for class {int(c)}; known: "
          f"{', '.join(ANCHOR_STRATEGIES)}.")
    if strategy == "entropy" and scores is None:
      raise ValueError(f"Anchor strategy 'entropy' (class {int(c)}) needs `scores` aligned with "
                       "labelled_uids: score the labelled set with the just-trained model.")
    needs_emb = strategy in ("kmeans_pp", "kmeans") and rows.size > num_anchors
    emb = np.asarray(emb_lookup(uids_L[rows])) if needs_emb else np.empty((rows.size, 0))
    picked = select_anchors(emb, num_anchors, strategy, rng,
                            scores[rows] if scores is not None else None)
    out_uids.append(uids_L[rows[picked]])
    out_classes.append(np.full(picked.size, c, np.int64))
  if not out_uids:
    return np.zeros((0,), np.int64), np.zeros((0,), np.int64)
  return np.concatenate(out_uids), np.concatenate(out_classes)


# ------------------------------------------------------------------------------- AnchorAL subpool
def anchoral_subpool(index: SearchIndex, anchor_emb_AxE: np.ndarray, num_neighbours: int,
                     exclude_uids: np.ndarray | None, subpool_size: int,
                     rng: np.random.Generator | None = None, sampling: str = "topk"
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
  """AnchorAL's subpool: neighbours of the anchors, scored by mean similarity to them.

  score(u) = 1 - mean cosine distance over the anchors that retrieved u (not over all anchors,
  no count bonus; as the official groupby-mean). S = the top min(subpool_size, U) by score
  (ties to the lower uid), or with sampling="softmax" (the unused variant) a draw without
  replacement with probabilities softmax(score). Labelled uids never enter S: they are passed
  as `exclude_uids` to the search. Returns (subpool_uids, subpool_scores) sorted by score, best
  first, and stats {num_anchors, num_retrieved (anchor-neighbour pairs), num_unique}.
  """
  if sampling not in SUBPOOL_SAMPLING:
    raise ValueError(f"Unknown subpool sampling {sampling!r}; known: {', '.join(SUBPOOL_SAMPLING)}.")
  anchors = np.asarray(anchor_emb_AxE, dtype=np.float32)
  num_a = 0 if anchors.size == 0 else (1 if anchors.ndim == 1 else anchors.shape[0])
  stats = {"num_anchors": num_a, "num_retrieved": 0, "num_unique": 0}
  if num_a == 0:
    return np.zeros((0,), np.int64), np.zeros((0,), np.float64), stats
  uids_AxK, dist_AxK = index.search(anchors, num_neighbours, exclude_uids)
  ok = uids_AxK >= 0
  found_R, dist_R = uids_AxK[ok], dist_AxK[ok].astype(np.float64)
  uniq_U, inv_R = np.unique(found_R, return_inverse=True)
  count_U = np.bincount(inv_R, minlength=uniq_U.size)
  score_U = 1.0 - np.bincount(inv_R, weights=dist_R, minlength=uniq_U.size) / np.maximum(count_U, 1)
  stats.update(num_retrieved=int(found_R.size), num_unique=int(uniq_U.size))
  # Best first; np.unique sorted the uids, so a stable sort sends ties to the lower uid.
  order_U = np.argsort(-score_U, kind="stable")
  size = min(int(subpool_size), uniq_U.size)
  if sampling == "topk" or size == uniq_U.size:
    keep = order_U[:size]
  else:
    if rng is None:
      raise ValueError("sampling='softmax' needs an rng.")
    p_U = np.exp(score_U - score_U.max())
    drawn = rng.choice(uniq_U.size, size=size, replace=False, p=p_U / p_U.sum())
    keep = drawn[np.argsort(-score_U[drawn], kind="stable")]
  return uniq_U[keep], score_U[keep], stats


# ------------------------------------------------------------------------------- SEALS
class SealsState:
  """SEALS' growing subpool: the union of all neighbours retrieved so far, minus labelled ids.

  Round 0 queries every labelled id; later rounds query only the ids labelled last round
  (official `SEALSStrategy.to_search`). No cap: S grows ~k * query_size per round, which is
  why SEALS gets slow. Plain lists in `to_dict()` so checkpoints stay params-free JSON.
  """

  def __init__(self, subpool_uids: Iterable[int] = (), next_queries: Iterable[int] | None = None):
    self.subpool: set[int] = {int(u) for u in subpool_uids}
    self.next_queries: list[int] | None = (
        None if next_queries is None else [int(u) for u in next_queries])

  def query_uids(self, labelled_uids: np.ndarray) -> np.ndarray:
    """Uids to search from this round: all of L at first, then last round's labels."""
    if self.next_queries is None:
      return _uids(labelled_uids)
    return np.asarray(self.next_queries, dtype=np.int64)

  def add_retrieved(self, uids: np.ndarray) -> None:
    uids = _uids(uids)
    self.subpool.update(int(u) for u in uids[uids >= 0])

  def mark_labelled(self, new_uids: np.ndarray) -> None:
    """Record this round's labels: drop them from S and search from them next round."""
    new = [int(u) for u in _uids(new_uids)]
    self.subpool.difference_update(new)
    self.next_queries = new

  def subpool_uids(self, labelled_uids: np.ndarray | None = None) -> np.ndarray:
    """S as sorted int64 uids, minus `labelled_uids` if given."""
    s = np.fromiter(self.subpool, dtype=np.int64, count=len(self.subpool))
    if labelled_uids is not None:
      s = s[~np.isin(s, _uids(labelled_uids))]
    return np.sort(s)

  def to_dict(self) -> dict[str, Any]:
    return {"subpool": sorted(self.subpool), "next_queries": self.next_queries}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> SealsState:
    return cls(d.get("subpool", ()), d.get("next_queries"))

  def __eq__(self, other: object) -> bool:
    return (isinstance(other, SealsState) and self.subpool == other.subpool
            and self.next_queries == other.next_queries)


def seals_subpool(index: SearchIndex, state: SealsState, labelled_uids: np.ndarray,
                  emb_lookup: Callable[[np.ndarray], np.ndarray], num_neighbours: int
                  ) -> tuple[np.ndarray, dict[str, int]]:
  """One SEALS round: search from this round's queries, grow `state`, return S and stats.

  Call `state.mark_labelled(new_uids)` after the base strategy has labelled its picks.
  """
  labelled = _uids(labelled_uids)
  queries = state.query_uids(labelled)
  retrieved = 0
  if queries.size:
    uids_QxK, _ = index.search(np.asarray(emb_lookup(queries)), num_neighbours, labelled)
    retrieved = int((uids_QxK >= 0).sum())
    state.add_retrieved(uids_QxK)
  subpool = state.subpool_uids(labelled)
  return subpool, {"num_queries": int(queries.size), "num_retrieved": retrieved,
                   "num_unique": int(subpool.size)}


# ------------------------------------------------------------------------------- dispatch
FILTERS = ("none", "randomsubset", "seals", "anchoral")
# The filters that retrieve neighbours of labelled rows: they need the pool's embeddings and the
# usearch index (SPEC.md §4). The one place that says which.
RETRIEVAL_FILTERS = frozenset({"seals", "anchoral"})


def needs_index(name: str) -> bool:
  """Whether the filter `name` queries the pool's embeddings and ANN index."""
  return name in RETRIEVAL_FILTERS


@dataclasses.dataclass(frozen=True)
class FilterConfig:
  """One pool filter and its settings (the config's al.filter/al.subpool_size, anchoral.*,
  seals.*; defaults are the config's, anchoral_jax/config.py)."""

  name: str = "anchoral"
  subpool_size: int = PAPER_SUBPOOL_SIZE
  num_anchors: int = PAPER_NUM_ANCHORS
  num_neighbours: int = PAPER_NUM_NEIGHBOURS  # AnchorAL: per anchor
  seals_neighbours: int = PAPER_NUM_NEIGHBOURS
  sampling: str = "topk"
  anchor_strategy: str = "kmeans_pp"
  minority_anchor_strategy: str = ""  # "" = anchor_strategy
  majority_anchor_strategy: str = ""
  minority: tuple[int, ...] = ()

  def __post_init__(self):
    for field, value, valid in (("filter", self.name, FILTERS),
                                ("sampling", self.sampling, SUBPOOL_SAMPLING),
                                ("anchor_strategy", self.anchor_strategy, ANCHOR_STRATEGIES)):
      if value not in valid:
        raise ValueError(f"Unknown {field} {value!r}; choose from {list(valid)}.")

  @classmethod
  def from_config(cls, c, minority: Iterable[int]) -> FilterConfig:
    return cls(name=c.al.filter, subpool_size=c.al.subpool_size,
               num_anchors=c.anchoral.num_anchors, num_neighbours=c.anchoral.num_neighbours,
               seals_neighbours=c.seals.num_neighbours, sampling=c.anchoral.sampling,
               anchor_strategy=c.anchoral.anchor_strategy,
               minority_anchor_strategy=c.anchoral.minority_anchor_strategy,
               majority_anchor_strategy=c.anchoral.majority_anchor_strategy,
               minority=tuple(int(k) for k in minority))

  def anchor_strategy_for(self, cls: int) -> str:
    if cls in self.minority and self.minority_anchor_strategy:
      return self.minority_anchor_strategy
    if cls not in self.minority and self.majority_anchor_strategy:
      return self.majority_anchor_strategy
    return self.anchor_strategy

  def filters(self, num_unlabelled: int) -> bool:
    """Whether the filter narrows a pool of `num_unlabelled` rows (RandomSubset and AnchorAL
    hand over the whole pool when it does not exceed the cap)."""
    if self.name in ("randomsubset", "anchoral"):
      return num_unlabelled > self.subpool_size
    return self.name == "seals"


@dataclasses.dataclass
class FilterState:
  """What the filters carry from round to round: their generators (one each, persistent, as
  the paper's) and SEALS' growing subpool. Checkpointed with the run."""

  subset_rng: np.random.Generator
  anchor_rng: np.random.Generator
  seals: SealsState

  @classmethod
  def initial(cls, subset_seed: int = PAPER_SEED, anchor_seed: int = PAPER_SEED) -> FilterState:
    return cls(np.random.default_rng(subset_seed), np.random.default_rng(anchor_seed),
               SealsState())

  def to_dict(self) -> dict[str, Any]:
    """JSON-able (the run's checkpoint meta and a labelling session's state use these keys)."""
    from anchoral_jax.run.checkpoint import rng_state

    return {"subset_rng": rng_state(self.subset_rng), "anchor_rng": rng_state(self.anchor_rng),
            "seals": self.seals.to_dict()}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> FilterState:
    from anchoral_jax.run.checkpoint import rng_from_state

    return cls(rng_from_state(d["subset_rng"]), rng_from_state(d["anchor_rng"]),
               SealsState.from_dict(d["seals"]))


@dataclasses.dataclass
class PoolView:
  """What a filter reads about the pool besides row numbers: model outputs of pool rows
  (`outputs(rows, keys) -> {key: array}`, for entropy anchors), the retrieval embeddings
  (row r = pool row r) and their index (keys = pool rows). The last two only for SEALS and
  AnchorAL."""

  outputs: Callable[[np.ndarray, tuple[str, ...]], dict[str, np.ndarray]]
  emb_NxE: np.ndarray | None = None
  index: SearchIndex | None = None

  def emb_lookup(self, rows: np.ndarray) -> np.ndarray:
    return self.emb_NxE[np.asarray(rows, np.int64)]


def build_subpool(fc: FilterConfig, view: PoolView, state: FilterState, unlabelled: np.ndarray,
                  labelled_rows: np.ndarray, labelled_labels: np.ndarray,
                  exclude: np.ndarray | None = None, timers: dict[str, float] | None = None,
                  info: dict[str, Any] | None = None) -> np.ndarray:
  """The pool filter `fc.name`: the pool rows the base strategy may pick from.

  `unlabelled` are the candidate rows; `exclude` the rows retrieval must never return (the
  labelled rows and any held-out validation rows; default: `labelled_rows`). Advances the
  generators in `state` (and SEALS' union). `timers` gets "anchor_scoring", "anchors" and
  "search" seconds; `info` the filter's statistics (and AnchorAL's anchors).
  """
  from anchoral_jax.al.strategies import entropy
  from anchoral_jax.parallel import timed

  info = {} if info is None else info
  unlabelled = np.asarray(unlabelled, np.int64)
  labelled_rows = np.asarray(labelled_rows, np.int64)
  exclude = labelled_rows if exclude is None else np.asarray(exclude, np.int64)
  if fc.name == "none" or not fc.filters(len(unlabelled)):
    return unlabelled
  if fc.name == "randomsubset":
    return random_subset(unlabelled, fc.subpool_size, state.subset_rng)
  if view.index is None or view.emb_NxE is None:
    raise ValueError(f"The {fc.name} filter needs the pool's retrieval embeddings and index.")
  if fc.name == "seals":
    with timed(timers, "search"):
      rows, stats = seals_subpool(view.index, state.seals, exclude, view.emb_lookup,
                                  fc.seals_neighbours)
    info.update(stats)
    return np.asarray(rows, np.int64)
  scores = None
  classes = np.unique(labelled_labels)
  if any(fc.anchor_strategy_for(int(k)) == "entropy" for k in classes):
    with timed(timers, "anchor_scoring"):
      logits = view.outputs(labelled_rows, ("logits",))["logits"]
      info["rows_scored"] = info.get("rows_scored", 0) + len(labelled_rows)
      scores = entropy(logits)
  with timed(timers, "anchors"):
    anchor_rows, anchor_cls = anchors_per_class(
        labelled_rows, labelled_labels, view.emb_lookup, fc.num_anchors,
        fc.anchor_strategy_for, state.anchor_rng, scores=scores)
  with timed(timers, "search"):
    rows, _, stats = anchoral_subpool(
        view.index, view.emb_lookup(anchor_rows), fc.num_neighbours, exclude, fc.subpool_size,
        rng=state.anchor_rng, sampling=fc.sampling)
  info.update(stats)
  info["anchor_rows"] = np.asarray(anchor_rows)
  info["anchor_classes"] = np.asarray(anchor_cls)
  return np.asarray(rows, np.int64)
