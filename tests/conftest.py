"""Shared test set-up: CPU only, no network, offline W&B, one cache dir per session, and no
implicit rank promotion (a shape bug broadcast silently is the kind a test should catch)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["WANDB_BASE_URL"] = "http://127.0.0.1:9"  # any network attempt fails at once

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  """Tokens/embeddings/index cache shared by the tests of one session."""
  return tmp_path_factory.mktemp("anchoral_cache")


@pytest.fixture(scope="session")
def minilm_dir():
  from anchoral_jax.models.bert import resolve_model_dir

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

  from anchoral_jax.tokenize import TokenizedTexts

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
