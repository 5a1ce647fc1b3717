"""The pool-based AL simulation: `run(config, workdir)` (SPEC.md §1-6), the composition root.

Set up (run_state.Setup: task, tokens, model, embeddings, index), then each round r = 0..R:
train the classifier from the same initial weights on the labelled set L, test; then (unless
r == R) filter the pool into a subpool, let the base strategy acquire `query_size` items from
it, and commit their oracle labels with labelling_round = r + 1. Every round is committed
atomically (metrics line, run files, orbax checkpoint), so a killed run re-run with the same
command continues from the last completed round with identical results.

The parts live beside it: validation.py (the config, before anything expensive), run_state.py
(Setup, ALState), lockstep.py (several runs, their training vmapped together: `run_many`),
run_files.py (the workdir's files), workdir.py (lock, data fingerprint, provenance).
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

import ml_collections
import numpy as np

from anchoral_jax import config as common
from anchoral_jax import fileio, metrics, parallel
from anchoral_jax.al import filters, lockstep, selection, stopping
from anchoral_jax.al.lockstep import FitOutcome, FitRequest, fit_requests
from anchoral_jax.al.state import ALState, Setup
from anchoral_jax.al.validation import validate
from anchoral_jax.errors import ConfigError
from anchoral_jax.parallel import timed
from anchoral_jax.run import checkpoint
from anchoral_jax.run import files as run_files
from anchoral_jax.run import workdir as workdir_lib
from anchoral_jax.tracking import jsonl as tracking_jsonl
from anchoral_jax.tracking import tracker as tracking
from anchoral_jax.tracking import wandb_sink

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# One round: train, test, filter, acquire.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class RoundResult:
  record: dict[str, Any]  # the metrics line
  new_rows: np.ndarray  # the picks (empty in the last round)
  subpool: np.ndarray | None  # None in the last round (no query)
  info: dict[str, Any]  # the filter's and strategy's statistics (AnchorAL's anchors)


def query(c, setup: Setup, state: ALState, params, timers: dict[str, float],
          info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The round's query (`selection.select` on the run's state): (unlabelled, subpool, picks)
  in pool rows."""
  labels = setup.task.train.labels
  is_unlabelled = np.zeros(len(labels), bool)  # a mask: setdiff1d costs ~1 s at 1M rows
  is_unlabelled[setup.pool_rows] = True
  is_unlabelled[state.labelled_rows] = False
  unlabelled = np.flatnonzero(is_unlabelled)
  fc = filters.FilterConfig.from_config(c, setup.task.minority_classes)
  picked = selection.select(
      fc, c.al.strategy, setup.view(params), state.filter_state, state.strategy_rng, unlabelled,
      state.labelled_rows, labels[state.labelled_rows],
      exclude=np.concatenate([state.labelled_rows, setup.val_rows]),  # never query validation
      query_size=c.al.query_size, timers=timers, info=info)
  return unlabelled, picked.subpool, picked.rows


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
  with timed(timers, "stop"):  # the stopping criteria: this model on the fixed stop set
    stop_logits = setup.regime.outputs(fitted.params, "pool", stopping.stop_set(setup.pool_rows),
                                       ("logits",))["logits"]
    stop_m = state.stop.update(r, stopping.softmax(stop_logits))
  counts = metrics.class_counts(labels[state.labelled_rows], task.num_classes)
  record: dict[str, Any] = {
      "round": r, "budget": int(len(state.labelled_rows)), **test_m,
      **{f"labelled/count_class_{k}": int(v) for k, v in enumerate(counts)},
      "labelled/minority_share": float(np.isin(labels[state.labelled_rows], minority).mean()),
      "train/epochs": fitted.epochs_run, "train/best_epoch": fitted.best_epoch,
      "train/steps": fitted.steps,
      **{k: v for k, v in fitted.history[fitted.best_epoch].items() if k != "epoch"},
      **stop_m,
  }
  info: dict[str, Any] = {}
  new_rows, subpool = np.zeros(0, np.int64), None
  if r < num_rounds:
    t_query = time.perf_counter()
    compile_before = timers.get("compile", 0.0)
    # time/query excludes compilation (time/compile): see `parallel.timed`.
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
# The run.
# ---------------------------------------------------------------------------------------------

def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[dict]:
  """Runs (or resumes) one AL simulation in `workdir`; returns the per-round records.

  Multi-host (jax.distributed): every process runs this with the same config and computes the
  same decisions (same seeds, gathered scores); process 0 alone writes the files and W&B, and
  all take part in the orbax checkpoint. The workdir must be on a shared filesystem.
  Non-primary processes return only the records of the rounds they ran.

  One run per workdir: the primary process holds `<workdir>/.lock` throughout (a second run
  fails with errors.WorkdirInUseError before writing anything).
  """
  return run_many([config], [workdir])[0]


