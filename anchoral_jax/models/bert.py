"""A BERT-family encoder with a classification head, in Flax Linen, and Hugging Face conversion.

Covers bert-base-uncased, bert-tiny (google/bert_uncased_L-2_H-128_A-2) and MiniLM
(all-MiniLM-L6-v2): they share BertModel's architecture and parameter names.

Shape letters: B batch, L sequence length, H hidden size, N heads, D head dim, C classes,
W an embedding width (H, or ALBERT's factorised embedding size).

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
import os
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from anchoral_jax.models import hf
from anchoral_jax.models.dropout import Dropout
from anchoral_jax.models.hf import Params

MODEL_TYPES = ("bert",)  # Hugging Face config.json model_type values this file reads
POOLINGS = ("pooler", "mean")
DEFAULT_POOLING = "pooler"


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

  model_type: ClassVar[str] = "bert"

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise hf.ModelLoadError(f"model.pooling {self.pooling!r} is not one of the BERT family's "
                              f"{list(POOLINGS)}.")

  @classmethod
  def from_hf(cls, config: dict[str, Any] | str | os.PathLike, **overrides) -> BertConfig:
    """Reads a Hugging Face config.json (dict or path to the file or its directory)."""
    config = hf.family_config(config, "A BERT config", MODEL_TYPES, default="bert")
    if config.get("hidden_act", "gelu") != "gelu":
      raise hf.ModelLoadError(f"Unsupported hidden_act {config['hidden_act']!r}; expected 'gelu'.")
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


# ---------------------------------------------------------------------------------------------
# Blocks shared with the BERT-like families (albert.py, deberta.py), where their maths is BERT's.
# Each builds its submodules inside the calling module's compact `__call__`, so parameter names
# stay where that family's checkpoint conversion expects them.
# ---------------------------------------------------------------------------------------------

class EncoderConfig(Protocol):
  """The fields the shared blocks read (BertConfig, AlbertConfig and DebertaConfig have them)."""

  hidden_size: int
  num_attention_heads: int
  intermediate_size: int
  max_position_embeddings: int
  type_vocab_size: int
  vocab_size: int
  layer_norm_eps: float
  hidden_dropout_prob: float
  attention_probs_dropout_prob: float
  initializer_range: float
  num_labels: int
  dtype: str
  pooling: str


def dense(features: int, cfg: EncoderConfig, name: str, use_bias: bool = True) -> nn.Dense:
  return nn.Dense(features, use_bias=use_bias, dtype=jnp.dtype(cfg.dtype),
                  param_dtype=jnp.float32,
                  kernel_init=nn.initializers.normal(cfg.initializer_range), name=name)


def layer_norm(cfg: EncoderConfig, name: str) -> nn.LayerNorm:
  # LayerNorm statistics in float32 even under bf16 compute.
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.float32, param_dtype=jnp.float32,
                      name=name)


def embeddings(module: nn.Module, cfg: EncoderConfig, ids_BxL, width: int,
               deterministic: bool) -> jax.Array:
  """x_BxLxW: word + absolute position + token-type embeddings (width W), LayerNorm, dropout,
  as BertEmbeddings (ALBERT's at its own embedding size)."""
  emb_init = nn.initializers.normal(cfg.initializer_range)
  word = nn.Embed(cfg.vocab_size, width, embedding_init=emb_init, name="word_embeddings")
  pos = module.param("position_embeddings", emb_init, (cfg.max_position_embeddings, width))
  typ = module.param("token_type_embeddings", emb_init, (cfg.type_vocab_size, width))
  # token_type_ids are all zero for single-sentence classification.
  x_BxLxW = word(ids_BxL) + pos[None, :ids_BxL.shape[1]] + typ[0][None, None]
  x_BxLxW = layer_norm(cfg, "embeddings_ln")(x_BxLxW)
  return Dropout(cfg.hidden_dropout_prob)(x_BxLxW, deterministic=deterministic)


def attention_context(cfg: EncoderConfig, logits_BxNxLxL, mask_BxL, v_BxLxNxD,
                      deterministic: bool) -> jax.Array:
  """ctx_BxLxH: softmax over the real keys (float32), attention dropout, the values' mix."""
  big_neg = jnp.finfo(jnp.float32).min
  logits_BxNxLxL = jnp.where(mask_BxL[:, None, None, :], logits_BxNxLxL, big_neg)
  probs_BxNxLxL = jax.nn.softmax(logits_BxNxLxL, axis=-1).astype(v_BxLxNxD.dtype)
  probs_BxNxLxL = Dropout(cfg.attention_probs_dropout_prob)(
      probs_BxNxLxL, deterministic=deterministic)
  # Heads-major operands: batch dims (b, n) leading, as the batched matmul wants them. On the
  # [B, L, N, D] layout this einsum was the costliest op of a batch-256 forward on XLA:CPU
  # (bench/RESULTS.md, "Where the time goes").
  ctx_BxNxLxD = jnp.einsum("bnqk,bnkd->bnqd", probs_BxNxLxL, v_BxLxNxD.transpose(0, 2, 1, 3))
  ctx_BxLxNxD = ctx_BxNxLxD.transpose(0, 2, 1, 3)
  return ctx_BxLxNxD.reshape(ctx_BxLxNxD.shape[:2] + (-1,))


class DenseParams(nn.Module):
  """The kernel and bias of an `nn.Dense` (same names, shapes, initialisers and init RNG),
  returned rather than applied, so that several projections can run as one matmul."""

  features: int
  in_features: int
  init_std: float
  use_bias: bool = True

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array | None]:
    kernel = self.param("kernel", nn.initializers.normal(self.init_std),
                        (self.in_features, self.features), jnp.float32)
    bias = (self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
            if self.use_bias else None)
    return kernel, bias


