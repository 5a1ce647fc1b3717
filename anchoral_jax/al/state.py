"""What a run holds: `Setup`, fixed for the whole run, and `ALState`, what advances each round.

Setup loads the task and its test/validation splits, the tokens, the classifier's initial
weights and training regime, and (for SEALS and AnchorAL) the retrieval embeddings and index.
ALState is the labelled set with the round each item was labelled in, the next round and every
generator the filters and the strategy draw from: exactly what a round's checkpoint holds
(SPEC.md §1). Host-side bookkeeping uses pool ROW indices (positions in `task.train`).

Shape letters: N pool rows, E embedding size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from anchoral_jax import cache, models
from anchoral_jax.al import filters
from anchoral_jax.al.stopping import StopState
from anchoral_jax.cache import cached_tokens
from anchoral_jax.data import TextTask, load_task
from anchoral_jax.data.sampling import stratified_rows
from anchoral_jax.data.tokenize import load_tokenizer, resolve_tokenizer_dir
from anchoral_jax.errors import ConfigError
from anchoral_jax.run import checkpoint
from anchoral_jax.training import head as regimes_head
from anchoral_jax.training import regimes

# ---------------------------------------------------------------------------------------------
# Set-up: task, tokens, model, embeddings, index.
# ---------------------------------------------------------------------------------------------

def encoder_id(c: ml_collections.ConfigDict) -> str:
  """Names the encoder in the frozen-encoder cache key: its resolved checkpoint directory, or
  the random preset and its seed."""
  if c.model.pretrained:
    return str(models.resolve_model_dir(c.model.name).resolve())
  return f"random:{c.model.name}:{c.model.seed}"


def uses_index(c: ml_collections.ConfigDict, pool_size: int) -> bool:
  """Whether the run embeds its pool and builds the index: a retrieval filter, except AnchorAL
  on a pool that cannot exceed its cap (build_subpool hands the whole unlabelled pool over; a
  warning says so)."""
  fc = filters.FilterConfig.from_config(c, ())
  return filters.needs_index(fc.name) and fc.filters(pool_size - c.al.initial_size)


def shared_files(c: ml_collections.ConfigDict, task: TextTask | None = None) -> set[Path]:
  """The shared cache files a run of `c` reads or builds (`cache.shared_files`), without
  building any: loads the task (unless given), resolves the tokenizer, reads the model config."""
  task = task or load_task(c.data.name, **c.data.kwargs.to_dict())
  model_cfg = None
  if c.train.trainable == "head":
    model_cfg = (models.load_config(c.model.name, task.num_classes, c.model.dtype,
                                    c.model.pooling) if c.model.pretrained
                 else models.preset(c.model.name, task.num_classes, c.model.dtype,
                                    c.model.pooling))
  tokenizer_dir = resolve_tokenizer_dir(c.model.tokenizer or c.model.name, cache.root(c))
  pool_size = len(task.train) - max(c.data.val_size, 0)
  return cache.shared_files(c, task, tokenizer_dir, encoder_id(c), model_cfg,
                            uses_index(c, pool_size))


class Setup:
  """Everything a run needs that does not change across rounds."""

  def __init__(self, config: ml_collections.ConfigDict, task: TextTask | None = None):
    """`task`: the config's dataset when already built (the seeds of a cell share it)."""
    c = config
    self.task: TextTask = (task if task is not None
                           else load_task(c.data.name, **c.data.kwargs.to_dict()))
    task = self.task
    rng = np.random.default_rng(c.data.split_seed)
    self.test_rows = np.arange(len(task.test))
    if c.data.test_size and c.data.test_size < len(task.test):
      self.test_rows = stratified_rows(task.test.labels, c.data.test_size, rng)
    pool_rows = np.arange(len(task.train))
    self.val_rows = np.zeros(0, np.int64)
    if c.data.val_size > 0:  # held out from the pool, never queried, oracle-labelled
      self.val_rows = stratified_rows(task.train.labels, c.data.val_size, rng)
      pool_rows = np.setdiff1d(pool_rows, self.val_rows)
    self.pool_rows = pool_rows
    n_pool = len(pool_rows)
    if c.al.budget > n_pool:
      raise ConfigError(
          f"Budget larger than the pool: al.budget {c.al.budget} (total labels, initial set "
          f"included) > {n_pool} pool items in {task.name}. Lower al.budget.")
    pool_labels = task.train.labels[pool_rows]
    per_minority = sum(min(c.al.initial_per_minority, int((pool_labels == k).sum()))
                       for k in task.minority_classes)
    if per_minority > c.al.initial_size:  # else `initial_set` fails, after embeddings and index
      raise ConfigError(
          f"al.initial_per_minority ({c.al.initial_per_minority}) for each of the "
          f"{len(task.minority_classes)} minority classes of {task.name} asks for "
          f"{per_minority} initial examples > al.initial_size ({c.al.initial_size}). Lower "
          "al.initial_per_minority or raise al.initial_size.")

    cache_dir = cache.root(c)
    model_dir = resolve_tokenizer_dir(c.model.tokenizer or c.model.name, cache_dir)
    tokenizer = load_tokenizer(model_dir)
    self.pool_tok = cached_tokens(cache_dir, model_dir, task.fingerprint("train"), "train",
                                  task.train.text, tokenizer, c.data.max_length)
    self.test_tok = cached_tokens(cache_dir, model_dir, task.fingerprint("test"), "test",
                                  task.test.text, tokenizer, c.data.max_length)

    key = jax.random.key(c.model.seed)
    init_key, self.dropout_key = jax.random.split(key)
    if c.model.pretrained:
      self.cfg, self.init_params = models.load_pretrained(
          c.model.name, task.num_classes, init_key, dtype=c.model.dtype, pooling=c.model.pooling)
    else:
      self.cfg = models.preset(c.model.name, task.num_classes, c.model.dtype, c.model.pooling)
      self.init_params = models.init_params(self.cfg, init_key)
    top = max((int(t.flat_ids_T.max()) for t in (self.pool_tok, self.test_tok)
               if len(t.flat_ids_T)), default=0)
    if top >= self.cfg.vocab_size:  # an out-of-range id embeds as NaN, silently
      raise ConfigError(
          f"The tokenizer ({model_dir}) gives token ids up to {top}, but the model "
          f"({c.model.name}) has vocab_size {self.cfg.vocab_size}: they do not belong together. "
          "Set model.tokenizer to the model's own tokenizer.")
    self.regime = regimes.make(c, task, self.cfg, self.init_params, self.dropout_key,
                               {"pool": self.pool_tok, "test": self.test_tok}, cache_dir,
                               encoder_id(c))

    self.emb_NxE = None
    self.index = None
    if uses_index(c, len(pool_rows)):
      from anchoral_jax.retrieval import prepare

      self.emb_NxE = prepare.embeddings(c, task, encoder_mean=self._shared_mean(c, model_dir))
      self.index = prepare.cached_index(c, task, self.emb_NxE)

  def _shared_mean(self, c, model_dir: Path) -> np.ndarray | None:
    """The pool's mean-pooled outputs of the frozen classifier encoder when it is also the
    retrieval encoder at the same length (the head regime computed them): the retrieval
    embeddings then need no second pass over the pool."""
    if (not isinstance(self.regime, regimes_head.HeadRegime) or not c.model.pretrained
        or c.model.dtype != "float32" or c.index.import_path
        or c.index.embed_max_length != c.data.max_length):
      return None
    if models.resolve_model_dir(c.index.embed_model).resolve() != Path(model_dir).resolve():
      return None
    return self.regime.features["pool"]["mean"]

  @property
  def val(self) -> tuple[np.ndarray, np.ndarray] | None:
    """The held-out validation rows and their labels (None without `data.val_size`)."""
    if not len(self.val_rows):
      return None
    return self.val_rows, self.task.train.labels[self.val_rows]

  def view(self, params) -> filters.PoolView:
    """What the filters read about the pool under the classifier `params`."""
    return filters.PoolView(
        outputs=lambda rows, keys: self.regime.outputs(params, "pool", rows, keys),
        emb_NxE=self.emb_NxE, index=self.index)


