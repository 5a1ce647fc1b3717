"""`anchoral report` on synthetic run folders whose medians/IQRs can be checked by hand.

Synthetic runs: 5 rounds (budget 100..200), minority F1 constant per run at 0.1 * (i + 1) + o
for seed combination i = 0..3 and row offset o, majority F1 0.9, query time i + 1 seconds in
every round but the last. So a whole run's minority AUC is 4 * (0.1 * (i + 1) + o): over the
four seeds 0.4 .. 1.6 (+ 4o) -> median 1.0 + 4o, quartiles 0.7 / 1.3, IQR 0.6; majority AUC
3.6; query time 4 (i + 1) s -> median 10 s = 0.1667 min, IQR 6 s = 0.1 min.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

from anchoral_jax import report

SEEDS = list(itertools.product((654321, 123456), repeat=3))[:4]
ROWS = {("random", "none", 10): 0.0, ("entropy", "randomsubset", 10): 0.1,
        ("entropy", "anchoral", 10): 0.2, ("entropy", "anchoral", 50): 0.3}


def write_run(folder: Path, dataset: str, strategy: str, filter: str, num_anchors: int,
              seeds: tuple[int, int, int], f1: float, seconds: float, rounds: int = 5,
              done: bool = True) -> None:
  folder.mkdir(parents=True)
  hparams = {"data": {"name": dataset, "seed": seeds[0], "cache_dir": f"/tmp/{folder.name}"},
             "model": {"name": "tiny", "seed": seeds[1]},
             "al": {"strategy": strategy, "filter": filter, "initial_seed": seeds[2]},
             "anchoral": {"num_anchors": num_anchors},
             "wandb": {"name": str(folder), "group": "g"}}
  (folder / "hparams.json").write_text(json.dumps(hparams))
  lines = []
  for r in range(rounds):
    rec = {"step": r, "round": r, "budget": 100 + 25 * r, "test/minority_f1": f1,
           "test/majority_f1": 0.9, "labelled/minority_share": 0.05 + 0.01 * r}
    if r < 4:  # the last round of a full (5-round) run queries nothing
      rec.update({"time/query": seconds, "subpool/minority_share": 0.2 + f1 / 10})
    lines.append(json.dumps(rec))
  if done:
    lines.append(json.dumps({"summary": {"auc/minority_f1": 4 * f1}}))
    (folder / "DONE").write_text("x\n")
  (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
  root = tmp_path_factory.mktemp("runs")
  for dataset in ("dsA", "dsB"):
    for (strategy, filter, anchors), offset in ROWS.items():
      for i, seeds in enumerate(SEEDS):
        short = dataset == "dsB" and filter == "anchoral" and anchors == 10 and i == 3
        write_run(root / dataset / f"{strategy}-{filter}-{anchors}" / f"seed{i}", dataset,
                  strategy, filter, anchors, seeds, 0.1 * (i + 1) + offset, i + 1.0,
                  rounds=3 if short else 5, done=not short)
  return root


def test_cells_group_seeds_and_name_variants(synthetic):
  runs = report.find_runs(synthetic)
  assert len(runs) == 32
  groups = report.cells(runs)
  assert len(groups) == 8 and all(len(v) == 4 for v in groups.values())
  # Rows in the paper's order; the differing field becomes the variant label.
  rows = list(dict.fromkeys(k[1:] for k in groups))
  assert rows == [("random", "none", ""), ("entropy", "randomsubset", ""),
                  ("entropy", "anchoral", ""), ("entropy", "anchoral", "num_anchors=50")]


def test_overall_medians_and_iqr_by_hand(synthetic):
  _, overall, _ = report.tables(report.find_runs(synthetic))
  a = overall[overall.dataset == "dsA"].set_index(["strategy", "filter", "variant"])
  for (strategy, filter, anchors), o in ROWS.items():
    row = a.loc[(strategy, filter, "num_anchors=50" if anchors == 50 else "")]
    assert row.minority_median == pytest.approx(1.0 + 4 * o)
    assert row.minority_q25 == pytest.approx(0.7 + 4 * o)
    assert row.minority_q75 == pytest.approx(1.3 + 4 * o)
    assert row.minority_iqr == pytest.approx(0.6)
    assert row.majority_median == pytest.approx(3.6) and row.majority_iqr == pytest.approx(0)
    assert row.time_min_median == pytest.approx(10 / 60)
    assert row.time_min_iqr == pytest.approx(6 / 60)
    assert (row.n_runs, row.n_done, row.rounds, row.budget) == (4, 4, 5, 200)
  # dsB's anchoral cell holds an unfinished 3-round run: AUC 2 * 0.6 = 1.2, and its three
  # logged queries count (12 s). Others: 4 * (0.3, 0.4, 0.5) = 1.2, 1.6, 2.0.
  b = overall[(overall.dataset == "dsB") & (overall["filter"] == "anchoral")
              & (overall.variant == "")].iloc[0]
  assert b.minority_median == pytest.approx(1.4)  # of 1.2, 1.2, 1.6, 2.0
  assert b.minority_q25 == pytest.approx(1.2) and b.minority_q75 == pytest.approx(1.7)
  assert b.time_min_median == pytest.approx(10 / 60)  # of 4, 8, 12, 12 s
  assert (b.n_runs, b.n_done, b.rounds) == (4, 3, 3)


def test_budget_matched_cuts_each_dataset_to_its_shortest_run(synthetic):
  _, overall, matched = report.tables(report.find_runs(synthetic))
  # dsA: every run has 5 rounds, so both tables agree.
  cols = ["minority_median", "minority_iqr", "time_min_median", "rounds"]
  pd.testing.assert_frame_equal(overall[overall.dataset == "dsA"][cols].reset_index(drop=True),
                                matched[matched.dataset == "dsA"][cols].reset_index(drop=True))
  # dsB: 3 rounds (budget 150) for everyone: AUC 2 * f1, time 2 (i + 1) s (rounds 0-1).
  b = matched[matched.dataset == "dsB"].set_index(["strategy", "filter", "variant"])
  row = b.loc[("random", "none", "")]
  assert row.minority_median == pytest.approx(0.5) and row.minority_iqr == pytest.approx(0.3)
  assert row.majority_median == pytest.approx(1.8)
  assert row.time_min_median == pytest.approx(5 / 60) and row.time_min_iqr == pytest.approx(3 / 60)
  assert (row.rounds, row.budget) == (3, 150)


def test_report_writes_tables_csv_and_pngs(synthetic, tmp_path):
  path = report.report(synthetic, tmp_path / "out")
  out = path.parent
  text = (out / "overall.md").read_text()
  # The paper's layout; hand-checked medians (IQR); the best median per column in bold.
  assert "| Strategy | Filter | Variant | dsA Minority ↑ | dsA Majority ↑ | dsA Time (min) ↓ |" in text
  assert "| random | Full pool | – | 1.00 (0.60) | 3.60 (0.00) | 0.17 (0.10) |" in text
  assert "**2.20 (0.60)**" in text  # dsA anchoral num_anchors=50: 1.0 + 4 * 0.3
  matched = (out / "budget_matched.md").read_text()
  assert "dsB 3 (150)" in matched and "dsA 5 (200)" in matched
  csv = pd.read_csv(out / "overall.csv")
  assert len(csv) == 8 and {"minority_median", "minority_iqr", "time_min_q75"} <= set(csv)
  assert len(pd.read_csv(out / "runs.csv")) == 64  # 32 runs x 2 tables
  pngs = sorted(p.name for p in out.glob("*.png"))
  assert pngs == sorted(f"{stem}-{d}.png" for stem, *_ in report.PLOTS for d in ("dsA", "dsB"))
  assert all((out / p).stat().st_size > 10_000 for p in pngs)
  body = path.read_text()
  assert "### Unfinished runs" in body and "seed3: 3 rounds" in body
  assert "![minority_f1-dsA](minority_f1-dsA.png)" in body


def test_report_cli_and_empty_dir(synthetic, tmp_path, capsys):
  report.main([str(synthetic), "--out", str(tmp_path / "cli"), "--no_plots"])
  assert "### Overall" in capsys.readouterr().out
  assert not list((tmp_path / "cli").glob("*.png"))
  with pytest.raises(SystemExit, match="No runs"):
    report.main([str(tmp_path / "cli")])


@pytest.mark.slow
def test_report_on_the_real_tiny_sweep(tmp_path_factory, cache_dir):
  from test_sweep import tiny_sweep_dir  # the 4-run sweep, run once per session

  runs_dir = tiny_sweep_dir(tmp_path_factory, cache_dir)
  path = report.report(runs_dir, tmp_path_factory.mktemp("report"))
  out = path.parent
  overall = pd.read_csv(out / "overall.csv", keep_default_na=False)
  assert list(zip(overall.strategy, overall["filter"], overall.n_runs, overall.rounds, strict=True)) == [
      ("random", "none", 2, 3), ("entropy", "randomsubset", 2, 3)]
  assert set(overall.variant) == {""}  # seeds and W&B names never split cells
  # Per-run numbers agree with the loop's own summary.json (metrics.summarise_curves).
  per_run = pd.read_csv(out / "runs.csv")
  per_run = per_run[per_run.table == "overall"]
  assert len(per_run) == 4
  for row in per_run.itertuples():
    summary = json.loads((Path(row.run) / "summary.json").read_text())
    assert row.minority == pytest.approx(summary["auc/minority_f1"])
    assert row.majority == pytest.approx(summary["auc/majority_f1"])
    assert row.time_min == pytest.approx(summary["query_time_min"])
  assert len(list(out.glob("*-tweets_iphone.png"))) == 4
  assert "| random | Full pool |" in (out / "overall.md").read_text()


def test_a_field_only_some_runs_have_does_not_split_cells(tmp_path):
  for i, seeds in enumerate(SEEDS[:2]):
    write_run(tmp_path / f"r{i}", "dsA", "random", "none", 10, seeds, 0.5, 1.0)
  hp = json.loads((tmp_path / "r1" / "hparams.json").read_text())
  hp["index"] = {"import_path": ""}  # a field added to the config between the two runs
  (tmp_path / "r1" / "hparams.json").write_text(json.dumps(hp))
  assert list(report.cells(report.find_runs(tmp_path))) == [("dsA", "random", "none", "")]
