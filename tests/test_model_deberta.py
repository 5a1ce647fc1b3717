"""The Flax DeBERTa-v2/v3 against independent references: Hugging Face PyTorch
DebertaV2ForSequenceClassification built from a small random config (when torch is installed),
or golden values it produced (tests/golden/deberta.npz, `python tests/make_golden.py deberta`).

The reference has v3's layout (shared attention keys, c2p|p2c, LayerNorm'd relative
embeddings, no absolute positions) with 8 position buckets, and 40-token rows: distances past
4 land in log buckets, so the bucketing is exercised, not just the exact range. Every weight is
perturbed (no bias is 0, no LayerNorm the identity); the golden file stores them with the inputs
and outputs. Not pretrained weights: nothing here is downloaded."""

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
from anchoral_jax.models import deberta, hf

GOLDEN = Path(__file__).parent / "golden" / "deberta.npz"
HAS_TORCH = importlib.util.find_spec("torch") is not None
# A small config with distinct sizes, so a transposed or swapped tensor fails on shape.
HF_CONFIG = {"model_type": "deberta-v2", "vocab_size": 120, "hidden_size": 40,
             "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 56,
             "max_position_embeddings": 64, "relative_attention": True, "position_buckets": 8,
             "max_relative_positions": -1, "pos_att_type": "p2c|c2p", "share_att_key": True,
             "norm_rel_ebd": "layer_norm", "position_biased_input": False, "type_vocab_size": 0,
             "layer_norm_eps": 1e-7, "hidden_act": "gelu", "num_labels": 3}
# deberta-v2 (not v3) style: separate position projections, absolute positions, token types, a
# factorised embedding, unbucketed distances, c2p only.
V2_CONFIG = {**HF_CONFIG, "share_att_key": False, "position_biased_input": True,
             "type_vocab_size": 2, "embedding_size": 24, "norm_rel_ebd": "none",
             "position_buckets": -1, "max_relative_positions": 16, "pos_att_type": "c2p"}


def _batch() -> tuple[np.ndarray, np.ndarray]:
  """ids_BxL, mask_BxL: three 40-token rows, the second right-padded (pad id 0)."""
  return mp.batch(HF_CONFIG["vocab_size"], 40, 23)


def torch_reference(state: dict[str, np.ndarray] | None = None, config: dict = HF_CONFIG):
  """The HF model: from `state`, else random (seed 0) with every weight perturbed."""
  return mp.torch_reference("DebertaV2Config", "DebertaV2ForSequenceClassification", config,
                            state)


def write_golden(path: Path = GOLDEN) -> None:
  """tests/make_golden.py: the reference's weights, inputs and outputs."""
  model = torch_reference()
  ids, mask = _batch()
  state = {k: v.numpy() for k, v in model.state_dict().items() if "position_ids" not in k}
  mp.write_golden(path, HF_CONFIG, ids, mask, state, **mp.torch_outputs(model, ids, mask))


def _ours(model_dir, ids, mask):
  """Our model loaded from `model_dir` (its pooler too), with the checkpoint's head copied in."""
  cfg, params = mp.load(model_dir)
  state = hf.read_hf_state_dict(model_dir)
  params["classifier"] = {"kernel": jnp.asarray(state["classifier.weight"].T),
                          "bias": jnp.asarray(state["classifier.bias"])}
  return models.classifier(cfg).apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))


def test_matches_golden_reference(tmp_path):
  """Runs with or without torch: the stored reference weights, loaded as a checkpoint."""
  mp.assert_golden_parity(tmp_path, GOLDEN, HF_CONFIG, "deberta",
                          torch_reference if HAS_TORCH else None, mp.torch_outputs, _ours)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch for a live HF reference model")
@pytest.mark.parametrize("safe,config", [(True, HF_CONFIG), (False, HF_CONFIG),
                                         (True, V2_CONFIG)], ids=["v3-safetensors", "v3-bin",
                                                                  "v2-layout"])
def test_random_hf_checkpoint_matches_pytorch(tmp_path, safe, config):
  """Saved as safetensors and as pytorch_model.bin, loaded through the family registry."""
  mp.assert_checkpoint_parity(tmp_path, torch_reference(config=config), safe, *_batch(),
                              mp.torch_outputs, _ours)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch for HF's bucketing function")