def run_many(configs: list[ml_collections.ConfigDict], workdirs: list[str | os.PathLike]
             ) -> list[list[dict]]:
  """Runs (or resumes) several simulations in one process, round by round in lockstep: the
  seeds of a table cell (same settings but `data.seed`, `model.seed`, `al.initial_seed`).
  Each round, the runs' classifiers train as one vmapped program (lockstep.py); every run
  keeps its own workdir, lock, checkpoints, W&B run and files, and ends as it would alone
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
        stack.enter_context(fileio.lock(p))
    tasks: dict[str, Any] = {}  # the seeds of a cell read one dataset: built once, shared
    return lockstep.drive([_run_steps(c, p, tasks)
                           for c, p in zip(configs, paths, strict=True)])


def _run_steps(config: ml_collections.ConfigDict, workdir: Path,
               tasks: dict[str, Any] | None = None) -> lockstep.RunSteps:
  """One run, as a generator: yields each round's FitRequest, receives its FitOutcome, and
  returns the run's records (the body of `run`; `lockstep.drive` advances it). `tasks`: the
  datasets already built by the other runs of this process, by `data` spec (`run_many`)."""
  c = config
  from anchoral_jax.retrieval import prepare

  prepare.check_inputs(c, filters.needs_index(c.al.filter))  # models, index files: before any expensive step
  primary = parallel.is_primary()
  workdir.mkdir(parents=True, exist_ok=True)
  resolved = json.loads(c.to_json_best_effort())
  extend_from = run_files.check_config(workdir, resolved)  # the old budget of an extension
  if primary and extend_from is None:
    run_files.write_hparams(workdir, resolved)
  if (workdir / "DONE").exists() and extend_from is None:
    log.info("%s is DONE; nothing to do.", workdir)
    return tracking_jsonl.load_metrics(workdir / "metrics.jsonl")[0]

  spec = json.dumps([c.data.name, c.data.kwargs.to_dict()], sort_keys=True, default=str)
  # Setup checks the budget against the pool before an extension touches anything.
  setup = Setup(c, task=None if tasks is None else tasks.get(spec))
  if tasks is not None:
    tasks[spec] = setup.task
  if extend_from is not None:
    run_files.rewind_last_round(workdir, (extend_from - c.al.initial_size) // c.al.query_size,
                                primary)
    if primary:  # after the rewind: a kill in between finds the old budget and rewinds again
      run_files.write_hparams(workdir, resolved)
  task = setup.task
  # Before any round: checkpoints address pool rows by position (workdir.py).
  workdir_lib.check_data_fingerprint(
      workdir, workdir_lib.data_fingerprint(task, c.data.name), write=primary)
  if primary:
    run_files.write_classes(workdir, task)
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
    run_files.truncate_logs(workdir, state.round)
    if setup.index is not None:  # which graph the rounds from here on search
      run_files.record_index(workdir, setup.index.sha256(), setup.index.path, state.round)

  wandb_cfg = {k: v for k, v in c.wandb.to_dict().items() if v not in ("", None)}
  wandb_cfg.update(wandb_sink.sweep_names(workdir))  # a sweep's run keeps its name and group
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
      # Train (with the other runs in lockstep), test, filter, acquire: one round.
      fit = yield FitRequest(setup.regime, (setup.init_params, state.labelled_rows,
                                            task.train.labels[state.labelled_rows], setup.val))
      result = run_round(c, setup, state, num_rounds, fit=fit)
      tracker.log(result.record, step=r)
      ran.append(result.record)
      if primary:
        _print_round(result.record, num_rounds)
        run_files.write_round_files(workdir, task, r, result.subpool, result.info)
      # Commit: labelled set for the next round, then the checkpoint (the commit point).
      state.commit(result.new_rows)
      if primary:
        run_files.write_labelled(workdir / "labelled.parquet", task, state.labelled_rows,
                                 state.labelling_round)
      ckpt.save(state.round, state.arrays(), state.meta())  # all processes (orbax syncs them)
      if os.environ.get("ANCHORAL_KILL_AFTER_ROUND") == str(r):  # test hook: simulate a kill
        os._exit(17)
    if not primary:
      parallel.sync("anchoral_run_done")  # returns once process 0 has written DONE
      return ran
    records, _ = tracking_jsonl.load_metrics(workdir / "metrics.jsonl")
    # Every round is checkpointed, but its metrics line may be lost (file deleted, restored
    # from an old copy): an AUC over the surviving rounds would be silently wrong.
    workdir_lib.check_rounds_logged(workdir / "metrics.jsonl",
                                    [int(r["step"]) for r in records], num_rounds)
    summary = metrics.summarise_curves(records, minority_key="test/minority_f1",
                                       majority_key="test/majority_f1")
    summary.update(stopping.summary(records))  # the round each criterion would have stopped
    tracker.summary(summary)
    run_files.write_done(workdir, summary)
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
