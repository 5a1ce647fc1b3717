"""Seeds of a table cell in one process (`loop.run_many`, vmapped heads) vs one process each.

  .venv/bin/python bench/bench_seeds.py                    # S = 1, 2, 4, 8; ~15 min on 2 cores
  .venv/bin/python bench/bench_seeds.py --seeds 1,2 --rounds 4 --no-record

The cell: configs/reproduce_cpu.py (bbc_tech, AnchorAL + entropy, frozen MiniLM + linear head)
cut to `--rounds` query rounds, seeds (data.seed, model.seed, al.initial_seed) = (s, s, s).
The encoder features and the index are cached before timing (both modes share them); each
mode starts fresh processes (the persistent XLA cache on, as `anchoral run` has it, warmed by
the cache-filling run), so the times include process start, set-up and compilation: what a
sweep pays per run. "one process": S runs through `loop.run_many` in one process; "S
processes": the same S runs as S `anchoral run` processes one after another. Runs per hour =
S / wall seconds x 3600. Appends a row to bench/RESULTS.md (date, machine, load).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import harness  # noqa: E402

CONFIG = "configs/reproduce_cpu.py:demo=False"


def overrides(seed: int, rounds: int, cache: str) -> dict[str, object]:
  return {"data.seed": seed, "model.seed": seed, "al.initial_seed": seed,
          "al.budget": 100 + 25 * rounds, "data.cache_dir": cache, "wandb.mode": "disabled"}


def worker(seeds: list[int], rounds: int, cache: str, runs_dir: str) -> None:
  """Runs the given seeds in this process (`loop.run_many`)."""
  from anchoral_jax import parallel
  from anchoral_jax.al import loop
  from anchoral_jax.sweep import runs as sweep_runs

  parallel.enable_compilation_cache(cache)
  configs = []
  for s in seeds:
    c = sweep_runs.load_module(ROOT / "configs" / "reproduce_cpu.py").get_config(None)
    sweep_runs.apply_overrides(c, overrides(s, rounds, cache))
    configs.append(c)
  loop.run_many(configs, [Path(runs_dir) / f"seed{s}" for s in seeds])


def _run(seeds: list[int], rounds: int, cache: str, runs_dir: str) -> float:
  t0 = time.perf_counter()
  subprocess.run([sys.executable, __file__, "--worker", ",".join(map(str, seeds)),
                  "--rounds", str(rounds), "--cache", cache, "--runs-dir", runs_dir],
                 check=True, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  return time.perf_counter() - t0


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--seeds", default="1,2,4,8")
  ap.add_argument("--rounds", type=int, default=20)
  ap.add_argument("--cache", default=os.path.expanduser("~/.cache/anchoral_jax"))
  ap.add_argument("--no-record", action="store_true")
  ap.add_argument("--worker", default="")
  ap.add_argument("--runs-dir", default="")
  a = ap.parse_args()
  if a.worker:
    worker([int(s) for s in a.worker.split(",")], a.rounds, a.cache, a.runs_dir)
    return
  tmp = Path(tempfile.mkdtemp(prefix="bench_seeds-"))
  try:
    _run([100], a.rounds, a.cache, str(tmp / "warm"))  # features, index, XLA cache
    rows = []
    for s in [int(x) for x in a.seeds.split(",")]:
      seeds = list(range(1, s + 1))
      load0 = harness.load()
      together = _run(seeds, a.rounds, a.cache, str(tmp / f"one-{s}"))
      apart = sum(_run([x], a.rounds, a.cache, str(tmp / f"sep-{s}")) for x in seeds)
      # Same results either way (tests/test_seeds.py checks it; spot-check the summaries).
      for x in seeds:
        one = json.loads((tmp / f"one-{s}" / f"seed{x}" / "summary.json").read_text())
        sep = json.loads((tmp / f"sep-{s}" / f"seed{x}" / "summary.json").read_text())
        key = "auc/minority_f1" if "auc/minority_f1" in one else sorted(one)[0]
        assert abs(one[key] - sep[key]) < 1e-3, (x, one[key], sep[key])
      rows.append((s, together, apart, load0, harness.load()))
      print(f"S={s}: one process {together:.1f} s ({s / together * 3600:.0f} runs/h), "
            f"{s} processes {apart:.1f} s ({s / apart * 3600:.0f} runs/h), "
            f"ratio {apart / together:.2f}x  (load {load0} -> {harness.load()})", flush=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  if a.no_record:
    return
  lines = ["\n## Seeds in one process (`loop.run_many`) vs one process per seed (issue 15)\n",
           f"{harness.now()}, {harness.machine()}, {harness.versions(['jax', 'jaxlib'])}. "
           f"Cell: reproduce_cpu bbc_tech AnchorAL+entropy, frozen MiniLM + head, "
           f"{a.rounds} query rounds; process start, set-up and compile included (features, "
           "index and XLA cache warm).\n",
           "| S | one process (s) | runs/h | S processes (s) | runs/h | ratio | load before -> after |",
           "|---|---|---|---|---|---|---|"]
  for s, together, apart, l0, l1 in rows:
    lines.append(f"| {s} | {together:.1f} | {s / together * 3600:.0f} | {apart:.1f} | "
                 f"{s / apart * 3600:.0f} | {apart / together:.2f}x | {l0} -> {l1} |")
  with open(harness.RESULTS, "a") as f:
    f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  main()
