"""configs/other_models.py end to end: every model family's tiny architecture (random init)
runs the paper's strategy (entropy) behind AnchorAL on the embedded tweets."""

import sys
from pathlib import Path

import numpy as np
import pytest

from anchoral_jax import errors
from anchoral_jax.al import loop
from anchoral_jax.sweep import runs as sweep_runs
from anchoral_jax.tracking.jsonl import load_metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
other_models = sweep_runs.load_module(ROOT / "configs" / "other_models.py")


@pytest.mark.parametrize("model", ["albert-base-v2", "deberta-v3-base", "gpt2", "t5-base"])
def test_every_family_runs_end_to_end(tmp_path, cache_dir, model):
  c = other_models.get_config(f"model={model},runlocal")
  c.data.cache_dir = str(cache_dir)
  c.wandb.mode = "disabled"
  c.al.budget = 125  # one query round and the final round
  # GPT-2 reads its own packaged BPE (tests/test_tokenize.py); the others MiniLM's WordPiece.
  assert c.model.tokenizer == ("gpt2" if model == "gpt2" else "all-MiniLM-L6-v2")
  records = loop.run(c, tmp_path / model)
  assert [r["round"] for r in records] == [0, 1]
  assert all(np.isfinite(r["test/f1_macro"]) and np.isfinite(r["train/loss"]) for r in records)
  assert records[0]["subpool/size"] <= c.al.subpool_size and (tmp_path / model / "DONE").exists()
  assert len(load_metrics(tmp_path / model / "metrics.jsonl")[0]) == 2


def test_a_tokenizer_beyond_the_model_vocabulary_is_refused(tmp_path, cache_dir, monkeypatch):
  """Token ids past the embedding table would embed as NaN deep in training: refused at set-up."""
  import dataclasses

  from anchoral_jax import models

  monkeypatch.setitem(models.PRESETS, "tiny-vocab-1000",
                      dataclasses.replace(models.PRESETS["tiny"], vocab_size=1000))
  c = other_models.get_config("model=bert-tiny,runlocal")
  c.data.cache_dir = str(cache_dir)
  c.wandb.mode = "disabled"
  c.model.name = "tiny-vocab-1000"
  with pytest.raises(errors.ConfigError, match=r"token ids up to \d+, but the model"):
    loop.run(c, tmp_path / "w")
