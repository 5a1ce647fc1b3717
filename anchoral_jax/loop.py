"""The pool-based AL simulation: `run(config, workdir)` (SPEC.md §1-6).

Each round r = 0..R: reset the classifier to the same initial weights, train on the labelled
set L, test; then (unless r == R) build a subpool with the pool filter, let the base strategy
pick `query_size` items from it, and add their oracle labels with labelling_round = r + 1.
Every round is committed atomically (metrics line, outputs, orbax checkpoint), so a killed run
re-run with the same command continues from the last completed round with identical results.

Host-side bookkeeping uses pool ROW indices (positions in `task.train`); every output file
speaks in uids.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import pandas as pd

from anchoral_jax import (
  checkpoint,
  filters,
  metrics,
  models,
  parallel,
  regimes,
  strategies,
  tracking,
)
from anchoral_jax import config as common
from anchoral_jax import workdir as workdir_lib
from anchoral_jax.cache import cached_tokens
from anchoral_jax.data import TextTask, load_task
from anchoral_jax.data.task import stratified_rows
from anchoral_jax.fileio import write_text_atomic
from anchoral_jax.timing import timed
from anchoral_jax.tokenize import load_tokenizer, resolve_tokenizer_dir

log = logging.getLogger(__name__)

# The registries live with the code that dispatches on them (one source each).
FILTERS = filters.FILTERS
STRATEGY_OUTPUTS = strategies.STRATEGY_OUTPUTS


class ConfigError(ValueError):
  pass


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails early, with the fix in the message, on names and sizes that cannot work.

  Runs before anything expensive (task, tokens, training), so a typo or an impossible size costs
  seconds, not a round of training: several of these used to fail only after training
  (a zero subpool crashed scoring) or, worse, ran to the end with a silently odd setup (a
  negative test_size tested on 2 examples). Checks only the config itself, never the
  filesystem, so `sweep.expand` can run it for every run on any machine.
  """
  from anchoral_jax import tracking, train

  c = config
  al = c.al
  model_dtypes = ("float32", "bfloat16")  # the compute dtypes every model family supports

  def choose(key: str, value, valid) -> None:
    if value not in valid:
      raise ConfigError(f"Unknown {key} {value!r}; choose from {list(valid)}.")

  choose("al.strategy", al.strategy, sorted(STRATEGY_OUTPUTS))
  choose("al.filter", al.filter, FILTERS)
  for key in ("anchor_strategy", "minority_anchor_strategy", "majority_anchor_strategy"):
    val = c.anchoral.get(key)
    if val:  # "" = anchor_strategy for the per-class ones
      choose(f"anchoral.{key}", val, filters.ANCHOR_STRATEGIES)
  choose("anchoral.sampling", c.anchoral.sampling, filters.SUBPOOL_SAMPLING)
  choose("train.model_selection", c.train.model_selection, train.MODEL_SELECTIONS)
  choose("train.trainable", c.train.trainable, train.TRAINABLE)
  choose("model.pooling", c.model.pooling, models.POOLINGS)
  choose("model.dtype", c.model.dtype, model_dtypes)
  if "wandb" in c and c.wandb.get("mode") is not None:
    try:
      tracking.resolve_wandb_mode(c.wandb.mode)
    except ValueError as e:
      raise ConfigError(f"wandb.mode: {e} (aliases: dryrun = offline, run = online).") from e
  if not c.model.pretrained and c.model.name not in models.PRESETS:
    raise ConfigError(f"model.pretrained=False builds a random model from a preset, but "
                      f"model.name {c.model.name!r} is not one; choose from {sorted(models.PRESETS)} "
                      "(or set model.pretrained=True for a checkpoint).")

  positive = {"al.budget": al.budget, "al.query_size": al.query_size,
              "al.initial_size": al.initial_size, "al.subpool_size": al.subpool_size,
              "data.max_length": c.data.max_length, "train.batch_size": c.train.batch_size,
              "train.eval_batch_size": c.train.eval_batch_size}
  if al.filter == "anchoral":
    positive["anchoral.num_anchors"] = c.anchoral.num_anchors
    positive["anchoral.num_neighbours"] = c.anchoral.num_neighbours
  if al.filter == "seals":
    positive["seals.num_neighbours"] = c.seals.num_neighbours
  if al.filter in ("seals", "anchoral"):
    for key in ("embed_max_length", "embed_batch_size", "connectivity", "expansion_add",
                "ef_search"):
      positive[f"index.{key}"] = c.index[key]
  for key, value in positive.items():
    if value <= 0:
      raise ConfigError(f"{key} must be positive (got {value}).")
  non_negative = {"data.test_size": (c.data.test_size, "0 = the full test split"),
                  "data.val_size": (c.data.val_size, "0 = no validation set"),
                  "al.initial_per_minority": (al.initial_per_minority, "per minority class"),
                  "train.epochs": (c.train.epochs, "0 = train.min_steps steps")}
  for key, (value, meaning) in non_negative.items():
    if value < 0:
      raise ConfigError(f"{key} must be >= 0 ({meaning}), got {value}.")
  if c.train.epochs == 0 and c.train.min_steps <= 0:
    raise ConfigError("train.epochs = 0 and train.min_steps <= 0 would never train; raise one.")
  if al.budget <= al.initial_size:
    raise ConfigError(f"al.budget ({al.budget}) is the total labelled size, initial set "
                      f"included: it must exceed al.initial_size ({al.initial_size}).")
  if (al.budget - al.initial_size) % al.query_size:
    raise ConfigError(f"al.budget - al.initial_size ({al.budget} - {al.initial_size}) must be a "
                      f"multiple of al.query_size ({al.query_size}): query rounds = "
                      "(budget - initial_size) / query_size.")
  if c.train.model_selection == "val_minority_f1" and c.data.val_size <= 0:
    raise ConfigError("train.model_selection='val_minority_f1' needs data.val_size > 0.")


