"""What the model-family parity tests (tests/test_model_<family>.py) share: the Hugging Face
PyTorch reference built from a small random config, golden files, a jitted init and forward, and
the checks every family repeats. Not a test module: the families import it.

Shape letters: B batch, L sequence length, H hidden size, C classes."""

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from anchoral_jax import models
from anchoral_jax.models import hf


def batch(vocab_size: int, length: int, pad_from: int, low: int = 5
          ) -> tuple[np.ndarray, np.ndarray]:
  """ids_BxL, mask_BxL: three rows, the second right-padded from `pad_from` with pad id 0."""
  ids = np.random.default_rng(0).integers(low, vocab_size, size=(3, length))
  mask = np.ones_like(ids)
  mask[1, pad_from:] = 0
  ids[1, pad_from:] = 0
  return ids, mask


def torch_reference(config_class: str, model_class: str, hf_config: dict,
                    state: dict[str, np.ndarray] | None = None, strict: bool = False):
  """transformers.<model_class> from `hf_config`: with `state`'s weights, else random (seed 0)
  with every weight perturbed (so no bias is 0 and no LayerNorm is the identity)."""
  import torch
  import transformers

  cfg = getattr(transformers, config_class)(
      **{k: v for k, v in hf_config.items() if k != "model_type"})
  torch.manual_seed(0)
  model = getattr(transformers, model_class)(cfg).eval()
  with torch.no_grad():
    if state is None:
      for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
    else:
      model.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=strict)
  return model


def torch_outputs(model, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
  """The reference's last hidden state and logits."""
  import torch

  with torch.no_grad():
    o = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
              output_hidden_states=True)
  return {"hidden": o.hidden_states[-1].numpy(), "logits": o.logits.numpy()}


def save_checkpoint(model, model_dir: Path, safe: bool) -> None:
  """config.json + model.safetensors, or + pytorch_model.bin (older checkpoints' format, which
  transformers 5's save_pretrained no longer writes)."""
  import torch

  if safe:
    model.save_pretrained(model_dir)
  else:
    model.config.save_pretrained(model_dir)
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")


def write_golden(path: Path, hf_config: dict, ids: np.ndarray, mask: np.ndarray,
                 state: dict[str, np.ndarray], **outputs: np.ndarray) -> None:
  """tests/make_golden.py: the reference's config, weights, inputs and outputs."""
  np.savez_compressed(path, config=json.dumps(hf_config), input_ids=ids, attention_mask=mask,
                      **outputs, **{f"w/{k}": v for k, v in state.items()})


