"""The Flax GPT-2 against independent references: Hugging Face PyTorch
GPT2ForSequenceClassification built from a small random config (when torch is installed), or
golden values it produced (tests/golden/gpt2.npz, `python tests/make_golden.py gpt2`).

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
from anchoral_jax.models import gpt2, hf

GOLDEN = Path(__file__).parent / "golden" / "gpt2.npz"
HAS_TORCH = importlib.util.find_spec("torch") is not None
# A small config with every size distinct, so a transposed or swapped tensor fails on shape.
# pad_token_id: HF's head finds the last token that is not the pad id; ours reads the mask.
HF_CONFIG = {"model_type": "gpt2", "vocab_size": 120, "n_embd": 40, "n_layer": 3, "n_head": 4,
             "n_inner": 56, "n_positions": 32, "num_labels": 3, "activation_function": "gelu_new",
             "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}


def _batch() -> tuple[np.ndarray, np.ndarray]:
  """ids_BxL, mask_BxL: three rows, the second right-padded with the pad (= eos) id 0."""
  return mp.batch(HF_CONFIG["vocab_size"], 13, 7)


def torch_reference(state: dict[str, np.ndarray] | None = None):
  """The HF model: from `state`, else random (seed 0) with every weight perturbed."""
  return mp.torch_reference("GPT2Config", "GPT2ForSequenceClassification", HF_CONFIG, state,
                            strict=True)


def torch_outputs(model, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
  import torch

  kw = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
  with torch.no_grad():  # the transformer's own output: the last layer after ln_f
    return {"hidden": model.transformer(**kw).last_hidden_state.numpy(),
            "logits": model(**kw).logits.numpy()}


def write_golden(path: Path = GOLDEN) -> None:
  """tests/make_golden.py: the reference's weights, inputs and outputs."""
  model = torch_reference()
  ids, mask = _batch()
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  mp.write_golden(path, HF_CONFIG, ids, mask, state, **torch_outputs(model, ids, mask))


def _ours(model_dir, ids, mask):
  """Our model loaded from `model_dir`, with the checkpoint's head copied into ours (HF's
  `score` has no bias: ours is zero)."""
  cfg, params = models.load_pretrained(str(model_dir), 3, jax.random.key(0))
  state = hf.read_hf_state_dict(model_dir)
  params["classifier"] = {"kernel": jnp.asarray(state["score.weight"].T), "bias": jnp.zeros(3)}
  return mp.apply(cfg, params, ids, mask)


def test_matches_golden_reference(tmp_path):
  """Runs with or without torch: the stored reference weights, loaded as a checkpoint."""
  mp.assert_golden_parity(tmp_path, GOLDEN, HF_CONFIG, "gpt2",
                          torch_reference if HAS_TORCH else None, torch_outputs, _ours)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch for a live HF reference model")
@pytest.mark.parametrize("safe", [True, False])
def test_random_hf_checkpoint_matches_pytorch(tmp_path, safe):
  """Saved as safetensors and as pytorch_model.bin, loaded through the family registry."""
  mp.assert_checkpoint_parity(tmp_path, torch_reference(), safe, *_batch(), torch_outputs, _ours)


def _state_of(cfg, params) -> dict[str, np.ndarray]:
  """Our params written out under HF names (the conversion in reverse: Conv1D, no transpose)."""
  flat = hf.flatten(params)
  return {"transformer." + name: np.ascontiguousarray(flat[p])
          for p, (name, _) in gpt2._hf_name_map(cfg).items()}


