"""`anchoral`: a thin shell around the library (CONTRIBUTING.md §3).

  anchoral run    --config configs/default.py[:arg] --workdir DIR [--config.al.budget=100 ...]
  anchoral embed  --config ... (sentence embeddings of the pool, cached; resumable)
  anchoral index  --config ... (usearch index over those embeddings, cached)
  anchoral sweep  --config configs/ablations.py[:arg] --runs_dir DIR [--parallel N]
                  [--backend local|slurm|multihost|dry] [--sbatch=--gres=gpu:1 ...]
                  [--config.key=value ...  (applied to every run)]
  anchoral report RUNS_DIR [--out DIR]   (tables as Markdown/CSV and PNG plots)
  anchoral config --config ...[:arg] [--config.key=value ...]  (print the resolved config, JSON)
  anchoral env    (JAX backend and devices, package versions, cache dir, compilation cache)

Configs are Python files with `get_config(arg)`; the config is locked, so a typo in an
override (`--config.al.budgte=...`) fails with the list of valid keys.

run/embed/index keep XLA's compiled programs in `<data.cache_dir>/xla` (a persistent cache:
later runs skip most compilation); set ANCHORAL_COMPILATION_CACHE=0 to turn it off.
"""

from __future__ import annotations

import logging
import sys

COMMANDS = ("run", "embed", "index", "sweep", "report", "config", "env")

USAGE = __doc__


