"""The Flax BERT against independent references: Hugging Face PyTorch BertModel (when torch is
installed) or golden values produced by it (tests/make_golden.py)."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from anchoral_jax import models
from anchoral_jax.models import bert, hf

GOLDEN = Path(__file__).parent / "golden" / "minilm.npz"
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _apply(cfg, params, ids, mask, **kw):
  return bert.BertClassifier(cfg).apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask),
                                        **kw)


def test_minilm_matches_pytorch_reference(minilm_dir):
  g = dict(np.load(GOLDEN))
  if HAS_TORCH:  # recompute the reference live; the stored values must agree with it too
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(minilm_dir)).eval()
    with torch.no_grad():
      o = model(input_ids=torch.tensor(g["input_ids"]),
                attention_mask=torch.tensor(g["attention_mask"]))
    # Real tokens only: padded positions' outputs are never used and vary with the CPU kernels
    # torch picks (up to 4e-5 seen at padding, under load).
    real = g["attention_mask"].astype(bool)
    np.testing.assert_allclose(o.last_hidden_state.numpy()[real], g["hidden"][real], atol=1e-5)
    g["hidden"], g["pooled"] = o.last_hidden_state.numpy(), o.pooler_output.numpy()
  cfg, params = bert.load_pretrained(str(minilm_dir), 2, jax.random.key(0))
  _, out = _apply(cfg, params, g["input_ids"], g["attention_mask"])
  m = g["attention_mask"].astype(bool)
  assert np.abs(np.asarray(out["hidden"])[m] - g["hidden"][m]).max() < 1e-4
  assert np.abs(np.asarray(out["pooled"]) - g["pooled"]).max() < 1e-4


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch for a random HF reference model")
@pytest.mark.parametrize("safe", [True, False])
def test_random_hf_checkpoint_converts_exactly(tmp_path, safe):
  """A random (not pretrained) HF BERT with other sizes, saved as safetensors and as .bin."""
  import torch
  from transformers import BertConfig, BertForSequenceClassification

  torch.manual_seed(0)
  hf_cfg = BertConfig(vocab_size=500, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=80, max_position_embeddings=64, num_labels=3)
  model = BertForSequenceClassification(hf_cfg).eval()
  model.save_pretrained(tmp_path, safe_serialization=safe)
  ids = np.random.default_rng(0).integers(1, 500, size=(3, 17))
  mask = np.ones_like(ids)
  mask[1, 9:] = 0
  with torch.no_grad():
    o = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
              output_hidden_states=True)
  cfg, params = bert.load_pretrained(str(tmp_path), 3, jax.random.key(0))
  state = hf.read_hf_state_dict(tmp_path)
  # The task head is ours (fresh), so compare the encoder and, with HF's head copied, the logits.
  params["classifier"] = {"kernel": jnp.asarray(state["classifier.weight"].T),
                          "bias": jnp.asarray(state["classifier.bias"])}
  logits, out = _apply(cfg, params, ids, mask)
  m = mask.astype(bool)
  assert np.abs(np.asarray(out["hidden"])[m] - o.hidden_states[-1].numpy()[m]).max() < 1e-4
  assert np.abs(np.asarray(logits) - o.logits.numpy()).max() < 1e-4


def test_outputs_and_dropout_and_bf16():
  cfg = bert.PRESETS["tiny"]
  params = bert.init_params(cfg, jax.random.key(1))
  ids = np.random.default_rng(1).integers(1, 1000, size=(4, 12))
  mask = np.ones_like(ids)
  logits, out = _apply(cfg, params, ids, mask)
  assert logits.shape == (4, 2)
  for k in ("cls", "pooled", "pre_logits", "mean"):
    assert out[k].shape == (4, cfg.hidden_size)
  np.testing.assert_allclose(out["cls"], out["hidden"][:, 0])
  pooler = params["pooler"]
  np.testing.assert_allclose(out["pooled"],
                             np.tanh(out["cls"] @ pooler["kernel"] + pooler["bias"][None]),
                             atol=1e-5)
  # Eval mode is deterministic; train mode (dropout) is not.
  l2, _ = _apply(cfg, params, ids, mask)
  np.testing.assert_array_equal(logits, l2)
  l3, _ = _apply(cfg, params, ids, mask, deterministic=False, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(logits, l3)
  # bf16 compute keeps float32 params and stays close to float32.
  cfg16 = bert.BertConfig(**{**cfg.__dict__, "dtype": "bfloat16"})
  l16, _ = _apply(cfg16, params, ids, mask)
  assert l16.dtype == jnp.float32
  np.testing.assert_allclose(l16, logits, atol=0.05)


def test_padding_does_not_change_valid_outputs():
  cfg = bert.PRESETS["tiny"]
  params = bert.init_params(cfg, jax.random.key(3))
  ids = np.random.default_rng(2).integers(1, 1000, size=(1, 10))
  padded = np.concatenate([ids, np.zeros((1, 6), int)], 1)
  mask = np.concatenate([np.ones((1, 10), int), np.zeros((1, 6), int)], 1)
  l1, o1 = _apply(cfg, params, ids, np.ones_like(ids))
  l2, o2 = _apply(cfg, params, padded, mask)
  np.testing.assert_allclose(l1, l2, atol=1e-5)
  np.testing.assert_allclose(o1["mean"], o2["mean"], atol=1e-5)


def test_missing_model_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
    hf.resolve_model_dir("no-such-org/no-such-model")
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    hf.read_hf_state_dict(tmp_path)
  with pytest.raises(models.ModelLoadError, match="config.json is missing"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  (tmp_path / "config.json").write_text('{"model_type": "bart"}')
  with pytest.raises(models.ModelLoadError, match="'bart', which has no Flax implementation"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  with pytest.raises(models.ModelLoadError, match="model_type 'bert'"):
    bert.BertConfig.from_hf(tmp_path)


def test_checkpoint_conversion_is_strict(tmp_path):
  """A checkpoint tensor the model does not read, or one it needs and the checkpoint lacks, is
  an error naming the tensor: a silent mismatch would train a half-random model."""
  from safetensors.numpy import save_file

  cfg = dataclasses.replace(bert.PRESETS["tiny"], vocab_size=100, max_position_embeddings=16)
  params = bert.init_params(cfg, jax.random.key(0))
  flat = hf.flatten(params)
  state = {name: np.ascontiguousarray(np.asarray(flat[path]).T if t else np.asarray(flat[path]))
           for path, (name, t) in bert._hf_name_map(cfg).items()}
  got, kept = bert.params_from_hf(state, cfg, bert.init_params(cfg, jax.random.key(1)))
  assert sorted(kept) == ["classifier/bias", "classifier/kernel"]
  for path, leaf in hf.flatten(got).items():
    if path[0] != "classifier":
      np.testing.assert_array_equal(leaf, flat[path])  # every parameter round-trips
  extra = {**state, "encoder.layer.7.output.dense.weight": np.zeros((2, 2), np.float32)}
  with pytest.raises(models.ModelLoadError, match=r"not use: encoder\.layer\.7\.output"):
    bert.params_from_hf(extra, cfg, params)
  lacking = {k: v for k, v in state.items() if k != "encoder.layer.1.output.dense.bias"}
  with pytest.raises(models.ModelLoadError, match=r"not in the checkpoint: encoder\.layer\.1"):
    bert.params_from_hf(lacking, cfg, params)
  # A whole directory: config.json + model.safetensors, loaded through the family registry.
  (tmp_path / "config.json").write_text(json.dumps({
      "model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 16}))
  save_file(state, str(tmp_path / "model.safetensors"))
  cfg2, got2 = models.load_pretrained(str(tmp_path), 2, jax.random.key(1))
  assert cfg2 == dataclasses.replace(cfg, num_labels=2)
  np.testing.assert_array_equal(got2["layer_1"]["output"]["bias"], params["layer_1"]["output"]["bias"])


def test_checkpoint_without_tokenizer_files_names_them(tmp_path):
  from anchoral_jax.data.tokenize import load_tokenizer

  (tmp_path / "config.json").write_text('{"model_type": "albert"}')
  with pytest.raises(models.ModelLoadError, match=r"tokenizer.json \(or spiece.model\)"):
    load_tokenizer(tmp_path)