def test_checkpoint_conversion_round_trips_and_is_strict():
  cfg = dataclasses.replace(gpt2.PRESETS["gpt2-tiny"], vocab_size=50, max_position_embeddings=16)
  params = mp.init(cfg, 0)
  state = _state_of(cfg, params)
  # The LM / score heads and old checkpoints' causal-mask buffers are ignored; so is the
  # prefix-free layout of the hub's original gpt2 files.
  extra_ok = {"lm_head.weight": np.zeros((50, 32), np.float32),
              "score.weight": np.zeros((3, 32), np.float32),
              "transformer.h.0.attn.bias": np.zeros((1, 1, 16, 16), np.float32),
              "h.1.attn.masked_bias": np.zeros((), np.float32)}
  other = jax.tree.map(lambda x: x + 1.0, params)  # an init that differs everywhere
  got, kept = gpt2.params_from_hf({**state, **extra_ok}, cfg, other)
  assert sorted(kept) == ["classifier/bias", "classifier/kernel"]
  for path, leaf in hf.flatten(got).items():
    if path[0] != "classifier":
      np.testing.assert_array_equal(leaf, hf.flatten(params)[path])  # every parameter
  bare = {k.removeprefix("transformer."): v for k, v in state.items()}
  got, _ = gpt2.params_from_hf(bare, cfg, other)
  np.testing.assert_array_equal(got["h_1"]["c_fc"]["kernel"], params["h_1"]["c_fc"]["kernel"])
  extra = {**state, "transformer.h.2.mlp.c_fc.bias": np.zeros(64, np.float32)}
  with pytest.raises(models.ModelLoadError, match=r"not use: h\.2\.mlp\.c_fc\.bias"):
    gpt2.params_from_hf(extra, cfg, params)
  lacking = {k: v for k, v in state.items() if k != "transformer.h.1.attn.c_proj.weight"}
  with pytest.raises(models.ModelLoadError, match=r"not in the checkpoint: h\.1\.attn\.c_proj"):
    gpt2.params_from_hf(lacking, cfg, params)
  # A transposed (nn.Linear-style) weight is a shape error naming it, not a silent misload.
  wrong = {**state, "transformer.h.0.mlp.c_fc.weight": state["transformer.h.0.mlp.c_fc.weight"].T}
  with pytest.raises(models.ModelLoadError, match=r"Shape mismatch for h\.0\.mlp\.c_fc\.weight"):
    gpt2.params_from_hf(wrong, cfg, params)