def fused_projections(cfg: EncoderConfig, x_BxLxH, names: tuple[str, ...], features: int,
                      use_bias: bool = True) -> list[jax.Array]:
  """`dense(features, cfg, name)(x)` for each name, computed as ONE matmul over the kernels
  side by side (parameters stay separate, as in the checkpoints). On XLA:CPU three [H, H]
  matmuls ran at a third of the rate of a wide one (bench/RESULTS.md, "Where the time goes");
  the numbers are the same dot products, cast as `nn.Dense` casts them (inputs, kernel and bias
  to the compute dtype)."""
  dtype = jnp.dtype(cfg.dtype)
  parts = [DenseParams(features, x_BxLxH.shape[-1], cfg.initializer_range, use_bias, name=n)()
           for n in names]
  kernel_HxK = jnp.concatenate([k for k, _ in parts], axis=1).astype(dtype)
  y_BxLxK = jnp.einsum("blh,hk->blk", x_BxLxH.astype(dtype), kernel_HxK)
  if use_bias:
    y_BxLxK = y_BxLxK + jnp.concatenate([b for _, b in parts]).astype(dtype)[None, None]
  return jnp.split(y_BxLxK, len(names), axis=-1)


def self_attention(cfg: EncoderConfig, x_BxLxH, mask_BxL, deterministic: bool) -> jax.Array:
  """ctx_BxLxH: multi-head scaled dot-product self-attention (projections "query", "key",
  "value"; the output projection is the caller's)."""
  n, h = cfg.num_attention_heads, cfg.hidden_size
  d = h // n
  split = lambda t: t.reshape(t.shape[:2] + (n, d))  # noqa: E731
  heads = lambda t: split(t).transpose(0, 2, 1, 3)  # noqa: E731
  q_BxLxH, k_BxLxH, v_BxLxH = fused_projections(cfg, x_BxLxH, ("query", "key", "value"), h)
  q_BxNxLxD, k_BxNxLxD = heads(q_BxLxH), heads(k_BxLxH)
  logits_BxNxLxL = jnp.einsum("bnqd,bnkd->bnqk", q_BxNxLxD, k_BxNxLxD) / jnp.sqrt(d)
  v_BxLxNxD = split(v_BxLxH)
  return attention_context(cfg, logits_BxNxLxL.astype(jnp.float32), mask_BxL, v_BxLxNxD,
                           deterministic)


def post_ln_residuals(cfg: EncoderConfig, ctx_BxLxH, x_BxLxH, deterministic: bool) -> jax.Array:
  """The rest of a BertLayer after self-attention: output projection, dropout, residual and
  LayerNorm, then the exact-gelu feed-forward with its own."""
  drop = lambda t: Dropout(cfg.hidden_dropout_prob)(t, deterministic=deterministic)  # noqa: E731
  a_BxLxH = drop(dense(cfg.hidden_size, cfg, "attention_output")(ctx_BxLxH))
  x_BxLxH = layer_norm(cfg, "attention_ln")(a_BxLxH + x_BxLxH)
  f = dense(cfg.intermediate_size, cfg, "intermediate")(x_BxLxH)
  f = nn.gelu(f, approximate=False)  # HF "gelu" is the exact erf form.
  f = drop(dense(cfg.hidden_size, cfg, "output")(f))
  return layer_norm(cfg, "output_ln")(f + x_BxLxH)


