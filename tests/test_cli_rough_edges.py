"""Issue 26's CLI rough edges and the reliability review's unclean cases: each bad input is one
message on stderr and exit status 2 (or the help it asked for), never a traceback.

Most cases run in-process through `cli.main` (no interpreter start, no JAX set-up): a
traceback would reach pytest as an exception, so the test asserts the SystemExit's code and
the message. The process-level ones (a closed pipe, transformers' import-time warning) start a
Python. The labelling-session cases share one small session (60 texts, MiniLM at 16 tokens).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anchoral_jax import cli, errors, fileio, parallel
from anchoral_jax.run import files as run_files
from anchoral_jax.run import workdir as workdir_lib
from anchoral_jax.sweep import runs as sweep

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
  """Relative config paths from the repo root; absl's parsed flags, its log format and the
  SIGINT handler (run/embed/index/label set theirs) as they were before each test."""
  from absl import flags
  from absl import logging as absl_logging

  monkeypatch.chdir(ROOT)
  monkeypatch.setenv("ANCHORAL_COMPILATION_CACHE", "0")  # jax's global config stays as it is
  monkeypatch.delenv("TRANSFORMERS_NO_ADVISORY_WARNINGS", raising=False)
  sigint = signal.getsignal(signal.SIGINT)
  absl_handler = absl_logging.get_absl_handler().python_handler
  formatter = absl_handler.formatter
  yield
  signal.signal(signal.SIGINT, sigint)
  absl_handler.setFormatter(formatter)
  flags.FLAGS.unparse_flags()


def main(capsys, *args: str) -> tuple[int, str, str]:
  """(exit status, stdout, stderr) of `anchoral *args`, in-process."""
  try:
    cli.main(["anchoral", *args])
    code = 0
  except SystemExit as e:
    code = 0 if e.code is None else e.code
  out = capsys.readouterr()
  return code, out.out, out.err


def one_message(capsys, *args: str) -> str:
  """The single stderr line of a command that must fail with exit status 2."""
  code, out, err = main(capsys, *args)
  assert code == 2, (code, out[-2000:], err[-2000:])
  assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
  assert err.startswith(f"anchoral {args[0]}: ") or err.startswith("anchoral: "), err
  return err


# ---------------------------------------------------------------------------------------------
# Config files and their arguments.

@pytest.mark.parametrize("command", ["run", "sweep", "config", "embed", "index"])
def test_missing_config_file(capsys, tmp_path, command):
  err = one_message(capsys, command, "--config", "configs/nope.py",
                    f"--workdir={tmp_path / 'w'}", f"--runs-dir={tmp_path / 'r'}")
  assert "config file configs/nope.py does not exist" in err and "default.py" in err
  assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()


def test_unknown_config_argument_names_the_known_ones_at_once(capsys):
  err = one_message(capsys, "config", "--config", "configs/reproduce_cpu.py:datset=bbc_tech")
  assert "Unknown config argument 'datset' (did you mean 'dataset'?); known: [" in err
  err = one_message(capsys, "config", "--config", "configs/default.py:bogusarg")
  assert "Unknown config argument 'bogusarg'; known: ['filter'," in err


def test_unknown_dataset_in_the_config_argument(capsys, tmp_path):
  err = one_message(capsys, "embed", "--config", "configs/main.py:dataset=nope",
                    f"--config.data.cache_dir={tmp_path}")
  assert "Unknown dataset 'nope'; choose from ['agnews_business'" in err
  assert list(tmp_path.iterdir()) == []


def test_sweep_only_arguments_are_checked_by_the_sweep(capsys, tmp_path):
  err = one_message(capsys, "sweep", "--config", "configs/reproduce_cpu.py:demo,seeds=-1",
                    f"--runs-dir={tmp_path / 'r'}", "--backend=dry")
  assert "seeds=-1: choose at least 1" in err and not (tmp_path / "r").exists()


def test_override_value_of_the_wrong_type(capsys, tmp_path):
  err = one_message(capsys, "run", "--config", "configs/default.py:tiny",
                    f"--workdir={tmp_path / 'w'}", "--config.al.budget=abc")
  assert "--config.al.budget=abc" in err and "invalid literal for int()" in err
  assert "FATAL" not in err and not (tmp_path / "w").exists()


# ---------------------------------------------------------------------------------------------
# Flags: unknown ones, required ones, a workdir that is a file, one spelling.

def test_config_field_given_as_a_flag_points_at_config(capsys, tmp_path):
  err = one_message(capsys, "run", "--config", "configs/default.py:tiny",
                    f"--workdir={tmp_path / 'w'}", "--budget=200")
  assert "unknown flag --budget" in err and "did you mean --config.al.budget?" in err
  err = one_message(capsys, "run", "--config", "configs/default.py:tiny",
                    f"--workdir={tmp_path / 'w'}", "--workdr=x")
  assert "did you mean --workdir?" in err


@pytest.mark.parametrize(("command", "flag"), [("run", "--workdir"), ("sweep", "--runs-dir")])
def test_required_folder_flag(capsys, command, flag):
  err = one_message(capsys, command, "--config", "configs/reproduce_cpu.py:runlocal")
  assert f"{flag} is required" in err


@pytest.mark.parametrize("inside", [False, True])
def test_workdir_that_is_a_file(capsys, tmp_path, inside):
  file = tmp_path / "a_file"
  file.write_text("mine\n")
  workdir = file / "run" if inside else file
  err = one_message(capsys, "run", "--config", "configs/default.py:tiny", f"--workdir={workdir}")
  assert f"{file} is a file, not a folder" in err and file.read_text() == "mine\n"
  with pytest.raises(errors.WorkdirError, match="is a file, not a folder"):  # the library
    with fileio.lock(workdir):
      pass


def test_missing_config_flag(capsys):
  assert "--config is required" in one_message(capsys, "config")


def test_unexpected_positional_argument(capsys, tmp_path):
  err = one_message(capsys, "config", "--config", "configs/default.py:tiny", "extra")
  assert "unexpected arguments extra" in err


def test_both_spellings_of_multi_word_flags(capsys, tmp_path):
  outs = []
  for flags in (["--runs_dir", "--group_seeds"], ["--runs-dir", "--group-seeds"]):
    code, out, err = main(capsys, "sweep", "--config",
                          "configs/reproduce_cpu.py:runlocal,demo,seeds=2",
                          f"{flags[0]}={tmp_path / 'r'}", flags[1], "--backend=dry")
    assert code == 0, err
    outs.append(out)
  assert outs[0] == outs[1] and "jobs" in outs[0] and str(tmp_path / "r") in outs[0]
  assert cli._spell(["--runs-dir=x", "--nogroup-seeds", "--config.al.subpool_size=3", "--",
                     "--runs-dir"], {"runs_dir", "group_seeds"}, "_") == [
      "--runs_dir=x", "--nogroup_seeds", "--config.al.subpool_size=3", "--", "--runs-dir"]
  assert cli._spell(["--text_column", "body", "--seed_labels=a_b.csv"], None, "-") == [
      "--text-column", "body", "--seed-labels=a_b.csv"]


def test_help_lists_flags_in_the_documented_spelling(capsys):
  code, out, _ = main(capsys, "sweep", "--help")
  assert code == 0 and "--runs-dir:" in out and "--group-seeds:" in out
  assert "--runs_dir:" not in out


# ---------------------------------------------------------------------------------------------
# Commands.

def test_misspelt_command_suggests_the_closest(capsys):
  code, out, err = main(capsys, "runn")
  assert code == 2 and out == "" and "Traceback" not in err
  assert err.strip() == ("anchoral: unknown command 'runn'; did you mean `anchoral run`? "
                         f"Commands: {', '.join(cli.COMMANDS)} (`anchoral --help` for usage).")


def test_env_help_and_env(capsys):
  code, out, err = main(capsys, "env", "--help")
  assert code == 0 and out.startswith("usage: anchoral env") and err == ""
  assert "takes no arguments" in one_message(capsys, "env", "extra")
  import platform

  code, out, _ = main(capsys, "env")
  assert code == 0
  assert f"python: {platform.python_version()}\n" in out and f"os: {platform.platform()}" in out
  assert f"numpy: {np.__version__}\n" in out
  (line,) = [x for x in out.splitlines() if x.startswith("git commit: ")]
  expected = ({True: " (uncommitted changes)", False: " (clean)", None: ""}[
      workdir_lib.git_dirty()] if workdir_lib.git_sha() else "(not a git checkout)")
  assert line.endswith(expected) and (expected or workdir_lib.git_sha() in line)


@pytest.mark.parametrize("missing", [True, False])
def test_report_on_a_missing_or_empty_folder(capsys, tmp_path, missing):
  folder = tmp_path / "runs"
  if not missing:
    folder.mkdir()
  err = one_message(capsys, "report", str(folder))
  assert ("is missing" if missing else "No runs under") in err and str(folder) in err


def test_bad_index_dtype_fails_before_embedding(capsys, tmp_path):
  err = one_message(capsys, "index", "--config", "configs/default.py:tiny",
                    f"--config.data.cache_dir={tmp_path}", "--config.index.dtype=f8")
  assert "Unknown index.dtype 'f8'; choose from ['f16', 'f32']" in err
  assert list(tmp_path.iterdir()) == []  # nothing embedded, tokenised or cached


def test_demo_takes_a_seed_count():
  demo = sweep.expand(f"{ROOT}/configs/reproduce_cpu.py:demo")
  assert len(demo) == 4 * 5 and len({r.name.rsplit("/", 1)[0] for r in demo}) == 4  # 5 seeds
  three = sweep.expand(f"{ROOT}/configs/reproduce_cpu.py:demo,seeds=3")
  cells = {r.name.rsplit("/", 1)[0] for r in three}
  assert len(three) == 12 and len(cells) == 4
  assert {(r.overrides["data.seed"], r.overrides["model.seed"], r.overrides["al.initial_seed"])
          for r in three} == {tuple(s.values()) for s in _seed_points(3)}
  main_grid = sweep.expand(f"{ROOT}/configs/reproduce_cpu.py:runlocal,parts=main")
  assert len(main_grid) == 10 * 2 * (1 + 3 * 4)  # the reproduction: 10 seeds a cell


def _seed_points(n):
  main_cfg = sweep.load_module(ROOT / "configs/main.py")
  return list(main_cfg.seed_points(n))


# ---------------------------------------------------------------------------------------------
# Output: a closed pipe, transformers' advice, log lines, progress bars.

def _python(code: str, **kw) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
  env.pop("TRANSFORMERS_NO_ADVISORY_WARNINGS", None)
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                        stderr=subprocess.PIPE, timeout=120, **kw)


def test_help_into_a_closed_pipe_exits_quietly():
  """`anchoral embed --help | head`: the reader is gone before the help is written."""
  r, w = os.pipe()
  os.close(r)
  try:
    proc = _python("from anchoral_jax import cli; cli.main(['anchoral', 'embed', '--help'])",
                   stdout=w)
  finally:
    os.close(w)
  assert proc.returncode == 128 + signal.SIGPIPE, proc.stderr
  assert proc.stderr == ""


def test_transformers_advice_is_silenced(capsys):
  """Imported without torch (as `make install` sets it up), transformers advises installing it
  through `logger.warning_advice` (transformers/__init__.py), which the CLI's environment
  silences. In-process, on that very call: a fresh import per case took 25 s under load."""
  from transformers.utils import logging as hf_logging

  logger = hf_logging.get_logger("transformers")
  seen = io.StringIO()
  handler = logging.StreamHandler(seen)
  logger.addHandler(handler)
  try:
    logger.warning_advice("PyTorch was not found. (control)")
    assert "PyTorch was not found. (control)" in seen.getvalue()
    main(capsys, "--help")
    logger.warning_advice("PyTorch was not found. (after cli.main)")
    assert "after cli.main" not in seen.getvalue()
  finally:
    logger.removeHandler(handler)


def _record(level: int, message: str) -> logging.LogRecord:
  return logging.LogRecord("anchoral_jax.regimes", level, "regimes_head.py", 230, message, (),
                           None)


def test_log_lines_without_absl_prefix():
  from absl import logging as absl_logging

  handler = absl_logging.get_absl_handler().python_handler
  before = handler.formatter
  handler.setFormatter(absl_logging.PythonFormatter())  # as app.run leaves it
  info = _record(logging.INFO, "head trained: 11/25 epochs run")
  try:
    assert absl_logging.get_absl_handler().format(info).startswith("I")  # absl's I1205 ...]
    for tty in (True, False):
      stream = type("S", (io.StringIO,), {"isatty": lambda self, t=tty: t})()
      old_stream = handler.stream
      handler.stream = stream
      try:
        cli._plain_log_lines()
      finally:
        handler.stream = old_stream
      line = absl_logging.get_absl_handler().format(info)
      warn = absl_logging.get_absl_handler().format(_record(logging.WARNING, "careful"))
      if tty:  # between the round lines on a terminal: the message alone
        assert line == "head trained: 11/25 epochs run" and warn == "WARNING: careful"
      else:  # run.log: with the time
        assert line[:9].count(":") == 2 and line[9:] == "head trained: 11/25 epochs run"
        assert warn.endswith(" WARNING: careful")
  finally:
    handler.setFormatter(before)


def test_progress_bars_only_on_a_terminal(capsys, monkeypatch):
  """Bars in a log file were carriage-return redraws (run.log); off there, on a terminal."""
  from anchoral_jax.retrieval.index import PoolIndex

  emb = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
  assert parallel.show_bars(True) is False and parallel.show_bars(False) is False  # captured
  capsys.readouterr()
  PoolIndex.build(emb, np.arange(40), connectivity=8, progress=True)
  assert capsys.readouterr().err == ""
  monkeypatch.setattr(sys, "stderr", type("T", (io.StringIO,), {"isatty": lambda self: True})())
  assert parallel.show_bars(True) is True and parallel.show_bars(False) is False
  PoolIndex.build(emb, np.arange(40), connectivity=8, progress=True)
  assert "index: 100%" in sys.stderr.getvalue()


# ---------------------------------------------------------------------------------------------
# The retrieval index: a reproducible build, and the graph a run searched, recorded.

def test_single_threaded_build_is_the_same_file(tmp_path):
  from conftest import tiny_config

  from anchoral_jax import cache
  from anchoral_jax.retrieval import prepare

  emb = np.random.default_rng(1).standard_normal((1500, 16)).astype(np.float32)
  config = tiny_config(tmp_path, 400, 100, **{"index.connectivity": 8,
                                               "index.expansion_add": 32})
  assert config.index.build_threads == 1  # the default
  digests = []
  for k in range(2):
    path = tmp_path / f"i{k}.usearch"
    idx = prepare.build_index(config, emb, path, progress=False, batch_size=500)
    digests.append(cache.file_sha256(path))
    assert idx.sha256() == digests[-1] == cache.index_meta(path)["sha256"]
  assert digests[0] == digests[1]


def test_a_corrupt_cached_index_is_rebuilt_as_the_same_graph(tmp_path, caplog):
  """The review's case: a corrupted index file was rebuilt into another graph (round-0 subpool
  one uid off in 3 of 4 rebuilds)."""
  from conftest import tiny_config

  from anchoral_jax import cache
  from anchoral_jax.data.task import Split, TextTask
  from anchoral_jax.retrieval import prepare

  n = 1200
  split = Split(tuple(f"text {i}" for i in range(n)), np.arange(n, dtype=np.int32) % 2,
                np.arange(n, dtype=np.int64))
  task = TextTask("small", ("a", "b"), (1,), split, split)
  emb = np.random.default_rng(2).standard_normal((n, 16)).astype(np.float32)
  config = tiny_config(tmp_path, 400, 100, **{"index.connectivity": 8})
  path = cache.index_path(config, task)
  first = prepare.cached_index(config, task, emb)
  digest, found = first.sha256(), first.search(emb[:20], 10)[0]
  for _ in range(2):
    path.write_bytes(path.read_bytes()[:300])  # corrupt: rebuilt with a warning
    with caplog.at_level(logging.WARNING):
      again = prepare.cached_index(config, task, emb)
    assert "Rebuilding the cached index" in caplog.text
    assert again.sha256() == cache.file_sha256(path) == digest
    np.testing.assert_array_equal(again.search(emb[:20], 10)[0], found)


def test_record_index_warns_when_a_resumed_run_finds_another_graph(tmp_path, caplog):
  def entries():
    return json.loads((tmp_path / run_files.INDEX_NAME).read_text())

  run_files.record_index(tmp_path, "a" * 64, "/c/i.usearch", 0)
  run_files.record_index(tmp_path, "a" * 64, "/c/i.usearch", 3)  # same graph: nothing new
  assert [e["sha256"] for e in entries()] == ["a" * 64] and entries()[0]["from_round"] == 0
  with caplog.at_level(logging.WARNING):
    run_files.record_index(tmp_path, "b" * 64, "/c/i.usearch", 4)
  assert "The retrieval index changed since round 0" in caplog.text
  assert "bbbbbbbbbbbb" in caplog.text
  assert [(e["sha256"][0], e["from_round"]) for e in entries()] == [("a", 0), ("b", 4)]
  caplog.clear()
  (tmp_path / run_files.INDEX_NAME).unlink()
  run_files.record_index(tmp_path, "a" * 64, "/c/i.usearch", 0)
  run_files.record_index(tmp_path, "c" * 64, "/c/i.usearch", 0)  # no round searched "a"
  assert [e["sha256"][0] for e in entries()] == ["c"] and "changed" not in caplog.text


# ---------------------------------------------------------------------------------------------
# A labelling session's files.

TOPICS = {"tech": ["software update for the phone", "the new chip runs faster",
                   "a computer virus spread online", "broadband internet speeds rise"],
          "other": ["the team won the match", "parliament passed the budget",
                    "the film opened in cinemas", "shares fell on the market",
                    "the singer released an album", "rain is expected tomorrow"]}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
  """A session after batch 1 was answered (batch 2 asked), its flags in underscore spelling."""
  root = tmp_path_factory.mktemp("session")
  rng = np.random.default_rng(0)
  rows = [(f"{t} number {k}", c) for c, ts in TOPICS.items() for t in ts for k in range(6)]
  rng.shuffle(rows)
  truth = {str(i): c for i, (_, c) in enumerate(rows)}
  pd.DataFrame({"body": [t for t, _ in rows]}).to_csv(root / "pool.csv", index=False)
  seed = [next(i for i, c in truth.items() if c == k) for k in ("tech", "other")]
  pd.DataFrame({"id": seed, "label": [truth[i] for i in seed]}).to_csv(root / "seed.csv",
                                                                      index=False)
  wd = root / "wd"
  sigint = signal.getsignal(signal.SIGINT)
  try:
    cli.main(["anchoral", "label", "init", "--workdir", str(wd), "--data",
              str(root / "pool.csv"), "--text_column", "body", "--classes", "other,tech",
              "--minority", "tech", "--query_size", "8", "--max_length", "16",
              "--num_neighbours", "5", "--seed_labels", str(root / "seed.csv")])
    _fill(wd / "batches" / "batch_001.csv", truth)
    cli.main(["anchoral", "label", "next", "--workdir", str(wd)])
  finally:
    signal.signal(signal.SIGINT, sigint)
  assert (wd / "batches" / "batch_002.csv").exists() and (wd / "head.npz").exists()
  return {"wd": wd, "truth": truth, "root": root}


def _fill(path: Path, truth: dict, drop: int = 0) -> pd.DataFrame:
  df = pd.read_csv(path, dtype=str, keep_default_na=False)
  df["label"] = [truth[i] for i in df["id"]]
  df.iloc[drop:].to_csv(path, index=False)
  return df


def _copy(session, tmp_path) -> Path:
  wd = tmp_path / "wd"
  shutil.copytree(session["wd"], wd, ignore=shutil.ignore_patterns(".lock"))
  return wd


# What each command reads (status estimates from the audit sample: no embeddings, no head).
READS = [("next", n) for n in ("embeddings.npy", "state.json", "settings.json", "pool.parquet",
                               "head.npz")] + [("status", n) for n in ("state.json",
                                                                       "settings.json",
                                                                       "pool.parquet")]


@pytest.mark.parametrize(("command", "name"), READS)
def test_truncated_session_file_is_named(session, tmp_path, capsys, name, command):
  wd = _copy(session, tmp_path)
  path = wd / name
  path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  answers = (wd / "answers.jsonl").read_text()
  code, out, err = main(capsys, "label", command, "--workdir", str(wd))
  if name == "head.npz" and command == "next":  # not read by a step (it trains a new one)
    assert code == 0 and "no answers yet" in out, err
    return
  assert code == 2 and "Traceback" not in err, (code, err)
  assert f"{path} is truncated or corrupt" in err, err
  assert (wd / "answers.jsonl").read_text() == answers  # nothing recorded


def test_lost_answers_are_named(session, tmp_path, capsys):
  wd = _copy(session, tmp_path)
  (wd / "answers.jsonl").write_text("")
  for command in ("next", "status"):
    code, _, err = main(capsys, "label", command, "--workdir", str(wd))
    assert code == 2 and "answers.jsonl lacks the answers of batch(es) 1" in err, err
    assert "batch_001.csv" in err


def test_deleted_rows_are_recorded_as_skipped_and_said(session, tmp_path, capsys):
  wd = _copy(session, tmp_path)
  df = _fill(wd / "batches" / "batch_002.csv", session["truth"], drop=2)
  code, out, err = main(capsys, "label", "next", "--workdir", str(wd))
  assert code == 0 and "Recorded batch 2" in out, err
  assert "batch_002.csv: 2 asked row(s) are not in the file" in err
  assert f"{df['id'][0]}, {df['id'][1]}" in err
  lines = [json.loads(x) for x in (wd / "answers.jsonl").read_text().splitlines()]
  skipped = {r["id"] for r in lines if r.get("batch") == 2 and "id" in r and r["label"] is None}
  assert skipped == set(df["id"][:2])


@pytest.mark.parametrize(("flag", "value"), [("--query-size", "0"), ("--max-length", "0"),
                                             ("--num-neighbours", "0"), ("--subpool-size", "-1")])
def test_init_refuses_sizes_that_cannot_work(session, tmp_path, capsys, flag, value):
  wd = tmp_path / "new"
  code, _, err = main(capsys, "label", "init", "--workdir", str(wd), "--data",
                      str(session["root"] / "pool.csv"), "--text-column", "body",
                      "--classes", "other,tech", "--minority", "tech", flag, value)
  assert code == 2 and f"{flag} must be at least" in err, err
  assert not (wd / "settings.json").exists() and not (wd / "batches").exists()
