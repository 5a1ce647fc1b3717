"""The T5 encoder with a mean-pooled linear head, in Flax Linen, and Hugging Face conversion.

Covers t5-base (the paper's "t5-base" row; ReLU feed-forward) and T5 v1.1 / flan-t5 style
checkpoints (gated-gelu). The encoder follows transformers' modeling_t5.py (T5EncoderModel).

Shape letters: B batch, L sequence length, H d_model, N heads, D d_kv, F d_ff, C classes,
K relative-position buckets.

Why an encoder-only head (a deliberate departure, SPEC.md §5): the paper built its T5 classifier
with `AutoModelForSequenceClassification`, i.e. HF's T5ForSequenceClassification, which runs the
whole decoder over the input shifted right and classifies the decoder's state at the last eos
token through a fresh dense-tanh-dense head. For active learning that is a poor default: (1) the
decoder doubles the encoder's parameters and the FLOPs of every pool-scoring pass, which
dominates AL's cost; (2) the read-out hangs on eos positions: HF refuses a batch whose rows hold
different numbers of eos tokens (a text with a literal "</s>" in it); (3) a masked mean over
the encoder's last layer with one linear layer is the standard T5 classification probe
(sentence-T5's "mean" encoder, and the usual way T5 encoders serve as sentence embedders), and
its pooled features are what BADGE and the frozen-encoder regime need.
So this family is the encoder + masked mean + Linear: half the compute, no decoder weights read.
A row of the paper's T5 table produced with this head is therefore not the same model as the
paper's: say so wherever such results are reported.

Outputs (`out`), as the family interface in models/__init__.py asks:
  out["cls"]        the first token's last-layer vector (T5 has no [CLS]; FTbertKM's stand-in)
  out["pooled"]     the masked mean of the last layer (the head's input)          [B, H]
  out["pre_logits"] dropout(pooled)                                                [B, H]
  out["mean"]       the masked mean (= pooled)                                     [B, H]
  out["hidden"]     the encoder's last layer (after the final layer norm)          [B, L, H]

Precision: pre-trained T5 activations grow large in the residual stream and overflow float16
(HF clamps them to avoid inf/NaN). bfloat16 has float32's exponent range so it cannot overflow,
but it rounds large values coarsely; here the residual stream stays float32 under bf16 compute
(matmuls in bf16, norms, residual adds and softmax in float32).

T5 pads with id 0 (`<pad>`) and its position information is the relative attention bias alone
(no absolute positions), so padding needs nothing beyond the attention mask.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from anchoral_jax.models import hf
from anchoral_jax.models.dropout import Dropout
from anchoral_jax.models.hf import Params

MODEL_TYPES = ("t5",)
POOLINGS = ("mean",)
DEFAULT_POOLING = "mean"

# HF T5Config field -> ours, and HF's defaults for a config.json that omits them.
_HF_NAMES = {"vocab_size": "vocab_size", "d_model": "hidden_size",
             "num_layers": "num_hidden_layers", "num_heads": "num_attention_heads",
             "d_kv": "head_dim", "d_ff": "intermediate_size",
             "relative_attention_num_buckets": "relative_attention_num_buckets",
             "relative_attention_max_distance": "relative_attention_max_distance",
             "dropout_rate": "hidden_dropout_prob", "layer_norm_epsilon": "layer_norm_eps",
             "initializer_factor": "initializer_factor", "feed_forward_proj": "feed_forward_proj"}
_HF_DEFAULTS = {"vocab_size": 32128, "d_model": 512, "num_layers": 6, "num_heads": 8, "d_kv": 64,
                "d_ff": 2048, "relative_attention_num_buckets": 32,
                "relative_attention_max_distance": 128, "dropout_rate": 0.1,
                "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0, "feed_forward_proj": "relu"}
# HF ACT2FN names; "gated-gelu" means gelu_new (the tanh approximation) for backward compatibility.
_ACTS = {"relu": nn.relu, "gelu": lambda x: nn.gelu(x, approximate=False),
         "gelu_new": lambda x: nn.gelu(x, approximate=True), "silu": nn.silu}


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Architecture hyper-parameters; defaults are t5-base. Names follow the family interface
  (hidden_size, ...); `from_hf` maps HF's (d_model, num_layers, ...) onto them."""

  vocab_size: int = 32128
  hidden_size: int = 768  # d_model
  num_hidden_layers: int = 12  # encoder layers
  num_attention_heads: int = 12
  head_dim: int = 64  # d_kv (N x D need not equal H)
  intermediate_size: int = 3072  # d_ff
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  feed_forward_proj: str = "relu"  # "relu" (t5-base) or "gated-gelu" (v1.1, flan-t5)
  layer_norm_eps: float = 1e-6
  hidden_dropout_prob: float = 0.1  # dropout_rate
  initializer_factor: float = 1.0
  num_labels: int = 2
  dtype: str = "float32"  # compute dtype; params, norms and the residual stream stay float32
  pooling: str = "mean"

  model_type: ClassVar[str] = "t5"

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise hf.ModelLoadError(f"model.pooling {self.pooling!r} is not available for T5 "
                              f"(encoder-only head); choose from {list(POOLINGS)}.")
    _ = self.activation  # validates feed_forward_proj early, with the fix in the message

  @property
  def gated(self) -> bool:
    return self.feed_forward_proj.startswith("gated-")

  @property
  def activation(self) -> str:
    act = self.feed_forward_proj.split("-")[-1]
    act = "gelu_new" if self.feed_forward_proj == "gated-gelu" else act  # as HF T5Config
    parts = self.feed_forward_proj.split("-")
    if act not in _ACTS or len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
      raise hf.ModelLoadError(
          f"Unsupported feed_forward_proj {self.feed_forward_proj!r}; expected 'relu', "
          f"'gated-gelu' or '[gated-]{{{', '.join(sorted(_ACTS))}}}'.")
    return act

  @classmethod
  def from_hf(cls, config: dict[str, Any] | str | os.PathLike, **overrides) -> T5Config:
    """Reads a Hugging Face config.json (dict or path to the file or its directory)."""
    config = hf.family_config(config, "A T5 config", MODEL_TYPES, default=None)
    kw = {ours: config.get(theirs, _HF_DEFAULTS[theirs]) for theirs, ours in _HF_NAMES.items()}
    kw.update(overrides)
    return cls(**kw)


