"""The Flax GPT-2 against independent references: Hugging Face PyTorch
GPT2ForSequenceClassification built from a small random config (when torch is installed), or
golden values it produced (tests/golden/gpt2.npz, `python tests/make_golden.py gpt2`).

The reference's weights are random and every one is perturbed (so no bias is 0 and no LayerNorm
is the identity); the golden file stores them with the inputs and outputs. Not pretrained
weights: nothing here is downloaded."""

import dataclasses
import functools
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
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
  ids = np.random.default_rng(0).integers(5, HF_CONFIG["vocab_size"], size=(3, 13))
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  ids[1, 7:] = 0
  return ids, mask


def torch_reference(state: dict[str, np.ndarray] | None = None):
  """The HF model: from `state`, else random (seed 0) with every weight perturbed."""
  import torch
  import transformers

  cfg = transformers.GPT2Config(**{k: v for k, v in HF_CONFIG.items() if k != "model_type"})
  torch.manual_seed(0)
  model = transformers.GPT2ForSequenceClassification(cfg).eval()
  with torch.no_grad():
    if state is None:
      for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
    else:
      model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
  return model


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
  np.savez_compressed(path, config=json.dumps(HF_CONFIG), input_ids=ids, attention_mask=mask,
                      **torch_outputs(model, ids, mask), **{f"w/{k}": v for k, v in state.items()})


def _golden() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  with np.load(GOLDEN) as z:
    g = {k: z[k] for k in z.files}
  state = {k[2:]: g.pop(k) for k in list(g) if k.startswith("w/")}
  assert json.loads(str(g.pop("config"))) == HF_CONFIG, "regenerate: tests/make_golden.py gpt2"
  return g, state


@functools.partial(jax.jit, static_argnames="cfg")
def _forward(params, ids, mask, cfg):
  """Eval-mode forward, jitted: un-jitted Flax costs seconds per call on a loaded CPU."""
  return models.classifier(cfg).apply({"params": params}, ids, mask)


@functools.partial(jax.jit, static_argnames="cfg")
def _init(key, cfg):
  """models.init_params, jitted once per config for this module (a cache hit after)."""
  ids = jnp.zeros((1, 8), jnp.int32)
  return models.classifier(cfg).init(key, ids, ids + 1, deterministic=True)["params"]


def _apply(cfg, params, ids, mask):
  return _forward(params, jnp.asarray(ids), jnp.asarray(mask), cfg=cfg)


def _ours(model_dir, ids, mask):
  """Our model loaded from `model_dir`, with the checkpoint's head copied into ours (HF's
  `score` has no bias: ours is zero)."""
  cfg, params = models.load_pretrained(str(model_dir), 3, jax.random.key(0))
  state = hf.read_hf_state_dict(model_dir)
  params["classifier"] = {"kernel": jnp.asarray(state["score.weight"].T), "bias": jnp.zeros(3)}
  return _apply(cfg, params, ids, mask)


def _max_diffs(ref, logits, out, mask) -> tuple[float, float]:
  m = mask.astype(bool)  # real tokens only: padded positions' outputs are never used
  return (float(np.abs(np.asarray(out["hidden"])[m] - ref["hidden"][m]).max()),
          float(np.abs(np.asarray(logits) - ref["logits"]).max()))


def test_matches_golden_reference(tmp_path):
  """Runs with or without torch: the stored reference weights, loaded as a checkpoint."""
  from safetensors.numpy import save_file

  g, state = _golden()
  if HAS_TORCH:  # the stored outputs must agree with the live reference on the stored weights
    live = torch_outputs(torch_reference(state), g["input_ids"], g["attention_mask"])
    m = g["attention_mask"].astype(bool)
    np.testing.assert_allclose(live["hidden"][m], g["hidden"][m], atol=1e-5)
    np.testing.assert_allclose(live["logits"], g["logits"], atol=1e-5)
  (tmp_path / "config.json").write_text(json.dumps(HF_CONFIG))
  save_file(state, str(tmp_path / "model.safetensors"))
  logits, out = _ours(tmp_path, g["input_ids"], g["attention_mask"])
  dh, dl = _max_diffs(g, logits, out, g["attention_mask"])
  assert dh < 1e-4 and dl < 1e-4, (dh, dl)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch for a live HF reference model")
@pytest.mark.parametrize("safe", [True, False])
def test_random_hf_checkpoint_matches_pytorch(tmp_path, safe):
  """Saved as safetensors and as pytorch_model.bin, loaded through the family registry."""
  import torch

  model = torch_reference()
  if safe:
    model.save_pretrained(tmp_path)
  else:  # transformers 5 writes safetensors only; a .bin is what older versions saved
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      "config.json", "model.safetensors" if safe else "pytorch_model.bin"]
  ids, mask = _batch()
  logits, out = _ours(tmp_path, ids, mask)
  dh, dl = _max_diffs(torch_outputs(model, ids, mask), logits, out, mask)
  assert dh < 1e-4 and dl < 1e-4, (dh, dl)


def _state_of(cfg, params) -> dict[str, np.ndarray]:
  """Our params written out under HF names (the conversion in reverse: Conv1D, no transpose)."""
  flat = hf.flatten(params)
  return {"transformer." + name: np.ascontiguousarray(flat[p])
          for p, (name, _) in gpt2._hf_name_map(cfg).items()}