def test_log_buckets_match_hf_at_every_distance():
  import torch
  from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

  rel = torch.arange(512)[:, None] - torch.arange(512)[None, :]
  for buckets, max_pos in ((256, 512), (8, 64), (64, 128)):  # deberta-v3-base is (256, 512)
    want = make_log_bucket_position(rel, buckets, max_pos).long().numpy()
    np.testing.assert_array_equal(deberta.log_bucket_position(rel.numpy(), buckets, max_pos), want)


def test_real_config_json_reads_as_the_base_preset():
  """microsoft/deberta-v3-base's config.json (its fields as published) is the preset."""
  v3_base = {"model_type": "deberta-v2", "attention_probs_dropout_prob": 0.1,
             "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
             "initializer_range": 0.02, "intermediate_size": 3072,
             "max_position_embeddings": 512, "relative_attention": True, "position_buckets": 256,
             "norm_rel_ebd": "layer_norm", "share_att_key": True, "pos_att_type": "p2c|c2p",
             "layer_norm_eps": 1e-7, "max_relative_positions": -1,
             "position_biased_input": False, "num_attention_heads": 12, "num_hidden_layers": 12,
             "type_vocab_size": 0, "vocab_size": 128100}
  assert deberta.DebertaConfig.from_hf(v3_base) == deberta.PRESETS["deberta-v3-base"]


def _tiny(**over):
  return dataclasses.replace(deberta.PRESETS["deberta-tiny"], vocab_size=50, **over)


def _state_of(cfg, params) -> dict[str, np.ndarray]:
  """Our params written out under HF names (the conversion in reverse)."""
  flat = hf.flatten(params)
  return {("" if name.startswith("pooler.") else "deberta.") + name:
          np.ascontiguousarray(np.asarray(flat[p]).T if t else flat[p])
          for p, (name, t) in deberta._hf_name_map(cfg).items()}


def test_checkpoint_conversion_round_trips_and_is_strict():
  cfg = _tiny()
  params = mp.init(cfg)
  state = _state_of(cfg, params)
  # v3's pre-training heads and buffers, and a task head, are ignored.
  extra_ok = {"lm_predictions.lm_head.bias": np.zeros(50, np.float32),
              "mask_predictions.classifier.weight": np.zeros((1, 32), np.float32),
              "deberta.embeddings.position_ids": np.zeros((1, 128), np.float32),
              "classifier.weight": np.zeros((3, 32), np.float32)}
  got, kept = deberta.params_from_hf({**state, **extra_ok}, cfg, mp.init(cfg, 1))
  assert sorted(kept) == ["classifier/bias", "classifier/kernel"]
  for path, leaf in hf.flatten(got).items():
    if path[0] != "classifier":
      np.testing.assert_array_equal(leaf, hf.flatten(params)[path])  # every parameter
  extra = {**state, "deberta.encoder.layer.1.attention.self.pos_key_proj.weight":
           np.zeros((32, 32), np.float32)}
  with pytest.raises(models.ModelLoadError,
                     match=r"not use: encoder\.layer\.1\.attention\.self\.pos_key_proj\.weight"):
    deberta.params_from_hf(extra, cfg, params)
  lacking = {k: v for k, v in state.items() if k != "deberta.encoder.rel_embeddings.weight"}
  with pytest.raises(models.ModelLoadError, match=r"not in the checkpoint: encoder\.rel_embed"):
    deberta.params_from_hf(lacking, cfg, params)
  # A masked-LM checkpoint (microsoft/deberta-v3-base) has no pooler: ours stays random.
  no_pooler = {k: v for k, v in state.items() if not k.startswith("pooler.")}
  _, kept = deberta.params_from_hf(no_pooler, cfg, params)
  assert sorted(kept) == ["classifier/bias", "classifier/kernel", "pooler/bias", "pooler/kernel"]
  mean_cfg = dataclasses.replace(cfg, pooling="mean")
  no_pooler_params = {k: v for k, v in params.items() if k != "pooler"}
  deberta.params_from_hf(state, mean_cfg, no_pooler_params)


