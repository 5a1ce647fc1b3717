"""The stopping criteria (stopping.py): kappa and entropy against sklearn/scipy, the rounds
they fire in by hand, the advice text, and the simulation's records (a real tiny run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import cohen_kappa_score

from anchoral_jax.al import stopping


def test_kappa_and_entropy_against_references():
  rng = np.random.default_rng(0)
  for c in (2, 3, 5):
    a, b = rng.integers(0, c, 500), rng.integers(0, c, 500)
    b[:400] = a[:400]  # mostly agreeing
    assert stopping.cohen_kappa(a, b, c) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    p = rng.dirichlet(np.ones(c), 300)
    ref = scipy.stats.entropy(p, axis=-1).mean() / np.log(c)
    assert stopping.mean_entropy(p) == pytest.approx(ref, rel=1e-9)
  same = np.zeros(50, np.int64)  # both models predict the majority only: 0/0 in Cohen's formula
  assert stopping.cohen_kappa(same, same, 2) == 1.0
  rows = np.arange(10_000)
  s = stopping.stop_set(rows)
  assert len(s) == stopping.STOP_SET and np.all(np.diff(s) > 0)
  assert np.array_equal(s, stopping.stop_set(rows))  # fixed: every seed of a cell, every round
  assert np.array_equal(stopping.stop_set(rows[:50]), rows[:50])


def probs(pred, confident=0.999):
  p = np.full((len(pred), 2), 1 - confident)
  p[np.arange(len(pred)), pred] = confident
  return p


def test_rounds_each_criterion_fires_in_by_hand():
  base = np.zeros(1000, np.int64)
  base[:10] = 1
  moved = base.copy()
  moved[10:60] = 1  # 50 changed predictions: kappa well below 0.99
  preds = [base, moved, moved, moved, moved, moved, base]
  state, recs = stopping.StopState(), []
  for r, pred in enumerate(preds):
    rec = state.update(r, probs(pred, 0.9 if r < 2 else 0.999))
    recs.append({"round": r, "budget": 100 + 25 * r, "test/minority_f1": 0.1 * r, **rec})
  assert "stop/kappa" not in recs[0]
  assert [r["stop/stable_rounds"] for r in recs] == [0, 0, 1, 2, 3, 4, 0]
  assert [r["stop/stabilised"] for r in recs] == [0, 0, 0, 0, 1, 1, 1]  # fired in round 4
  assert [r["stop/uncertainty"] <= stopping.UNCERTAINTY for r in recs] == [False] * 2 + [True] * 5
  summary = stopping.summary(recs)
  assert (summary["stop/stabilised_round"], summary["stop/stabilised_budget"]) == (4, 200)
  assert summary["stop/stabilised_f1"] == pytest.approx(0.4)
  assert summary["stop/confident_round"] == 2 and summary["stop/final_f1"] == pytest.approx(0.6)
  # A checkpoint round trip keeps the state (resume gives the same records).
  again = stopping.StopState.restore(state.arrays(), json.loads(json.dumps(state.meta())))
  assert again.stable == state.stable and again.fired == state.fired
  assert np.array_equal(again.prev_N, state.prev_N)
  assert stopping.StopState.restore({}, {}).prev_N is None  # a checkpoint from before


def test_label_advice():
  first = stopping.label_update(None, probs(np.zeros(20, np.int64)))
  assert first["kappas"] == [] and "one model so far" in stopping.advice([], None)
  nxt = stopping.label_update(first, probs(np.zeros(20, np.int64)))
  assert nxt["kappas"] == [1.0]
  text = stopping.advice([0.5, 0.995, 1.0, 0.999], 0.01)
  assert "stabilised for 3 rounds" in text and "you could stop here" in text
  assert "not found it yet" in text  # the README's tweets-iphone runs: stable at minority F1 0
  assert "at or below 0.05" in text
  assert "not yet stable (last kappa 0.980; 0 of 3" in stopping.advice([1.0, 1.0, 0.98], 0.3)


def test_report_stopping_table(tmp_path):
  """Two runs of a cell that logged the criteria (fired in rounds 2 and 4) and one older run
  that did not: medians over the two, the third left out of the counts."""
  from test_report import SEEDS, write_run

  from anchoral_jax.report import cells as report_cells
  from anchoral_jax.report import stopping as report_stopping

  for i, fire in enumerate((2, 4, None)):
    recs = []
    for r in range(6):
      rec = {"step": r, "round": r, "budget": 100 + 25 * r, "test/minority_f1": 0.1 * r + 0.1 * i,
             "test/majority_f1": 0.9, "labelled/minority_share": 0.1}
      if fire is not None:
        rec.update({"stop/stable_rounds": 0, "stop/uncertainty": 0.5,
                    "stop/stabilised": int(r >= fire), "stop/confident": 0})
      recs.append(rec)
    write_run(tmp_path / f"run{i}", "bbc_tech", "entropy", "anchoral", 10, SEEDS[i], 0, 0,
              records=recs)
  table = report_stopping.stopping_table(report_cells.cells(report_cells.find_runs(tmp_path)))
  s = table.set_index("criterion").loc["stabilised"]
  assert (s.n_logged, s.n_fired, s["round"], s.budget) == (2, 2, 3, 175)
  assert s.f1_at_stop == pytest.approx((0.2 + 0.5) / 2) and s.f1_at_end == pytest.approx(0.55)
  c = table.set_index("criterion").loc["confident"]
  assert (c.n_fired, np.isnan(c["round"])) == (0, True)
  text = report_stopping.stopping_markdown(table)
  assert "| bbc-tech-.01 | entropy | AnchorAL | stabilised (kappa >= 0.99 x 3) | 2/2 | 3 | 175 |" \
      in text
