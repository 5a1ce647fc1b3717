"""`anchoral`: a thin shell around the library (CONTRIBUTING.md §3).

  anchoral run    --config configs/default.py[:arg] --workdir DIR [--config.al.budget=100 ...]
                  [--seeds=S,S,...|D:M:I,...  (a cell's seeds in one process, DIR/dseed=..)]
  anchoral embed  --config ... (sentence embeddings of the pool, cached; resumable)
  anchoral index  --config ... (usearch index over those embeddings, cached)
  anchoral sweep  --config configs/ablations.py[:arg] --runs-dir DIR [--parallel N]
                  [--backend local|slurm|multihost|dry] [--sbatch=--gres=gpu:1 ...]
                  [--group-seeds  (one job per table cell: its seeds in one process)]
                  [--config.key=value ...  (applied to every run)]
  anchoral report RUNS_DIR [--out DIR] [--reference anchoral] [--format png,pdf,svg]
                  (tables as Markdown/CSV, paired comparisons by seed, plots)
  anchoral config --config ...[:arg] [--config.key=value ...]  (print the resolved config, JSON)
  anchoral env    (JAX backend and devices, package versions, cache dir, compilation cache)
  anchoral plan   --config ...[:arg] --target v5e:2x4|v4:2x2x1|cpu|... [--search=false]
                  [--all_buckets=false]
                  (the run's hot programs compiled ahead of time for the target, no device
                  needed: memory, FLOPs, roofline, largest batch; anchoral_jax/accel/plan.py)
  anchoral label  init|next|status|export|apply ...  (label your own data: a human answers
                  each batch; `anchoral label --help`, anchoral_jax/label/command.py)
  anchoral wandb-workspace RUNS_DIR --entity E [--project P] [--save] [--json FILE]
                  (W&B workspaces of the paper's panels for the runs under RUNS_DIR, as
                  code; offline unless --save; anchoral_jax/tracking/workspace.py)

Configs are Python files with `get_config(arg)`; the config is locked, so a typo in an
override (`--config.al.budgte=...`) fails with the list of valid keys.
Flags of more than one word are spelled with hyphens (--runs-dir, --text-column); the
underscore spelling (--runs_dir) is accepted as well. Config overrides keep the field's name
(--config.al.subpool_size). Bad input: one message on stderr and exit status 2.

run/embed/index keep XLA's compiled programs in `<data.cache_dir>/xla` (a persistent cache:
later runs skip most compilation); set ANCHORAL_COMPILATION_CACHE=0 to turn it off.
ANCHORAL_CACHE_DIR sets the default data.cache_dir (~/.cache/anchoral_jax otherwise).
`anchoral run --help` (also config, sweep, embed, index) lists every config field with its doc.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from anchoral_jax.errors import UserError

COMMANDS = ("run", "embed", "index", "sweep", "report", "config", "env", "label", "plan",
            "wandb-workspace")

USAGE = __doc__


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
  flags.DEFINE_integer("parallel", 0, "sweep: at most N runs at once, on every backend (local "
                       "processes; Slurm array tasks, the %N throttle); 0 = the backend's "
                       "default: one at a time locally, no limit on Slurm.")
  flags.DEFINE_enum("backend", "local", ["local", "slurm", "multihost", "dry"],
                    "sweep: run locally, write a Slurm array script, write a multi-host "
                    "launch script, or only list the runs.")
  flags.DEFINE_multi_string("sbatch", [], "sweep --backend slurm: extra #SBATCH options, "
                            "e.g. --sbatch=--gres=gpu:1 --sbatch=--time=24:00:00; "
                            "--sbatch=--signal=B:USR1@S sets the requeue lead (120 s).")
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
  def main(argv):
    if len(argv) > 1:
      _fail(command, f"unexpected arguments {' '.join(argv[1:])}: flags are --name=value; "
            f"`anchoral {command} --help` lists them.")
    _plain_log_lines()
    try:
      _dispatch(command, _flags())
    except UserError as e:  # the message says what to fix; a traceback would bury it
      _fail(command, f"{type(e).__name__}: {e}")

  return main


def _flags():
  from absl import flags

  return flags.FLAGS


def _fail(command: str, message: str) -> None:
  """Bad input: one message on stderr and exit status 2 (README, CONTRIBUTING.md §9)."""
  print(f"anchoral {command}: {message}", file=sys.stderr)
  sys.exit(2)


class _LogFormatter(logging.Formatter):
  """Log lines without absl's `I1205 18:34:42.602093 140145619467136 file.py:230]` prefix:
  the message alone on a terminal (between the round lines), with the time in a log file
  (run.log); warnings and errors say so."""

  def __init__(self, tty: bool):
    super().__init__("%(message)s" if tty else "%(asctime)s %(message)s", datefmt="%H:%M:%S")

  def format(self, record: logging.LogRecord) -> str:
    line = super().format(record)
    if record.levelno >= logging.WARNING:
      line = line.replace(record.getMessage(), f"{record.levelname}: {record.getMessage()}", 1)
    return line


def _plain_log_lines() -> None:
  """absl's handler (installed by app.run) keeps its stream; only its line format changes."""
  from absl import logging as absl_logging

  handler = absl_logging.get_absl_handler()
  stream = getattr(handler.python_handler, "stream", None)
  tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
  handler.python_handler.setFormatter(_LogFormatter(tty))


