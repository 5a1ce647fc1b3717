"""The Flax DeBERTa-v2/v3 against independent references: Hugging Face PyTorch
DebertaV2ForSequenceClassification built from a small random config (when torch is installed),
or golden values it produced (tests/golden/deberta.npz, `python tests/make_golden.py deberta`).

The reference has v3's layout (shared attention keys, c2p|p2c, LayerNorm'd relative
embeddings, no absolute positions) with 8 position buckets, and 40-token rows: distances past
4 land in log buckets, so the bucketing is exercised, not just the exact range. Every weight is
perturbed (no bias is 0, no LayerNorm the identity); the golden file stores them with the inputs
and outputs. Not pretrained weights: nothing here is downloaded."""

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
  ids = np.random.default_rng(0).integers(5, HF_CONFIG["vocab_size"], size=(3, 40))
  mask = np.ones_like(ids)
  mask[1, 23:] = 0
  ids[1, 23:] = 0
  return ids, mask


def torch_reference(state: dict[str, np.ndarray] | None = None, config: dict = HF_CONFIG):
  """The HF model: from `state`, else random (seed 0) with every weight perturbed."""
  import torch
  import transformers

  cfg = transformers.DebertaV2Config(**{k: v for k, v in config.items() if k != "model_type"})
  torch.manual_seed(0)
  model = transformers.DebertaV2ForSequenceClassification(cfg).eval()
  with torch.no_grad():
    if state is None:
      for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
    else:
      model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
  return model


def save_checkpoint(model, model_dir: Path, safe: bool) -> None:
  """config.json + model.safetensors, or + pytorch_model.bin (older checkpoints' format, which
  transformers 5's save_pretrained no longer writes)."""
  import torch

  if safe:
    model.save_pretrained(model_dir)
  else:
    model.config.save_pretrained(model_dir)
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")


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
  state = {k: v.numpy() for k, v in model.state_dict().items() if "position_ids" not in k}
  np.savez_compressed(path, config=json.dumps(HF_CONFIG), input_ids=ids, attention_mask=mask,
                      **torch_outputs(model, ids, mask), **{f"w/{k}": v for k, v in state.items()})


def _golden() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  with np.load(GOLDEN) as z:
    g = {k: z[k] for k in z.files}
  state = {k[2:]: g.pop(k) for k in list(g) if k.startswith("w/")}
  assert json.loads(str(g.pop("config"))) == HF_CONFIG, "regenerate: tests/make_golden.py deberta"
  return g, state


def _load(model_dir):
  """models.load_pretrained's steps (config.json, tensors, strict conversion), with an init
  compiled once per config rather than once per call."""
  cfg = models.load_config(str(model_dir), 3)
  state = hf.read_hf_state_dict(model_dir)
  params, _ = models.family(cfg).params_from_hf(state, cfg, _init(cfg))
  return cfg, params


def _ours(model_dir, ids, mask):
  """Our model loaded from `model_dir` (its pooler too), with the checkpoint's head copied in."""
  cfg, params = _load(model_dir)
  state = hf.read_hf_state_dict(model_dir)
  params["classifier"] = {"kernel": jnp.asarray(state["classifier.weight"].T),
                          "bias": jnp.asarray(state["classifier.bias"])}
  return models.classifier(cfg).apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask))


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
@pytest.mark.parametrize("safe,config", [(True, HF_CONFIG), (False, HF_CONFIG),
                                         (True, V2_CONFIG)], ids=["v3-safetensors", "v3-bin",
                                                                  "v2-layout"])
def test_random_hf_checkpoint_matches_pytorch(tmp_path, safe, config):
  """Saved as safetensors and as pytorch_model.bin, loaded through the family registry."""
  model = torch_reference(config=config)
  save_checkpoint(model, tmp_path, safe)
  assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).exists()
  ids, mask = _batch()
  logits, out = _ours(tmp_path, ids, mask)
  dh, dl = _max_diffs(torch_outputs(model, ids, mask), logits, out, mask)
  assert dh < 1e-4 and dl < 1e-4, (dh, dl)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch for HF's bucketing function")
def test_log_buckets_match_hf_at_every_distance():
  import torch
  from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

  rel = torch.arange(512)[:, None] - torch.arange(512)[None, :]
  for buckets, max_pos in ((256, 512), (8, 64), (64, 128)):  # deberta-v3-base is (256, 512)
    want = make_log_bucket_position(rel, buckets, max_pos).long().numpy()
    np.testing.assert_array_equal(deberta.log_bucket_position(rel.numpy(), buckets, max_pos), want)


@functools.cache
def _init_fn(cfg):
  """One compiled init per config (models.init_params compiles afresh on every call)."""
  ids = jnp.zeros((1, 8), jnp.int32)
  return jax.jit(lambda k: models.classifier(cfg).init(k, ids, ids)["params"])


