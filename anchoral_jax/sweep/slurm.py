"""What `--backend slurm` checks before it writes a script (`sweep/command.py` says how a sweep picks
its backend): the runs' models and data resolve, the time limit leaves room for the USR1 lead, the
cluster's MaxArraySize (bigger sweeps become several arrays), and warnings for a script with no
time, GPU or memory request. A bad sweep fails here, once, not once per array task in the queue.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence

from anchoral_jax.sweep.runs import Run, build_config

DEFAULT_LEAD_S = 120  # USR1 this long before the time limit: the run stops, the task requeues
# slurmctld looks at time limits every 30 s (PERIODIC_TIMEOUT) and sends the warning signal at
# the first look with at most lead + 30 s left (measured on 22.05: lead 20 s, limit 60 s -> USR1
# 11 s after the start). A task whose limit is within this of the lead may get USR1 at once.
SIGNAL_SLACK_S = 30
SLURM_MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize (indices 0..1000)
_SIGNAL = re.compile(r"^(?:B:)?USR1@(\d+)$")


def _option(sbatch: Sequence[str], long: str, short: str = "") -> tuple[int, str] | None:
  """(index, value) of the last `--long=V`, `--long V`, `-sV` or `-s V` among the options."""
  found = None
  for i, opt in enumerate(sbatch):
    opt = opt.strip()
    if opt.startswith(f"--{long}="):
      found = i, opt.split("=", 1)[1]
    elif opt.startswith(f"--{long} "):
      found = i, opt.split(None, 1)[1]
    elif short and opt.startswith(f"-{short}") and not opt.startswith("--"):
      found = i, opt[2:].strip()
  return found


def parse_time(value: str) -> int | None:
  """Seconds of a Slurm time ("minutes", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S");
  None for UNLIMITED/INFINITE. Raises ValueError on anything else."""
  v = value.strip()
  if v.upper() in ("UNLIMITED", "INFINITE"):
    return None
  days, dash, rest = v.partition("-")
  if not dash:
    days, rest = "0", v
  parts = rest.split(":")
  if not (days.isdigit() and all(p.isdigit() for p in parts) and 1 <= len(parts) <= 3):
    raise ValueError(f"{value!r} is not a Slurm time (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S).")
  nums = [int(p) for p in parts]
  if dash:  # D-H, D-H:M, D-H:M:S
    h, m, s = (nums + [0, 0])[:3]
  elif len(nums) == 1:  # minutes
    h, m, s = 0, nums[0], 0
  elif len(nums) == 2:  # M:S
    h, m, s = 0, *nums
  else:
    h, m, s = nums
  return ((int(days) * 24 + h) * 60 + m) * 60 + s


def signal_lead(sbatch: Sequence[str]) -> tuple[int, list[str]]:
  """(USR1 lead in seconds, the options without --signal): `--sbatch=--signal=B:USR1@N` sets
  the lead the script's own `--signal` line uses; any other signal is refused (the script
  traps USR1 in its batch shell)."""
  from anchoral_jax.errors import ConfigError

  found = _option(sbatch, "signal")
  if found is None:
    return DEFAULT_LEAD_S, list(sbatch)
  i, value = found
  m = _SIGNAL.match(value.strip())
  if m is None:
    raise ConfigError(f"--sbatch={sbatch[i]}: the script requeues itself on USR1 sent to its "
                      "batch shell; give the lead as --sbatch=--signal=B:USR1@SECONDS.")
  return int(m.group(1)), [s for j, s in enumerate(sbatch) if j != i and
                           not s.strip().startswith("--signal")]


def check_time_limit(sbatch: Sequence[str], lead: int) -> int | None:
  """The `--time` in seconds (None when not given); refuses one that leaves no time to work
  before USR1, which would requeue the task at every start, forever."""
  from anchoral_jax.errors import ConfigError

  found = _option(sbatch, "time", "t")
  if found is None:
    return None
  try:
    limit = parse_time(found[1])
  except ValueError as e:
    raise ConfigError(f"--sbatch={sbatch[found[0]]}: {e}") from None
  if limit is not None and limit <= lead + SIGNAL_SLACK_S:
    raise ConfigError(
        f"--sbatch={sbatch[found[0]]} ({limit} s) is not longer than the USR1 lead ({lead} s) "
        f"plus Slurm's {SIGNAL_SLACK_S} s signal resolution: every task would be told to stop "
        f"at its start. Give a longer --time, or a shorter lead with "
        f"--sbatch=--signal=B:USR1@SECONDS (below {max(limit - SIGNAL_SLACK_S, 0)}).")
  return limit


def missing_requests(sbatch: Sequence[str]) -> list[str]:
  """What the options leave to the cluster's defaults (often tiny) that a run usually needs."""
  missing = []
  if _option(sbatch, "time", "t") is None:
    missing.append("--time (the partition's default limit; the USR1 requeue needs a limit)")
  if not any(_option(sbatch, k) for k in ("gres", "gpus", "gpus-per-task", "gpus-per-node")):
    missing.append("--gres=gpu:N or --gpus (no GPU: the runs train on the node's CPUs)")
  if not any(_option(sbatch, k) for k in ("mem", "mem-per-cpu", "mem-per-gpu")):
    missing.append("--mem (the partition's default memory per task)")
  return missing


def max_array_size(run: Callable[..., subprocess.CompletedProcess] = subprocess.run
                   ) -> int | None:
  """The cluster's MaxArraySize (`scontrol show config`), or None without a reachable Slurm."""
  try:
    out = run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=20)
  except (OSError, subprocess.TimeoutExpired):
    return None
  m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout or "", re.M)
  return int(m.group(1)) if out.returncode == 0 and m else None


def check_runs(runs: Sequence[Run]) -> None:
  """What `anchoral run` checks before its set-up, for every distinct config of the sweep:
  the options (`validation.validate`), the model, tokenizer and index files
  (`prepare.check_inputs`), and the dataset's files. Raises the first error: a missing model
  would otherwise fail in every array task, after waiting in the queue."""
  from anchoral_jax.al import filters
  from anchoral_jax.al.validation import validate
  from anchoral_jax.errors import ConfigError
  from anchoral_jax.retrieval import prepare

  seen: set[str] = set()
  for run in runs:
    c = build_config(run)
    key = c.to_json_best_effort(sort_keys=True)
    if key in seen:
      continue
    seen.add(key)
    try:
      validate(c)
      prepare.check_inputs(c, filters.needs_index(c.al.filter))
      check_data(c)
    except (ConfigError, FileNotFoundError, OSError, ValueError) as e:
      raise ConfigError(f"run {run.name}: {e}") from e


def check_data(config) -> None:
  """The dataset's files, without reading them: the paper's tasks (their manual dir) and a
  user task's file; the embedded tasks always resolve."""
  from anchoral_jax.data import paper, paper_files
  from anchoral_jax.data.errors import DataFileNotFound

  name, kwargs = config.data.name, config.data.kwargs.to_dict()
  if name in paper.TASKS:
    paper_files.required_files(name, kwargs.get("manual_dir") or None)
  elif name == "user" and kwargs.get("path"):
    from pathlib import Path

    for key in ("path", "test_path"):
      if kwargs.get(key) and not Path(kwargs[key]).expanduser().exists():
        raise DataFileNotFound(f"data.kwargs.{key} {kwargs[key]} does not exist.")


def warn(message: str) -> None:
  print(f"anchoral sweep: warning: {message}", file=sys.stderr)
