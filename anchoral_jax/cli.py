"""`anchoral`: a thin shell around the library (CONTRIBUTING.md §3).

  anchoral run    --config configs/default.py[:arg] --workdir DIR [--config.al.budget=100 ...]
                  [--seeds=S,S,...|D:M:I,...  (a cell's seeds in one process, DIR/dseed=..)]
  anchoral embed  --config ... (sentence embeddings of the pool, cached; resumable)
  anchoral index  --config ... (usearch index over those embeddings, cached)
  anchoral sweep  --config configs/ablations.py[:arg] --runs_dir DIR [--parallel N]
                  [--backend local|slurm|multihost|dry] [--sbatch=--gres=gpu:1 ...]
                  [--group_seeds  (one job per table cell: its seeds in one process)]
                  [--config.key=value ...  (applied to every run)]
  anchoral report RUNS_DIR [--out DIR]   (tables as Markdown/CSV and PNG plots)
  anchoral config --config ...[:arg] [--config.key=value ...]  (print the resolved config, JSON)
  anchoral env    (JAX backend and devices, package versions, cache dir, compilation cache)
  anchoral plan   --config ...[:arg] --target v5e:2x4|v4:2x2x1|cpu|... [--search=false]
                  [--all_buckets=false]
                  (the run's hot programs compiled ahead of time for the target, no device
                  needed: memory, FLOPs, roofline, largest batch; anchoral_jax/accel/plan.py)
  anchoral label  init|next|status|export|apply ...  (label your own data: a human answers
                  each batch; `anchoral label --help`, anchoral_jax/label/command.py)

Configs are Python files with `get_config(arg)`; the config is locked, so a typo in an
override (`--config.al.budgte=...`) fails with the list of valid keys.

run/embed/index keep XLA's compiled programs in `<data.cache_dir>/xla` (a persistent cache:
later runs skip most compilation); set ANCHORAL_COMPILATION_CACHE=0 to turn it off.
ANCHORAL_CACHE_DIR sets the default data.cache_dir (~/.cache/anchoral_jax otherwise).
`anchoral run --help` (also config, sweep, embed, index) lists every config field with its doc.
"""

from __future__ import annotations

import logging
import sys

from anchoral_jax.errors import UserError

COMMANDS = ("run", "embed", "index", "sweep", "report", "config", "env", "label", "plan")

USAGE = __doc__


CONFIG_COMMANDS = ("run", "embed", "index", "sweep", "config", "plan")  # the ones taking --config
HELP_FLAGS = ("-h", "--help", "-?", "--helpshort")  # --helpfull stays absl's (every flag)
# The flags each command reads (the rest are defined for all, to keep one flag set).
COMMAND_FLAGS = {"run": ("config", "workdir", "seeds"), "embed": ("config",), "index": ("config",),
                 "config": ("config",), "plan": ("config", "target", "search",
                                                               "all_buckets"),
                 "sweep": ("config", "runs_dir", "parallel", "backend", "sbatch", "devices",
                           "shard", "group_seeds")}


def _define_flags() -> None:
  """The absl flags of the --config commands, once per process (absl refuses a redefinition,
  and `--help` defines them without starting absl's app)."""
  from absl import flags
  from ml_collections import config_flags

  if "workdir" in flags.FLAGS:
    return
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
  flags.DEFINE_string("shard", "", "sweep: run only share I of N of the runs (I/N, 0-based), "
                      "e.g. one share per host of a TPU pod; 'auto' = this host's TPU worker "
                      "id / worker count (or Slurm's node id / node count).")
  flags.DEFINE_list("seeds", [], "run: several seed combinations in one process, in lockstep "
                    "(loop.run_many): S sets data.seed, model.seed and al.initial_seed to S; "
                    "D:M:I sets them to D, M and I. Each runs in <workdir>/dseed=D,mseed=M,iseed=I"
                    ", the name a sweep gives it.")
  flags.DEFINE_bool("group_seeds", False, "sweep: one job per table cell, its runs that differ "
                    "only in their seeds run in one process (anchoral run --seeds), in the same "
                    "workdirs as without the flag.")
  flags.DEFINE_string("target", None, "plan: what to compile for: cpu or a TPU topology "
                      "(v5e:2x4, v4:2x2x1, v6e:2x2, v5p:2x2x1, ...).")
  flags.DEFINE_bool("search", True, "plan: find each big program's largest batch that fits "
                    "(two more compiles each, a third to confirm).")
  flags.DEFINE_bool("all_buckets", True, "plan: the scoring forward at every length bucket "
                    "(false: at the longest only, the memory bound; fewer compiles).")
  flags.mark_flag_as_required("config")


