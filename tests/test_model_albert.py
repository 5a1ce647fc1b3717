"""The Flax ALBERT against independent references: Hugging Face PyTorch
AlbertForSequenceClassification built from a small random config (when torch is installed), or
golden values it produced (tests/golden/albert.npz, `python tests/make_golden.py albert`).

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
from anchoral_jax.models import albert, hf

GOLDEN = Path(__file__).parent / "golden" / "albert.npz"
HAS_TORCH = importlib.util.find_spec("torch") is not None
# A small config with every size distinct, so a transposed or swapped tensor fails on shape.
HF_CONFIG = {"model_type": "albert", "vocab_size": 120, "embedding_size": 16, "hidden_size": 40,
             "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 56,
             "max_position_embeddings": 32, "num_labels": 3, "hidden_act": "gelu_new"}


def _batch() -> tuple[np.ndarray, np.ndarray]:
  """ids_BxL, mask_BxL: three rows, the second right-padded (pad id 0 as ALBERT's)."""
  ids = np.random.default_rng(0).integers(5, HF_CONFIG["vocab_size"], size=(3, 13))
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  ids[1, 7:] = 0
  return ids, mask


def torch_reference(state: dict[str, np.ndarray] | None = None):
  """The HF model: from `state`, else random (seed 0) with every weight perturbed."""
  import torch
  import transformers

  cfg = transformers.AlbertConfig(**{k: v for k, v in HF_CONFIG.items() if k != "model_type"})
  torch.manual_seed(0)
  model = transformers.AlbertForSequenceClassification(cfg).eval()
  with torch.no_grad():
    if state is None:
      for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
    else:
      model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
  return model


def torch_outputs(model, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
  import torch

  with torch.no_grad():
    o = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
              output_hidden_states=True)
  return {"hidden": o.hidden_states[-1].numpy(), "logits": o.logits.numpy()}


def write_golden(path: Path = GOLDEN) -> None:
  """tests/make_golden.py: the reference's weights, inputs and outputs."""
  model = torch_reference()
  ids, mask = _batch()
  state = {k: v.numpy() for k, v in model.state_dict().items() if "position_ids" not in k
           and "token_type_ids" not in k}
  np.savez_compressed(path, config=json.dumps(HF_CONFIG), input_ids=ids, attention_mask=mask,
                      **torch_outputs(model, ids, mask), **{f"w/{k}": v for k, v in state.items()})


def _golden() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  with np.load(GOLDEN) as z:
    g = {k: z[k] for k in z.files}
  state = {k[2:]: g.pop(k) for k in list(g) if k.startswith("w/")}
  assert json.loads(str(g.pop("config"))) == HF_CONFIG, "regenerate: tests/make_golden.py albert"
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
  """Our model loaded from `model_dir`, with the checkpoint's head copied into ours."""
  cfg, params = models.load_pretrained(str(model_dir), 3, jax.random.key(0))
  state = hf.read_hf_state_dict(model_dir)
  params["classifier"] = {"kernel": jnp.asarray(state["classifier.weight"].T),
                          "bias": jnp.asarray(state["classifier.bias"])}
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
  """Our params written out under HF names (the conversion in reverse)."""
  flat = hf.flatten(params)
  return {"albert." + name: np.ascontiguousarray(np.asarray(flat[p]).T if t else flat[p])
          for p, (name, t) in albert._hf_name_map(cfg).items()}


def test_checkpoint_conversion_round_trips_and_is_strict():
  cfg = dataclasses.replace(albert.PRESETS["albert-tiny"], vocab_size=50,
                            max_position_embeddings=16)
  params = _init(jax.random.key(0), cfg=cfg)
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
  state = _state_of(cfg, _init(jax.random.key(0), cfg=cfg))
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
  cfg = models.preset("albert-tiny", num_labels=2)
  params = _init(jax.random.key(1), cfg=cfg)
  ids = np.random.default_rng(1).integers(5, cfg.vocab_size, size=(4, 12))
  mask = np.ones_like(ids)
  logits, out = _apply(cfg, params, ids, mask)
  assert logits.shape == (4, 2) and out["hidden"].shape == (4, 12, cfg.hidden_size)
  np.testing.assert_allclose(out["cls"], out["hidden"][:, 0])
  p = params["pooler"]
  np.testing.assert_allclose(out["pooled"], np.tanh(out["cls"] @ p["kernel"] + p["bias"]),
                             atol=1e-5)
  # One shared layer: the parameter tree has a single "layer", whatever the depth.
  assert [k for k in params if k.startswith("layer")] == ["layer"]
  # bf16 compute keeps float32 params and stays close to float32.
  cfg16 = dataclasses.replace(cfg, dtype="bfloat16")
  shapes = jax.eval_shape(functools.partial(_init, cfg=cfg16), jax.random.key(1))
  assert {x.dtype for x in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  l16, _ = _apply(cfg16, params, ids, mask)
  assert l16.dtype == jnp.float32
  np.testing.assert_allclose(l16, logits, atol=0.05)
  # Padding does not change the real rows' outputs.
  padded = np.concatenate([ids, np.zeros((4, 6), ids.dtype)], 1)
  pmask = np.concatenate([mask, np.zeros((4, 6), mask.dtype)], 1)
  l2, o2 = _apply(cfg, params, padded, pmask)
  np.testing.assert_allclose(l2, logits, atol=1e-5)
  np.testing.assert_allclose(o2["mean"], out["mean"], atol=1e-5)
  np.testing.assert_allclose(o2["hidden"][:, :12], out["hidden"], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# A tiny end-to-end use with an offline tokenizer trained here (no ALBERT spiece.model ships).
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


def write_albert_tokenizer(model_dir: Path, texts: list[str], vocab_size: int = 300) -> Path:
  """A SentencePiece-style Unigram tokenizer (ALBERT's kind: lower-cased, "▁" word marks,
  [CLS] x [SEP]), saved as a directory `anchoral_jax.tokenize.load_tokenizer` reads."""
  from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
  from tokenizers import models as tok_models

  specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]  # ids 0-4 as albert-base-v2
  tok = Tokenizer(tok_models.Unigram())
  tok.normalizer = normalizers.Sequence([normalizers.Replace("``", '"'), normalizers.Lowercase()])
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = decoders.Metaspace()
  tok.train_from_iterator(texts, trainers.UnigramTrainer(
      vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>"))
  cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
  tok.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
  model_dir.mkdir(parents=True, exist_ok=True)
  tok.save(str(model_dir / "tokenizer.json"))
  (model_dir / "tokenizer_config.json").write_text(json.dumps({
      "tokenizer_class": "AlbertTokenizer", "do_lower_case": True, "model_max_length": 128,
      "pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "[CLS]", "sep_token": "[SEP]",
      "mask_token": "[MASK]", "bos_token": "[CLS]", "eos_token": "[SEP]"}))
  # config.json's model_type is what AutoTokenizer falls back on to pick the class.
  (model_dir / "config.json").write_text(json.dumps({"model_type": "albert"}))
  return model_dir


def test_tokenizer_forward_and_one_fit_epoch(tmp_path):
  from anchoral_jax.tokenize import load_tokenizer, tokenize
  from anchoral_jax.train import TrainConfig, fit

  texts, labels = texts_and_labels()
  tokenizer = load_tokenizer(write_albert_tokenizer(tmp_path / "tok", texts))
  assert type(tokenizer).__name__ == "AlbertTokenizer"
  tok = tokenize(tokenizer, texts, max_length=32)
  assert tok.pad_id == tokenizer.pad_token_id == 0
  assert tok.row(0)[0] == tokenizer.cls_token_id and tok.row(0)[-1] == tokenizer.sep_token_id
  cfg = models.preset("albert-tiny", num_labels=2)
  assert len(tokenizer) <= cfg.vocab_size
  params = _init(jax.random.key(0), cfg=cfg)
  ids, mask = tok.batch(np.arange(8), (32,))
  logits, _ = _apply(cfg, params, ids, mask)
  assert logits.shape == (8, 2) and np.isfinite(logits).all()
  rows = np.arange(64, dtype=np.int64)
  tc = TrainConfig(learning_rate=3e-3, batch_size=16, epochs=1, min_steps=0, patience=10,
                   eval_batch_size=32, model_selection="last")
  got = fit(params, cfg, tc, tok, rows, labels[rows], num_classes=2, minority_classes=(1,),
            data_seed=0, dropout_key=jax.random.key(1), val=None, buckets=(32,))
  assert got.epochs_run == 1 and got.steps == 4
  assert np.isfinite(got.history[0]["train/loss"])
