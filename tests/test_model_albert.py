"""The Flax ALBERT against independent references: Hugging Face PyTorch
AlbertForSequenceClassification built from a small random config (when torch is installed), or
golden values it produced (tests/golden/albert.npz, `python tests/make_golden.py albert`).

The reference's weights are random and every one is perturbed (so no bias is 0 and no LayerNorm
is the identity); the golden file stores them with the inputs and outputs. Not pretrained
weights: nothing here is downloaded."""

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
from anchoral_jax.models import albert, hf

GOLDEN = Path(__file__).parent / "golden" / "albert.npz"
HAS_TORCH = importlib.util.find_spec("torch") is not None
# A small config with every size distinct, so a transposed or swapped tensor fails on shape.
HF_CONFIG = {"model_type": "albert", "vocab_size": 120, "embedding_size": 16, "hidden_size": 40,
             "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 56,
             "max_position_embeddings": 32, "num_labels": 3, "hidden_act": "gelu_new"}


def _batch() -> tuple[np.ndarray, np.ndarray]:
  """ids_BxL, mask_BxL: three rows, the second right-padded (pad id 0 as ALBERT's)."""
  return mp.batch(HF_CONFIG["vocab_size"], 13, 7)


def torch_reference(state: dict[str, np.ndarray] | None = None):
  """The HF model: from `state`, else random (seed 0) with every weight perturbed."""
  return mp.torch_reference("AlbertConfig", "AlbertForSequenceClassification", HF_CONFIG, state)


def write_golden(path: Path = GOLDEN) -> None:
  """tests/make_golden.py: the reference's weights, inputs and outputs."""
  model = torch_reference()
  ids, mask = _batch()
  state = {k: v.numpy() for k, v in model.state_dict().items() if "position_ids" not in k
           and "token_type_ids" not in k}
  mp.write_golden(path, HF_CONFIG, ids, mask, state, **mp.torch_outputs(model, ids, mask))


def _ours(model_dir, ids, mask):
  """Our model loaded from `model_dir`, with the checkpoint's head copied into ours."""
  cfg, params = models.load_pretrained(str(model_dir), 3, jax.random.key(0))
  state = hf.read_hf_state_dict(model_dir)
  params["classifier"] = {"kernel": jnp.asarray(state["classifier.weight"].T),
                          "bias": jnp.asarray(state["classifier.bias"])}
  return mp.apply(cfg, params, ids, mask)


def test_matches_golden_reference(tmp_path):
  """Runs with or without torch: the stored reference weights, loaded as a checkpoint."""
  mp.assert_golden_parity(tmp_path, GOLDEN, HF_CONFIG, "albert",
                          torch_reference if HAS_TORCH else None, mp.torch_outputs, _ours)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch for a live HF reference model")
@pytest.mark.parametrize("safe", [True, False])
def test_random_hf_checkpoint_matches_pytorch(tmp_path, safe):
  """Saved as safetensors and as pytorch_model.bin, loaded through the family registry."""
  mp.assert_checkpoint_parity(tmp_path, torch_reference(), safe, *_batch(), mp.torch_outputs,
                              _ours)


def _state_of(cfg, params) -> dict[str, np.ndarray]:
  """Our params written out under HF names (the conversion in reverse)."""
  flat = hf.flatten(params)
  return {"albert." + name: np.ascontiguousarray(np.asarray(flat[p]).T if t else flat[p])
          for p, (name, t) in albert._hf_name_map(cfg).items()}


def test_checkpoint_conversion_round_trips_and_is_strict():
  cfg = dataclasses.replace(albert.PRESETS["albert-tiny"], vocab_size=50,
                            max_position_embeddings=16)
  params = mp.init(cfg, 0)
  state = _state_of(cfg, params)
  # Pre-training heads and buffers a real checkpoint carries are ignored.
  extra_ok = {"predictions.bias": np.zeros(50, np.float32),
              "sop_classifier.classifier.weight": np.zeros((2, 32), np.float32),
              "albert.embeddings.position_ids": np.zeros((1, 16), np.float32)}
  other = jax.tree.map(lambda x: x + 1.0, params)  # an init that differs everywhere
  got, kept = albert.params_from_hf({**state, **extra_ok}, cfg, other)
  assert sorted(kept) == ["classifier/bias", "classifier/kernel"]
  for path, leaf in hf.flatten(got).items():
    if path[0] != "classifier":
      np.testing.assert_array_equal(leaf, hf.flatten(params)[path])  # every parameter
  layer = "albert.encoder.albert_layer_groups.0.albert_layers."
  extra = {**state, layer + "1.ffn.bias": np.zeros(64, np.float32)}
  with pytest.raises(models.ModelLoadError, match=r"not use: encoder\.albert_layer_groups\.0\."
                                                   r"albert_layers\.1\.ffn\.bias"):
    albert.params_from_hf(extra, cfg, params)
  lacking = {k: v for k, v in state.items() if k != layer + "0.ffn_output.bias"}
  with pytest.raises(models.ModelLoadError, match=r"not in the checkpoint: .*0\.ffn_output\.bias"):
    albert.params_from_hf(lacking, cfg, params)
  # A checkpoint without a pooler (AlbertForMaskedLM) keeps the random one; mean pooling
  # ignores a pooler the checkpoint has.
  no_pooler = {k: v for k, v in state.items() if ".pooler." not in k}
  _, kept = albert.params_from_hf(no_pooler, cfg, params)
  assert sorted(kept) == ["classifier/bias", "classifier/kernel", "pooler/bias", "pooler/kernel"]
  mean_cfg = dataclasses.replace(cfg, pooling="mean")
  _, kept = albert.params_from_hf(state, mean_cfg, {k: v for k, v in other.items()
                                                    if k != "pooler"})
  assert sorted(kept) == ["classifier/bias", "classifier/kernel"]


