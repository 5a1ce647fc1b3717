"""Shared test set-up: CPU only, no network, offline W&B, one cache dir per session, and no
implicit rank promotion (a shape bug broadcast silently is the kind a test should catch)."""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["WANDB_BASE_URL"] = "http://127.0.0.1:9"  # any network attempt fails at once

# XLA's persistent compilation cache, one per test session: the pytest process makes it, and
# the xdist workers and every process a test starts inherit the variable. Many tests compile the
# same tiny models' programs (each run of a test builds its jitted functions anew, and each
# worker and subprocess starts empty); the cache compiles each once per session (test_loop.py
# alone: 110 s -> 86 s). Run CLIs point it at their own `<data.cache_dir>/xla` (parallel.py).
# Removed at the end (`pytest_unconfigure`); a dir given from outside is left alone.
_SESSION_XLA_CACHE = None
if not os.environ.get("PYTEST_XDIST_WORKER") and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _SESSION_XLA_CACHE = tempfile.mkdtemp(prefix="anchoral-test-xla-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _SESSION_XLA_CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.05"

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_unconfigure(config):  # noqa: ARG001 (pytest's hook signature)
  if _SESSION_XLA_CACHE:
    shutil.rmtree(_SESSION_XLA_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  """Tokens/embeddings/index cache shared by the tests of one session.

  Under pytest-xdist (`make test` runs `pytest -n 2`) the workers of one session share one
  directory next to their own base temp dirs, as the runs of a sweep share one cache: each
  file is built once, by one process under `cache.py`'s build locks, and the others load it."""
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = tmp_path_factory.getbasetemp().parent / "anchoral_cache"
    shared.mkdir(exist_ok=True)
    return shared
  return tmp_path_factory.mktemp("anchoral_cache")


# pytest-xdist (`make test`: `pytest -n 2 --dist loadfile --no-loadscope-reorder`): each test
# file runs whole on one worker, so module-scoped fixtures and in-process state run once.
# test_report.py reads the tiny sweep that test_sweep.py runs once per process, so the two files
# are one unit (a scheduler of our own: xdist 3.8's `xdist_group` marks do nothing under pytest 9,
# which ignores the node id xdist rewrites). Units start longest first, so that no worker is left
# alone with a long file at the end; the others keep their order. test_slurm.py goes first: its
# Slurm tasks run beside the worker (whose own process mostly waits), for minutes of wall time.
_XDIST_UNITS = {"test_report.py": "test_sweep.py"}
_XDIST_FIRST = ("test_plan.py", "test_slurm.py", "test_parallel.py", "test_regimes.py", "test_loop.py", "test_seeds.py",
                "test_sweep.py", "test_multihost.py", "test_train.py", "test_other_models.py",
                "test_model.py", "test_prepare.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  if config.getvalue("dist") != "loadfile":
    return None
  from xdist.scheduler import LoadFileScheduling

  class Scheduling(LoadFileScheduling):
    def _split_scope(self, nodeid: str) -> str:
      file = super()._split_scope(nodeid)
      folder, _, name = file.rpartition("/")
      return f"{folder}/{_XDIST_UNITS.get(name, name)}"

  return Scheduling(config, log)


def pytest_collection_modifyitems(config, items):
  if not os.environ.get("PYTEST_XDIST_WORKER"):
    return

  def rank(item):
    name = _XDIST_UNITS.get(item.path.name, item.path.name)
    return _XDIST_FIRST.index(name) if name in _XDIST_FIRST else len(_XDIST_FIRST)

  items.sort(key=rank)  # stable: a file's tests keep their order


@pytest.fixture(scope="session")
def minilm_dir():
  from anchoral_jax.models.hf import resolve_model_dir

  return resolve_model_dir("all-MiniLM-L6-v2")


def tiny_config(cache_dir, pool_size: int, test_size: int, **overrides):
  """configs/default.py:tiny on a stratified slice of the embedded default, W&B off.

  `overrides` use dotted keys ("al.budget"); tests import this (`from conftest import ...`)."""
  import sys
  from pathlib import Path

  sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
  from configs import default

  c = default.get_config("tiny")
  c.data.cache_dir = str(cache_dir)
  c.data.kwargs.pool_size = pool_size
  c.data.kwargs.test_size = test_size
  c.wandb.mode = "disabled"
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return c


def marker_tokens(rng, n: int, positive_rate: float, vocab_high: int = 3000):
  """n random token rows and labels; class-1 rows carry marker tokens (id 7), so a tiny model
  has something to learn. Returns (TokenizedTexts, labels_N)."""
  import numpy as np

  from anchoral_jax.data.tokenize import TokenizedTexts

  labels = (rng.random(n) < positive_rate).astype(np.int32)
  rows = []
  for y in labels:
    ids = rng.integers(1000, vocab_high, size=rng.integers(6, 20))
    if y:
      ids[rng.integers(0, len(ids), size=3)] = 7
    rows.append(np.concatenate([[101], ids, [102]]).astype(np.int32))
  offsets = np.zeros(n + 1, np.int64)
  np.cumsum([len(r) for r in rows], out=offsets[1:])
  return TokenizedTexts(np.concatenate(rows), offsets), labels


def max_traces(monkeypatch, module, name: str, n: int, **jit_kwargs) -> None:
  """Swaps `module.name`, a module-level `jax.jit`, for its Python function re-jitted under
  `chex.assert_max_traces(n)`: the (n+1)-th trace raises inside the code under test.

  A fresh jit has an empty cache, so `n` counts the warm-up trace too. `jit_kwargs` repeat the
  module's static arguments (what a trace depends on; donation does not change it). Callers must
  reach the function as `module.name` at call time, as the library's own modules do."""
  import inspect

  import chex

  chex.clear_trace_counter()
  fn = inspect.unwrap(getattr(module, name))  # the Python function, under any earlier swap
  monkeypatch.setattr(module, name, jax.jit(chex.assert_max_traces(fn, n), **jit_kwargs))