def _dispatch(command: str, FLAGS) -> None:  # noqa: N803 (absl's FLAGS)
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
    import json
    import time

    from anchoral_jax import cache
    from anchoral_jax.retrieval import prepare
    from anchoral_jax.tracking.tracker import log_job

    t0 = time.perf_counter()
    path = prepare.embed(config) if command == "embed" else prepare.index(config)
    # A W&B run of job type "embed" / "index" (offline by default, like the runs')
    log_job(config.wandb.to_dict(), command, f"{command}:{config.data.name}",
            json.loads(config.to_json_best_effort()),
            {"path": str(path), "seconds": time.perf_counter() - t0},
            cache.root(config) / "wandb")
  elif command == "sweep":
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
    out.append(f"  --{name.replace('_', '-')}: {flag.help}{default}")
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
  plat = workdir.platform_info()
  lines = [f"python: {plat['python']}", f"os: {plat['os']}",
           f"jax backend: {jax.default_backend()}",
           f"devices: {', '.join(str(d) for d in jax.devices())}"]
  lines += [f"{k}: {v or 'not installed'}" for k, v in workdir.package_versions().items()]
  sha, dirty = workdir.git_sha(), workdir.git_dirty()
  state = {True: " (uncommitted changes)", False: " (clean)", None: ""}[dirty]
  lines += [f"git commit: {sha + state if sha else '(not a git checkout)'}",
            f"cache dir (default data.cache_dir; {source}): {cache}",
            "XLA compilation cache: " + (f"on ({cache}/xla; run/embed/index)" if on else
                                         f"off ({parallel.COMPILATION_CACHE_ENV}=0)")]
  return "\n".join(lines)


def _dotted(node, prefix: str = "") -> list[str]:
  """Every key of a ConfigDict, sections included: 'al', 'al.budget', ..."""
  from ml_collections import ConfigDict

  out = []
  for k, v in node.items():
    out.append(prefix + k)
    if isinstance(v, ConfigDict):
      out += _dotted(v, f"{prefix}{k}.")
  return out


def _unknown_override(args: list[str], config, path: str) -> str | None:
  """The message for a `--config.<key>` that names no config field, else None.

  config_flags fails on it deep in absl's flag parsing, with a 56-line traceback; checked here
  against the config the file builds, it is one line naming the key and the close valid ones.
  """
  import difflib

  keys = [a[len("--config."):].split("=", 1)[0] for a in args if a.startswith("--config.")]
  valid = _dotted(config)
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


def _flag_value(args: list[str], name: str) -> str | None:
  """The value of `--name=value` or `--name value` in `args` (the last one), else None."""
  value = None
  for i, a in enumerate(args):
    if a.startswith(f"--{name}="):
      value = a.split("=", 1)[1]
    elif a == f"--{name}" and i + 1 < len(args):
      value = args[i + 1]
  return value