def test_checkpoint_directory_errors(tmp_path):
  from safetensors.numpy import save_file

  cfg = dataclasses.replace(albert.PRESETS["albert-tiny"], vocab_size=50,
                            max_position_embeddings=16)
  state = _state_of(cfg, mp.init(cfg, 0))
  hf_cfg = {"model_type": "albert", "vocab_size": 50, "embedding_size": 16, "hidden_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": 16}
  (tmp_path / "config.json").write_text(json.dumps(hf_cfg))
  with pytest.raises(models.ModelLoadError, match="No model.safetensors or pytorch_model.bin"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  save_file(state, str(tmp_path / "model.safetensors"))
  assert models.load_config(str(tmp_path), 2) == dataclasses.replace(cfg, num_labels=2)
  # ALBERT weights under a GPT-2 config.json: every tensor is named as not used.
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32,
                                                    "n_head": 2, "n_layer": 1}))
  with pytest.raises(models.ModelLoadError, match=r"does not use: albert\.embeddings"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  with pytest.raises(models.ModelLoadError, match="model_type 'albert'"):
    albert.AlbertConfig.from_hf(tmp_path)
  for field in ("num_hidden_groups", "inner_group_num"):
    with pytest.raises(models.ModelLoadError, match=field):
      albert.AlbertConfig.from_hf({**hf_cfg, field: 2})
  with pytest.raises(models.ModelLoadError, match="hidden_act 'relu'"):
    albert.AlbertConfig.from_hf({**hf_cfg, "hidden_act": "relu"})


def test_outputs_bf16_and_padding():
  cfg, params, ids, mask, logits, out = mp.forward_random_rows("albert-tiny")
  np.testing.assert_allclose(out["cls"], out["hidden"][:, 0])
  p = params["pooler"]
  np.testing.assert_allclose(out["pooled"], np.tanh(out["cls"] @ p["kernel"] + p["bias"][None]),
                             atol=1e-5)
  # One shared layer: the parameter tree has a single "layer", whatever the depth.
  assert [k for k in params if k.startswith("layer")] == ["layer"]
  mp.assert_bf16_close(cfg, params, ids, mask, logits)
  mp.assert_padding_changes_nothing(cfg, params, ids, mask, logits, out)


# ---------------------------------------------------------------------------------------------
# A tiny end-to-end use with an offline tokenizer trained here (no ALBERT spiece.model ships).
# ---------------------------------------------------------------------------------------------

def write_albert_tokenizer(model_dir: Path, texts: list[str], vocab_size: int = 300) -> Path:
  """A SentencePiece-style Unigram tokenizer (ALBERT's kind: lower-cased, "▁" word marks,
  [CLS] x [SEP]), saved as a directory `anchoral_jax.data.tokenize.load_tokenizer` reads."""
  specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]  # ids 0-4 as albert-base-v2
  return mp.write_unigram_tokenizer(
      model_dir, texts, vocab_size, specials, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1",
      {"tokenizer_class": "AlbertTokenizer", "do_lower_case": True, "model_max_length": 128,
       "pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "[CLS]", "sep_token": "[SEP]",
       "mask_token": "[MASK]", "bos_token": "[CLS]", "eos_token": "[SEP]"},
      "albert", lowercase=True)


def test_tokenizer_forward_and_one_fit_epoch(tmp_path):
  from anchoral_jax.data.tokenize import load_tokenizer, tokenize

  texts, labels = mp.texts_and_labels()
  tokenizer = load_tokenizer(write_albert_tokenizer(tmp_path / "tok", texts))
  assert type(tokenizer).__name__ == "AlbertTokenizer"
  tok = tokenize(tokenizer, texts, max_length=32)
  assert tok.pad_id == tokenizer.pad_token_id == 0
  assert tok.row(0)[0] == tokenizer.cls_token_id and tok.row(0)[-1] == tokenizer.sep_token_id
  mp.assert_forward_and_one_fit_epoch("albert-tiny", tokenizer, tok, labels)
