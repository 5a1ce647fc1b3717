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
import math
from pathlib import Path

import pandas as pd
import pytest

from anchoral_jax.report import cells as report_cells
from anchoral_jax.report import command as report
from anchoral_jax.report import plots as report_plots
from anchoral_jax.report import tables as report_tables

SEEDS = list(itertools.product((654321, 123456), repeat=3))[:4]
ROWS = {("random", "none", 10): 0.0, ("entropy", "randomsubset", 10): 0.1,
        ("entropy", "anchoral", 10): 0.2, ("entropy", "anchoral", 50): 0.3}


def write_run(folder: Path, dataset: str, strategy: str, filter: str, num_anchors: int,
              seeds: tuple[int, int, int], f1: float, seconds: float, rounds: int = 5,
              done: bool = True, records: list[dict] | None = None) -> None:
  """A run folder; `records` (one dict per round) replaces the default per-round records."""
  folder.mkdir(parents=True)
  hparams = {"data": {"name": dataset, "seed": seeds[0], "cache_dir": f"/tmp/{folder.name}"},
             "model": {"name": "tiny", "seed": seeds[1]},
             "al": {"strategy": strategy, "filter": filter, "initial_seed": seeds[2]},
             "anchoral": {"num_anchors": num_anchors},
             "wandb": {"name": str(folder), "group": "g"}}
  (folder / "hparams.json").write_text(json.dumps(hparams))
  lines = [json.dumps(rec) for rec in records or []]
  for r in range(rounds if records is None else 0):
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
  runs = report_cells.find_runs(synthetic)
  assert len(runs) == 32
  groups = report_cells.cells(runs)
  assert len(groups) == 8 and all(len(v) == 4 for v in groups.values())
  # Rows in the paper's order; the differing field becomes the variant label.
  rows = list(dict.fromkeys(k[1:] for k in groups))
  assert rows == [("random", "none", ""), ("entropy", "randomsubset", ""),
                  ("entropy", "anchoral", ""), ("entropy", "anchoral", "num_anchors=50")]


def test_overall_medians_and_iqr_by_hand(synthetic):
  _, overall, _ = report_tables.tables(report_cells.find_runs(synthetic))
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
  _, overall, matched = report_tables.tables(report_cells.find_runs(synthetic))
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
  assert pngs == sorted(f"{stem}-{d}.png" for stem, *_ in report_plots.PLOTS for d in ("dsA", "dsB"))
  assert all((out / p).stat().st_size > 10_000 for p in pngs)
  body = path.read_text()
  assert body.index("### Summary per filter") < body.index("### Overall")
  assert (out / "summary.md").read_text() in body and len(pd.read_csv(out / "summary.csv")) == 8
  assert "### Unfinished runs" in body and "seed3: 3 rounds" in body
  assert "![minority_f1-dsA](minority_f1-dsA.png)" in body


def test_report_cli_and_empty_dir(synthetic, tmp_path, capsys):
  report.main([str(synthetic), "--out", str(tmp_path / "cli"), "--no_plots"])
  out = capsys.readouterr().out
  assert "### Overall" in out
  assert out.index("### Summary per filter") < out.index("### Overall")  # the summary first
  assert not list((tmp_path / "cli").glob("*.png"))
  with pytest.raises(SystemExit) as e:  # one message, exit 2 (tests/test_cli_rough_edges.py)
    report.main([str(tmp_path / "cli")])
  assert e.value.code == 2 and "No runs under" in capsys.readouterr().err


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
  assert {p.name.split("-")[0] for p in out.glob("*-tweets_iphone.png")} == {
      "minority_f1", "minority_found", "labelled_minority_share", "subpool_minority_share",
      "query_time"}
  assert "| random | Full pool |" in (out / "overall.md").read_text()


def test_a_field_only_some_runs_have_does_not_split_cells(tmp_path):
  for i, seeds in enumerate(SEEDS[:2]):
    write_run(tmp_path / f"r{i}", "dsA", "random", "none", 10, seeds, 0.5, 1.0)
  hp = json.loads((tmp_path / "r1" / "hparams.json").read_text())
  hp["index"] = {"import_path": ""}  # a field added to the config between the two runs
  (tmp_path / "r1" / "hparams.json").write_text(json.dumps(hp))
  assert list(report_cells.cells(report_cells.find_runs(tmp_path))) == [("dsA", "random", "none", "")]