def _spell(args: list[str], names: set[str] | None, to: str) -> list[str]:
  """Flag names respelled with `to`: "_" for absl's flags (`names`, in underscore form; absl's
  --noNAME too), "-" for argparse's (every flag: theirs are all hyphenated). Values, other
  arguments and everything after `--` are left alone."""
  out, rest = [], False
  for a in args:
    if rest or not a.startswith("--") or a.startswith("--config") or a == "--":
      rest = rest or a == "--"
      out.append(a)
      continue
    name, eq, value = a[2:].partition("=")
    key = name.replace("-", "_")
    known = names is None or key in names or (key.startswith("no") and key[2:] in names)
    out.append(f"--{key.replace('_', to)}{eq}{value}" if known else a)
  return out


def _load_config(command: str, spec: str):
  """The config `spec` ("path.py[:arg]") builds, or one message naming the file or argument
  (config_flags' own errors were 15-40-line tracebacks with exit status 1)."""
  from anchoral_jax.errors import ConfigError
  from anchoral_jax.sweep import runs as sweep_runs

  path, _, arg = spec.partition(":")
  file = Path(path).expanduser()
  if not file.is_file():
    near = sorted(p.name for p in file.parent.glob("*.py")) if file.parent.is_dir() else []
    raise ConfigError(f"config file {path} does not exist" + (
        f"; {file.parent} has {', '.join(near)}." if near else
        " (a Python file with get_config(arg), e.g. configs/default.py)."))
  try:
    module = sweep_runs.load_module(file)
    config = module.get_config(arg or None)
    if command == "sweep":  # sweep-only arguments are checked by expanding the sweep
      if not hasattr(module, "sweep"):
        raise ConfigError(f"{path} has no sweep(add, arg) function for `anchoral sweep` to "
                          "expand; run it with `anchoral run`.")
      points: list[dict] = []
      module.sweep(lambda **point: points.append(point), arg or None)
      if not points:
        raise ConfigError(f"the sweep of {spec} has no runs.")
  except ConfigError:
    raise
  except Exception as e:  # noqa: BLE001 (the user's config file or argument: its message)
    raise ConfigError(f"--config {spec}: {e}") from None
  return config


def _unknown_flag(command: str, name: str, config) -> str:
  """What to say about `--name`: the command's close flags, or the config fields it may mean
  (`--budget=200` is `--config.al.budget=200`)."""
  import difflib

  key = name.replace("-", "_")
  own = [f.replace("_", "-") for f in COMMAND_FLAGS[command]]
  fields = [k for k in _dotted(config) if k.rpartition(".")[2] == key] if config else []
  close = difflib.get_close_matches(name.replace("_", "-"), own, n=3, cutoff=0.7)
  if fields:
    hint = ("config fields are set with --config.<field>=value: did you mean "
            + " or ".join(f"--config.{f}" for f in fields) + "?")
  elif close:
    hint = f"did you mean {', '.join('--' + c for c in close)}?"
  else:
    hint = (f"`anchoral {command}` takes {', '.join('--' + f for f in own)}, and "
            "--config.<field>=value for config fields (`--help` lists them).")
  return f"unknown flag --{name}: {hint}"


def _flags_parser(command: str, config):
  """absl's flag parsing, its errors as one message and exit status 2 (absl's own: "FATAL
  Flags parsing error", exit status 1)."""
  from absl import flags

  def parse(argv: list[str]) -> list[str]:
    try:
      return flags.FLAGS(argv)
    except flags.UnrecognizedFlagError as e:
      _fail(command, _unknown_flag(command, e.flagname, config))
    except flags.Error as e:
      _fail(command, f"{e}".replace("flag --", "--", 1))
    return []

  return parse


def _check_config_command(command: str, args: list[str]):
  """Everything about the command line that can be checked before absl and JAX start: the
  config file and its argument, override keys, required flags, the workdir. Returns the
  config; raises ConfigError/WorkdirError (one message, exit 2)."""
  from anchoral_jax.errors import ConfigError, WorkdirError

  spec = _flag_value(args, "config")
  if not spec:
    raise ConfigError(f"--config is required: `anchoral {command} --config configs/default.py`"
                      " (a config file, optionally :arg).")
  config = _load_config(command, spec)
  unknown = _unknown_override(args, config, spec.partition(":")[0])
  if unknown:
    raise ConfigError(unknown)
  required = {"run": ("workdir", "the run's folder (created if missing; re-run to resume)"),
              "sweep": ("runs_dir", "the folder of the sweep's runs")}.get(command)
  if required:
    name, what = required
    value = _flag_value(args, name)
    if not value:
      raise ConfigError(f"--{name.replace('_', '-')} is required: {what}.")
    path = Path(value).expanduser()
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
      raise WorkdirError(f"--{name.replace('_', '-')} {value}: {blocker} is a file, not a "
                         "folder; choose another path.")
  return config


