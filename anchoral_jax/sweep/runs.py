"""Sweep expansion: a config file's `sweep(add, arg)` as named runs (`Run`), each with its
`anchoral run` arguments and its config (CONTRIBUTING.md §3; the backends: `sweep.py`).

`sweep(add, arg)` calls `add(**point)` once per run. Keys without a dot are `get_config`
arguments (merged into the config string after ':'); dotted keys are config overrides
(`--config.<key>=<value>`, e.g. seeds). The run directory name comes from the point, so the same
sweep always names the same runs: one level per argument in the order given, then one leaf
joining the overrides (`run_name`). A config module may list `SWEEP_ARGS`: arguments that only
shape the sweep (subsets, seed counts) and are dropped from each run's config string.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import ml_collections

# Short names of common seed overrides in run names (anything else keeps its dotted key).
SHORT_NAMES = {"data.seed": "dseed", "model.seed": "mseed", "al.initial_seed": "iseed"}


@functools.cache
def load_module(path: str | os.PathLike) -> ModuleType:
  """A config file as a module (configs/ is not a package; config_flags also loads by path)."""
  path = Path(path).resolve()
  if not path.is_file():
    raise FileNotFoundError(f"Config file {path} does not exist.")
  name = "anchoral_configs_" + "_".join(path.with_suffix("").parts[-2:]).replace("-", "_")
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # dataclasses and pickling look modules up by name
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise
  return module


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a sweep: where it lives and the `anchoral run` arguments that make it."""

  name: str  # relative run directory
  cell: str  # `name` without the override leaf: the seeds of one table cell
  experiment: str  # the config file's stem (main, ablations, ...)
  config_file: str  # absolute path
  arg: str  # get_config argument of this run
  overrides: Mapping[str, Any]  # dotted config key -> value
  point: Mapping[str, Any]  # what sweep() passed to add()

  @property
  def config_spec(self) -> str:
    return f"{self.config_file}:{self.arg}" if self.arg else self.config_file

  def workdir(self, runs_dir: str | os.PathLike) -> Path:
    return Path(runs_dir).resolve() / self.name

  def argv(self, runs_dir: str | os.PathLike) -> list[str]:
    """`anchoral` arguments (after the program name) for this run."""
    return (["run", "--config", self.config_spec, "--workdir", str(self.workdir(runs_dir))]
            + [f"--config.{k}={format_value(v)}" for k, v in self.overrides.items()])

  def done(self, runs_dir: str | os.PathLike) -> bool:
    return (self.workdir(runs_dir) / "DONE").exists()


def format_value(value: Any) -> str:
  """A config value as config_flags parses it back from `--config.key=value`."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, str | int | float):
    return str(value) if not isinstance(value, float) else repr(value)
  if isinstance(value, list | tuple):
    return repr(tuple(value))
  raise TypeError(f"Cannot pass a {type(value).__name__} ({value!r}) as a config override.")


def parse_arg_string(arg: str | None) -> dict[str, str | None]:
  """'a=1,flag' -> {'a': '1', 'flag': None} (None: a bare word), order kept."""
  out: dict[str, str | None] = {}
  for part in (arg or "").split(","):
    if part:
      k, eq, v = part.partition("=")
      out[k] = v if eq else None
  return out


def format_arg_string(args: Mapping[str, str | None]) -> str:
  return ",".join(k if v is None else f"{k}={v}" for k, v in args.items())


def _arg_value(value: Any) -> str | None:
  if value is True:
    return None  # a bare word
  if value is False:
    return "false"
  text = str(value)
  if "," in text or ":" in text:
    raise ValueError(f"Config argument value {text!r} may not contain ',' or ':'.")
  return text


def _name_value(value: Any) -> str:
  """A value as a path component: readable, no separators."""
  text = str(value).lower() if isinstance(value, bool) else str(value)
  return text.replace(os.sep, "_").replace(" ", "_") or "_"


def run_name(point: Mapping[str, Any]) -> tuple[str, str]:
  """(name, cell) of a sweep point: one level per argument, then a leaf with the overrides."""
  levels = [f"{k}={_name_value(v)}" for k, v in point.items() if "." not in k]
  leaf = ",".join(f"{SHORT_NAMES.get(k, k)}={_name_value(v)}" for k, v in point.items()
                  if "." in k)
  cell = "/".join(levels)
  name = "/".join(levels + ([leaf] if leaf else [])) or "run"
  for part in name.split("/"):
    if part in (".", "..") or len(part) > 200:
      raise ValueError(f"Bad run directory component {part!r} from sweep point {dict(point)}.")
  return name, cell


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets dotted keys on a locked config: unknown keys and wrong types fail here, early."""
  for key, value in overrides.items():
    node = config
    *path, last = key.split(".")
    try:
      for part in path:
        node = node[part]
      if last not in node:
        raise KeyError(last)
      node[last] = value
    except (KeyError, AttributeError) as e:
      raise KeyError(f"Unknown config key {key!r} in a sweep override (valid keys under "
                     f"{'.'.join(path) or 'the root'}: {sorted(node.keys())}).") from e


