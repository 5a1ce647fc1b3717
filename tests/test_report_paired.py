"""The paired comparisons of `anchoral report` (report/paired.py): the statistics against scipy
and brute force, the table on synthetic runs against hand-computed numbers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from test_report import SEEDS, write_run

from anchoral_jax.report import cells as report_cells
from anchoral_jax.report import command as report
from anchoral_jax.report import paired as report_paired


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10, 13])
def test_signed_rank_exact_matches_scipy_without_ties(n):
  rng = np.random.default_rng(n)
  for _ in range(5):
    d_N = rng.normal(0.4, 1.0, n)
    w, p = report_paired.signed_rank_test(d_N)
    ref = scipy.stats.wilcoxon(d_N, method="exact", alternative="two-sided")
    assert p == pytest.approx(ref.pvalue, rel=1e-12)
    assert min(w, n * (n + 1) / 2 - w) == pytest.approx(ref.statistic)  # scipy: the smaller sum


@pytest.mark.parametrize("d_N", [[1, 1, -1, 2, 2, 2, -3, 0.5, 0.5, 4], [0, 0, 1, -1, 2, 3, 3],
                                 [2.0, 2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0], [-1.5, 0, 2.5]])
def test_signed_rank_exact_with_ties_and_zeros_matches_a_full_permutation_test(d_N):
  """With ties (average ranks) and zeros (ranked, then in neither sum) scipy's `wilcoxon` has
  no exact mode; its exact permutation test of the same statistic over every sign flip is the
  reference."""
  d_N = np.asarray(d_N, np.float64)

  def w_plus(x):
    ranks = scipy.stats.rankdata(np.abs(x))
    return ranks[x > 0].sum()

  w, p = report_paired.signed_rank_test(d_N)
  assert w == pytest.approx(w_plus(d_N))
  if not d_N.any():
    assert p == 1.0
    return
  ref = scipy.stats.permutation_test((d_N,), w_plus, permutation_type="samples",
                                     n_resamples=np.inf, alternative="two-sided")
  assert p == pytest.approx(min(1.0, ref.pvalue), rel=1e-12)


def test_smallest_possible_p_is_two_over_two_to_the_n():
  assert report_paired.signed_rank_test([1, 2, 3, 4, 5])[1] == pytest.approx(2 / 32)
  assert report_paired.signed_rank_test(np.arange(1, 11))[1] == pytest.approx(2 / 1024)


def test_bootstrap_interval_against_every_resample():
  """n = 5: all 5^5 equally likely resamples give the exact bootstrap distribution of the mean;
  the seeded Monte Carlo interval must sit close to its percentiles."""
  d_N = np.array([0.3, -0.2, 1.1, 0.4, 0.9])
  means = np.array([d_N[list(i)].mean() for i in itertools.product(range(5), repeat=5)])
  exact = np.percentile(means, [2.5, 97.5])
  lo, hi = report_paired.bootstrap_ci(d_N)
  assert lo == pytest.approx(exact[0], abs=0.02) and hi == pytest.approx(exact[1], abs=0.02)
  assert report_paired.bootstrap_ci(d_N) == (lo, hi)  # seeded: a report is reproducible
  assert all(math.isnan(x) for x in report_paired.bootstrap_ci([1.0]))


@pytest.fixture(scope="module")
def paired_runs(tmp_path_factory):
  """dsP, 4 seeds: AnchorAL's F1 0.1 (i + 1) + 0.3 + 0.02 i^2 (i = seed), SEALS 0.1 (i + 1) + 0.1,
  RandomSubset the same as AnchorAL but its last seed; full-pool random 0.1 (i + 1); AnchorAL's
  seed 3 stops after 3 rounds. RandomSubset lacks seed 0 (3 pairs)."""
  root = tmp_path_factory.mktemp("paired")
  for i, seeds in enumerate(SEEDS):
    base = 0.1 * (i + 1)
    write_run(root / f"a{i}", "dsP", "entropy", "anchoral", 10, seeds, base + 0.3 + 0.02 * i * i,
              1.0, rounds=3 if i == 3 else 5, done=i != 3)
    write_run(root / f"s{i}", "dsP", "entropy", "seals", 10, seeds, base + 0.1, 1.0)
    if i:
      write_run(root / f"r{i}", "dsP", "entropy", "randomsubset", 10, seeds,
                base + 0.3 + 0.02 * i * i - (0.3 if i == 3 else 0.0), 1.0)
    write_run(root / f"n{i}", "dsP", "random", "none", 10, seeds, base, 1.0)
  return root


def test_paired_table_by_hand(paired_runs):
  groups = report_cells.cells(report_cells.find_runs(paired_runs))
  table = report_paired.paired_table(groups).set_index("other")
  assert list(table.index) == ["Full pool (random)", "RandomSubset", "SEALS"]
  # AnchorAL - SEALS per seed: a constant F1 gap 0.2 + 0.02 i^2 over 5 rounds (AUC: 4 x the
  # gap), but seed 3 over AnchorAL's 3 rounds (AUC: 2 x the gap).
  d_N = np.array([4 * 0.2, 4 * 0.22, 4 * 0.28, 2 * 0.38])
  s = table.loc["SEALS"]
  assert s.n_pairs == 4 and s.mean_diff == pytest.approx(d_N.mean())
  assert (s.ci_lo, s.ci_hi) == pytest.approx(report_paired.bootstrap_ci(d_N))
  assert s.ci_lo >= d_N.min() - 1e-12 and s.ci_hi <= d_N.max() + 1e-12
  assert s.p_wilcoxon == pytest.approx(scipy.stats.wilcoxon(d_N, method="exact").pvalue)
  assert (s.wins, s.ties, s.losses) == (4, 0, 0)
  r = table.loc["RandomSubset"]  # seeds 1-3: equal, equal, AnchorAL above (seed 3: 2 x 0.3)
  assert (r.n_pairs, r.wins, r.ties, r.losses) == (3, 1, 2, 0)
  assert r.mean_diff == pytest.approx(0.6 / 3)
  assert table.loc["Full pool (random)"].mean_diff == pytest.approx(
      np.mean([4 * 0.3, 4 * 0.32, 4 * 0.38, 2 * 0.48]))
  # Target: 90% of the best median final F1 (AnchorAL's 0.4, 0.52, 0.68, 0.88: median 0.6) =
  # 0.54: AnchorAL's seeds 2 and 3 reach it in round 0 (100 labels), SEALS (0.2 .. 0.5) never.
  assert s.target_f1 == pytest.approx(0.9 * 0.6)
  assert (s.ref_labels_to_reach, s.ref_reached) == (100, 2)
  assert math.isnan(s.other_labels_to_reach) and s.other_reached == 0
  # Minority found by the pair's last common budget (150: seed 3 stopped there); every run has
  # the same labelled shares (0.05 + 0.01 r): round(150 * 0.07) - round(100 * 0.05).
  assert s.ref_found == s.other_found == round(150 * 0.07) - 5
  assert s.found_diff == 0 and (s.found_ci_lo, s.found_ci_hi) == (0, 0)
  text = report_paired.paired_markdown(table.reset_index())
  assert "| dsP | entropy | SEALS | 4 | +0.89 |" in text and "100 [2/4] / – [0/4]" in text
  assert "no p can be below 0.125" in text


def test_found_table_and_report_files(paired_runs, tmp_path):
  groups = report_cells.cells(report_cells.find_runs(paired_runs))
  found = report_paired.found_table(groups)
  # Budgets 100..200 at 25..100%: 125, 150, 175, 200; 5 rounds: share 0.05 + 0.01 r.
  seals = found[found["filter"] == "SEALS"].iloc[0]
  assert [seals[f"found@{b}"] for b in (125, 150, 175, 200)] == [
      round(125 * 0.06) - 5, round(150 * 0.07) - 5, round(175 * 0.08) - 5, 200 * 0.09 - 5]
  anchoral = found[found["filter"] == "AnchorAL"].iloc[0]
  assert anchoral["found@200"] == 13  # seed 3 (3 rounds) never got there: 3 runs
  path = report.report(paired_runs, tmp_path / "out", formats=("png", "svg"))
  out = path.parent
  assert {"paired.md", "paired.csv", "found.md", "found.csv"} <= {p.name for p in out.iterdir()}
  assert len(pd.read_csv(out / "paired.csv")) == 3
  assert (out / "minority_found-dsP.svg").exists() and (out / "minority_found-dsP.png").exists()
  assert not list(out.glob("*.pdf"))
  body = path.read_text()
  assert "### Paired comparisons: AnchorAL minus each other cell" in body
  assert "### Minority found against budget" in body


def test_report_cli_reference_and_format(paired_runs, tmp_path, capsys):
  report.main([str(paired_runs), "--out", str(tmp_path / "o"), "--no_plots",
               "--reference", "seals", "--reach", "50"])
  out = capsys.readouterr().out
  assert "### Paired comparisons: SEALS minus each other cell" in out
  assert "Labels to 50%" in out
  for flag, value in (("--reference", "nope"), ("--format", "gif"), ("--reach", "0")):
    with pytest.raises(SystemExit) as e:
      report.main([str(paired_runs), "--no_plots", flag, value])
    assert e.value.code == 2
    assert value in capsys.readouterr().err