# Per-filter summary. Runs of 4 rounds (budget 20, 30, 40, 50; 10 labels per round), seed i = 0..2:
#   AnchorAL: minority F1 0, 0.2, 0.4, 0.6 + 0.1 i -> AUC 0.9 + 0.05 i (median 0.95), final 0.7;
#     minority labels 2 (initial), 4, 7, 12 + i -> found 10 + i (median 11), share (12 + i) / 50;
#     subpool share 0.3, 0.4, 0.5 + 0.01 i (round 3 has none) -> 0.51; pool share 0.1 - 0.01 r in
#     every round -> 0.08 (round 2, beside the subpool's); query time i + 1 s in rounds 0-2 ->
#     3 (i + 1) s (median 6); rows scored 100 (i + 1), 50, 400 -> per run 100 (i + 1) -> 200.
#   Random/full pool (an older run: no pool share, no rows scored): minority F1 0 throughout,
#     labels 2, 3, 4, 5 -> found 3, share 0.1; subpool share 0.1; query time 0.5 s per round.
# Minority AUC [q25, q75]: AnchorAL 0.9 + 0.05 i over seeds i = 0..2 -> 0.925 .. 0.975.
SUMMARY_ANCHORAL = "| dsS | entropy | AnchorAL | 3 | 0.95 [0.93, 0.98] | 0.700 | 11 | 0.260 | 0.510 | 0.080 | 6.00 | 200 |"
SUMMARY_RANDOM = "| dsS | random | Full pool | 3 | 0.00 [0.00, 0.00] | 0.000 | 3 | 0.100 | 0.100 | – | 1.50 | – |"


def summary_records(filter: str, i: int) -> list[dict]:
  records = []
  for r in range(4):
    budget = 20 + 10 * r
    if filter == "anchoral":
      found, f1 = (2, 4, 7, 12 + i)[r], (0.0, 0.2, 0.4, 0.6 + 0.1 * i)[r]
    else:
      found, f1 = 2 + r, 0.0
    rec = {"step": r, "round": r, "budget": budget, "test/minority_f1": f1,
           "test/majority_f1": 0.9, "labelled/minority_share": found / budget,
           "labelled/count_class_0": budget - found, "labelled/count_class_1": found,
           "time/cumulative_query": (i + 1.0 if filter == "anchoral" else 0.5) * min(r + 1, 3)}
    if r < 3:
      rec.update({"time/query": i + 1.0 if filter == "anchoral" else 0.5, "subpool/size": 100,
                  "subpool/minority_share": (0.3, 0.4, 0.5 + 0.01 * i)[r]
                  if filter == "anchoral" else 0.1})
    if filter == "anchoral":
      rec["pool/minority_share"] = 0.1 - 0.01 * r
      if r < 3:
        rec["query/rows_scored"] = (100 * (i + 1), 50, 400)[r]
    records.append(rec)
  return records


@pytest.fixture(scope="module")
def summary_runs(tmp_path_factory) -> Path:
  root = tmp_path_factory.mktemp("summary")
  for strategy, filter in (("random", "none"), ("entropy", "anchoral")):
    for i, seeds in enumerate(SEEDS[:3]):
      write_run(root / f"{filter}{i}", "dsS", strategy, filter, 10, seeds, 0.0, 0.0,
                records=summary_records(filter, i))
  return root