def test_checkpoint_directory_errors(tmp_path):
  from safetensors.numpy import save_file

  cfg = _tiny()
  state = _state_of(cfg, mp.init(cfg))
  hf_cfg = {"model_type": "deberta-v2", "vocab_size": 50, "hidden_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": 128, "relative_attention": True, "position_buckets": 8,
            "pos_att_type": "p2c|c2p", "share_att_key": True, "norm_rel_ebd": "layer_norm",
            "position_biased_input": False}
  (tmp_path / "config.json").write_text(json.dumps(hf_cfg))
  with pytest.raises(models.ModelLoadError, match="No model.safetensors or pytorch_model.bin"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  save_file(state, str(tmp_path / "model.safetensors"))
  got_cfg, _ = models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  assert got_cfg == dataclasses.replace(cfg, num_labels=2)
  # DeBERTa weights under a T5 config.json: every tensor is named as not used.
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 32,
                                                    "num_layers": 2, "vocab_size": 50}))
  with pytest.raises(models.ModelLoadError, match=r"does not use: deberta\.embeddings"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  with pytest.raises(models.ModelLoadError, match="model_type 'deberta-v2'"):
    deberta.DebertaConfig.from_hf(tmp_path)
  # deberta-v2-xlarge's ConvLayer is not implemented: refused, naming the field.
  with pytest.raises(models.ModelLoadError, match="conv_kernel_size=3"):
    deberta.DebertaConfig.from_hf({**hf_cfg, "conv_kernel_size": 3})
  with pytest.raises(models.ModelLoadError, match="hidden_act 'relu'"):
    deberta.DebertaConfig.from_hf({**hf_cfg, "hidden_act": "relu"})


def test_outputs_bf16_and_padding():
  cfg, params, ids, mask, logits, out = mp.forward_random_rows("deberta-tiny")
  np.testing.assert_allclose(out["cls"], out["hidden"][:, 0])
  p = params["pooler"]
  pooled = jax.nn.gelu(out["cls"] @ p["kernel"] + p["bias"][None], approximate=False)
  np.testing.assert_allclose(out["pooled"], pooled, atol=1e-5)
  mp.assert_bf16_close(cfg, params, ids, mask, logits)
  # Padding does not change the real rows' outputs (relative positions need no offsets).
  mp.assert_padding_changes_nothing(cfg, params, ids, mask, logits, out)


# ---------------------------------------------------------------------------------------------
# A tiny end-to-end use with an offline tokenizer trained here (no deberta-v3 spm.model ships).
# ---------------------------------------------------------------------------------------------

def write_deberta_tokenizer(model_dir: Path, texts: list[str], vocab_size: int = 300) -> Path:
  """A SentencePiece-style Unigram tokenizer laid out as deberta-v3's ([PAD]=0, [CLS]=1,
  [SEP]=2, [UNK]=3; cased; "▁" word marks; [CLS] x [SEP]), saved as a directory
  `anchoral_jax.data.tokenize.load_tokenizer` reads."""
  specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
  return mp.write_unigram_tokenizer(
      model_dir, texts, vocab_size, specials, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1",
      {"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "model_max_length": 128,
       "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
       "mask_token": "[MASK]", "bos_token": "[CLS]", "eos_token": "[SEP]"}, "deberta-v2")


def test_tokenizer_forward_and_one_fit_epoch(tmp_path):
  from anchoral_jax.data.tokenize import load_tokenizer, tokenize

  texts, labels = mp.texts_and_labels()
  tokenizer = load_tokenizer(write_deberta_tokenizer(tmp_path / "tok", texts))
  assert type(tokenizer).__name__.startswith("DebertaV2Tokenizer")
  tok = tokenize(tokenizer, texts, max_length=32)
  assert tok.pad_id == tokenizer.pad_token_id == 0
  assert (tok.row(0)[0], tok.row(0)[-1]) == (tokenizer.cls_token_id,
                                             tokenizer.sep_token_id) == (1, 2)
  mp.assert_forward_and_one_fit_epoch("deberta-tiny", tokenizer, tok, labels)
