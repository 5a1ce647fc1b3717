"""Sweeps: a config file's `sweep(add, arg)` expanded into named run directories (CONTRIBUTING.md §3).

`anchoral sweep` (`main`) here; the jobs live beside it in runs.py (expansion and naming),
seeds.py (a cell's seeds as one job), local.py (the local backend) and launch.py (run files,
Slurm and multi-host scripts, shards).

`sweep(add, arg)` calls `add(**point)` once per run. Keys without a dot are `get_config`
arguments (merged into the config string after ':'); dotted keys are config overrides
(`--config.<key>=<value>`, e.g. seeds). The run directory name comes from the point, so the same
sweep always names the same runs: one level per argument in the order given, then one leaf
joining the overrides, e.g.
  dataset=agnews_business/strategy=entropy/filter=anchoral/dseed=654321,mseed=654321,iseed=123456
The name minus the leaf is the run's *cell* (the seeds of one table cell); it becomes the W&B
group, the full name the W&B run name. A config module may list `SWEEP_ARGS`: arguments that only
shape the sweep (subsets, seed counts) and are dropped from each run's config string.

Re-running a sweep skips runs whose `DONE` exists and resumes the others: `anchoral run` on the
same workdir continues from its last checkpoint. Backends:
  local      sequential or `parallel` subprocesses, a progress bar, `<run>/run.log` per run.
             SIGTERM/SIGINT/SIGHUP stop every run (SIGTERM, SIGKILL after a grace period)
             before the sweep exits; on Linux the runs also die with a SIGKILLed sweep.
  slurm      `<runs_dir>/_sweep/<experiment>.sbatch`: an array job, one task per unfinished run,
             requeued when preempted or near its time limit (launch/slurm_array.sbatch.tmpl).
  multihost  `<runs_dir>/_sweep/<experiment>-multihost.sh`: run it on every host; the runs go one
             after the other, each across all hosts via jax.distributed (launch/multihost.sh.tmpl).
  dry        lists the runs and their commands; writes nothing.
`--shard=I/N` (local and dry) keeps run i of the expansion when i % N == I: N hosts (a TPU
pod's workers, Slurm nodes) each run their own share, independently; `--shard=auto` takes I/N
from the TPU worker id and count, else from Slurm (`shard_from_env`). Every host partitions the
same full list, whatever is DONE, so the shares never depend on timing; the workdir lock keeps
two hosts off one run anyway.
Each backend but dry writes `<run>/overrides.json` (the point, the command) and a manifest
`<runs_dir>/_sweep/<experiment>.jsonl`; slurm and multihost also write a new
`<runs_dir>/_sweep/<experiment>-<UTC time>.commands` per submission (see `write_commands`).
`--group-seeds` (every backend) makes one job of each cell's runs that differ only in their seeds:
`anchoral run --seeds` over the cell's directory, the runs in lockstep in one process
(`loop.run_many`) in the same workdirs as without the flag; the job logs to `<cell>/run.log`.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anchoral_jax.sweep import slurm as sweep_slurm
from anchoral_jax.sweep.launch import (
  parse_shard,
  select_shard,
  write_multihost,
  write_run_files,
  write_slurm,
)
from anchoral_jax.sweep.local import (
  run_local,
)
from anchoral_jax.sweep.runs import (
  expand,
)
from anchoral_jax.sweep.seeds import (
  Job,
  group_seeds,
  members,
)

BACKENDS = ("local", "slurm", "multihost", "dry")


def main(config: str, runs_dir: str | os.PathLike, parallel: int = 0, backend: str = "local",
         overrides: Mapping[str, Any] | None = None, sbatch: Sequence[str] = (),
         devices: Sequence[str] = (), shard: str = "", group: bool = False) -> list[Job]:
  """`anchoral sweep`: expand `config` ("path.py[:arg]") and run or script it on `backend`;
  with `shard` ("I/N" or "auto"), only this host's share (local and dry backends); with
  `group`, one job per cell's seeds (`group_seeds`). `parallel` N >= 1: at most N jobs at once
  on either backend; 0: the backend's default (local: one at a time; Slurm: no limit).
  Returns the jobs (runs or groups)."""
  from anchoral_jax.errors import ConfigError

  if backend not in BACKENDS:
    raise ValueError(f"Unknown backend {backend!r}; choose from {BACKENDS}.")
  if parallel < 0:
    raise ConfigError(f"--parallel {parallel}: give N >= 1 (at most N runs at once) or 0 (the "
                      "backend's default: one at a time locally, no limit on Slurm).")
  try:
    part = parse_shard(shard)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if part is not None and backend not in ("local", "dry"):
    raise ConfigError(f"--shard splits a sweep between hosts that each run their share locally "
                      f"(--backend local or dry); --backend {backend} distributes the runs "
                      "itself: drop --shard.")
  runs = expand(config, overrides)
  jobs = group_seeds(runs) if group else runs
  what = "jobs" if group else "runs"
  runs_dir = Path(runs_dir).resolve()
  mine = jobs if part is None else select_shard(jobs, *part)
  where = "" if part is None else f" (shard {part[0]}/{part[1]}: {len(mine)} of {len(jobs)} {what})"
  n_done = sum(r.done(runs_dir) for r in mine)
  if backend == "dry":
    for r in mine:
      print(f"{'DONE ' if r.done(runs_dir) else 'todo '} {r.name}\n"
            f"      anchoral {shlex.join(r.argv(runs_dir))}")
    cells = len({r.cell for r in mine})
    n_runs = sum(len(members(r)) for r in mine)
    print(f"{len(mine)} {what}{f' ({n_runs} runs)' if group else ''} in {cells} cells "
          f"({n_done} DONE) under {runs_dir}{where}.")
    return mine
  if backend == "slurm":  # before any file: a sweep that cannot run fails here, once
    lead, sbatch = sweep_slurm.signal_lead(sbatch)
    sweep_slurm.check_time_limit(sbatch, lead)
    sweep_slurm.check_runs([r for r in runs if not r.done(runs_dir)])
  manifest = write_run_files(runs, runs_dir)  # all runs: every host writes the same manifest
  if backend == "local":
    if part is not None:
      print(f"shard {part[0]}/{part[1]}: {len(mine)} of the sweep's {len(jobs)} {what} on this "
            "host.")
    status = run_local(mine, runs_dir, parallel or 1, devices=devices)
    failed = [n for n, s in status.items() if s == "failed"]
    print(f"{len(mine)} {what}: {sum(s == 'done' for s in status.values())} finished now, "
          f"{sum(s == 'skipped' for s in status.values())} were DONE, {len(failed)} failed. "
          f"Manifest {manifest}. Next: anchoral report {runs_dir}")
    if failed:
      raise SystemExit(f"{len(failed)} {what} failed (re-run the same command to resume them): "
                       + ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else ""))
    return mine
  if backend == "slurm":
    script = _write_slurm_checked(jobs, runs_dir, config, parallel, sbatch, lead)
    how = f"sbatch {script}" if script is None or script.suffix == ".sbatch" else f"bash {script}"
  else:
    script = write_multihost(jobs, runs_dir, config)
    how = f"COORDINATOR=<host0>:<port> bash {script}   (on every host; see the script's header)"
  if script is None:
    print(f"All {len(jobs)} {what} are DONE; nothing to launch. Next: anchoral report {runs_dir}")
  else:
    print(f"{len(jobs) - n_done} of {len(jobs)} {what} to go ({n_done} DONE). Wrote {script} "
          f"and {manifest}.\nLaunch: {how}")
  return jobs


def _write_slurm_checked(jobs: Sequence[Job], runs_dir: Path, config: str, parallel: int,
                         sbatch: Sequence[str], lead: int) -> Path | None:
  """`write_slurm` after the last submission checks (`sweep/slurm.py`): warnings for requests
  left to the cluster's defaults, MaxArraySize."""
  for what in sweep_slurm.missing_requests(sbatch):
    sweep_slurm.warn(f"no {what}: pass --sbatch=... to request it.")
  max_array = sweep_slurm.max_array_size()
  if max_array is None:
    max_array = sweep_slurm.SLURM_MAX_ARRAY_SIZE
    sweep_slurm.warn(f"no Slurm here (`scontrol show config` failed): arrays of at most "
                     f"{max_array} tasks, Slurm's default MaxArraySize.")
  return write_slurm(jobs, runs_dir, config, parallel, sbatch, lead=lead, max_array=max_array)