# ---------------------------------------------------------------------------------------------
# Set-up: task, tokens, model, embeddings, index.
# ---------------------------------------------------------------------------------------------

class Setup:
  """Everything a run needs that does not change across rounds."""

  def __init__(self, config: ml_collections.ConfigDict):
    c = config
    self.task: TextTask = load_task(c.data.name, **c.data.kwargs.to_dict())
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

    cache = Path(os.path.expanduser(c.data.cache_dir))
    model_dir = resolve_tokenizer_dir(c.model.tokenizer or c.model.name, cache)
    tokenizer = load_tokenizer(model_dir)
    self.pool_tok = cached_tokens(cache, model_dir, task.fingerprint("train"), "train",
                                  task.train.text, tokenizer, c.data.max_length)
    self.test_tok = cached_tokens(cache, model_dir, task.fingerprint("test"), "test",
                                  task.test.text, tokenizer, c.data.max_length)

    key = jax.random.key(c.model.seed)
    init_key, self.dropout_key = jax.random.split(key)
    if c.model.pretrained:
      self.cfg, self.init_params = models.load_pretrained(
          c.model.name, task.num_classes, init_key, dtype=c.model.dtype, pooling=c.model.pooling)
      encoder_id = str(models.resolve_model_dir(c.model.name).resolve())
    else:
      self.cfg = models.preset(c.model.name, task.num_classes, c.model.dtype, c.model.pooling)
      self.init_params = models.init_params(self.cfg, init_key)
      encoder_id = f"random:{c.model.name}:{c.model.seed}"
    top = max((int(t.flat_ids_T.max()) for t in (self.pool_tok, self.test_tok)
               if len(t.flat_ids_T)), default=0)
    if top >= self.cfg.vocab_size:  # an out-of-range id embeds as NaN, silently
      raise ConfigError(
          f"The tokenizer ({model_dir}) gives token ids up to {top}, but the model "
          f"({c.model.name}) has vocab_size {self.cfg.vocab_size}: they do not belong together. "
          "Set model.tokenizer to the model's own tokenizer.")
    self.regime = regimes.make(c, task, self.cfg, self.init_params, self.dropout_key,
                               {"pool": self.pool_tok, "test": self.test_tok}, cache, encoder_id)

    self.emb_NxE = None
    self.index = None
    # AnchorAL never filters a pool that cannot exceed its cap (build_subpool hands the whole
    # unlabelled pool over): no embeddings or index to build then (a warning says so).
    never_filters = len(pool_rows) - c.al.initial_size <= c.al.subpool_size
    if c.al.filter == "seals" or (c.al.filter == "anchoral" and not never_filters):
      from anchoral_jax import prepare  # imported or computed, one cache with `anchoral embed`

      self.emb_NxE = prepare.embeddings(c, task, encoder_mean=self._shared_mean(c, model_dir))
      self.index = prepare.cached_index(c, task, self.emb_NxE)

  def _shared_mean(self, c, model_dir: Path) -> np.ndarray | None:
    """The pool's mean-pooled outputs of the frozen classifier encoder when it is also the
    retrieval encoder at the same length (the head regime computed them): the retrieval
    embeddings then need no second pass over the pool."""
    if (not isinstance(self.regime, regimes.HeadRegime) or not c.model.pretrained
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
               float(meta["cumulative_query_s"]))

  def arrays(self) -> dict[str, np.ndarray]:
    return {"labelled_rows": self.labelled_rows, "labelling_round": self.labelling_round}

  def meta(self) -> dict[str, Any]:
    return {"step": self.round, "round": self.round,
            "strategy_rng": checkpoint.rng_state(self.strategy_rng),
            **self.filter_state.to_dict(),
            "cumulative_query_s": self.cumulative_query_s}

  def commit(self, new_rows: np.ndarray) -> None:
    """Adds a round's picks (labelled in round `self.round + 1`) and moves to the next round."""
    self.filter_state.seals.mark_labelled(new_rows)  # SEALS searches from them next round
    self.labelled_rows = np.concatenate([self.labelled_rows, new_rows])
    self.labelling_round = np.concatenate(
        [self.labelling_round, np.full(len(new_rows), self.round + 1, np.int64)])
    self.round += 1