def test_summary_table_numbers_by_hand(summary_runs):
  table = report_tables.summary_table(report_cells.find_runs(summary_runs))
  assert list(zip(table.strategy, table["filter"], table.n_runs, table.rounds, strict=True)) == [
      ("random", "none", 3, 4), ("entropy", "anchoral", 3, 4)]
  a = table.iloc[1]
  assert a.minority_auc == pytest.approx(0.95) and a.final_minority_f1 == pytest.approx(0.7)
  assert a.minority_found == 11 and a.labelled_minority_share == pytest.approx(0.26)
  assert a.subpool_minority_share == pytest.approx(0.51)
  assert a.pool_minority_share == pytest.approx(0.08)
  assert a.query_time_s == pytest.approx(6.0) and a.rows_scored == 200
  r = table.iloc[0]
  assert (r.minority_auc, r.final_minority_f1, r.minority_found) == (0, 0, 3)
  assert r.subpool_minority_share == pytest.approx(0.1) and r.query_time_s == pytest.approx(1.5)
  assert math.isnan(r.pool_minority_share) and math.isnan(r.rows_scored)  # not logged
  text = report_tables.summary_markdown(table)
  assert ("| Dataset | Strategy | Filter | n | Minority F1 AUC ↑ | Final minority F1 ↑ | "
          "Minority found ↑ | Labelled minority share | Subpool minority share | "
          "Pool minority share | Query time (s) ↓ | Rows scored / round |") in text
  assert SUMMARY_RANDOM in text and SUMMARY_ANCHORAL in text


def test_summary_of_older_runs_leaves_out_unlogged_columns(synthetic):
  table = report_tables.summary_table(report_cells.find_runs(synthetic))
  # 5-round runs: minority labels 100 * 0.05 = 5 at round 0, 200 * 0.09 = 18 at round 4.
  a = table[(table.dataset == "dsA") & (table["filter"] == "anchoral") & (table.variant == "")]
  assert a.minority_found.item() == 13 and a.labelled_minority_share.item() == pytest.approx(0.09)
  assert a.subpool_minority_share.item() == pytest.approx(0.2 + 0.45 / 10)  # median f1 0.45
  text = report_tables.summary_markdown(table)
  assert "Pool minority share" not in text and "Rows scored" not in text
  assert "| Variant | n |" in text and "| dsA | entropy | AnchorAL | num_anchors=50 | 4 |" in text


def test_plots_clamp_unit_axes_keep_overlaps_visible_and_show_the_pool(summary_runs, tmp_path):
  groups = report_cells.cells(report_cells.find_runs(summary_runs))
  paths = report_plots.plot_dataset("dsS", groups, tmp_path)
  assert sorted(p.name for p in paths) == sorted(f"{stem}-dsS.png" for stem, *_ in report_plots.PLOTS)
  for _, key, x, ylabel in report_plots.PLOTS:
    (ax,) = report_plots.figure("dsS", groups, key, x, ylabel).axes  # full-pool Random: no panel
    lo, hi = ax.get_ylim()
    if key in report_plots.UNIT_KEYS:
      assert 0 <= lo < hi <= 1
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert all(t % (5 if x == "budget" else 1) == 0 for t in ticks), ticks  # round numbers
  # The all-zero Random curve: autoscaling alone would give -0.055..0.055.
  only_random = {k: v for k, v in groups.items() if k[2] == "none"}
  (ax,) = report_plots.figure("dsS", only_random, report_cells.MINORITY, "budget", "F1").axes
  assert ax.get_ylim() == (0.0, pytest.approx(0.1))
  # Two cells with identical curves: the same width, told apart by dashes and marker.
  same = {("dsS", "entropy", f, ""): v for f, v in (("seals", groups[("dsS", "random", "none", "")]),
                                                    ("anchoral", groups[("dsS", "random", "none", "")]))}
  (ax,) = report_plots.figure("dsS", same, report_cells.MINORITY, "budget", "F1").axes
  a, b = ax.get_lines()
  assert list(a.get_ydata()) == list(b.get_ydata())
  assert a.get_linewidth() == b.get_linewidth() and a.get_marker() != b.get_marker()
  assert a.get_linestyle() != b.get_linestyle() or a._dash_pattern != b._dash_pattern
  # The subpool plot: the unlabelled pool's share (logged by the AnchorAL runs) dotted.
  (ax,) = report_plots.figure("dsS", groups, report_cells.SUBPOOL_SHARE, "round", "share").axes
  pool = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
  assert len(pool) == 1 and list(pool[0].get_ydata()) == pytest.approx([0.1, 0.09, 0.08, 0.07])