def build_config(run: Run) -> ml_collections.ConfigDict:
  """The config `anchoral run` builds for this run (get_config + overrides, locked)."""
  module = load_module(run.config_file)
  config = module.get_config(run.arg or None)
  config.lock()
  apply_overrides(config, run.overrides)
  return config


def expand(config: str, overrides: Mapping[str, Any] | None = None) -> list[Run]:
  """The runs of `path/to/config.py[:arg]`'s sweep; `overrides` apply to every run.

  Every run's config is built and validated here, so a bad argument, key or value fails
  before anything starts.
  """
  from anchoral_jax import errors
  from anchoral_jax.al import validation

  path_str, _, base_arg = config.partition(":")
  path = Path(path_str).resolve()
  module = load_module(path)
  if not hasattr(module, "sweep"):
    raise ValueError(f"{path} has no `sweep(add, arg)` function; run it with `anchoral run`.")
  points: list[dict[str, Any]] = []
  module.sweep(lambda **point: points.append(point), base_arg or None)
  if not points:
    raise ValueError(f"{config}: the sweep has no runs.")
  base = parse_arg_string(base_arg)
  for key in getattr(module, "SWEEP_ARGS", ()):
    base.pop(key, None)
  experiment = path.stem
  runs: list[Run] = []
  seen: dict[str, dict[str, Any]] = {}
  for point in points:
    name, cell = run_name(point)
    if name in seen:
      raise ValueError(f"Sweep points {seen[name]} and {point} both map to the run {name!r}.")
    seen[name] = point
    args = dict(base)
    args.update({k: _arg_value(v) for k, v in point.items() if "." not in k})
    run_overrides = {k: v for k, v in point.items() if "." in k}
    for k, v in (overrides or {}).items():
      if k in run_overrides and run_overrides[k] != v:
        raise ValueError(f"--config.{k}={v} conflicts with the sweep, which sets it to "
                         f"{run_overrides[k]} for {name}.")
      run_overrides[k] = v
    arg = format_arg_string(args)
    wandb = module.get_config(arg or None).get("wandb")
    if wandb is not None:  # one W&B group per cell, the run named like its directory
      if "name" in wandb:
        run_overrides.setdefault("wandb.name", name)
      if "group" in wandb:
        run_overrides.setdefault("wandb.group", f"{experiment}/{cell}" if cell else experiment)
    run = Run(name, cell, experiment, str(path), arg, run_overrides, point)
    try:  # the overrides' keys and types, then the values: before any run starts, not in each
      validation.validate(build_config(run))
    except errors.ConfigError as e:
      raise errors.ConfigError(f"run {name} of {config}: {e}") from e
    runs.append(run)
  return runs

