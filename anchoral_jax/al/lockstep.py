"""Several runs in one process, round by round in lockstep (`loop.run_many`).

A run is a generator (`loop._run_steps`): each round it yields a FitRequest (its classifier's
training) and receives the FitOutcome. `drive` advances the runs together and trains each
round's requests with `fit_requests`: runs of equal `group_key` (the seeds of a table cell:
same regime and settings, equal labelled-set sizes) as one vmapped program
(`regimes.fit_group`), any other one after another. Everything else a run does (its workdir,
lock, checkpoints, W&B run and files) stays its own, so it ends as it would alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

from anchoral_jax.parallel import timed
from anchoral_jax.training import regimes, train


@dataclasses.dataclass
class FitRequest:
  """One run's training of a round: `regime.fit(*args)`, args = (init_params, rows, labels,
  val)."""

  regime: regimes.Regime
  args: tuple


@dataclasses.dataclass
class FitOutcome:
  result: train.FitResult
  timers: dict[str, float]  # "train" and "compile" seconds of the program that trained it
  runs_in_program: int = 1  # > 1: trained with other runs in one vmapped program


RunSteps = Generator[FitRequest, FitOutcome, Any]


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


def drive(runs: list[RunSteps]) -> list[Any]:
  """Advances run generators together: each yields its round's FitRequest and receives the
  FitOutcome; the requests of one round are trained together. Returns each run's return
  value; closes every generator on the way out (a failed run: the others' trackers and
  checkpointers close too)."""
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
      g.close()