def load_golden(path: Path, hf_config: dict, family: str
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """(inputs and outputs, weights) of a golden file written for `hf_config`."""
  with np.load(path) as z:
    g = {k: z[k] for k in z.files}
  state = {k[2:]: g.pop(k) for k in list(g) if k.startswith("w/")}
  assert json.loads(str(g.pop("config"))) == hf_config, f"regenerate: make_golden.py {family}"
  return g, state


def save_safetensors(model_dir: Path, hf_config: dict, state: dict[str, np.ndarray]) -> None:
  """A checkpoint directory from a golden file's config and weights."""
  from safetensors.numpy import save_file

  (model_dir / "config.json").write_text(json.dumps(hf_config))
  save_file(state, str(model_dir / "model.safetensors"))


@functools.partial(jax.jit, static_argnames="cfg")
def _init(key, cfg):
  ids = jnp.zeros((1, 8), jnp.int32)
  return models.classifier(cfg).init(key, ids, ids + 1, deterministic=True)["params"]


def init(cfg, seed: int = 0):
  """models.init_params, jitted once per config (a cache hit after)."""
  return _init(jax.random.key(seed), cfg=cfg)


@functools.partial(jax.jit, static_argnames="cfg")
def _forward(params, ids_BxL, mask_BxL, cfg):
  return models.classifier(cfg).apply({"params": params}, ids_BxL, mask_BxL)


def apply(cfg, params, ids_BxL, mask_BxL):
  """Eval-mode forward, jitted: un-jitted Flax costs seconds per call on a loaded CPU."""
  return _forward(params, jnp.asarray(ids_BxL), jnp.asarray(mask_BxL), cfg=cfg)


def load(model_dir: Path, num_labels: int = 3):
  """models.load_pretrained's steps (config.json, tensors, strict conversion), with the jitted
  init rather than one compiled per call."""
  cfg = models.load_config(str(model_dir), num_labels)
  state = hf.read_hf_state_dict(model_dir)
  params, _ = models.family(cfg).params_from_hf(state, cfg, init(cfg))
  return cfg, params


def max_diffs(hidden_ref, logits_ref, logits, out, mask) -> tuple[float, float]:
  """Largest |ours - reference| of the last hidden state (real tokens only: padded positions'
  outputs are never used) and of the logits."""
  m = mask.astype(bool)
  return (float(np.abs(np.asarray(out["hidden"])[m] - hidden_ref[m]).max()),
          float(np.abs(np.asarray(logits) - logits_ref).max()))


def assert_golden_parity(tmp_path: Path, golden: Path, hf_config: dict, family: str,
                         reference, outputs, ours) -> None:
  """The stored weights, loaded as a checkpoint, give the stored outputs; with torch, the live
  reference (`outputs(reference(state), ids, mask)`) must agree with them too."""
  g, state = load_golden(golden, hf_config, family)
  ids, mask = g["input_ids"], g["attention_mask"]
  if reference is not None:
    live = outputs(reference(state), ids, mask)
    m = mask.astype(bool)
    np.testing.assert_allclose(live["hidden"][m], g["hidden"][m], atol=1e-5)
    np.testing.assert_allclose(live["logits"], g["logits"], atol=1e-5)
  save_safetensors(tmp_path, hf_config, state)
  logits, out = ours(tmp_path, ids, mask)
  dh, dl = max_diffs(g["hidden"], g["logits"], logits, out, mask)
  assert dh < 1e-4 and dl < 1e-4, (dh, dl)


def assert_checkpoint_parity(tmp_path: Path, model, safe: bool, ids, mask, outputs, ours
                             ) -> None:
  """`model` saved as safetensors or as pytorch_model.bin, loaded back through `ours`, gives
  the reference's outputs."""
  save_checkpoint(model, tmp_path, safe)
  assert sorted(p.name for p in tmp_path.iterdir()) == [
      "config.json", "model.safetensors" if safe else "pytorch_model.bin"]
  logits, out = ours(tmp_path, ids, mask)
  ref = outputs(model, ids, mask)
  dh, dl = max_diffs(ref["hidden"], ref["logits"], logits, out, mask)
  assert dh < 1e-4 and dl < 1e-4, (dh, dl)


def forward_random_rows(preset: str, low: int = 5):
  """(cfg, params, ids_BxL, mask_BxL, logits_BxC, out) of the `preset` model (seed 1) on four
  unpadded random rows of 12 ids from `low` up, the output shapes checked."""
  cfg = models.preset(preset, num_labels=2)
  params = init(cfg, 1)
  ids_BxL = np.random.default_rng(1).integers(low, cfg.vocab_size, size=(4, 12))
  mask_BxL = np.ones_like(ids_BxL)
  logits, out = apply(cfg, params, ids_BxL, mask_BxL)
  assert logits.shape == (4, 2) and out["hidden"].shape == (4, 12, cfg.hidden_size)
  return cfg, params, ids_BxL, mask_BxL, logits, out


def assert_bf16_close(cfg, params, ids, mask, logits) -> None:
  """bf16 compute keeps float32 params, returns float32 logits and stays close to float32."""
  import dataclasses

  cfg16 = dataclasses.replace(cfg, dtype="bfloat16")
  shapes = jax.eval_shape(functools.partial(_init, cfg=cfg16), jax.random.key(1))
  assert {x.dtype for x in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  l16, o16 = apply(cfg16, params, ids, mask)
  assert l16.dtype == jnp.float32 and o16["hidden"].dtype == jnp.float32
  np.testing.assert_allclose(l16, logits, atol=0.05)


def assert_padding_changes_nothing(cfg, params, ids_BxL, mask_BxL, logits, out) -> None:
  """Six padded positions after every row change none of the real rows' outputs."""
  b = ids_BxL.shape[0]
  padded = np.concatenate([ids_BxL, np.zeros((b, 6), ids_BxL.dtype)], 1)
  pmask = np.concatenate([mask_BxL, np.zeros((b, 6), mask_BxL.dtype)], 1)
  l2, o2 = apply(cfg, params, padded, pmask)
  np.testing.assert_allclose(l2, logits, atol=1e-5)
  np.testing.assert_allclose(o2["mean"], out["mean"], atol=1e-5)
  np.testing.assert_allclose(o2["hidden"][:, :ids_BxL.shape[1]], out["hidden"], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# A tiny end-to-end use with an offline tokenizer trained in the test.
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


def assert_forward_and_one_fit_epoch(preset: str, tokenizer, tok, labels) -> None:
  """The `preset` model (its vocabulary holds the tokenizer's): a forward on 8 tokenised rows,
  then one epoch of `train.fit` on 64 (4 steps of 16)."""
  from anchoral_jax.training.train import TrainConfig, fit

  cfg = models.preset(preset, num_labels=2)
  assert len(tokenizer) <= cfg.vocab_size
  params = init(cfg)
  ids, mask = tok.batch(np.arange(8), (32,))
  logits, _ = apply(cfg, params, ids, mask)
  assert logits.shape == (8, 2) and np.isfinite(logits).all()
  rows = np.arange(64, dtype=np.int64)
  tc = TrainConfig(learning_rate=3e-3, batch_size=16, epochs=1, min_steps=0, patience=10,
                   eval_batch_size=32, model_selection="last")
  got = fit(params, cfg, tc, tok, rows, labels[rows], num_classes=2, minority_classes=(1,),
            data_seed=0, dropout_key=jax.random.key(1), val=None, buckets=(32,))
  assert got.epochs_run == 1 and got.steps == 4
  assert np.isfinite(got.history[0]["train/loss"])


def write_unigram_tokenizer(model_dir: Path, texts: list[str], vocab_size: int,
                            specials: list[str], single: str, pair: str,
                            tokenizer_config: dict, model_type: str,
                            lowercase: bool = False) -> Path:
  """A SentencePiece-style Unigram tokenizer ("▁" word marks) trained on `texts`, `specials`
  first (ids 0, 1, ...), its post-processor the `single` / `pair` templates, saved with
  `tokenizer_config` as a directory `anchoral_jax.data.tokenize.load_tokenizer` reads."""
  from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
  from tokenizers import models as tok_models

  tok = Tokenizer(tok_models.Unigram())
  if lowercase:  # ALBERT's normaliser
    tok.normalizer = normalizers.Sequence([normalizers.Replace("``", '"'),
                                           normalizers.Lowercase()])
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = decoders.Metaspace()
  tok.train_from_iterator(texts, trainers.UnigramTrainer(
      vocab_size=vocab_size, special_tokens=specials, unk_token=tokenizer_config["unk_token"]))
  in_templates = {w.split(":")[0] for w in f"{single} {pair}".split()}
  tok.post_processor = processors.TemplateProcessing(
      single=single, pair=pair,
      special_tokens=[(t, tok.token_to_id(t)) for t in specials if t in in_templates])
  model_dir.mkdir(parents=True, exist_ok=True)
  tok.save(str(model_dir / "tokenizer.json"))
  (model_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
  # config.json's model_type is what AutoTokenizer falls back on to pick the class.
  (model_dir / "config.json").write_text(json.dumps({"model_type": model_type}))
  return model_dir