# ---------------------------------------------------------------------------------------------
# One round.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class FitRequest:
  """One run's training of a round: `regime.fit(*args)`, args = (init_params, rows, labels,
  val)."""

  regime: regimes.Regime
  args: tuple


@dataclasses.dataclass
class FitOutcome:
  result: regimes.FitResult
  timers: dict[str, float]  # "train" and "compile" seconds of the program that trained it
  runs_in_program: int = 1  # > 1: trained with other runs in one vmapped program


def fit_requests(requests: list[FitRequest]) -> list[FitOutcome]:
  """Trains one round of several runs: runs of equal `group_key` (the seeds of a table cell, in
  lockstep: same regime and settings, equal labelled-set sizes) as one vmapped program
  (`regimes.fit_group`), any other one after another."""
  groups: dict[Any, list[int]] = {}
  for i, req in enumerate(requests):
    key = (req.regime.group_key(req.args[1]) if hasattr(req.regime, "group_key")
           else ("alone", i))
    groups.setdefault(key, []).append(i)
  out: list[FitOutcome | None] = [None] * len(requests)
  for members in groups.values():
    timers: dict[str, float] = {}
    with timed(timers, "train"):
      if len(members) > 1:
        fits = regimes.fit_group([requests[i].regime for i in members],
                                 [requests[i].args for i in members])
      else:
        req = requests[members[0]]
        fits = [req.regime.fit(*req.args)]
    for i, fitted in zip(members, fits, strict=True):
      out[i] = FitOutcome(fitted, dict(timers), len(members))
  return out


@dataclasses.dataclass
class RoundResult:
  record: dict[str, Any]  # the metrics line
  new_rows: np.ndarray  # the picks (empty in the last round)
  subpool: np.ndarray | None  # None in the last round (no query)
  info: dict[str, Any]  # the filter's and strategy's statistics (AnchorAL's anchors)