def _config_main(command: str):
  from absl import app, flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_file("config", None, "Config file: path/to/config.py[:arg]",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Run directory (the unit of resume).")
  flags.DEFINE_string("runs_dir", None, "sweep: parent directory of the runs.")
  flags.DEFINE_integer("parallel", 1, "sweep: local processes at once; with --backend slurm, "
                       "the most array tasks running at once (1 = no limit).")
  flags.DEFINE_enum("backend", "local", ["local", "slurm", "multihost", "dry"],
                    "sweep: run locally, write a Slurm array script, write a multi-host "
                    "launch script, or only list the runs.")
  flags.DEFINE_multi_string("sbatch", [], "sweep --backend slurm: extra #SBATCH options, "
                            "e.g. --sbatch=--gres=gpu:1 --sbatch=--time=24:00:00.")
  flags.DEFINE_list("devices", [], "sweep --backend local: accelerators to spread the "
                    "--parallel processes over (CUDA_VISIBLE_DEVICES), e.g. --devices=0,1,2,3.")
  flags.mark_flag_as_required("config")
  FLAGS = flags.FLAGS

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
      _dispatch(command, FLAGS)
    except _user_errors() as e:  # the message says what to fix; a traceback would bury it
      print(f"anchoral {command}: {type(e).__name__}: {e}", file=sys.stderr)
      sys.exit(2)

  return main


def _user_errors() -> tuple[type[Exception], ...]:
  """Errors caused by input (config, data files, checkpoints, the workdir's files or its lock),
  not by a bug in the code."""
  from anchoral_jax.checkpoint import CorruptCheckpointError
  from anchoral_jax.data.user import DataFileNotFound, DataFormatError
  from anchoral_jax.loop import ConfigError
  from anchoral_jax.tracking import CorruptJsonlError
  from anchoral_jax.workdir import WorkdirError

  return (ConfigError, CorruptCheckpointError, DataFileNotFound, DataFormatError,
          CorruptJsonlError, WorkdirError)


def _dispatch(command: str, FLAGS) -> None:  # noqa: N803 (absl's FLAGS)
  from absl import app
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax/jax chatter off
  logging.getLogger("anchoral_jax").setLevel(logging.INFO)
  config = FLAGS.config
  if command == "config":  # what a run would use, overrides applied; runs nothing
    print(config.to_json_best_effort(indent=2, sort_keys=True))
    return
  if command in ("run", "embed", "index"):
    from anchoral_jax import parallel

    parallel.enable_compilation_cache(config.data.cache_dir)  # before anything compiles
  if command == "run":
    if not FLAGS.workdir:
      raise app.UsageError("--workdir is required for `anchoral run`.")
    from anchoral_jax import loop, parallel

    parallel.initialize_distributed()
    loop.run(config, FLAGS.workdir)
  elif command in ("embed", "index"):
    from anchoral_jax import prepare

    prepare.embed(config) if command == "embed" else prepare.index(config)
  elif command == "sweep":
    if not FLAGS.runs_dir:
      raise app.UsageError("--runs_dir is required for `anchoral sweep`.")
    from anchoral_jax import sweep

    sweep.main(FLAGS["config"].config_filename, FLAGS.runs_dir, parallel=FLAGS.parallel,
               backend=FLAGS.backend, overrides=FLAGS["config"].override_values,
               sbatch=FLAGS.sbatch, devices=FLAGS.devices)


def env_report() -> str:
  """What `anchoral env` prints: what a bug report or a slow run needs to know about the
  machine, without running anything."""
  import os

  import jax

  from anchoral_jax import parallel, workdir
  from anchoral_jax.config import base

  cache = os.path.expanduser(base().data.cache_dir)
  on = os.environ.get(parallel.COMPILATION_CACHE_ENV, "1").strip().lower() not in (
      "0", "false", "off", "no")
  lines = [f"jax backend: {jax.default_backend()}",
           f"devices: {', '.join(str(d) for d in jax.devices())}"]
  lines += [f"{k}: {v or 'not installed'}" for k, v in workdir.package_versions().items()]
  lines += [f"git commit: {workdir.git_sha() or '(not a git checkout)'}",
            f"cache dir (default data.cache_dir): {cache}",
            "XLA compilation cache: " + (f"on ({cache}/xla; run/embed/index)" if on else
                                         f"off ({parallel.COMPILATION_CACHE_ENV}=0)")]
  return "\n".join(lines)


def _unknown_override(args: list[str]) -> str | None:
  """The message for a `--config.<key>` that names no config field, else None.

  config_flags fails on it deep in absl's flag parsing, with a 56-line traceback; checked here
  against the config the file builds, it is one line naming the key and the close valid ones.
  """
  import difflib

  spec = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
  if spec is None and "--config" in args[:-1]:
    spec = args[args.index("--config") + 1]
  keys = [a[len("--config."):].split("=", 1)[0] for a in args if a.startswith("--config.")]
  if not spec or not keys:
    return None
  from ml_collections import ConfigDict

  from anchoral_jax import sweep

  path, _, arg = spec.partition(":")
  try:
    config = sweep.load_module(path).get_config(arg or None)
  except Exception:  # noqa: BLE001 (a bad file or argument: config_flags reports it itself)
    return None

  def dotted(node, prefix: str = "") -> list[str]:
    out = []
    for k, v in node.items():
      out.append(prefix + k)
      if isinstance(v, ConfigDict):
        out += dotted(v, f"{prefix}{k}.")
    return out

  valid = dotted(config)
  for key in keys:
    if key not in valid:
      close = difflib.get_close_matches(key, valid, n=5, cutoff=0.6)
      parent = key.rpartition(".")[0]
      siblings = [v for v in valid if v.rpartition(".")[0] == parent] if parent in valid else []
      hint = (f"did you mean {', '.join(close)}?" if close else
              f"valid keys under {parent}: {', '.join(siblings)}." if siblings else
              f"top-level sections: {', '.join(k for k in valid if '.' not in k)}.")
      return (f"Unknown config key {key!r} (--config.{key} on the command line) in {path}: "
              f"{hint} Fix the key's spelling.")
  return None


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help") or argv[1] not in COMMANDS:
    print(USAGE)
    if len(argv) >= 2 and argv[1] not in ("-h", "--help", "help"):
      print(f"Unknown command {argv[1]!r}; choose from {', '.join(COMMANDS)}.")
      sys.exit(2)
    return
  command = argv[1]
  if command == "report":
    from anchoral_jax import report

    report.main(argv[2:])
    return
  if command == "env":
    if len(argv) > 2:
      print(f"anchoral env takes no arguments (got {' '.join(argv[2:])}).", file=sys.stderr)
      sys.exit(2)
    print(env_report())
    return
  unknown = _unknown_override(argv[2:])
  if unknown:
    print(f"anchoral {command}: {unknown}", file=sys.stderr)
    sys.exit(2)
  from absl import app

  app.run(_config_main(command), argv=[f"anchoral {command}"] + argv[2:])


if __name__ == "__main__":
  main()
