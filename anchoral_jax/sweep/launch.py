"""Sweep files and scripts: the run files and manifest every backend writes, the Slurm array
and multi-host scripts (from launch/ templates) with their commands files, and `--shard`, a
host's share of a sweep (`sweep.py` says how a sweep picks its backend).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from anchoral_jax.fileio import write_text_atomic
from anchoral_jax.sweep.runs import Run
from anchoral_jax.sweep.seeds import Job

LAUNCH_DIR = Path(__file__).resolve().parents[2] / "launch"  # the repo root
SWEEP_DIR = "_sweep"  # under runs_dir: manifests, generated scripts, Slurm logs


def anchoral_command(python: str = sys.executable) -> str:
  """How generated scripts start `anchoral` by default (override with $ANCHORAL).

  The scripts split $ANCHORAL on spaces, so the interpreter path must not contain any.
  """
  if any(ch.isspace() for ch in python):
    raise ValueError(f"Interpreter path {python!r} has whitespace; set $ANCHORAL in the script.")
  return f"{python} -m anchoral_jax.cli"


def write_run_files(runs: Sequence[Run], runs_dir: str | os.PathLike) -> Path:
  """`<run>/overrides.json` for each run and the manifest `_sweep/<experiment>.jsonl`."""
  runs_dir = Path(runs_dir).resolve()
  sweep_dir = runs_dir / SWEEP_DIR
  sweep_dir.mkdir(parents=True, exist_ok=True)
  lines = []
  for run in runs:
    workdir = run.workdir(runs_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    record = {"name": run.name, "cell": run.cell, "experiment": run.experiment,
              "config": run.config_spec, "arg": run.arg, "point": dict(run.point),
              "overrides": dict(run.overrides),
              "command": "anchoral " + shlex.join(run.argv(runs_dir))}
    _write_json(workdir / "overrides.json", record)
    lines.append(json.dumps({**record, "workdir": str(workdir), "done": run.done(runs_dir)}))
  manifest = sweep_dir / f"{runs[0].experiment}.jsonl"
  write_text_atomic(manifest, "".join(line + "\n" for line in lines))
  return manifest


def write_commands(runs: Sequence[Job], runs_dir: str | os.PathLike) -> Path:
  """A new `_sweep/<experiment>-<UTC time>.commands`: one `workdir<TAB>anchoral arguments` line
  per job (a run, or a seed group with its cell's directory); the generated script names it.

  Never rewritten: a pending or requeued Slurm array task reads its line by number long after
  submission, so a re-run of the sweep (fewer unfinished runs, other line numbers) must not
  touch the file an earlier submission reads. Created exclusively: two submissions within the
  same second get `-2`, `-3`, ... suffixes instead of sharing a file."""
  runs_dir = Path(runs_dir).resolve()
  sweep_dir = runs_dir / SWEEP_DIR
  sweep_dir.mkdir(parents=True, exist_ok=True)
  stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
  text = "".join(f"{r.workdir(runs_dir)}\t{shlex.join(r.argv(runs_dir))}\n" for r in runs)
  for n in itertools.count(1):
    path = sweep_dir / f"{runs[0].experiment}-{stamp}{'' if n == 1 else f'-{n}'}.commands"
    try:
      with open(path, "x") as f:
        f.write(text)
    except FileExistsError:
      continue
    return path
  raise AssertionError("unreachable")


def _write_json(path: Path, obj: Any) -> None:
  write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def render(template: str, **values: Any) -> str:
  """launch/<template> with each {{KEY}} replaced (shell `$` stays untouched)."""
  path = LAUNCH_DIR / template
  if not path.exists():
    raise FileNotFoundError(f"Launch template {path} is missing: run from a source checkout "
                            "(pip install -e .), which has the launch/ folder.")
  text = path.read_text()
  for key, value in values.items():
    text = text.replace("{{" + key + "}}", str(value))
  if "{{" in text:
    raise ValueError(f"{path}: unfilled placeholder near {text[text.index('{{'):][:40]!r}.")
  return text


# ---------------------------------------------------------------------------------------------
# Slurm and multi-host scripts: one line of a commands file per job.
# ---------------------------------------------------------------------------------------------

def _pending(runs: Sequence[Job], runs_dir: str | os.PathLike):
  """(runs_dir, unfinished runs, experiment, their commands file) or None when all are DONE."""
  runs_dir = Path(runs_dir).resolve()
  todo = [r for r in runs if not r.done(runs_dir)]
  if not todo:
    return None
  return runs_dir, todo, todo[0].experiment, write_commands(todo, runs_dir)


def write_slurm(runs: Sequence[Job], runs_dir: str | os.PathLike, config: str,
                parallel: int = 0, sbatch: Sequence[str] = (),
                python: str = sys.executable, lead: int = 120,
                max_array: int | None = None) -> Path | None:
  """An sbatch array script over the unfinished runs (None when all are DONE); what to launch.

  `parallel` N >= 1: at most N tasks run at once (the array throttle `%N`); 0: no limit.
  More unfinished runs than `max_array` (the cluster's MaxArraySize: indices 0..max_array-1)
  become several arrays, `<experiment>-partK.sbatch`, each reading its own lines of the one
  commands file, and `<experiment>-submit.sh` submits them all (with `parallel`, each after the
  last, so that no more than N tasks run at once in all); that script is returned."""
  pending = _pending(runs, runs_dir)
  if pending is None:
    return None
  runs_dir, todo, experiment, commands = pending
  sweep_dir = runs_dir / SWEEP_DIR
  (sweep_dir / "slurm").mkdir(parents=True, exist_ok=True)
  size = len(todo) if not max_array else max_array
  chunks = [(start, min(start + size, len(todo))) for start in range(0, len(todo), size)]
  from anchoral_jax.config import CACHE_DIR_ENV, DEFAULT_CACHE_DIR
  from anchoral_jax.data.paper_files import resolve_manual_dir

  cache_dir = Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser().resolve()
  scripts = []
  for k, (start, stop) in enumerate(chunks, 1):
    script = sweep_dir / (f"{experiment}.sbatch" if len(chunks) == 1
                          else f"{experiment}-part{k}.sbatch")
    part = "" if len(chunks) == 1 else (f"part {k} of {len(chunks)} (lines {start + 1}-{stop}, "
                                        f"MaxArraySize {max_array}): ")
    extra = "".join(f"#SBATCH {s}\n" for s in sbatch)
    text = render("slurm_array.sbatch.tmpl", EXPERIMENT=experiment, CONFIG=config,
                  DATE=datetime.datetime.now().isoformat(timespec="seconds"), PART=part,
                  NUM_RUNS=stop - start, NUM_DONE=len(runs) - len(todo), OFFSET=start,
                  LAST=stop - start - 1, THROTTLE=f"%{parallel}" if parallel >= 1 else "",
                  LOG_DIR=sweep_dir / "slurm", SBATCH_EXTRA=extra.rstrip("\n") or "#",
                  COMMANDS=commands, SCRIPT=script, CWD=Path.cwd(), LEAD=lead,
                  CACHE_DIR=shlex.quote(str(cache_dir)),
                  DATA_DIR=shlex.quote(str(resolve_manual_dir().resolve())),
                  ANCHORAL=anchoral_command(python))
    write_text_atomic(script, text)
    script.chmod(0o755)
    scripts.append(script)
  if len(scripts) == 1:
    return scripts[0]
  chain = parallel >= 1  # one array after the other keeps the whole sweep within N at once
  lines = ["#!/bin/bash",
           f"# {experiment}: {len(todo)} unfinished runs as {len(scripts)} arrays (the cluster's",
           f"# MaxArraySize is {max_array}). Generated by `anchoral sweep --backend slurm`.",
           "set -euo pipefail", "dep=()"]
  for script in scripts:
    lines.append(f"job=$(sbatch --parsable \"${{dep[@]}}\" {shlex.quote(str(script))})")
    lines.append('echo "Submitted $job: ' + script.name + '"')
    if chain:
      lines.append('dep=(--dependency=afterany:"${job%%;*}")')
  submit = sweep_dir / f"{experiment}-submit.sh"
  write_text_atomic(submit, "\n".join(lines) + "\n")
  submit.chmod(0o755)
  return submit


def write_multihost(runs: Sequence[Job], runs_dir: str | os.PathLike, config: str,
                    python: str = sys.executable) -> Path | None:
  """A script to start on every host; it runs the unfinished runs one after the other."""
  pending = _pending(runs, runs_dir)
  if pending is None:
    return None
  runs_dir, todo, experiment, commands = pending
  script = runs_dir / SWEEP_DIR / f"{experiment}-multihost.sh"
  text = render("multihost.sh.tmpl", EXPERIMENT=experiment, CONFIG=config,
                DATE=datetime.datetime.now().isoformat(timespec="seconds"),
                NUM_RUNS=len(todo), COMMANDS=commands, SCRIPT=script, CWD=Path.cwd(),
                ANCHORAL=anchoral_command(python))
  write_text_atomic(script, text)
  script.chmod(0o755)
  return script



# ---------------------------------------------------------------------------------------------
# Shards: each host of a pod (or node of a cluster) runs its own share of a sweep.
# ---------------------------------------------------------------------------------------------

GCE_METADATA = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/"


def _gce_metadata(key: str) -> str | None:
  """A Cloud TPU VM's instance attribute (where JAX also reads the worker id), or None off GCE.

  Only `--shard=auto` asks, and only on a machine whose DMI says Google Compute Engine: the
  metadata server is the VM's own (link-local), never the internet."""
  try:
    product = Path("/sys/class/dmi/id/product_name").read_text()
  except OSError:
    return None
  if "Google" not in product:
    return None
  import urllib.request

  req = urllib.request.Request(GCE_METADATA + key, headers={"Metadata-Flavor": "Google"})
  try:
    with urllib.request.urlopen(req, timeout=5) as r:
      return r.read().decode().strip()
  except OSError:
    return None


def shard_from_env(environ: Mapping[str, str] | None = None,
                   metadata: Callable[[str], str | None] = _gce_metadata) -> tuple[int, int]:
  """(this host's index, number of hosts) for `--shard=auto`.

  In order: TPU_WORKER_ID with TPU_WORKER_HOSTNAMES (or TPU_PROCESS_ADDRESSES), as on GKE; a
  Cloud TPU VM's metadata (agent-worker-number, worker-network-endpoints), as
  `gcloud compute tpus tpu-vm ssh --worker=all` gives no environment; Slurm's SLURM_PROCID and
  SLURM_NTASKS (srun, one task per node)."""
  env = os.environ if environ is None else environ
  hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES")
  if env.get("TPU_WORKER_ID") and hosts:
    return int(env["TPU_WORKER_ID"]), len(hosts.split(","))
  worker = metadata("agent-worker-number")
  endpoints = metadata("worker-network-endpoints") if worker else None
  if worker and endpoints:
    return int(worker), len(endpoints.split(","))
  if env.get("SLURM_PROCID") and env.get("SLURM_NTASKS"):
    return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
  raise ValueError("--shard=auto found no TPU worker id (TPU_WORKER_ID and "
                   "TPU_WORKER_HOSTNAMES, or a Cloud TPU VM's metadata) and no Slurm task "
                   "(SLURM_PROCID, SLURM_NTASKS): pass --shard=I/N on host I of N.")


def parse_shard(shard: str, environ: Mapping[str, str] | None = None,
                metadata: Callable[[str], str | None] = _gce_metadata) -> tuple[int, int] | None:
  """'' -> None (every run); 'I/N' -> (I, N) with 0 <= I < N; 'auto' -> `shard_from_env`."""
  shard = (shard or "").strip()
  if not shard:
    return None
  if shard == "auto":
    index, count = shard_from_env(environ, metadata)
  else:
    i, slash, n = shard.partition("/")
    if not (slash and i.isdigit() and n.isdigit()):
      raise ValueError(f"--shard={shard}: expected I/N (e.g. --shard=0/4 on the first of 4 "
                       "hosts) or auto.")
    index, count = int(i), int(n)
  if not 0 <= index < count:
    raise ValueError(f"--shard: host index {index} is not in 0..{count - 1} (of {count}).")
  return index, count


def select_shard(runs: Sequence[Job], index: int, count: int) -> list[Job]:
  """Share `index` of `count`: every count-th run of the full expansion, starting at index.

  Round-robin, not blocks: a sweep lists a cell's seeds together, so each host gets a mix of
  cells (and of run lengths) rather than all seeds of a few."""
  return list(runs[index::count])