def query(c, setup: Setup, state: ALState, params, timers: dict[str, float],
          info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The pool filter, then the base strategy: (unlabelled, subpool, picks) in pool rows."""
  labels = setup.task.train.labels
  is_unlabelled = np.zeros(len(labels), bool)  # a mask: setdiff1d costs ~1 s at 1M rows
  is_unlabelled[setup.pool_rows] = True
  is_unlabelled[state.labelled_rows] = False
  unlabelled = np.flatnonzero(is_unlabelled)
  view = setup.view(params)
  fc = filters.FilterConfig.from_config(c, setup.task.minority_classes)
  subpool = filters.build_subpool(
      fc, view, state.filter_state, unlabelled, state.labelled_rows,
      labels[state.labelled_rows], exclude=np.concatenate([state.labelled_rows, setup.val_rows]),
      timers=timers, info=info)  # validation rows are never queried
  picks = strategies.acquire(c.al.strategy, view.outputs, subpool, unlabelled, c.al.query_size,
                             state.strategy_rng, timers, info)
  return unlabelled, subpool, picks


def run_round(c, setup: Setup, state: ALState, num_rounds: int,
              fit: FitOutcome | None = None) -> RoundResult:
  """Round `state.round`: train from the initial weights on the labelled set, test, and (unless
  it is the last round) query. Advances the generators in `state`; `state.commit` adds the
  picks. `fit`: the round's training done already (`fit_requests`, several runs at once)."""
  task = setup.task
  labels = task.train.labels
  minority = tuple(task.minority_classes)
  r = state.round
  timers: dict[str, float] = {}
  t_round = time.perf_counter()
  if fit is None:
    fit = fit_requests([FitRequest(setup.regime, (setup.init_params, state.labelled_rows,
                                                  labels[state.labelled_rows], setup.val))])[0]
  else:
    t_round -= sum(fit.timers.values())  # time/round spans the training done before
  fitted = fit.result
  timers.update(fit.timers)
  with timed(timers, "test"):
    logits = setup.regime.outputs(fitted.params, "test", setup.test_rows, ("logits",))["logits"]
    test_m = metrics.classification_metrics(task.test.labels[setup.test_rows], logits,
                                            task.num_classes, minority, prefix="test/")
  counts = metrics.class_counts(labels[state.labelled_rows], task.num_classes)
  record: dict[str, Any] = {
      "round": r, "budget": int(len(state.labelled_rows)), **test_m,
      **{f"labelled/count_class_{k}": int(v) for k, v in enumerate(counts)},
      "labelled/minority_share": float(np.isin(labels[state.labelled_rows], minority).mean()),
      "train/epochs": fitted.epochs_run, "train/best_epoch": fitted.best_epoch,
      "train/steps": fitted.steps,
      **{k: v for k, v in fitted.history[fitted.best_epoch].items() if k != "epoch"},
  }
  info: dict[str, Any] = {}
  new_rows, subpool = np.zeros(0, np.int64), None
  if r < num_rounds:
    t_query = time.perf_counter()
    compile_before = timers.get("compile", 0.0)
    # time/query excludes compilation (time/compile): see `timing.timed`.
    with parallel.compile_clock() as compiled:
      unlabelled, subpool, new_rows = query(c, setup, state, fitted.params, timers, info)
    timers["query"] = time.perf_counter() - t_query - compiled.seconds
    # The part timers took their own compilation out; the query's clock spans them all.
    timers["compile"] = compile_before + compiled.seconds
    state.cumulative_query_s += timers["query"]
    record.update({
        "subpool/size": int(len(subpool)),
        "subpool/minority_share": float(np.isin(labels[subpool], minority).mean())
        if len(subpool) else 0.0,
        "query/minority_share": float(np.isin(labels[new_rows], minority).mean()),
        "pool/minority_share": float(np.isin(labels[unlabelled], minority).mean()),
        # Rows the model scored this round (subpool, entropy anchors): what a full-regime run
        # pushes through the encoder, the cost the paper's Time measures.
        "query/rows_scored": int(info.get("rows_scored", 0)),
        **{f"anchoral/{k}": int(v) for k, v in info.items()
           if k in ("num_anchors", "num_retrieved", "num_unique", "num_queries", "topped_up")},
    })
  timers["round"] = time.perf_counter() - t_round
  if fit.runs_in_program > 1:  # time/train is then the shared program's, for all its runs
    timers["train_runs_in_program"] = fit.runs_in_program
  record.update({f"time/{k}": v for k, v in timers.items()})
  record["time/cumulative_query"] = state.cumulative_query_s
  return RoundResult(record, new_rows, subpool, info)


# ---------------------------------------------------------------------------------------------
# Outputs.
# ---------------------------------------------------------------------------------------------

def _append_jsonl(path: Path, record: dict) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _truncate_jsonl(path: Path, keep_round_below: int) -> None:
  """Drops records of rounds that were not committed (a kill between log and checkpoint).

  A torn last line (a kill or full disk mid-append) goes too, with a warning; a damaged line
  before it fails naming file and line (tracking.read_jsonl, the one JSONL reader).
  """
  if not path.exists():
    return
  records = tracking.read_jsonl(path)
  text = "".join(json.dumps(r) + "\n" for r in records if r.get("round", -1) < keep_round_below)
  if text.encode() != path.read_bytes():  # the same lines re-dumped are the same bytes
    write_text_atomic(path, text)


def _rewind_last_round(workdir: Path, old_rounds: int, primary: bool) -> None:
  """Makes a run that ended after round `old_rounds` (its last: train and test, no query)
  resumable into a longer run: drops the checkpoint committed after that round, so the round
  runs again and queries; the JSONL files are cut back on resume; DONE and summary.json go.
  Idempotent (a kill part-way through is redone by the next try)."""
  ckpt = checkpoint.RoundCheckpointer(workdir / "checkpoints")
  try:
    ckpt.delete(old_rounds + 1)
  finally:
    ckpt.close()
  if primary:
    for name in ("DONE", "summary.json"):
      (workdir / name).unlink(missing_ok=True)


def _write_round_files(workdir: Path, task: TextTask, r: int, result: RoundResult) -> None:
  """The round's subpool and anchors (in uids), appended before the round's checkpoint."""
  if result.subpool is not None:
    _append_jsonl(workdir / "subpools.jsonl",
                  {"round": r, "uids": task.train.uid[result.subpool].tolist()})
  if "anchor_rows" in result.info:
    _append_jsonl(workdir / "anchors.jsonl",
                  {"round": r, "uids": task.train.uid[result.info["anchor_rows"]].tolist(),
                   "classes": np.asarray(result.info["anchor_classes"]).tolist()})


def _write_labelled(path: Path, task: TextTask, state: ALState) -> None:
  df = pd.DataFrame({"uid": task.train.uid[state.labelled_rows],
                     "label": task.train.labels[state.labelled_rows],
                     "labelling_round": state.labelling_round})
  tmp = path.with_suffix(".tmp")
  df.to_parquet(tmp, index=False)
  os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------

def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[dict]:
  """Runs (or resumes) one AL simulation in `workdir`; returns the per-round records.

  Multi-host (jax.distributed): every process runs this with the same config and computes the
  same decisions (same seeds, gathered scores); process 0 alone writes the files and W&B, and
  all take part in the orbax checkpoint. The workdir must be on a shared filesystem.
  Non-primary processes return only the records of the rounds they ran.

  One run per workdir: the primary process holds `<workdir>/.lock` throughout (a second run
  fails with workdir.WorkdirInUseError before writing anything).
  """
  return run_many([config], [workdir])[0]


def run_many(configs: list[ml_collections.ConfigDict], workdirs: list[str | os.PathLike]
             ) -> list[list[dict]]:
  """Runs (or resumes) several simulations in one process, round by round in lockstep: the
  seeds of a table cell (same settings but `data.seed`, `model.seed`, `al.initial_seed`).
  Each round, the runs' classifiers train as one vmapped program (`fit_requests`); every
  run keeps its own workdir, lock, checkpoints, W&B run and files, and ends as it would alone
  (tests/test_seeds.py). Returns each run's records."""
  if len(configs) != len(workdirs):
    raise ValueError(f"{len(configs)} configs for {len(workdirs)} workdirs.")
  paths = [Path(w) for w in workdirs]
  if len({p.resolve() for p in paths}) != len(paths):
    raise ConfigError(f"Two runs on one workdir: {[str(p) for p in paths]}.")
  for c in configs:
    validate(c)
  with contextlib.ExitStack() as stack:
    if parallel.is_primary():
      for p in paths:
        stack.enter_context(workdir_lib.lock(p))
    return _drive([_run_steps(c, p) for c, p in zip(configs, paths, strict=True)])


def _drive(runs: list) -> list[list[dict]]:
  """Advances run generators (`_run_steps`) together: each yields its round's FitRequest and
  receives the FitOutcome; the requests of one round are trained together."""
  results: list[Any] = [None] * len(runs)
  pending: dict[int, FitRequest] = {}

  def advance(i: int, value) -> None:
    try:
      pending[i] = runs[i].send(value)
    except StopIteration as stop:
      pending.pop(i, None)
      results[i] = stop.value

  try:
    for i in range(len(runs)):
      advance(i, None)
    while pending:
      order = sorted(pending)
      outcomes = fit_requests([pending[i] for i in order])
      for i, outcome in zip(order, outcomes, strict=True):
        advance(i, outcome)
    return results
  finally:
    for g in runs:
      g.close()  # a failed run: the others' trackers and checkpointers close too


def _run_steps(config: ml_collections.ConfigDict, workdir: Path):
  """One run, as a generator: yields each round's FitRequest, receives its FitOutcome, and
  returns the run's records (the body of `run`; `_drive` advances it)."""
  c = config
  from anchoral_jax import prepare

  prepare.check_inputs(c)  # models, index files: before any expensive step
  primary = parallel.is_primary()
  workdir.mkdir(parents=True, exist_ok=True)
  hparams = workdir / "hparams.json"
  resolved = json.loads(c.to_json_best_effort())
  try:
    previous = json.loads(hparams.read_text()) if hparams.exists() else resolved
  except ValueError:  # hand-edited into invalid JSON: not the same config
    previous = None

  def flat(d, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
      out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out

  # Keys that only say where things are kept or logged: resuming with them changed cannot mix
  # results (the caches are keyed by content; index.path/view load the same graph).
  def inert(key: str) -> bool:
    return key.startswith("wandb.") or key in ("data.cache_dir", "index.path", "index.view")

  extend_from = None  # the old budget when a run is extended to a larger one
  if previous != resolved:
    old, new = flat(previous or {}), flat(resolved)
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k, "<unset>") !=
               new.get(k, "<unset>")]
    blocking = [k for k in changed if not inert(k)] if previous is not None else ["<all>"]
    if blocking == ["al.budget"] and new["al.budget"] > old["al.budget"]:
      # A larger budget continues the run: its rounds so far are the first rounds of the
      # longer run (same seeds, same picks), except that the old last round did not query.
      extend_from, blocking = int(old["al.budget"]), []
      log.info("%s: extending the run from al.budget %d to %d.", workdir, extend_from,
               c.al.budget)
    elif not blocking:
      log.info("%s: only settings that cannot change results differ (%s); resuming with them "
               "updated.", hparams, ", ".join(changed))
    elif workdir_lib.has_committed_round(workdir):
      diff = ("; ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
                        for k in blocking) if previous is not None
              else f"{hparams} is not valid JSON")
      raise ConfigError(f"{workdir} holds a run with a different config ({diff}). Use a new "
                        "--workdir, or the workdir's config to resume (see its hparams.json).")
    else:
      # No round committed (an earlier try failed in its set-up, or before its first
      # checkpoint): nothing to mix, so the corrected command may take the workdir over.
      log.warning("%s: no round committed yet; replacing the config of an earlier try.", hparams)
  if primary and extend_from is None:
    write_text_atomic(hparams, json.dumps(resolved, indent=2, sort_keys=True))
  if (workdir / "DONE").exists() and extend_from is None:
    log.info("%s is DONE; nothing to do.", workdir)
    return tracking.load_metrics(workdir / "metrics.jsonl")[0]

  setup = Setup(c)  # checks the budget against the pool before an extension touches anything
  if extend_from is not None:
    _rewind_last_round(workdir, (extend_from - c.al.initial_size) // c.al.query_size, primary)
    if primary:  # after the rewind: a kill in between finds the old budget and rewinds again
      write_text_atomic(hparams, json.dumps(resolved, indent=2, sort_keys=True))
  task = setup.task
  # Before any round: checkpoints address pool rows by position (workdir.py).
  workdir_lib.check_data_fingerprint(
      workdir, workdir_lib.data_fingerprint(task, c.data.name), write=primary)
  if primary:  # metrics index classes (`f1/class_1`): what the indices are called
    write_text_atomic(workdir / "classes.json", json.dumps(
        {"class_names": list(task.class_names),
         "minority": [task.class_names[k] for k in task.minority_classes],
         "minority_indices": list(task.minority_classes)}, indent=2) + "\n")
  if (c.al.filter in ("anchoral", "randomsubset")
      and len(setup.pool_rows) - c.al.initial_size <= c.al.subpool_size):
    # build_subpool then hands the whole unlabelled pool to the strategy every round: the run
    # is plain `al.filter=none` whatever the filter says (a tiny pool or a large subpool cap).
    log.warning("al.filter=%s has no effect: the unlabelled pool (%d items after the %d initial "
                "labels) never exceeds al.subpool_size=%d, so every round queries the whole "
                "pool. Lower al.subpool_size to filter.", c.al.filter,
                len(setup.pool_rows) - c.al.initial_size, c.al.initial_size, c.al.subpool_size)
  log.info("%s", task.describe())
  ckpt = checkpoint.RoundCheckpointer(workdir / "checkpoints")
  restored = ckpt.restore_latest()
  if restored is None:
    state = ALState.initial(c, setup)
  else:
    _, arrays, meta = restored
    state = ALState.from_checkpoint(arrays, meta)
    log.info("Resuming %s at round %d (%d labelled).", workdir, state.round,
             len(state.labelled_rows))
  if primary:
    for name in ("metrics.jsonl", "subpools.jsonl", "anchors.jsonl"):
      _truncate_jsonl(workdir / name, state.round)

  wandb_cfg = {k: v for k, v in c.wandb.to_dict().items() if v not in ("", None)}
  wandb_cfg.setdefault("dir", str(workdir))
  wandb_cfg.setdefault("name", workdir.name)
  # Which code and packages produced the results: one entry per start (workdir.py).
  starts = workdir_lib.record_provenance(workdir) if primary else []
  tracker = (tracking.make_tracker(workdir, wandb_cfg, {**resolved, "provenance": starts})
             if primary else tracking.NoOpTracker())
  ran: list[dict] = []  # this process's records (what a non-primary process returns)
  num_rounds = common.num_query_rounds(c)
  try:
    while state.round <= num_rounds:
      r = state.round
      fit = yield FitRequest(setup.regime, (setup.init_params, state.labelled_rows,
                                            task.train.labels[state.labelled_rows], setup.val))
      result = run_round(c, setup, state, num_rounds, fit=fit)
      tracker.log(result.record, step=r)
      ran.append(result.record)
      if primary:
        _print_round(result.record, num_rounds)
        _write_round_files(workdir, task, r, result)
      # Commit: labelled set for the next round, then the checkpoint (the commit point).
      state.commit(result.new_rows)
      if primary:
        _write_labelled(workdir / "labelled.parquet", task, state)
      ckpt.save(state.round, state.arrays(), state.meta())  # all processes (orbax syncs them)
      if os.environ.get("ANCHORAL_KILL_AFTER_ROUND") == str(r):  # test hook: simulate a kill
        os._exit(17)
    if not primary:
      parallel.sync("anchoral_run_done")  # returns once process 0 has written DONE
      return ran
    records, _ = tracking.load_metrics(workdir / "metrics.jsonl")
    # Every round is checkpointed, but its metrics line may be lost (file deleted, restored
    # from an old copy): an AUC over the surviving rounds would be silently wrong.
    workdir_lib.check_rounds_logged(workdir / "metrics.jsonl",
                                    [int(r["step"]) for r in records], num_rounds)
    summary = metrics.summarise_curves(records, minority_key="test/minority_f1",
                                       majority_key="test/majority_f1")
    tracker.summary(summary)
    write_text_atomic(workdir / "summary.json", json.dumps(summary, indent=2))
    write_text_atomic(workdir / "DONE", time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    _print_summary(summary)
    parallel.sync("anchoral_run_done")
    return records
  finally:
    tracker.finish()
    ckpt.close()


def _print_round(rec: dict, num_rounds: int) -> None:
  parts = [f"round {rec['round']:3d}/{num_rounds}",
           f"labelled {rec['budget']:5d} (minority {rec['labelled/minority_share']:.3f})",
           f"test minority F1 {rec['test/minority_f1']:.3f} macro F1 {rec['test/f1_macro']:.3f}",
           f"train {rec['time/train']:.1f}s"]
  if "time/query" in rec:
    parts.append(f"subpool {rec['subpool/size']} (minority {rec['subpool/minority_share']:.3f})")
    parts.append(f"query {rec['time/query']:.2f}s")
  print(" | ".join(parts), flush=True)


def _print_summary(summary: dict) -> None:
  print("summary: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in summary.items()), flush=True)