def _suggest_command(word: str) -> str:
  import difflib

  close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.5)
  return (f"unknown command {word!r}" + (f"; did you mean `anchoral {close[0]}`?" if close else "")
          + f" Commands: {', '.join(COMMANDS)} (`anchoral --help` for usage).")


ENV_USAGE = """usage: anchoral env
Prints what a bug report needs: Python, OS, JAX backend and devices, package versions, the
git commit (and whether the checkout has uncommitted changes), the cache dir and the XLA
compilation cache. Takes no arguments; runs nothing."""


def _quiet_imports() -> None:
  """transformers prints "PyTorch was not found..." when it is imported without torch (as
  `make install` sets it up: tokenizers only); that advice is not for our users."""
  import os

  os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _exit_on_broken_pipe() -> None:
  """`anchoral ... | head`: the reader left; stop quietly, as `cat` would (exit 128 + SIGPIPE),
  instead of a BrokenPipeError traceback (and another one at the interpreter's exit)."""
  import os
  import signal

  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
  except (OSError, ValueError):
    pass
  sys.exit(128 + signal.SIGPIPE)


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
  _quiet_imports()
  try:
    _main(argv)
    sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at exit
  except BrokenPipeError:
    _exit_on_broken_pipe()


def _main(argv: list[str]) -> None:
  _cpu_only_platform()
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    return
  command, args = argv[1], argv[2:]
  if command not in COMMANDS:
    print(f"anchoral: {_suggest_command(command)}", file=sys.stderr)
    sys.exit(2)
  if command == "env":
    if any(a in HELP_FLAGS for a in args):
      print(ENV_USAGE)
      return
    if args:
      _fail("env", f"takes no arguments (got {' '.join(args)}); `anchoral env --help`.")
    print(env_report())
    return
  if command == "report":
    from anchoral_jax.report import command as report

    report.main(_spell(args, None, "-"))
    return
  if command == "wandb-workspace":  # argparse, no config file
    from anchoral_jax.tracking import workspace

    code = workspace.main(_spell(args, None, "-"), prog="anchoral wandb-workspace")
    if code:
      sys.exit(code)
    return
  if command == "label":  # argparse, no config file: a labelling session (anchoral_jax/label/command.py)
    import signal

    from anchoral_jax.label import command as label

    # Ctrl-C as in run: its files are written atomically or appended whole (label.py's docstring)
    signal.signal(signal.SIGINT, _exit_on_interrupt)
    logger = logging.getLogger("anchoral_jax")  # its warnings as plain lines on stderr
    handler, propagate = logging.StreamHandler(sys.stderr), logger.propagate
    handler.setFormatter(_LogFormatter(sys.stderr.isatty()))
    logger.addHandler(handler)
    logger.propagate = False
    try:
      label.main(_spell(args, None, "-"))
    finally:  # as it was (cli.main is also called in-process, by tests)
      logger.removeHandler(handler)
      logger.propagate = propagate
    return
  _define_flags()
  args = _spell(args, set(_flags()), "_")
  if any(a in HELP_FLAGS for a in args):
    print(command_help(command, args))
    return
  try:
    config = _check_config_command(command, args)
  except UserError as e:
    _fail(command, str(e))
  from absl import app

  if command in ("run", "embed", "index"):  # before anything compiles, XLA's set-up included
    import signal

    signal.signal(signal.SIGINT, _exit_on_interrupt)
  argv, sys.argv = sys.argv, [f"anchoral {command}"] + args  # config_flags reads sys.argv
  try:
    app.run(_config_main(command), argv=sys.argv, flags_parser=_flags_parser(command, config))
  finally:  # cli.main is also called in-process (tests)
    sys.argv = argv


if __name__ == "__main__":
  main()