PRESETS: dict[str, T5Config] = {
    # Random init for tests and runlocal: 8 buckets over distances up to 16 make the log
    # buckets matter from 2 tokens of distance on. The vocabulary is t5's, so it fits every
    # tokenizer a tiny run may use (t5's 32100 + extra ids, MiniLM's 30522, one trained in a
    # test): an id past the vocabulary would read NaN embeddings.
    "t5-tiny": T5Config(vocab_size=32128, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, head_dim=16, intermediate_size=64,
                        relative_attention_num_buckets=8, relative_attention_max_distance=16),
    "t5-base": T5Config(),
}


def relative_position_bucket(rel: np.ndarray, num_buckets: int, max_distance: int) -> np.ndarray:
  """HF `T5Attention._relative_position_bucket`, bidirectional (the encoder): half the buckets
  per direction, exact up to a quarter of them, log-spaced up to `max_distance`. Computed in
  float32 as torch does, so truncation lands on the same bucket."""
  half = num_buckets // 2
  buckets = (rel > 0).astype(np.int64) * half
  n = np.abs(rel)
  max_exact = half // 2
  with np.errstate(divide="ignore", invalid="ignore"):  # log(0) at distance 0, unused
    large = max_exact + (np.log(n.astype(np.float32) / np.float32(max_exact))
                         / np.float32(math.log(max_distance / max_exact))
                         * np.float32(half - max_exact)).astype(np.int64)
  large = np.minimum(large, half - 1)
  return buckets + np.where(n < max_exact, n, large)


class RMSNorm(nn.Module):
  """T5LayerNorm: scale only, no mean subtraction, no bias; always float32."""

  eps: float

  @nn.compact
  def __call__(self, x):
    x = x.astype(jnp.float32)
    w_H = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    w = w_H.reshape((1,) * (x.ndim - 1) + (-1,))  # explicit broadcast over the leading axes
    return w * (x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + self.eps))


