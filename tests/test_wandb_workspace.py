"""The paper's comparison as W&B saved views (anchoral_jax/tracking/workspace.py), built offline
with W&B's wandb-workspaces and checked object and spec (saving needs the W&B service)."""

from __future__ import annotations

import json

import pytest

from anchoral_jax import cli
from anchoral_jax.tracking import workspace as wandb_workspace

pytest.importorskip("wandb_workspaces", reason="wandb-workspaces (test extra) not installed")


def _runs(tmp_path, pairs):
  for i, (dataset, strategy, filter) in enumerate(pairs):
    d = tmp_path / f"run{i}" / "dseed=1"
    d.mkdir(parents=True)
    (d / "hparams.json").write_text(json.dumps(
        {"data": {"name": dataset}, "al": {"strategy": strategy, "filter": filter}}))
  (tmp_path / "run0" / "broken").mkdir()
  (tmp_path / "run0" / "broken" / "hparams.json").write_text("{")  # skipped, not fatal
  return tmp_path


def test_one_view_per_dataset_and_strategy_grouped_by_filter(tmp_path):
  runs = _runs(tmp_path, [("agnews_business", "entropy", "anchoral"),
                          ("agnews_business", "entropy", "seals"),
                          ("wikitoxic", "badge", "anchoral"),
                          ("agnews_business", "badge", "randomsubset")])
  pairs = wandb_workspace.cells(runs)
  assert pairs == [("agnews_business", "badge"), ("agnews_business", "entropy"),
                   ("wikitoxic", "badge")]
  views = wandb_workspace.build(pairs, "my-team", "anchoral-jax")
  assert [v.name for v in views] == ["AnchorAL: agnews_business / badge",
                                     "AnchorAL: agnews_business / entropy",
                                     "AnchorAL: wikitoxic / badge"]
  for view, (dataset, strategy) in zip(views, pairs, strict=True):
    assert (view.entity, view.project) == ("my-team", "anchoral-jax")
    assert str(view.runset_settings.filters) == (
        f"Config(\"data.value.name\") == '{dataset}' and "
        f"Config(\"al.value.strategy\") == '{strategy}'")
    assert [g.name for g in view.runset_settings.groupby] == ["al.filter"]
    plots = [(s.name, p.x, list(p.y), p.groupby_aggfunc, p.groupby_rangefunc)
             for s in view.sections for p in s.panels]
    assert plots == [
        ("Test minority F1 vs labelled budget", "budget", ["test/minority_f1"], "median",
         "minmax"),
        ("Minority found: labelled minority share vs budget", "budget",
         ["labelled/minority_share"], "median", "minmax"),
        ("Query time per round (s)", "round", ["time/query"], "median", "minmax"),
        ("Subpool minority share per round", "round", ["subpool/minority_share"], "median",
         "minmax")]
  # What W&B would store: the view spec, with the panels' metrics and the runset grouping.
  spec = json.loads(views[1]._to_model().model_dump_json())
  text = json.dumps(spec)
  assert spec["entity"] == "my-team" and spec["display_name"] == views[1].name
  for metric in ("test/minority_f1", "labelled/minority_share", "time/query",
                 "subpool/minority_share"):
    assert f'"metrics": ["{metric}"]' in text
  assert text.count('"group_agg": "median"') == 4 and text.count('"group_area": "minmax"') == 4
  assert spec["spec"]["section"]["run_sets"][0]["grouping"] == [
      {"section": "config", "name": "al.value.filter"}]  # W&B's path of the nested config key
  assert [(f["key"]["name"], f["op"], f["value"]) for f in
          spec["spec"]["section"]["run_sets"][0]["filters"]["filters"]] == [
      ("data.value.name", "=", "agnews_business"), ("al.value.strategy", "=", "entropy")]


def test_cli_lists_the_views_and_writes_their_specs(tmp_path, capsys):
  """`anchoral wandb-workspace` (cli.py routes to workspace.main)."""
  runs = _runs(tmp_path / "runs", [("wikitoxic", "entropy", "anchoral")])
  out = tmp_path / "views.json"
  cli.main(["anchoral", "wandb-workspace", str(runs), "--entity", "me", "--json", str(out)])
  assert "AnchorAL: wikitoxic / entropy: 4 panels" in capsys.readouterr().out
  assert len(json.loads(out.read_text())) == 1
  with pytest.raises(SystemExit) as e:
    cli.main(["anchoral", "wandb-workspace", str(tmp_path / "empty"), "--entity", "me"])
  assert e.value.code == 2
  assert capsys.readouterr().err.strip() == f"No runs (hparams.json) under {tmp_path / 'empty'}."