# ---------------------------------------------------------------------------------------------
# AL state.
# ---------------------------------------------------------------------------------------------

def initial_set(labels: np.ndarray, rows: np.ndarray, size: int, per_minority: int,
                minority: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
  """Per minority class `per_minority` random items, then uniform non-minority fill to `size`."""
  chosen = []
  for c in sorted(minority):
    cand = rows[labels[rows] == c]
    chosen.append(rng.choice(cand, size=min(per_minority, len(cand)), replace=False))
  chosen = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
  rest = rows[~np.isin(labels[rows], minority)] if minority else rows
  rest = np.setdiff1d(rest, chosen)
  fill = rng.choice(rest, size=size - len(chosen), replace=False)
  return np.concatenate([chosen, fill]).astype(np.int64)


@dataclasses.dataclass
class ALState:
  """Where a run stands: the labelled rows with the round each was labelled in (-1 = the
  initial set), the next round to run, and every generator the filters and the strategy use."""

  labelled_rows: np.ndarray
  labelling_round: np.ndarray
  round: int  # the next round to run
  strategy_rng: np.random.Generator
  filter_state: filters.FilterState
  cumulative_query_s: float = 0.0
  stop: StopState = dataclasses.field(default_factory=StopState)  # the stopping criteria

  @classmethod
  def initial(cls, c, setup: Setup) -> ALState:
    task = setup.task
    rows = initial_set(task.train.labels, setup.pool_rows, c.al.initial_size,
                       c.al.initial_per_minority, tuple(task.minority_classes),
                       np.random.default_rng(c.al.initial_seed))
    return cls(rows, np.full(len(rows), -1, np.int64), 0,
               np.random.default_rng(c.al.strategy_seed),
               filters.FilterState.initial(c.randomsubset.seed, c.anchoral.seed))

  @classmethod
  def from_checkpoint(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> ALState:
    return cls(arrays["labelled_rows"].astype(np.int64),
               arrays["labelling_round"].astype(np.int64), int(meta["round"]),
               checkpoint.rng_from_state(meta["strategy_rng"]),
               filters.FilterState.from_dict(meta),
               float(meta["cumulative_query_s"]), StopState.restore(arrays, meta))

  def arrays(self) -> dict[str, np.ndarray]:
    return {"labelled_rows": self.labelled_rows, "labelling_round": self.labelling_round,
            **self.stop.arrays()}

  def meta(self) -> dict[str, Any]:
    return {"step": self.round, "round": self.round,
            "strategy_rng": checkpoint.rng_state(self.strategy_rng),
            **self.filter_state.to_dict(),
            "cumulative_query_s": self.cumulative_query_s, **self.stop.meta()}

  def commit(self, new_rows: np.ndarray) -> None:
    """Adds a round's picks (labelled in round `self.round + 1`) and moves to the next round."""
    self.filter_state.seals.mark_labelled(new_rows)  # SEALS searches from them next round
    self.labelled_rows = np.concatenate([self.labelled_rows, new_rows])
    self.labelling_round = np.concatenate(
        [self.labelling_round, np.full(len(new_rows), self.round + 1, np.int64)])
    self.round += 1