def _init(cfg, seed: int = 0):
  return _init_fn(cfg)(jax.random.key(seed))


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
  params = _init(cfg)
  state = _state_of(cfg, params)
  # v3's pre-training heads and buffers, and a task head, are ignored.
  extra_ok = {"lm_predictions.lm_head.bias": np.zeros(50, np.float32),
              "mask_predictions.classifier.weight": np.zeros((1, 32), np.float32),
              "deberta.embeddings.position_ids": np.zeros((1, 128), np.float32),
              "classifier.weight": np.zeros((3, 32), np.float32)}
  got, kept = deberta.params_from_hf({**state, **extra_ok}, cfg, _init(cfg, 1))
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
  state = _state_of(cfg, _init(cfg))
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


@functools.partial(jax.jit, static_argnames=("cfg",))
def _apply(cfg, params, ids, mask):
  """Eval-mode forward (train mode, i.e. dropout, is exercised by the fit test)."""
  return models.classifier(cfg).apply({"params": params}, ids, mask)


def test_outputs_bf16_and_padding():
  cfg = models.preset("deberta-tiny", num_labels=2)
  params = _init(cfg, 1)
  ids = np.random.default_rng(1).integers(5, cfg.vocab_size, size=(4, 12))
  mask = np.ones_like(ids)
  logits, out = _apply(cfg, params, ids, mask)
  assert logits.shape == (4, 2) and out["hidden"].shape == (4, 12, cfg.hidden_size)
  np.testing.assert_allclose(out["cls"], out["hidden"][:, 0])
  p = params["pooler"]
  np.testing.assert_allclose(out["pooled"], jax.nn.gelu(out["cls"] @ p["kernel"] + p["bias"],
                                                        approximate=False), atol=1e-5)
  # bf16 compute keeps float32 params and stays close to float32.
  cfg16 = dataclasses.replace(cfg, dtype="bfloat16")
  shapes16 = jax.eval_shape(lambda k: models.classifier(cfg16).init(k, ids, mask)["params"],
                            jax.random.key(1))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes16))
  l16, _ = _apply(cfg16, params, ids, mask)
  assert l16.dtype == jnp.float32
  np.testing.assert_allclose(l16, logits, atol=0.05)
  # Padding does not change the real rows' outputs (relative positions need no offsets).
  padded = np.concatenate([ids, np.zeros((4, 6), ids.dtype)], 1)
  pmask = np.concatenate([mask, np.zeros((4, 6), mask.dtype)], 1)
  l2, o2 = _apply(cfg, params, padded, pmask)
  np.testing.assert_allclose(l2, logits, atol=1e-5)
  np.testing.assert_allclose(o2["mean"], out["mean"], atol=1e-5)
  np.testing.assert_allclose(o2["hidden"][:, :12], out["hidden"], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# A tiny end-to-end use with an offline tokenizer trained here (no deberta-v3 spm.model ships).
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


def write_deberta_tokenizer(model_dir: Path, texts: list[str], vocab_size: int = 300) -> Path:
  """A SentencePiece-style Unigram tokenizer laid out as deberta-v3's ([PAD]=0, [CLS]=1,
  [SEP]=2, [UNK]=3; cased; "▁" word marks; [CLS] x [SEP]), saved as a directory
  `anchoral_jax.tokenize.load_tokenizer` reads."""
  from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
  from tokenizers import models as tok_models

  specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
  tok = Tokenizer(tok_models.Unigram())
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = decoders.Metaspace()
  tok.train_from_iterator(texts, trainers.UnigramTrainer(
      vocab_size=vocab_size, special_tokens=specials, unk_token="[UNK]"))
  cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
  tok.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
      special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
  model_dir.mkdir(parents=True, exist_ok=True)
  tok.save(str(model_dir / "tokenizer.json"))
  (model_dir / "tokenizer_config.json").write_text(json.dumps({
      "tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "model_max_length": 128,
      "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
      "mask_token": "[MASK]", "bos_token": "[CLS]", "eos_token": "[SEP]"}))
  # config.json's model_type is what AutoTokenizer falls back on to pick the class.
  (model_dir / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))
  return model_dir


def test_tokenizer_forward_and_one_fit_epoch(tmp_path):
  from anchoral_jax.tokenize import load_tokenizer, tokenize
  from anchoral_jax.train import TrainConfig, fit

  texts, labels = texts_and_labels()
  tokenizer = load_tokenizer(write_deberta_tokenizer(tmp_path / "tok", texts))
  assert type(tokenizer).__name__.startswith("DebertaV2Tokenizer")
  tok = tokenize(tokenizer, texts, max_length=32)
  assert tok.pad_id == tokenizer.pad_token_id == 0
  assert (tok.row(0)[0], tok.row(0)[-1]) == (tokenizer.cls_token_id,
                                             tokenizer.sep_token_id) == (1, 2)
  cfg = models.preset("deberta-tiny", num_labels=2)
  assert len(tokenizer) <= cfg.vocab_size
  params = _init(cfg)
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
