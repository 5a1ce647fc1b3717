"""Seeds of a table cell in one process (`loop.run_many`, vmapped heads) vs one process each.

  .venv/bin/python bench/bench_seeds.py                    # S = 1, 2, 4, 8; ~15 min on 2 cores
  .venv/bin/python bench/bench_seeds.py --seeds 1,2 --rounds 4 --no-record
  .venv/bin/python bench/bench_seeds.py --device gpu --rounds 4        # bench/device_check.sh
  .venv/bin/python bench/bench_seeds.py --seeds 1 --rounds 1 --config configs/default.py:tiny \
      --set data.kwargs.pool_size=1500 --set al.filter=randomsubset    # seconds (a smoke test)

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

CONFIG = "configs/reproduce_cpu.py"
PLATFORMS = {"cpu": "cpu", "gpu": "cuda"}  # --device -> JAX_PLATFORMS (no silent CPU fallback)


def overrides(seed: int, rounds: int, cache: str) -> dict[str, object]:
  return {"data.seed": seed, "model.seed": seed, "al.initial_seed": seed,
          "al.budget": 100 + 25 * rounds, "data.cache_dir": cache, "wandb.mode": "disabled"}


def parse_set(items: list[str]) -> dict[str, object]:
  """`--set key=value` pairs; values are Python literals where they parse (ints, floats)."""
  import ast

  out: dict[str, object] = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise SystemExit(f"--set {item!r}: expected key=value")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def worker(seeds: list[int], rounds: int, cache: str, runs_dir: str, config: str,
           extra: dict[str, object]) -> None:
  """Runs the given seeds in this process (`loop.run_many`)."""
  from anchoral_jax import parallel
  from anchoral_jax.al import loop
  from anchoral_jax.sweep import runs as sweep_runs

  parallel.enable_compilation_cache(cache)
  path, _, arg = config.partition(":")
  configs = []
  for s in seeds:
    c = sweep_runs.load_module(ROOT / path).get_config(arg or None)
    sweep_runs.apply_overrides(c, {**overrides(s, rounds, cache), **extra})
    configs.append(c)
  loop.run_many(configs, [Path(runs_dir) / f"seed{s}" for s in seeds])


def _run(seeds: list[int], rounds: int, cache: str, runs_dir: str, a: argparse.Namespace
         ) -> float:
  t0 = time.perf_counter()
  subprocess.run([sys.executable, __file__, "--worker", ",".join(map(str, seeds)),
                  "--rounds", str(rounds), "--cache", cache, "--runs-dir", runs_dir,
                  "--config", a.config, *(f"--set={x}" for x in a.set)],
                 check=True, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": PLATFORMS[a.device]})
  return time.perf_counter() - t0


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("--seeds", default="1,2,4,8")
  ap.add_argument("--rounds", type=int, default=20)
  ap.add_argument("--cache", default=os.path.expanduser("~/.cache/anchoral_jax"))
  ap.add_argument("--no-record", action="store_true")
  ap.add_argument("--device", choices=sorted(PLATFORMS), default="cpu",
                  help="the workers' JAX_PLATFORMS (gpu: cuda, failing if there is none)")
  ap.add_argument("--config", default=CONFIG, help="FILE[:ARG], relative to the repo root")
  ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                  help="extra config overrides (e.g. data.kwargs.pool_size=1500)")
  ap.add_argument("--worker", default="")
  ap.add_argument("--runs-dir", default="")
  a = ap.parse_args()
  extra = parse_set(a.set)
  if a.worker:
    worker([int(s) for s in a.worker.split(",")], a.rounds, a.cache, a.runs_dir, a.config,
           extra)
    return
  tmp = Path(tempfile.mkdtemp(prefix="bench_seeds-"))
  try:
    _run([100], a.rounds, a.cache, str(tmp / "warm"), a)  # features, index, XLA cache
    rows = []
    for s in [int(x) for x in a.seeds.split(",")]:
      seeds = list(range(1, s + 1))
      load0 = harness.load()
      together = _run(seeds, a.rounds, a.cache, str(tmp / f"one-{s}"), a)
      apart = sum(_run([x], a.rounds, a.cache, str(tmp / f"sep-{s}"), a) for x in seeds)
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
           f"{harness.now()}, {harness.machine()}, {harness.versions(['jax', 'jaxlib'])}, "
           f"--device {a.device}. Cell: {a.config} {' '.join(a.set)} (default: reproduce_cpu "
           f"bbc_tech AnchorAL+entropy, frozen MiniLM + head), "
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