def _dense(features: int, cfg: T5Config, name: str, std: float) -> nn.Dense:
  # HF T5 initialisation scales by fan-in (`initializer_factor * fan_in ** -0.5`).
  return nn.Dense(features, use_bias=False, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.float32,
                  kernel_init=nn.initializers.normal(cfg.initializer_factor * std), name=name)


class SelfAttention(nn.Module):
  cfg: T5Config

  @nn.compact
  def __call__(self, x_BxLxH, mask_BxL, bias_NxLxL, deterministic: bool):
    cfg = self.cfg
    n, d, h = cfg.num_attention_heads, cfg.head_dim, cfg.hidden_size
    split = lambda t: t.reshape(t.shape[:2] + (n, d))  # noqa: E731
    q_BxLxNxD = split(_dense(n * d, cfg, "q", (h * d) ** -0.5)(x_BxLxH))
    k_BxLxNxD = split(_dense(n * d, cfg, "k", h ** -0.5)(x_BxLxH))
    v_BxLxNxD = split(_dense(n * d, cfg, "v", h ** -0.5)(x_BxLxH))
    # No 1/sqrt(D): T5 folds it into the initialisation of q.
    logits_BxNxLxL = jnp.einsum("bqnd,bknd->bnqk", q_BxLxNxD, k_BxLxNxD).astype(jnp.float32)
    logits_BxNxLxL = logits_BxNxLxL + bias_NxLxL[None]
    big_neg = jnp.finfo(jnp.float32).min
    logits_BxNxLxL = jnp.where(mask_BxL[:, None, None, :], logits_BxNxLxL, big_neg)
    probs_BxNxLxL = jax.nn.softmax(logits_BxNxLxL, axis=-1).astype(q_BxLxNxD.dtype)
    probs_BxNxLxL = Dropout(cfg.hidden_dropout_prob)(probs_BxNxLxL, deterministic=deterministic)
    ctx_BxLxNxD = jnp.einsum("bnqk,bknd->bqnd", probs_BxNxLxL, v_BxLxNxD)
    ctx_BxLxND = ctx_BxLxNxD.reshape(x_BxLxH.shape[:2] + (n * d,))
    return _dense(h, cfg, "o", (n * d) ** -0.5)(ctx_BxLxND)


class Block(nn.Module):
  """One pre-norm T5Block (encoder): self-attention, then the feed-forward, each residual."""

  cfg: T5Config

  @nn.compact
  def __call__(self, x_BxLxH, mask_BxL, bias_NxLxL, deterministic: bool):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    drop = lambda t: Dropout(cfg.hidden_dropout_prob)(t, deterministic=deterministic)  # noqa: E731
    a = RMSNorm(cfg.layer_norm_eps, name="attention_ln")(x_BxLxH).astype(dtype)
    a = SelfAttention(cfg, name="attention")(a, mask_BxL, bias_NxLxL, deterministic)
    x_BxLxH = x_BxLxH + drop(a).astype(jnp.float32)
    f = RMSNorm(cfg.layer_norm_eps, name="ff_ln")(x_BxLxH).astype(dtype)
    h, ff = cfg.hidden_size, cfg.intermediate_size
    act = _ACTS[cfg.activation]
    if cfg.gated:
      f = act(_dense(ff, cfg, "wi_0", h ** -0.5)(f)) * _dense(ff, cfg, "wi_1", h ** -0.5)(f)
    else:
      f = act(_dense(ff, cfg, "wi", h ** -0.5)(f))
    f = _dense(h, cfg, "wo", ff ** -0.5)(drop(f))
    return x_BxLxH + drop(f).astype(jnp.float32)