def test_checkpoint_directory_errors(tmp_path):
  from safetensors.numpy import save_file

  cfg = dataclasses.replace(gpt2.PRESETS["gpt2-tiny"], vocab_size=50, max_position_embeddings=16)
  state = _state_of(cfg, mp.init(cfg, 0))
  hf_cfg = {"model_type": "gpt2", "vocab_size": 50, "n_embd": 32, "n_layer": 2, "n_head": 2,
            "n_inner": 64, "n_positions": 16}
  (tmp_path / "config.json").write_text(json.dumps(hf_cfg))
  with pytest.raises(models.ModelLoadError, match="No model.safetensors or pytorch_model.bin"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  save_file(state, str(tmp_path / "model.safetensors"))
  assert models.load_config(str(tmp_path), 2) == dataclasses.replace(cfg, num_labels=2)
  # GPT-2 weights under an ALBERT config.json: every tensor is named as not used.
  (tmp_path / "config.json").write_text(json.dumps({
      "model_type": "albert", "vocab_size": 50, "embedding_size": 8, "hidden_size": 16,
      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16}))
  with pytest.raises(models.ModelLoadError, match=r"does not use: transformer\.h\.0"):
    models.load_pretrained(str(tmp_path), 2, jax.random.key(0))
  with pytest.raises(models.ModelLoadError, match="model_type 'gpt2'"):
    gpt2.GPT2Config.from_hf(tmp_path)
  with pytest.raises(models.ModelLoadError, match="activation_function 'relu'"):
    gpt2.GPT2Config.from_hf({**hf_cfg, "activation_function": "relu"})
  with pytest.raises(models.ModelLoadError, match="not a multiple of the 3 attention heads"):
    gpt2.GPT2Config.from_hf({**hf_cfg, "n_head": 3})


def test_outputs_bf16_and_padding():
  assert models.preset("gpt2-tiny", pooling="pooler").pooling == "last"  # the config default
  cfg, params, ids, mask, logits, out = mp.forward_random_rows("gpt2-tiny")
  np.testing.assert_allclose(out["cls"], out["hidden"][:, -1])  # the last token
  np.testing.assert_allclose(out["pooled"], out["cls"])
  mp.assert_bf16_close(cfg, params, ids, mask, logits)
  # Right padding (with the pad = eos id 0, and with a real token id, which must not matter
  # either: the mask alone decides) changes no real output; rows of other lengths read their
  # own last token.
  lens = np.array([12, 5, 9, 1])
  pmask = (np.arange(18)[None] < lens[:, None]).astype(np.int32)
  for pad in (0, 7):
    padded = np.where(pmask, np.pad(ids, ((0, 0), (0, 6))), pad)
    l2, o2 = mp.apply(cfg, params, padded, pmask)
    np.testing.assert_allclose(l2[0], logits[0], atol=1e-5)
    for r, n in enumerate(lens):  # causal: a prefix's states do not depend on what follows
      np.testing.assert_allclose(o2["hidden"][r, :n], out["hidden"][r, :n], atol=1e-5)
      np.testing.assert_allclose(o2["cls"][r], out["hidden"][r, n - 1], atol=1e-5)
      np.testing.assert_allclose(o2["mean"][r], out["hidden"][r, :n].mean(0), atol=1e-5)
  mean_cfg = dataclasses.replace(cfg, pooling="mean")
  _, om = mp.apply(mean_cfg, params, ids, mask)
  np.testing.assert_allclose(om["pooled"], om["mean"])


# ---------------------------------------------------------------------------------------------
# A tiny end-to-end use with an offline tokenizer trained here (byte-level BPE as GPT-2's).
# ---------------------------------------------------------------------------------------------

def write_gpt2_tokenizer(model_dir: Path, texts: list[str], vocab_size: int = 400) -> Path:
  """A byte-level BPE tokenizer (GPT-2's kind: "<|endoftext|>" is bos = eos = unk and there is
  no pad token), saved as a directory `anchoral_jax.data.tokenize.load_tokenizer` reads."""
  from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
  from tokenizers import models as tok_models

  tok = Tokenizer(tok_models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.post_processor = processors.ByteLevel(trim_offsets=False)
  tok.train_from_iterator(texts, trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  model_dir.mkdir(parents=True, exist_ok=True)
  tok.save(str(model_dir / "tokenizer.json"))
  (model_dir / "tokenizer_config.json").write_text(json.dumps({
      "tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "model_max_length": 128,
      "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))
  # config.json's model_type is what AutoTokenizer falls back on to pick the class.
  (model_dir / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
  return model_dir


def test_pad_id_falls_back_on_eos():
  from types import SimpleNamespace as Tok

  from anchoral_jax.data.tokenize import pad_id

  assert pad_id(Tok(pad_token_id=None, eos_token_id=50256)) == 50256  # gpt2's tokenizer
  assert pad_id(Tok(pad_token_id=0, eos_token_id=2)) == 0
  assert pad_id(Tok(pad_token_id=None, eos_token_id=None)) == 0


def test_tokenizer_pad_is_eos_forward_and_one_fit_epoch(tmp_path):
  from anchoral_jax.data.tokenize import load_tokenizer, tokenize

  texts, labels = mp.texts_and_labels()
  tokenizer = load_tokenizer(write_gpt2_tokenizer(tmp_path / "tok", texts))
  assert type(tokenizer).__name__ == "GPT2Tokenizer"
  assert tokenizer.pad_token_id is None  # as the real gpt2 tokenizer
  tok = tokenize(tokenizer, texts, max_length=32)
  assert tok.pad_id == tokenizer.eos_token_id == 0  # pad = eos (tokenize.pad_id)
  ids, mask = tok.batch(np.arange(8), (32,))
  assert (ids[mask == 0] == 0).all()
  mp.assert_forward_and_one_fit_epoch("gpt2-tiny", tokenizer, tok, labels)