def classify(cfg: EncoderConfig, x_BxLxH, mask_BxL, pooler: Callable[[jax.Array], jax.Array],
             head_dropout_prob: float, deterministic: bool) -> tuple[jax.Array, dict]:
  """(logits_BxC, out) from the last layer: `pooler` on [CLS], or the masked mean with
  `pooling="mean"`, then dropout and the linear "classifier" (the module docstring's `out`)."""
  x_BxLxH = x_BxLxH.astype(jnp.float32)
  cls_BxH = x_BxLxH[:, 0]
  m_BxLx1 = mask_BxL[..., None].astype(jnp.float32)
  mean_BxH = (x_BxLxH * m_BxLx1).sum(1) / jnp.maximum(m_BxLx1.sum(1), 1.0)
  if cfg.pooling == "mean":
    pooled_BxH = mean_BxH
  else:
    pooled_BxH = pooler(cls_BxH).astype(jnp.float32)
  pre_BxH = Dropout(head_dropout_prob)(pooled_BxH, deterministic=deterministic)
  logits_BxC = dense(cfg.num_labels, cfg, "classifier")(pre_BxH).astype(jnp.float32)
  out = {"cls": cls_BxH, "pooled": pooled_BxH, "pre_logits": pre_BxH, "mean": mean_BxH,
         "hidden": x_BxLxH}
  return logits_BxC, out


class SelfAttention(nn.Module):
  cfg: BertConfig

  @nn.compact
  def __call__(self, x_BxLxH, mask_BxL, deterministic: bool):
    return self_attention(self.cfg, x_BxLxH, mask_BxL, deterministic)


class Layer(nn.Module):
  """One post-LN transformer block, as BertLayer."""

  cfg: BertConfig

  @nn.compact
  def __call__(self, x_BxLxH, mask_BxL, deterministic: bool):
    ctx_BxLxH = SelfAttention(self.cfg, name="attention")(x_BxLxH, mask_BxL, deterministic)
    return post_ln_residuals(self.cfg, ctx_BxLxH, x_BxLxH, deterministic)


class BertClassifier(nn.Module):
  """BertModel + dropout + linear head (BertForSequenceClassification's layout)."""

  cfg: BertConfig

  @nn.compact
  def __call__(self, ids_BxL, mask_BxL, deterministic: bool = True):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    mask_BxL = mask_BxL.astype(bool)
    x_BxLxH = embeddings(self, cfg, ids_BxL, cfg.hidden_size, deterministic).astype(dtype)
    for i in range(cfg.num_hidden_layers):
      x_BxLxH = Layer(cfg, name=f"layer_{i}")(x_BxLxH, mask_BxL, deterministic).astype(dtype)
    pooler = lambda c_BxH: jnp.tanh(dense(cfg.hidden_size, cfg, "pooler")(c_BxH))  # noqa: E731
    return classify(cfg, x_BxLxH, mask_BxL, pooler, cfg.hidden_dropout_prob, deterministic)


def init_params(cfg: BertConfig, key: jax.Array, length: int = 8) -> Params:
  """Random parameters (models.init_params, for any family)."""
  from anchoral_jax import models

  return models.init_params(cfg, key, length)


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


def params_from_hf(state: dict[str, np.ndarray], cfg: BertConfig, init: Params) -> tuple[Params, list[str]]:
  """Maps a HF BertModel/BertFor* state dict onto `init`. Returns params and the paths kept
  from `init`: the fresh classifier head, and a pooler the checkpoint lacks (some sentence
  encoders ship none). Any other tensor missing, or left unused, is an error naming it."""
  state = hf.strip_prefix(state, ("bert.",))
  ignored = ["cls.", "classifier.", "embeddings.position_ids"]  # pre-training / task heads
  if cfg.pooling != "pooler":  # with mean pooling the checkpoint's pooler goes unused
    ignored.append("pooler.")
  return hf.convert(state, _hf_name_map(cfg), init, fresh=("classifier", "pooler"),
                    ignored=ignored)


def load_pretrained(name_or_path: str, num_labels: int, key: jax.Array,
                    dtype: str = "float32", pooling: str = "pooler") -> tuple[BertConfig, Params]:
  """Config + params from a local HF checkpoint; the head (and any missing part) from `key`."""
  from anchoral_jax import models

  return models.load_pretrained(name_or_path, num_labels, key, dtype=dtype, pooling=pooling)


# The family interface (anchoral_jax/models/__init__.py).
Config = BertConfig
Classifier = BertClassifier
