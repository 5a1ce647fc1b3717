"""Shared test set-up: CPU only, no network, offline W&B, one cache dir per session."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")
os.environ["WANDB_BASE_URL"] = "http://127.0.0.1:9"  # any network attempt fails at once

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  """Tokens/embeddings/index cache shared by the tests of one session."""
  return tmp_path_factory.mktemp("anchoral_cache")


@pytest.fixture(scope="session")
def minilm_dir():
  from anchoral_jax.models.bert import resolve_model_dir

  return resolve_model_dir("all-MiniLM-L6-v2")