def test_fields_that_follow_from_the_dataset_do_not_split_cells(tmp_path):
  """Sizes scaled per dataset (constant within each) are no variant; an ablation within one
  dataset is, named against that dataset's usual value."""
  seeds = ((1, 1, 1), (2, 2, 2))
  for i, s in enumerate(seeds):
    write_run(tmp_path / f"a{i}", "dsA", "entropy", "anchoral", 10, s, 0.5, 1.0)
    write_run(tmp_path / f"b{i}", "dsB", "entropy", "anchoral", 7, s, 0.4, 1.0)
    write_run(tmp_path / f"a50-{i}", "dsA", "entropy", "anchoral", 50, s, 0.3, 1.0)
  groups = report_cells.cells(report_cells.find_runs(tmp_path))
  assert {k: len(v) for k, v in groups.items()} == {
      ("dsA", "entropy", "anchoral", ""): 2, ("dsB", "entropy", "anchoral", ""): 2,
      ("dsA", "entropy", "anchoral", "num_anchors=50"): 2}


def test_paper_plot_rules(summary_runs, tmp_path):
  """One line width for all; budget on every x axis; no full pool in the subpool plot; an IQR
  band (and its title) only when a cell has more than one run; the task's display name."""
  runs = report_cells.find_runs(summary_runs)
  groups = report_cells.cells(runs)
  for _, key, x, ylabel in report_plots.PLOTS:
    assert x == "budget"
    fig = report_plots.figure("dsS", groups, key, x, ylabel)
    (ax,) = fig.axes
    widths = {line.get_linewidth() for line in ax.get_lines()}
    assert widths == {report_plots.LINE_WIDTH}, (key, widths)
    assert "IQR band" in fig._suptitle.get_text() and len(ax.collections) >= 1
    if key == report_cells.SUBPOOL_SHARE:
      assert not any("Random (full pool)" in line.get_label() for line in ax.get_lines())
  one = {k: v[:1] for k, v in groups.items()}
  fig = report_plots.figure("dsS", one, report_cells.MINORITY, "budget", "F1")
  assert "IQR band" not in fig._suptitle.get_text() and not fig.axes[0].collections
  bbc = {("bbc_tech", *k[1:]): v for k, v in groups.items()}
  fig = report_plots.figure("bbc_tech", bbc, report_cells.MINORITY, "budget", "F1")
  assert fig._suptitle.get_text().startswith("bbc-tech-.01:")
  only_pool = {k: v for k, v in groups.items() if k[2] == "none"}
  assert report_plots.figure("dsS", only_pool, report_cells.SUBPOOL_SHARE, "budget", "s") is None


def test_no_bold_between_values_that_tie_when_printed_and_whole_rows():
  table = pd.DataFrame([
      {"dataset": "d", "strategy": "entropy", "filter": f, "variant": "", "n_runs": 3,
       "n_done": 3, "rounds": 5, "rounds_max": 5, "budget": 200.0, "minority_median": m,
       "minority_iqr": 0.1, "majority_median": 3.0 + i, "majority_iqr": 0.1,
       "time_min_median": 0.5, "time_min_iqr": 0.0}
      for i, (f, m) in enumerate((("seals", 24.91), ("anchoral", 24.94), ("none", 20.0)))])
  text = report_tables.markdown(table, "T")
  assert "| 24.9 (0.1) |" in text and "**24.9" not in text  # a tie as printed
  assert "**5.00 (0.10)**" in text  # the majority column has a clear best
  assert report_tables._fmt_summary(4796.5, "int") == "4,796"  # banker's rounding of .5
  assert report_tables._fmt_summary(23186.0, "int") == "23,186"


def test_line_styles_stay_distinct_past_eight_lines():
  styles = [report_plots.line_style(i, 50) for i in range(16)]
  assert len({(s["color"], s["marker"], s["dashes"]) for s in styles}) == 16
  assert all((a["color"], a["dashes"]) != (b["color"], b["dashes"])
             for a, b in zip(styles[:8], styles[8:], strict=True))