def _config_main(command: str):
  from absl import app, flags

  _define_flags()
  FLAGS = flags.FLAGS

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
      _dispatch(command, FLAGS)
    except UserError as e:  # the message says what to fix; a traceback would bury it
      print(f"anchoral {command}: {type(e).__name__}: {e}", file=sys.stderr)
      sys.exit(2)

  return main


def _dispatch(command: str, FLAGS) -> None:  # noqa: N803 (absl's FLAGS)
  from absl import app
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax/jax chatter off
  logging.getLogger("anchoral_jax").setLevel(logging.INFO)
  config = FLAGS.config
  if command == "config":  # what a run would use, overrides applied; runs nothing
    print(config.to_json_best_effort(indent=2, sort_keys=True))
    return
  if command == "plan":  # compiles for the target, runs nothing (anchoral_jax/accel/plan.py)
    from anchoral_jax.accel import plan, targets

    if not FLAGS.target:
      raise targets.TargetError(f"--target is required. {targets.known_message()}")
    plan.main(config, FLAGS.target, FLAGS["config"].config_filename,
              FLAGS["config"].override_values, FLAGS.search, FLAGS.all_buckets)
    return
  if command in ("run", "embed", "index"):
    from anchoral_jax import parallel

    parallel.enable_compilation_cache(config.data.cache_dir)  # before anything compiles
  if command == "run":
    if not FLAGS.workdir:
      raise app.UsageError("--workdir is required for `anchoral run`.")
    from anchoral_jax import parallel
    from anchoral_jax.al import loop

    parallel.initialize_distributed()
    if FLAGS.seeds:  # the seeds of a cell, in lockstep in one process
      from anchoral_jax.sweep import seeds as sweep_seeds

      configs, workdirs = sweep_seeds.seed_runs(
          config, FLAGS.workdir, sweep_seeds.parse_seeds(FLAGS.seeds),
          FLAGS["config"].override_values)
      loop.run_many(configs, workdirs)
    else:
      loop.run(config, FLAGS.workdir)
  elif command in ("embed", "index"):
    from anchoral_jax.retrieval import prepare

    prepare.embed(config) if command == "embed" else prepare.index(config)
  elif command == "sweep":
    if not FLAGS.runs_dir:
      raise app.UsageError("--runs_dir is required for `anchoral sweep`.")
    from anchoral_jax.sweep import command as sweep

    sweep.main(FLAGS["config"].config_filename, FLAGS.runs_dir, parallel=FLAGS.parallel,
               backend=FLAGS.backend, overrides=FLAGS["config"].override_values,
               sbatch=FLAGS.sbatch, devices=FLAGS.devices, shard=FLAGS.shard,
               group=FLAGS.group_seeds)


INTERRUPTED_RC = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd program
INTERRUPTED_MESSAGE = "interrupted: resume with the same command"


def _exit_on_interrupt(signum, frame) -> None:  # noqa: ARG001 (signal handler signature)
  """SIGINT during run/embed/index: one line, then exit 130 at once, with no unwinding.

  A KeyboardInterrupt raised half-way through JAX's compilation or an orbax save unwinds
  through XLA's and orbax's threads and crashed the interpreter at exit (a segfault in about 3
  of 8 tries). Nothing needs that unwinding: every file in the workdir and the caches is
  written to a temporary name and renamed into place (a dead writer leaves the old file whole),
  and the workdir and cache locks are flocks the kernel drops with the process. So: flush what
  was printed, say how to resume, and `os._exit` past the interpreter's and XLA's teardown."""
  import os

  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:  # noqa: BLE001 (a closed or broken stream must not stop the exit)
      pass
  try:
    os.write(2, f"\n{INTERRUPTED_MESSAGE}\n".encode())
  except OSError:
    pass
  os._exit(INTERRUPTED_RC)


def command_help(command: str, args: list[str]) -> str:
  """`anchoral <command> --help`: its usage, its flags, and every config field with its doc
  and default, by section (absl's own help says only "Try --helpfull")."""
  from absl import flags

  from anchoral_jax import config as config_lib

  _define_flags()
  usage = []
  for line in USAGE.splitlines():  # the command's line of the docstring, and its continuations
    if line.startswith(f"  anchoral {command} ") or (usage and line.startswith(" " * 10)):
      usage.append(line)
    elif usage:
      break
  out = ["usage:", *usage, "", "flags:"]
  for name in COMMAND_FLAGS[command]:
    flag = flags.FLAGS[name]
    default = "" if flag.default in (None, "", []) else f" (default: {flag.default})"
    out.append(f"  --{name}: {flag.help}{default}")
  spec = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
  if spec is None and "--config" in args[:-1]:
    spec = args[args.index("--config") + 1]
  config = None
  if spec:
    from anchoral_jax.sweep import runs as sweep_runs

    path, _, arg = spec.partition(":")
    try:
      config = sweep_runs.load_module(path).get_config(arg or None)
    except Exception:  # noqa: BLE001 (help still helps: the base fields below)
      config = None
  if config is not None:
    out += ["", f"config fields of {spec} (its defaults; override with --config.<key>=value):"]
  else:
    out += ["", "config fields (defaults of anchoral_jax/config.py base(); a config file "
            "changes some: `anchoral config --config FILE` prints its values; override with "
            "--config.<key>=value):"]
  out.append(config_lib.fields_help(config))
  return "\n".join(out)


