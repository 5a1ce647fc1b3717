"""Every experiment config builds with every documented argument; every sweep expands into
uniquely named runs, 8 seed combinations per cell; typos fail (CONTRIBUTING.md §3)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import ml_collections
import pytest

from anchoral_jax.config import num_query_rounds
from anchoral_jax.sweep import runs as sweep_runs
from anchoral_jax.sweep import seeds as sweep_seeds

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {name: sweep_runs.load_module(ROOT / "configs" / f"{name}.py")
           for name in ("main", "ablations", "other_models", "reproduce_cpu")}
main, ablations, other_models = CONFIGS["main"], CONFIGS["ablations"], CONFIGS["other_models"]
PAPER_SEEDS = {654321, 123456}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_argument_is_documented(name):
  module = CONFIGS[name]
  for key in module.parse(None).keys():
    assert key in module.__doc__, f"configs/{name}.py: argument {key!r} is not documented"
  for needle in ("anchoral sweep --config", "runlocal", "Expected"):
    assert needle in module.__doc__


def _check_paper_defaults(c: ml_collections.ConfigDict) -> None:
  assert (c.al.budget, c.al.query_size, c.al.initial_size, c.al.subpool_size) == (
      5000, 25, 100, 10_000)
  assert (c.data.max_length, c.data.test_size, c.train.learning_rate) == (512, 0, 4e-5)
  assert c.wandb.mode == "offline"
  # The budget is the total labelled size, the 100 initial labels included (official
  # max_budget): 196 query rounds, 197 rounds, 5,000 labels at the end.
  assert num_query_rounds(c) == 196
  assert c.al.initial_size + num_query_rounds(c) * c.al.query_size == 5000


@pytest.mark.parametrize("dataset", main.DATASETS)
def test_main_builds_every_row(dataset):
  for strategy, filter in main.ROWS + main.FULLPOOL_ROWS:
    c = main.get_config(f"dataset={dataset},strategy={strategy},filter={filter}")
    assert (c.data.name, c.al.strategy, c.al.filter) == (dataset, strategy, filter)
    assert c.model.name == "bert-base-uncased" and c.model.pretrained
    _check_paper_defaults(c)
    assert c.wandb.group == f"main/dataset={dataset}/strategy={strategy}/filter={filter}"
    assert {"main", f"dataset:{dataset}", f"strategy:{strategy}", f"filter:{filter}"} <= set(
        c.wandb.tags)
    assert c.wandb.job_type == "al"  # by job; the row is the config's al.strategy/al.filter
    assert (c.al.strategy, c.al.filter) == (strategy, filter)


@pytest.mark.parametrize("flag", ["runlocal", "tiny"])
def test_runlocal_is_small_and_offline(flag):
  c = main.get_config(f"{flag},dataset=wikitoxic,strategy=badge,filter=seals")
  assert c.data.name == main.LOCAL_DATASET and c.data.kwargs.pool_size == 1500
  assert (c.model.name, c.model.pretrained, c.model.tokenizer) == ("tiny", False,
                                                                  "all-MiniLM-L6-v2")
  assert num_query_rounds(c) == 2 and c.al.subpool_size < c.data.kwargs.pool_size
  assert (c.al.strategy, c.al.filter) == ("badge", "seals")


def test_main_rejects_bad_arguments():
  with pytest.raises(ValueError, match="Unknown config argument 'datset'"):
    main.get_config("datset=wikitoxic")
  with pytest.raises(ValueError, match="not a row"):
    main.get_config("strategy=random,filter=anchoral")
  with pytest.raises(ValueError, match="Unknown dataset"):
    main.get_config("dataset=imdb")
  with pytest.raises(ValueError, match="runlocal"):
    main.get_config("dataset=tweets_iphone")
  with pytest.raises(ValueError, match="Unknown strategies"):
    sweep_runs.expand(f"{ROOT}/configs/main.py:strategies=entropy+bald")
  with pytest.raises(ValueError, match="seeds=9"):
    sweep_runs.expand(f"{ROOT}/configs/main.py:seeds=9")


def test_configs_are_locked_against_typos():
  c = main.get_config("runlocal")
  c.lock()
  with pytest.raises(AttributeError, match="budget"):
    c.al.budgte = 10
  with pytest.raises(KeyError, match="Unknown config key 'al.budgte'"):
    sweep_runs.apply_overrides(c, {"al.budgte": 10})
  with pytest.raises(KeyError, match="Unknown config key 'nope.x'"):
    sweep_runs.apply_overrides(c, {"nope.x": 1})


@pytest.mark.parametrize("cell", [(a, k) for a, ks in ablations.CELLS.items() for k in ks])
def test_ablations_build_every_cell(cell):
  ablation, knobs = cell
  arg = ",".join([f"ablation={ablation}"] + [f"{k}={v}" for k, v in knobs.items()])
  c = ablations.get_config(arg)
  assert (c.data.name, c.al.strategy) == ("amazoncat_agri", "entropy")
  expect = {**ablations.DEFAULTS, **knobs}
  assert c.anchoral.anchor_strategy == expect["anchor_strategy"]
  assert c.anchoral.num_anchors == expect["num_anchors"]
  assert c.anchoral.num_neighbours == expect["num_neighbours"]
  if ablation == "subpool":
    assert (c.al.filter, c.al.subpool_size) == ("randomsubset", 1000)
  else:
    assert (c.al.filter, c.al.subpool_size) == ("anchoral", 10_000)
  assert f"ablation:{ablation}" in c.wandb.tags
  assert ablations.get_config(arg + ",runlocal").data.name == main.LOCAL_DATASET


def test_ablations_reject_mixed_knobs():
  with pytest.raises(ValueError, match="one knob per cell"):
    ablations.get_config("ablation=num_anchors,num_neighbours=500")
  with pytest.raises(ValueError, match="one knob per cell"):
    ablations.get_config("num_anchors=50")  # ablation=main changes nothing
  with pytest.raises(ValueError, match="Unknown ablation"):
    ablations.get_config("ablation=anchors")


def test_other_models_every_family_builds():
  c = other_models.get_config("model=bert-tiny,dataset=amazoncat_agri,filter=seals")
  assert c.model.name == "google/bert_uncased_L-2_H-128_A-2" and c.model.pretrained
  assert (c.data.name, c.al.strategy, c.al.filter) == ("amazoncat_agri", "entropy", "seals")
  from anchoral_jax import models
  from anchoral_jax.al import validation

  for name, m in other_models.MODELS.items():
    local = other_models.get_config(f"model={name},runlocal")
    assert (local.model.name, local.model.pretrained) == (m.local_preset, False)
    assert models.family(models.PRESETS[m.local_preset]) is models.FAMILIES[m.family]
    validation.validate(local)
    assert other_models.get_config(f"model={name}").model.name == m.checkpoint
  assert set(other_models.MODELS) == {"bert-tiny", "albert-base-v2", "deberta-v3-base", "gpt2",
                                      "t5-base"}


@pytest.mark.parametrize("spec,runs,cells", [
    ("main.py", 320, 40), ("main.py:runlocal", 80, 10),
    ("main.py:datasets=wikitoxic+agnews_business,fullpool", 208, 26),
    ("ablations.py", 72, 9), ("ablations.py:runlocal", 72, 9),
    ("other_models.py", 240, 30), ("other_models.py:runlocal", 120, 15),
])
def test_every_sweep_expands_into_unique_runs_with_8_seeds_per_cell(spec, runs, cells):
  expanded = sweep_runs.expand(f"{ROOT}/configs/{spec}")  # builds and validates every run's config
  assert len(expanded) == runs
  names = [r.name for r in expanded]
  assert len(set(names)) == len(names)
  by_cell = collections.defaultdict(list)
  for r in expanded:
    by_cell[r.cell].append(r)
  assert len(by_cell) == cells
  for cell, members in by_cell.items():
    assert len(members) == 8, cell
    seeds = {(r.overrides["data.seed"], r.overrides["model.seed"], r.overrides["al.initial_seed"])
             for r in members}
    assert len(seeds) == 8 and {s for t in seeds for s in t} == PAPER_SEEDS
    groups = {r.overrides["wandb.group"] for r in members}
    assert groups == {f"{r.experiment}/{cell}"}
  for r in expanded[:3]:
    c = sweep_runs.build_config(r)
    assert c.wandb.name == r.name and c.data.seed == r.overrides["data.seed"]
    assert not any(k in r.arg for k in ("seeds=", "datasets=", "fullpool", "ablations="))


def test_cli_rejects_typos_before_anything_runs(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  cmd = [sys.executable, "-m", "anchoral_jax.cli", "sweep", "--runs_dir", str(tmp_path),
         "--backend", "dry", "--config"]
  ok = subprocess.run(cmd + ["configs/main.py:runlocal"], cwd=ROOT, env=env,
                      capture_output=True, text=True)
  assert ok.returncode == 0, ok.stderr
  assert "80 runs in 10 cells (0 DONE)" in ok.stdout
  bad_key = subprocess.run(cmd + ["configs/main.py:runlocal", "--config.al.budgte=3"], cwd=ROOT,
                           env=env, capture_output=True, text=True)
  assert bad_key.returncode == 2 and "did you mean al.budget?" in bad_key.stderr
  assert "Traceback" not in bad_key.stderr
  bad_arg = subprocess.run(cmd + ["configs/ablations.py:runlocal,num_anchor=5"], cwd=ROOT,
                           env=env, capture_output=True, text=True)
  assert bad_arg.returncode != 0 and "Unknown config argument 'num_anchor'" in bad_arg.stderr
  assert not any(tmp_path.iterdir())  # dry writes nothing


# ---------------------------------------------------------------------------------------------
# configs/reproduce_cpu.py: the CPU-scale reproduction keeps the paper's ratios.
# ---------------------------------------------------------------------------------------------

reproduce = CONFIGS["reproduce_cpu"]


@pytest.mark.parametrize("dataset", list(reproduce.POOL_SIZES))
def test_reproduce_cpu_pool_sizes_are_the_builders(dataset):
  from anchoral_jax.data import load_task

  assert len(load_task(dataset).train) == reproduce.POOL_SIZES[dataset]


@pytest.mark.parametrize("dataset", list(reproduce.POOL_SIZES))
def test_reproduce_cpu_keeps_the_papers_ratios(dataset):
  c = reproduce.get_config(f"dataset={dataset}")
  pool = reproduce.POOL_SIZES[dataset]
  retrieved = c.anchoral.num_anchors * c.anchoral.num_neighbours * 2  # binary tasks
  # AG News in the paper: 1,000 retrieved / M 10,000 / pool 90,910 / 5,000 labels.
  assert retrieved / c.al.subpool_size == pytest.approx(0.1, rel=0.08)
  assert c.al.subpool_size / pool == pytest.approx(10_000 / 90_910, rel=0.01)
  # Labels bought scale with the pool; the 100 initial labels are counts, as the anchors.
  assert (c.al.budget - c.al.initial_size) / pool == pytest.approx(4_900 / 90_910, rel=0.03)
  assert c.seals.num_neighbours == c.anchoral.num_neighbours
  assert (c.train.trainable, c.model.pooling, c.al.query_size) == ("head", "mean", 25)
  assert c.index.embed_max_length == c.data.max_length  # one encoder pass serves both
  big = reproduce.get_config(f"dataset={dataset},ablation=num_neighbours,neighbours_x=100")
  assert big.anchoral.num_neighbours * 20 >= 9 * c.al.subpool_size  # 10x the cap, as the paper
  sub = reproduce.get_config(f"dataset={dataset},ablation=subpool")
  assert (sub.al.filter, sub.al.subpool_size) == ("randomsubset", retrieved)


def test_reproduce_cpu_sweeps():
  demo = sweep_runs.expand(f"{ROOT}/configs/reproduce_cpu.py:demo")
  assert [sweep_runs.build_config(r).al.filter for r in demo[::5]] == list(reproduce.FILTERS)
  assert len(demo) == 4 * 5 and len(sweep_seeds.group_seeds(demo)) == 4  # one job per filter
  assert num_query_rounds(sweep_runs.build_config(demo[0])) >= 40
  runs = sweep_runs.expand(f"{ROOT}/configs/reproduce_cpu.py")
  assert len({r.name for r in runs}) == len(runs) == 10 * (2 * (1 + 3 * 4) + 7)
  cells = collections.Counter(r.name.rsplit("/", 1)[0] for r in runs)
  assert set(cells.values()) == {10}
  # The paper's 8 seed combinations first (the old 3-seed runs stay the first 3), then k:k:k.
  points = reproduce.seed_points(10)
  assert points[:8] == list(main.seed_points(8))
  assert points[8:] == [dict.fromkeys(main.SEED_KEYS, k) for k in (1, 2)]
  assert len({tuple(p.values()) for p in points}) == 10
  local = sweep_runs.expand(f"{ROOT}/configs/reproduce_cpu.py:runlocal,seeds=1")
  assert all(sweep_runs.build_config(r).model.name == "tiny" for r in local)