def test_checkpoint_conversion_round_trips_and_is_strict():
  cfg = dataclasses.replace(gpt2.PRESETS["gpt2-tiny"], vocab_size=50, max_position_embeddings=16)
  params = _init(jax.random.key(0), cfg=cfg)
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
  state = _state_of(cfg, _init(jax.random.key(0), cfg=cfg))
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
  cfg = models.preset("gpt2-tiny", num_labels=2)
  assert models.preset("gpt2-tiny", pooling="pooler").pooling == "last"  # the config default
  params = _init(jax.random.key(1), cfg=cfg)
  rng = np.random.default_rng(1)
  ids = rng.integers(5, cfg.vocab_size, size=(4, 12))
  mask = np.ones_like(ids)
  logits, out = _apply(cfg, params, ids, mask)
  assert logits.shape == (4, 2) and out["hidden"].shape == (4, 12, cfg.hidden_size)
  np.testing.assert_allclose(out["cls"], out["hidden"][:, -1])  # the last token
  np.testing.assert_allclose(out["pooled"], out["cls"])
  # bf16 compute keeps float32 params and stays close to float32.
  cfg16 = dataclasses.replace(cfg, dtype="bfloat16")
  shapes = jax.eval_shape(functools.partial(_init, cfg=cfg16), jax.random.key(1))
  assert {x.dtype for x in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  l16, _ = _apply(cfg16, params, ids, mask)
  assert l16.dtype == jnp.float32
  np.testing.assert_allclose(l16, logits, atol=0.05)
  # Right padding (with the pad = eos id 0, and with a real token id, which must not matter
  # either: the mask alone decides) changes no real output; rows of other lengths read their
  # own last token.
  lens = np.array([12, 5, 9, 1])
  pmask = (np.arange(18)[None] < lens[:, None]).astype(np.int32)
  for pad in (0, 7):
    padded = np.where(pmask, np.pad(ids, ((0, 0), (0, 6))), pad)
    l2, o2 = _apply(cfg, params, padded, pmask)
    np.testing.assert_allclose(l2[0], logits[0], atol=1e-5)
    for r, n in enumerate(lens):  # causal: a prefix's states do not depend on what follows
      np.testing.assert_allclose(o2["hidden"][r, :n], out["hidden"][r, :n], atol=1e-5)
      np.testing.assert_allclose(o2["cls"][r], out["hidden"][r, n - 1], atol=1e-5)
      np.testing.assert_allclose(o2["mean"][r], out["hidden"][r, :n].mean(0), atol=1e-5)
  mean_cfg = dataclasses.replace(cfg, pooling="mean")
  _, om = _apply(mean_cfg, params, ids, mask)
  np.testing.assert_allclose(om["pooled"], om["mean"])


# ---------------------------------------------------------------------------------------------
# A tiny end-to-end use with an offline tokenizer trained here (byte-level BPE as GPT-2's).
# ---------------------------------------------------------------------------------------------

def texts_and_labels(n: int = 300, seed: int = 0) -> tuple[list[str], np.ndarray]:
  """Short reviews; class 1 says "awful" (something a tiny model can learn)."""
  rng = np.random.default_rng(seed)
  words = ("the phone screen battery camera case price is was very quite really good fine "
           "nice bright slow fast cheap new old my our this that").split()
  labels = (rng.random(n) < 0.3).astype(np.int32)
  texts = []
  for y in labels:
    w = list(rng.choice(words, size=rng.integers(5, 14)))
    if y:
      w.insert(int(rng.integers(0, len(w))), "awful")
    texts.append(" ".join(w).capitalize() + ".")
  return texts, labels


def write_gpt2_tokenizer(model_dir: Path, texts: list[str], vocab_size: int = 400) -> Path:
  """A byte-level BPE tokenizer (GPT-2's kind: "<|endoftext|>" is bos = eos = unk and there is
  no pad token), saved as a directory `anchoral_jax.tokenize.load_tokenizer` reads."""
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

  from anchoral_jax.tokenize import pad_id

  assert pad_id(Tok(pad_token_id=None, eos_token_id=50256)) == 50256  # gpt2's tokenizer
  assert pad_id(Tok(pad_token_id=0, eos_token_id=2)) == 0
  assert pad_id(Tok(pad_token_id=None, eos_token_id=None)) == 0


def test_tokenizer_pad_is_eos_forward_and_one_fit_epoch(tmp_path):
  from anchoral_jax.tokenize import load_tokenizer, tokenize
  from anchoral_jax.train import TrainConfig, fit

  texts, labels = texts_and_labels()
  tokenizer = load_tokenizer(write_gpt2_tokenizer(tmp_path / "tok", texts))
  assert type(tokenizer).__name__ == "GPT2Tokenizer"
  assert tokenizer.pad_token_id is None  # as the real gpt2 tokenizer
  tok = tokenize(tokenizer, texts, max_length=32)
  assert tok.pad_id == tokenizer.eos_token_id == 0  # pad = eos (tokenize.pad_id)
  cfg = models.preset("gpt2-tiny", num_labels=2)
  assert len(tokenizer) <= cfg.vocab_size
  params = _init(jax.random.key(0), cfg=cfg)
  ids, mask = tok.batch(np.arange(8), (32,))
  assert (ids[mask == 0] == 0).all()
  logits, _ = _apply(cfg, params, ids, mask)
  assert logits.shape == (8, 2) and np.isfinite(logits).all()
  rows = np.arange(64, dtype=np.int64)
  tc = TrainConfig(learning_rate=3e-3, batch_size=16, epochs=1, min_steps=0, patience=10,
                   eval_batch_size=32, model_selection="last")
  got = fit(params, cfg, tc, tok, rows, labels[rows], num_classes=2, minority_classes=(1,),
            data_seed=0, dropout_key=jax.random.key(1), val=None, buckets=(32,))
  assert got.epochs_run == 1 and got.steps == 4
  assert np.isfinite(got.history[0]["train/loss"])