def env_report() -> str:
  """What `anchoral env` prints: what a bug report or a slow run needs to know about the
  machine, without running anything."""
  import os

  import jax

  from anchoral_jax import parallel
  from anchoral_jax.config import CACHE_DIR_ENV, base
  from anchoral_jax.run import workdir

  cache = os.path.expanduser(base().data.cache_dir)
  source = (f"from ${CACHE_DIR_ENV}" if os.environ.get(CACHE_DIR_ENV) else
            f"set ${CACHE_DIR_ENV} to move it")
  on = os.environ.get(parallel.COMPILATION_CACHE_ENV, "1").strip().lower() not in (
      "0", "false", "off", "no")
  lines = [f"jax backend: {jax.default_backend()}",
           f"devices: {', '.join(str(d) for d in jax.devices())}"]
  lines += [f"{k}: {v or 'not installed'}" for k, v in workdir.package_versions().items()]
  lines += [f"git commit: {workdir.git_sha() or '(not a git checkout)'}",
            f"cache dir (default data.cache_dir; {source}): {cache}",
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

  from anchoral_jax.sweep import runs as sweep_runs

  path, _, arg = spec.partition(":")
  try:
    config = sweep_runs.load_module(path).get_config(arg or None)
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


def accelerator_visible() -> bool:
  """A TPU (PCI vendor 0x1ae0), NVIDIA, ROCm or other accel device is attached."""
  import glob
  import os

  for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
    try:
      with open(vendor) as f:
        if f.read().strip() == "0x1ae0":  # Google: a TPU chip
          return True
    except OSError:
      continue
  return bool(glob.glob("/dev/nvidia*") or glob.glob("/dev/accel*") or os.path.exists("/dev/kfd"))


def _cpu_only_platform() -> None:
  """JAX_PLATFORMS=cpu where the CPU is the only backend there can be, if libtpu is installed
  (the test extra brings it, for `anchoral plan`): JAX would otherwise load libtpu at start-up,
  find no chip, and print five lines of libtpu errors (and spend 0.2 s) on every command.
  Only when JAX_PLATFORMS is unset and no accelerator is attached, so a machine with one is
  never changed (subprocesses such as a sweep's runs inherit the setting)."""
  import importlib.util
  import os

  if ("JAX_PLATFORMS" in os.environ or importlib.util.find_spec("libtpu") is None
      or accelerator_visible()):
    return
  os.environ["JAX_PLATFORMS"] = "cpu"


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  _cpu_only_platform()
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help") or argv[1] not in COMMANDS:
    print(USAGE)
    if len(argv) >= 2 and argv[1] not in ("-h", "--help", "help"):
      print(f"Unknown command {argv[1]!r}; choose from {', '.join(COMMANDS)}.")
      sys.exit(2)
    return
  command = argv[1]
  if command in CONFIG_COMMANDS and any(a in HELP_FLAGS for a in argv[2:]):
    print(command_help(command, argv[2:]))
    return
  if command == "report":
    from anchoral_jax.report import command as report

    report.main(argv[2:])
    return
  if command == "env":
    if len(argv) > 2:
      print(f"anchoral env takes no arguments (got {' '.join(argv[2:])}).", file=sys.stderr)
      sys.exit(2)
    print(env_report())
    return
  if command == "label":  # argparse, no config file: a labelling session (anchoral_jax/label/command.py)
    import signal

    from anchoral_jax.label import command as label

    # Ctrl-C as in run: its files are written atomically or appended whole (label.py's docstring)
    signal.signal(signal.SIGINT, _exit_on_interrupt)
    label.main(argv[2:])
    return
  unknown = _unknown_override(argv[2:])
  if unknown:
    print(f"anchoral {command}: {unknown}", file=sys.stderr)
    sys.exit(2)
  from absl import app

  if command in ("run", "embed", "index"):  # before anything compiles, XLA's set-up included
    import signal

    signal.signal(signal.SIGINT, _exit_on_interrupt)
  app.run(_config_main(command), argv=[f"anchoral {command}"] + argv[2:])


if __name__ == "__main__":
  main()
