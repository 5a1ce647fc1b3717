"""Bad input fails early with one message naming the key or file and the fix (CLI: exit 2).

The CLI's promise (README): no traceback, exit status 2, and nothing already computed is lost.
Most checks call the library directly (fast); a few drive `python -m anchoral_jax.cli` to check
the message, the exit status and that no traceback reaches the user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from anchoral_jax import errors
from anchoral_jax.al import loop, validation
from anchoral_jax.data.errors import DataFormatError
from anchoral_jax.data.user import build_user_task

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", "anchoral_jax.cli", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _assert_one_message(proc: subprocess.CompletedProcess, *needles: str) -> None:
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  for needle in needles:
    assert needle in proc.stderr, proc.stderr[-3000:]


# ---------------------------------------------------------------------------------------------
# 1. Validation before any expensive step.

BAD = [
    ("train.model_selection", "best", "train_minority_f1"),
    ("train.trainable", "encoder", "'head'"),
    ("anchoral.sampling", "top", "softmax"),
    ("model.pooling", "cls", "mean"),
    ("model.dtype", "float16", "bfloat16"),
    ("anchoral.anchor_strategy", "kmeanspp", "kmeans_pp"),
    ("anchoral.minority_anchor_strategy", "rand", "kmeans_pp"),
    ("wandb.mode", "offlne", "offline"),
    ("al.subpool_size", 0, "positive"),
    ("anchoral.num_anchors", 0, "positive"),
    ("anchoral.num_neighbours", -1, "positive"),
    ("data.test_size", -5, ">= 0"),
    ("data.max_length", 0, "positive"),
    ("train.batch_size", 0, "positive"),
]


@pytest.mark.parametrize(("key", "value", "hint"), BAD, ids=[b[0] for b in BAD])
def test_validate_rejects_bad_options_with_the_valid_ones(tmp_path, key, value, hint):
  config = tiny_config(tmp_path, 400, 100, **{key: value})
  with pytest.raises(errors.ConfigError) as e:
    validation.validate(config)
  assert key in str(e.value) and hint in str(e.value)


def test_validate_rejects_seals_neighbours(tmp_path):
  config = tiny_config(tmp_path, 400, 100, **{"al.filter": "seals", "seals.num_neighbours": 0})
  with pytest.raises(errors.ConfigError, match="seals.num_neighbours must be positive"):
    validation.validate(config)


def test_validate_accepts_the_tiny_config(tmp_path):
  validation.validate(tiny_config(tmp_path, 400, 100))


def test_cli_zero_subpool_fails_before_anything_runs(tmp_path):
  workdir = tmp_path / "w"
  proc = _cli("run", "--config", "configs/default.py:tiny", f"--workdir={workdir}",
              f"--config.data.cache_dir={tmp_path / 'cache'}", "--config.wandb.mode=disabled",
              "--config.al.subpool_size=0")
  _assert_one_message(proc, "al.subpool_size must be positive")
  assert not workdir.exists()
  assert not any((tmp_path / "cache" / d).exists() for d in ("tokens", "embeddings", "index"))


# ---------------------------------------------------------------------------------------------
# 2. Unknown keys on the command line; a missing model directory.

def test_cli_unknown_override_key_names_close_keys(tmp_path):
  proc = _cli("run", "--config", "configs/default.py:tiny", f"--workdir={tmp_path / 'w'}",
              "--config.al.budgte=10", timeout=60)
  _assert_one_message(proc, "'al.budgte'", "al.budget")
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_missing_model_names_the_config_field(tmp_path):
  proc = _cli("run", "--config", "configs/default.py:tiny", f"--workdir={tmp_path / 'w'}",
              f"--config.data.cache_dir={tmp_path / 'cache'}", "--config.wandb.mode=disabled",
              f"--config.model.tokenizer={tmp_path / 'no_such_model'}")
  _assert_one_message(proc, "model.tokenizer", "no_such_model")
  assert "model.path" not in proc.stderr


def test_missing_model_message_names_real_fields():
  from anchoral_jax.models.hf import resolve_model_dir

  with pytest.raises(FileNotFoundError) as e:
    resolve_model_dir("/nonexistent/model-dir")
  assert "model.path" not in str(e.value) and "model.name" in str(e.value)


# ---------------------------------------------------------------------------------------------
# 3. User data files.

def _task(path: Path, **kw):
  return build_user_task(path, "body", "kind", ["ham", "spam"], ["spam"], **kw)


def test_non_utf8_csv_names_the_file(tmp_path):
  path = tmp_path / "latin1.csv"
  path.write_bytes("body,kind\ncaf\xe9 au lait,ham\n".encode("latin-1"))
  with pytest.raises(DataFormatError, match="latin1.csv is not UTF-8"):
    _task(path)


def test_empty_csv_names_the_file(tmp_path):
  path = tmp_path / "empty.csv"
  path.write_text("")
  with pytest.raises(DataFormatError, match="empty.csv is empty"):
    _task(path)


def test_ragged_csv_names_the_file_and_line(tmp_path):
  path = tmp_path / "ragged.csv"
  path.write_text("body,kind\nhello,ham\nhi,spam,extra\n")
  with pytest.raises(DataFormatError, match=r"ragged.csv is not a well-formed CSV.*line 3"):
    _task(path)


def test_unreadable_parquet_names_the_file(tmp_path):
  path = tmp_path / "broken.parquet"
  path.write_bytes(b"this is not parquet at all")
  with pytest.raises(DataFormatError, match="broken.parquet cannot be read as parquet"):
    _task(path)


def test_numeric_text_column_is_reported_as_numbers(tmp_path):
  path = tmp_path / "numbers.parquet"
  pd.DataFrame({"body": np.arange(20.0), "kind": ["ham", "spam"] * 10}).to_parquet(path)
  with pytest.raises(DataFormatError, match="holds numbers, not text") as e:
    _task(path)
  assert "empty" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# 4. The different-config refusal names the keys; inert keys do not block resume.

def _committed_workdir(tmp_path: Path, config) -> Path:
  """A workdir that looks finished for `config` (hparams.json + DONE + an empty metrics file)."""
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "hparams.json").write_text(config.to_json_best_effort())
  (workdir / "DONE").write_text("")
  (workdir / "metrics.jsonl").write_text("")
  return workdir


def test_different_config_refusal_lists_the_changed_keys(tmp_path):
  workdir = _committed_workdir(tmp_path, tiny_config(tmp_path, 400, 100))
  changed = tiny_config(tmp_path, 400, 100, **{"al.subpool_size": 300, "train.epochs": 2})
  with pytest.raises(errors.ConfigError, match="different config") as e:
    loop.run(changed, workdir)
  assert "al.subpool_size: 2000 -> 300" in str(e.value)
  assert "train.epochs: 1 -> 2" in str(e.value)


def test_inert_keys_do_not_block_resume(tmp_path):
  workdir = _committed_workdir(tmp_path, tiny_config(tmp_path, 400, 100))
  changed = tiny_config(tmp_path / "elsewhere", 400, 100,
                        **{"wandb.project": "renamed", "index.view": True})
  loop.run(changed, workdir)  # DONE: returns the (empty) records instead of refusing
  hparams = json.loads((workdir / "hparams.json").read_text())
  assert hparams["wandb"]["project"] == "renamed" and hparams["index"]["view"] is True
  assert hparams["data"]["cache_dir"] == str(tmp_path / "elsewhere")


def test_a_run_from_before_index_dtype_resumes_with_f32_only(tmp_path):
  """hparams.json written before index.dtype existed: that run's index was f32, so the f16
  default is a different config (named in the refusal) and index.dtype=f32 resumes it."""
  config = tiny_config(tmp_path, 400, 100, **{"al.filter": "anchoral"})
  workdir = _committed_workdir(tmp_path, config)
  old = json.loads((workdir / "hparams.json").read_text())
  del old["index"]["dtype"]
  (workdir / "hparams.json").write_text(json.dumps(old))
  with pytest.raises(errors.ConfigError, match="index.dtype: 'f32' -> 'f16'"):
    loop.run(config, workdir)
  config.index.dtype = "f32"
  loop.run(config, workdir)  # DONE: returns instead of refusing


# ---------------------------------------------------------------------------------------------
# 5. Corrupt cache files: one message naming the file and the fix (or a rebuild with a warning).

def _small_task(n: int = 40):
  from anchoral_jax.data.task import Split, TextTask

  def split(offset):
    return Split(tuple(f"text {i}" for i in range(n)), np.arange(n, dtype=np.int32) % 2,
                 np.arange(offset, offset + n, dtype=np.int64))

  return TextTask("small", ("a", "b"), (1,), split(0), split(n))


@pytest.mark.parametrize("which", ["npz", "npy"])
def test_corrupt_embeddings_cache_names_the_file(tmp_path, which):
  from anchoral_jax import cache
  from anchoral_jax.errors import CorruptCacheError

  uid = np.arange(5, dtype=np.int64)
  mm = cache.open_embeddings(tmp_path, "k", 5, 4)
  mm[:] = 1.0
  cache.commit_embeddings(tmp_path, "k", mm, uid, source="encoder")
  bad = tmp_path / f"k.{which}"
  bad.write_bytes(b"garbage" * 20)
  with pytest.raises(CorruptCacheError) as e:
    cache.load_embeddings(tmp_path, "k", uid)
  assert str(bad) in str(e.value) and "delete" in str(e.value)
  assert "allow_pickle" not in str(e.value)


def _index_config(tmp_path, **kw):
  return tiny_config(tmp_path, 400, 100, **{"index.connectivity": 8, **kw})


def test_corrupt_cached_index_is_rebuilt_with_a_warning(tmp_path, caplog):
  from anchoral_jax import cache
  from anchoral_jax.retrieval import prepare

  task = _small_task()
  emb = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
  config = _index_config(tmp_path)
  path = cache.index_path(config, task)
  assert len(prepare.cached_index(config, task, emb)) == 40
  path.write_bytes(path.read_bytes()[:200])  # truncated
  with caplog.at_level("WARNING"):
    idx = prepare.cached_index(config, task, emb)
  assert len(idx) == 40 and "Rebuilding the cached index" in caplog.text
  assert str(path) in caplog.text


def test_corrupt_user_index_path_names_the_file(tmp_path):
  from anchoral_jax.errors import CorruptCacheError
  from anchoral_jax.retrieval import prepare

  bad = tmp_path / "mine.usearch"
  bad.write_bytes(b"not an index" * 10)
  config = _index_config(tmp_path, **{"index.path": str(bad)})
  emb = np.zeros((40, 8), np.float32)
  with pytest.raises(CorruptCacheError, match="mine.usearch.*delete it"):
    prepare.cached_index(config, _small_task(), emb)


def test_cli_corrupt_embeddings_exit_2_naming_the_file(tmp_path):
  from anchoral_jax import cache as cache_lib
  from anchoral_jax.retrieval import prepare

  cache = tmp_path / "cache"
  args = [f"--config.data.cache_dir={cache}", "--config.wandb.mode=disabled",
          "--config.data.kwargs.pool_size=300", "--config.data.kwargs.test_size=50",
          "--config.data.test_size=50", "--config.al.subpool_size=100"]  # AnchorAL filters
  config = tiny_config(cache, 300, 50, **{"data.test_size": 50})
  task = prepare._task(config)
  directory, key = cache_lib.embed_dir(config), cache_lib.config_key(config, task)
  directory.mkdir(parents=True)
  (directory / f"{key}.npz").write_bytes(b"garbage" * 20)
  proc = _cli("run", "--config", "configs/default.py:tiny", f"--workdir={tmp_path / 'w'}", *args)
  _assert_one_message(proc, f"{key}.npz", "delete")
  assert "allow_pickle" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# 6. Cold-cache races: one build per file, the others wait and load it.

def _concurrently(fn, n: int) -> tuple[list, list]:
  """Runs `fn` in `n` threads at once; returns (results, exceptions)."""
  import threading

  out, errors = [], []

  def worker():
    try:
      out.append(fn())
    except Exception as e:  # noqa: BLE001 (returned to the test)
      errors.append(e)

  threads = [threading.Thread(target=worker) for _ in range(n)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  return out, errors


def test_concurrent_cold_index_builds_build_once(tmp_path, monkeypatch):
  import threading
  import time

  from anchoral_jax.retrieval import prepare

  task = _small_task()
  emb = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
  config = _index_config(tmp_path)
  built = []
  real = prepare.build_index

  def slow_build(*a, **kw):
    built.append(threading.get_ident())
    time.sleep(0.5)  # long enough for the other thread to arrive and find no index
    return real(*a, **kw)

  monkeypatch.setattr(prepare, "build_index", slow_build)
  out, errors = _concurrently(lambda: prepare.cached_index(config, task, emb), 3)
  assert not errors and len(built) == 1 and len(out) == 3
  q = emb[:3]
  results = [idx.search(q, 5)[0] for idx in out]
  for r in results[1:]:
    np.testing.assert_array_equal(r, results[0])


def test_concurrent_cold_embeddings_embed_once(tmp_path, monkeypatch):
  import time

  from anchoral_jax.retrieval import embed

  calls = []

  class FakeEncoder:
    def __init__(self, model, max_length):
      self.cfg = type("Cfg", (), {"hidden_size": 4})

    def encode(self, texts, **kw):
      calls.append(len(texts))
      time.sleep(0.2)
      return embed.normalise(np.ones((len(texts), 4), np.float32))

  monkeypatch.setattr(embed, "SentenceEncoder", FakeEncoder)
  task = _small_task()
  out, errors = _concurrently(lambda: np.asarray(embed.pool_embeddings(
      task, tmp_path, "fake", 16, chunk_rows=10, progress=False)), 2)
  assert not errors, errors
  assert calls == [10, 10, 10, 10]  # each chunk embedded once, not once per process
  np.testing.assert_array_equal(out[0], out[1])


def test_part_temp_names_are_per_process(tmp_path, monkeypatch):
  """A part's temporary file carries the pid: two processes never rename each other's."""
  from anchoral_jax.retrieval import embed

  saved = []
  real_save = np.save
  monkeypatch.setattr(embed.np, "save", lambda f, a: (saved.append(str(f)), real_save(f, a)))

  class FakeEncoder:
    def __init__(self, model, max_length):
      self.cfg = type("Cfg", (), {"hidden_size": 4})

    def encode(self, texts, **kw):
      return np.ones((len(texts), 4), np.float32)

  monkeypatch.setattr(embed, "SentenceEncoder", FakeEncoder)
  embed.pool_embeddings(_small_task(), tmp_path, "fake", 16, chunk_rows=20, progress=False)
  part_tmps = [s for s in saved if ".parts" in s]
  assert part_tmps and all(f".{os.getpid()}.tmp.npy" in s for s in part_tmps)


# ---------------------------------------------------------------------------------------------
# 7. A sweep with an impossible value fails before any run starts.

@pytest.mark.parametrize(("override", "needle"), [("al.query_size=0", "al.query_size must be"),
                                                  ("al.strategy=nope", "Unknown al.strategy")])
def test_cli_sweep_bad_value_fails_before_any_run(tmp_path, override, needle):
  runs_dir = tmp_path / "runs"
  proc = _cli("sweep", "--config", "configs/ablations.py", f"--runs_dir={runs_dir}",
              "--backend", "local", f"--config.{override}", timeout=120)
  _assert_one_message(proc, needle, "run dataset=")
  assert not runs_dir.exists()


def test_corrupt_token_cache_is_rebuilt_with_a_warning(tmp_path, cache_dir, caplog):
  from anchoral_jax import cache
  from anchoral_jax.data.tokenize import load_tokenizer
  from anchoral_jax.models.hf import resolve_model_dir

  model_dir = resolve_model_dir("all-MiniLM-L6-v2")
  tok = load_tokenizer(model_dir)
  texts = ("one sentence here", "and another one")
  first = cache.cached_tokens(tmp_path, model_dir, "fp", "train", texts, tok, 16)
  (path,) = (tmp_path / "tokens").glob("*.npz")
  path.write_bytes(b"not a zip file")
  with caplog.at_level("WARNING"):
    again = cache.cached_tokens(tmp_path, model_dir, "fp", "train", texts, tok, 16)
  assert str(path) in caplog.text
  assert np.array_equal(again.flat_ids_T, first.flat_ids_T)
  assert np.array_equal(cache.cached_tokens(tmp_path, model_dir, "fp", "train", texts, tok,
                                            16).offsets, first.offsets)  # rewritten, readable
