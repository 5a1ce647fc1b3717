"""`anchoral`: a thin shell around the library (CONTRIBUTING.md §3).

  anchoral run    --config configs/default.py[:arg] --workdir DIR [--config.al.budget=100 ...]
  anchoral embed  --config ... (sentence embeddings of the pool, cached; resumable)
  anchoral index  --config ... (usearch index over those embeddings, cached)
  anchoral sweep  --config configs/ablations.py[:arg] --runs_dir DIR [--parallel N]
                  [--backend local|slurm|multihost|dry] [--sbatch=--gres=gpu:1 ...]
                  [--config.key=value ...  (applied to every run)]
  anchoral report RUNS_DIR [--out DIR]   (tables as Markdown/CSV and PNG plots)

Configs are Python files with `get_config(arg)`; the config is locked, so a typo in an
override (`--config.al.budgte=...`) fails with the list of valid keys.
"""

from __future__ import annotations

import logging
import sys

COMMANDS = ("run", "embed", "index", "sweep", "report")

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
  from absl import app

  app.run(_config_main(command), argv=[f"anchoral {command}"] + argv[2:])


if __name__ == "__main__":
  main()