class T5Classifier(nn.Module):
  """T5EncoderModel + masked mean + dropout + linear head (see the module docstring for why)."""

  cfg: T5Config

  @nn.compact
  def __call__(self, ids_BxL, mask_BxL, deterministic: bool = True):
    cfg = self.cfg
    mask_BxL = mask_BxL.astype(bool)
    length = ids_BxL.shape[1]
    drop = lambda t: Dropout(cfg.hidden_dropout_prob)(t, deterministic=deterministic)  # noqa: E731
    embed = nn.Embed(cfg.vocab_size, cfg.hidden_size,
                     embedding_init=nn.initializers.normal(cfg.initializer_factor),
                     name="shared")
    x_BxLxH = drop(embed(ids_BxL).astype(jnp.float32))
    # The first layer's relative attention bias, shared by every layer (as HF).
    rel_KxN = self.param("relative_attention_bias",
                         nn.initializers.normal(cfg.initializer_factor * cfg.hidden_size ** -0.5),
                         (cfg.relative_attention_num_buckets, cfg.num_attention_heads))
    rel_LxL = np.arange(length)[None, :] - np.arange(length)[:, None]  # key - query
    bucket_LxL = relative_position_bucket(rel_LxL, cfg.relative_attention_num_buckets,
                                          cfg.relative_attention_max_distance)
    bias_NxLxL = jnp.transpose(rel_KxN[bucket_LxL], (2, 0, 1))
    for i in range(cfg.num_hidden_layers):
      x_BxLxH = Block(cfg, name=f"block_{i}")(x_BxLxH, mask_BxL, bias_NxLxL, deterministic)
    x_BxLxH = drop(RMSNorm(cfg.layer_norm_eps, name="final_ln")(x_BxLxH))

    cls_BxH = x_BxLxH[:, 0]
    m_BxLx1 = mask_BxL[..., None].astype(jnp.float32)
    mean_BxH = (x_BxLxH * m_BxLx1).sum(1) / jnp.maximum(m_BxLx1.sum(1), 1.0)
    pre_BxH = drop(mean_BxH)
    logits_BxC = nn.Dense(cfg.num_labels, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.float32,
                          kernel_init=nn.initializers.normal(cfg.hidden_size ** -0.5),
                          name="classifier")(pre_BxH).astype(jnp.float32)
    out = {"cls": cls_BxH, "pooled": mean_BxH, "pre_logits": pre_BxH, "mean": mean_BxH,
           "hidden": x_BxLxH}
    return logits_BxC, out


# ---------------------------------------------------------------------------------------------
# Hugging Face checkpoint conversion.
# ---------------------------------------------------------------------------------------------

def _hf_name_map(cfg: T5Config) -> dict[tuple[str, ...], tuple[str, bool]]:
  """Our param path -> (HF tensor name, transpose?). The embedding is T5's tied `shared`."""
  m: dict[tuple[str, ...], tuple[str, bool]] = {
      ("shared", "embedding"): ("shared.weight", False),
      ("relative_attention_bias",): (
          "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", False),
      ("final_ln", "scale"): ("encoder.final_layer_norm.weight", False),
  }
  ff = ("wi_0", "wi_1", "wo") if cfg.gated else ("wi", "wo")
  for i in range(cfg.num_hidden_layers):
    b = f"encoder.block.{i}.layer."
    for name in "qkvo":
      m[(f"block_{i}", "attention", name, "kernel")] = (f"{b}0.SelfAttention.{name}.weight", True)
    m[(f"block_{i}", "attention_ln", "scale")] = (f"{b}0.layer_norm.weight", False)
    for name in ff:
      m[(f"block_{i}", name, "kernel")] = (f"{b}1.DenseReluDense.{name}.weight", True)
    m[(f"block_{i}", "ff_ln", "scale")] = (f"{b}1.layer_norm.weight", False)
  return m


def params_from_hf(state: dict[str, np.ndarray], cfg: T5Config,
                   init: Params) -> tuple[Params, list[str]]:
  """Maps a HF T5 state dict (T5Model, T5ForConditionalGeneration, T5EncoderModel or
  T5ForSequenceClassification's `transformer.`) onto `init`: the encoder and the shared
  embedding. The decoder and every head are ignored; the classifier is fresh. Any encoder tensor
  missing, or an unknown one, is an error naming it."""
  state = hf.strip_prefix(state, ("transformer.",))
  # The embedding is tied: a checkpoint stores `shared.weight`, `encoder.embed_tokens.weight`,
  # or both (the same tensor); read one.
  state = dict(state)
  tied = state.pop("encoder.embed_tokens.weight", None)
  if "shared.weight" not in state and tied is not None:
    state["shared.weight"] = tied
  ignored = ["decoder.", "lm_head.", "classification_head."]
  return hf.convert(state, _hf_name_map(cfg), init, fresh=("classifier",), ignored=ignored)


# The family interface (anchoral_jax/models/__init__.py).
Config = T5Config
Classifier = T5Classifier
