"""The Flax T5 encoder against independent references: Hugging Face PyTorch T5EncoderModel built
from a small random config (when torch is installed), or golden values it produced
(tests/golden/t5.npz, `python tests/make_golden.py t5`).

Our head (masked mean + Linear, models/t5.py says why) has no PyTorch twin, so the encoder's last
hidden state is compared with T5EncoderModel's, and our logits with the same head applied in
numpy to PyTorch's hidden state. 8 relative-attention buckets over distances up to 16 and
40-token rows put most distances in the log buckets. Every weight is perturbed; the golden file
stores them with the inputs and outputs. Not pretrained weights: nothing here is downloaded."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import model_parity as mp
import numpy as np
import pytest

from anchoral_jax import models
from anchoral_jax.models import hf, t5

GOLDEN = Path(__file__).parent / "golden" / "t5.npz"
HAS_TORCH = importlib.util.find_spec("torch") is not None
# A small config with distinct sizes (N x D = 36 != d_model 40), so a transposed or swapped
# tensor fails on shape.
HF_CONFIG = {"model_type": "t5", "vocab_size": 120, "d_model": 40, "d_kv": 12, "d_ff": 56,
             "num_layers": 2, "num_heads": 3, "relative_attention_num_buckets": 8,
             "relative_attention_max_distance": 16, "feed_forward_proj": "relu",
             "layer_norm_epsilon": 1e-6, "dropout_rate": 0.1}
GATED_CONFIG = {**HF_CONFIG, "feed_forward_proj": "gated-gelu"}  # v1.1 / flan-t5


def _batch() -> tuple[np.ndarray, np.ndarray]:
  """ids_BxL, mask_BxL: three 40-token rows, the second right-padded (pad id 0 as T5's)."""
  return mp.batch(HF_CONFIG["vocab_size"], 40, 23, low=3)


def _head(hidden_BxLxH: np.ndarray, mask_BxL: np.ndarray, kernel_HxC, bias_C) -> np.ndarray:
  """Our head in numpy: the masked mean of the last layer, then the Linear."""
  m = mask_BxL[..., None].astype(np.float64)
  mean = (hidden_BxLxH * m).sum(1) / m.sum(1)
  return (mean @ np.asarray(kernel_HxC, np.float64) + np.asarray(bias_C)).astype(np.float32)


def torch_reference(state: dict[str, np.ndarray] | None = None, config: dict = HF_CONFIG):
  """The HF encoder: from `state`, else random (seed 0) with every weight perturbed."""
  return mp.torch_reference("T5Config", "T5EncoderModel", config, state)


def torch_hidden(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
  import torch

  with torch.no_grad():
    return model(input_ids=torch.tensor(ids),
                 attention_mask=torch.tensor(mask)).last_hidden_state.numpy()


def write_golden(path: Path = GOLDEN) -> None:
  """tests/make_golden.py: the reference's weights, inputs, hidden state, and a head's logits."""
  model = torch_reference()
  ids, mask = _batch()
  hidden = torch_hidden(model, ids, mask)
  rng = np.random.default_rng(1)
  kernel = rng.normal(0, 0.2, (HF_CONFIG["d_model"], 3)).astype(np.float32)
  bias = rng.normal(0, 0.2, 3).astype(np.float32)
  state = {k: v.numpy() for k, v in model.state_dict().items()}  # both tied embedding names
  mp.write_golden(path, HF_CONFIG, ids, mask, state, hidden=hidden, head_kernel=kernel,
                  head_bias=bias, logits=_head(hidden, mask, kernel, bias))


def _ours(model_dir, ids, mask, kernel, bias):
  """Our model loaded from `model_dir` through the registry, with the given head."""
  cfg, params = mp.load(model_dir)
  params["classifier"] = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
  return mp.apply(cfg, params, ids, mask)


def test_matches_golden_reference(tmp_path):
  """Runs with or without torch: the stored reference weights, loaded as a checkpoint."""
  g, state = mp.load_golden(GOLDEN, HF_CONFIG, "t5")
  ids, mask = g["input_ids"], g["attention_mask"]
  if HAS_TORCH:  # the stored outputs must agree with the live reference on the stored weights
    live = torch_hidden(torch_reference(state), ids, mask)
    m = mask.astype(bool)
    np.testing.assert_allclose(live[m], g["hidden"][m], atol=1e-5)
  mp.save_safetensors(tmp_path, HF_CONFIG, state)
  logits, out = _ours(tmp_path, ids, mask, g["head_kernel"], g["head_bias"])
  dh, dl = mp.max_diffs(g["hidden"], g["logits"], logits, out, mask)
  assert dh < 1e-4 and dl < 1e-4, (dh, dl)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch for a live HF reference model")
@pytest.mark.parametrize("safe,config", [(True, HF_CONFIG), (False, HF_CONFIG),
                                         (True, GATED_CONFIG)],
                         ids=["relu-safetensors", "relu-bin", "gated-gelu"])
def test_random_hf_checkpoint_matches_pytorch(tmp_path, safe, config):
  """Saved as safetensors (`shared.weight` only) and as pytorch_model.bin (both tied names),
  loaded through the family registry."""
  model = torch_reference(config=config)
  mp.save_checkpoint(model, tmp_path, safe)
  ids, mask = _batch()
  rng = np.random.default_rng(2)
  kernel, bias = rng.normal(0, 0.2, (40, 3)), rng.normal(0, 0.2, 3)
  hidden = torch_hidden(model, ids, mask)
  logits, out = _ours(tmp_path, ids, mask, kernel.astype(np.float32), bias.astype(np.float32))
  dh, dl = mp.max_diffs(hidden, _head(hidden, mask, kernel, bias), logits, out, mask)
  assert dh < 1e-4 and dl < 1e-4, (dh, dl)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch for HF's bucketing function")
def test_relative_buckets_match_hf_at_every_distance():
  import torch
  from transformers.models.t5.modeling_t5 import T5Attention

  rel = torch.arange(512)[None, :] - torch.arange(512)[:, None]
  for buckets, max_distance in ((32, 128), (8, 16), (64, 256)):  # t5-base is (32, 128)
    want = T5Attention._relative_position_bucket(rel, True, buckets, max_distance).numpy()
    np.testing.assert_array_equal(t5.relative_position_bucket(rel.numpy(), buckets, max_distance),
                                  want)


def test_real_config_json_reads_as_the_base_preset():
  """t5-base's config.json (its architecture fields as published; no feed_forward_proj, so
  ReLU) is the preset."""
  t5_base = {"model_type": "t5", "d_ff": 3072, "d_kv": 64, "d_model": 768, "dropout_rate": 0.1,
             "initializer_factor": 1.0, "layer_norm_epsilon": 1e-6, "n_positions": 512,
             "num_heads": 12, "num_layers": 12, "relative_attention_num_buckets": 32,
             "vocab_size": 32128, "is_encoder_decoder": True, "eos_token_id": 1,
             "pad_token_id": 0}
  assert t5.T5Config.from_hf(t5_base) == t5.PRESETS["t5-base"]


def _tiny(**over):
  return dataclasses.replace(t5.PRESETS["t5-tiny"], vocab_size=50, **over)


def _state_of(cfg, params) -> dict[str, np.ndarray]:
  """Our params written out under HF names (the conversion in reverse)."""
  flat = hf.flatten(params)
  return {name: np.ascontiguousarray(np.asarray(flat[p]).T if t else flat[p])
          for p, (name, t) in t5._hf_name_map(cfg).items()}


def test_checkpoint_conversion_round_trips_and_is_strict():
  cfg = _tiny()
  params = mp.init(cfg)
  state = _state_of(cfg, params)
  # The decoder, the LM head and HF's classification head are ignored; so is the tied copy.
  extra_ok = {"decoder.block.0.layer.0.SelfAttention.q.weight": np.zeros((32, 32), np.float32),
              "lm_head.weight": np.zeros((50, 32), np.float32),
              "classification_head.out_proj.bias": np.zeros(2, np.float32),
              "encoder.embed_tokens.weight": state["shared.weight"]}
  got, kept = t5.params_from_hf({**state, **extra_ok}, cfg, mp.init(cfg, 1))
  assert sorted(kept) == ["classifier/bias", "classifier/kernel"]
  for path, leaf in hf.flatten(got).items():
    if path[0] != "classifier":
      np.testing.assert_array_equal(leaf, hf.flatten(params)[path])  # every parameter
  # Only the encoder's copy of the tied embedding; T5ForSequenceClassification's prefix.
  alone = {("encoder.embed_tokens.weight" if k == "shared.weight" else k): v
           for k, v in state.items()}
  got, _ = t5.params_from_hf(alone, cfg, params)
  np.testing.assert_array_equal(got["shared"]["embedding"], params["shared"]["embedding"])
  t5.params_from_hf({"transformer." + k: v for k, v in state.items()}, cfg, params)
  extra = {**state, "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight":
           np.zeros((8, 2), np.float32)}
  with pytest.raises(models.ModelLoadError,
                     match=r"not use: encoder\.block\.1\.layer\.0\.SelfAttention\.relative"):
    t5.params_from_hf(extra, cfg, params)
  lacking = {k: v for k, v in state.items() if k != "encoder.final_layer_norm.weight"}
  with pytest.raises(models.ModelLoadError, match=r"not in the checkpoint: encoder\.final_lay"):
    t5.params_from_hf(lacking, cfg, params)
  no_embedding = {k: v for k, v in state.items() if k != "shared.weight"}
  with pytest.raises(models.ModelLoadError, match=r"not in the checkpoint: shared\.weight"):
    t5.params_from_hf(no_embedding, cfg, params)
  # A gated (v1.1) checkpoint under a relu config: wi_0/wi_1 unused, wi missing, all named.
  gated = dataclasses.replace(cfg, feed_forward_proj="gated-gelu")
  with pytest.raises(models.ModelLoadError, match=r"DenseReluDense\.wi\.weight.*wi_0\.weight"):
    t5.params_from_hf(_state_of(gated, mp.init(gated)), cfg, params)


def test_checkpoint_directory_errors(tmp_path):
  from safetensors.numpy import save_file

  cfg = _tiny()
  state = _state_of(cfg, mp.init(cfg))
  hf_cfg = {"model_type": "t5", "vocab_size": 50, "d_model": 32, "d_kv": 16, "d_ff": 64,
            "num_layers": 2, "num_heads": 2, "relative_attention_num_buckets": 8,
            "relative_attention_max_distance": 16}
  (tmp_path / "config.json").write_text(json.dumps(hf_cfg))
  with pytest.raises(models.ModelLoadError, match="No model.safetensors or pytorch_model.bin"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  save_file(state, str(tmp_path / "model.safetensors"))
  got_cfg, _ = models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  assert got_cfg == dataclasses.replace(cfg, num_labels=2)
  # T5 weights under a BERT config.json: every tensor is named as not used.
  (tmp_path / "config.json").write_text(json.dumps({
      "model_type": "bert", "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 16}))
  with pytest.raises(models.ModelLoadError, match=r"does not use: encoder\.block\.0"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  with pytest.raises(models.ModelLoadError, match="model_type 't5'"):
    t5.T5Config.from_hf(tmp_path)
  with pytest.raises(models.ModelLoadError, match="feed_forward_proj 'gated-swish'"):
    t5.T5Config.from_hf({**hf_cfg, "feed_forward_proj": "gated-swish"})
  # T5 has no pooler: the config default "pooler" falls back to "mean"; nothing else is offered.
  assert models.preset("t5-tiny", pooling="pooler").pooling == "mean"
  with pytest.raises(models.ModelLoadError, match="not available for t5"):
    models.preset("t5-tiny", pooling="cls")


def test_outputs_bf16_and_padding():
  cfg, params, ids, mask, logits, out = mp.forward_random_rows("t5-tiny", low=3)
  np.testing.assert_allclose(out["cls"], out["hidden"][:, 0])
  np.testing.assert_allclose(out["pooled"], np.asarray(out["hidden"]).mean(1), atol=1e-5)
  np.testing.assert_allclose(out["mean"], out["pooled"])
  # The relative attention bias is one table (the first layer's), shared by every layer.
  assert params["relative_attention_bias"].shape == (8, 2)
  assert [p for p in hf.flatten(params) if "relative" in "/".join(p)] == [
      ("relative_attention_bias",)]
  mp.assert_bf16_close(cfg, params, ids, mask, logits)
  mp.assert_padding_changes_nothing(cfg, params, ids, mask, logits, out)


# ---------------------------------------------------------------------------------------------
# A tiny end-to-end use with an offline tokenizer trained here (no t5 spiece.model ships).
# ---------------------------------------------------------------------------------------------

def write_t5_tokenizer(model_dir: Path, texts: list[str], vocab_size: int = 300) -> Path:
  """A SentencePiece-style Unigram tokenizer laid out as t5's (<pad>=0, </s>=1, <unk>=2; cased;
  "▁" word marks; </s> appended, no [CLS]), saved as a directory
  `anchoral_jax.data.tokenize.load_tokenizer` reads."""
  return mp.write_unigram_tokenizer(
      model_dir, texts, vocab_size, ["<pad>", "</s>", "<unk>"], "$A </s>", "$A </s> $B:1 </s>:1",
      {"tokenizer_class": "T5Tokenizer", "model_max_length": 128, "extra_ids": 0,
       "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}, "t5")


def test_tokenizer_forward_and_one_fit_epoch(tmp_path):
  from anchoral_jax.data.tokenize import load_tokenizer, tokenize

  texts, labels = mp.texts_and_labels()
  tokenizer = load_tokenizer(write_t5_tokenizer(tmp_path / "tok", texts))
  assert type(tokenizer).__name__.startswith("T5Tokenizer")
  tok = tokenize(tokenizer, texts, max_length=32)
  assert tok.pad_id == tokenizer.pad_token_id == 0
  assert tok.row(0)[-1] == tokenizer.eos_token_id == 1 and 1 not in tok.row(0)[:-1]
  mp.assert_forward_and_one_fit_epoch("t5-tiny", tokenizer, tok, labels)
