"""A GPT-2 decoder with a sequence-classification head, in Flax Linen, and HF conversion.

Covers gpt2 (and gpt2-medium/large/xl, distilgpt2): a causal pre-LN transformer with learned
positions and a final LayerNorm `ln_f` (Radford et al. 2019), as HF's GPT2Model.

Shape letters: B batch, L sequence length, H hidden size, N heads, D head dim, F MLP size,
C classes.

GPT-2 has no [CLS] token, and under causal attention only the last real token has seen the whole
text. So, as HF's GPT2ForSequenceClassification, the sequence representation is the hidden
state of the last non-pad token, at index `mask.sum(-1) - 1` (right padding, which is what
anchoral_jax/data/tokenize.py produces). Outputs (`out`):
  out["cls"]        the last non-pad token's last-layer state: the [CLS]-like vector FTbertKM
                    clusters (a documented choice: GPT-2 has no [CLS])            [B, H]
  out["pooled"]     the pooling's vector: "last" (default, as HF) = out["cls"]; "mean" = the
                    masked mean of the last layer                                  [B, H]
  out["pre_logits"] = pooled: HF's head applies no dropout before `score`, nor does ours [B, H]
  out["mean"]       masked mean of the last layer                                  [B, H]
  out["hidden"]     the last layer after ln_f                                      [B, L, H]
The head is a Dense named "classifier" WITH a bias (every family's head, which the frozen-encoder
regime trains); HF's `score` has no bias. A GPT-2 checkpoint's head is never loaded (fresh
`classifier`, `score.` ignored), so the difference only matters when HF's head is copied in: set
the bias to zero (as the parity tests do).

Padding (SPEC.md §5, "other models"): pad = eos, as the paper's official code
(anchoral_jax/data/tokenize.py `pad_id` falls back on eos for a tokenizer without a pad token).
Departure from the official code, which padded the attention mask itself with the pad id instead
of 0, so padded positions were not masked (a bug, not copied): here the mask is 1 on real tokens
and 0 on padding, from the tokenizer's lengths alone, and attention is causal on top of it. So
padding, whatever its id, changes no real token's output (tests/test_model_gpt2.py), and the
last real token is found from the mask, not by looking for the pad id (HF's way, which a text
that itself contains eos would confuse).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from anchoral_jax.models import hf
from anchoral_jax.models.dropout import Dropout
from anchoral_jax.models.hf import Params

MODEL_TYPES = ("gpt2",)  # Hugging Face config.json model_type values this file reads
POOLINGS = ("last", "mean")
DEFAULT_POOLING = "last"
# HF activation names -> ours (approximate?). "gelu_new" (GPT-2's) is the tanh approximation.
ACTIVATIONS = {"gelu_new": True, "gelu_pytorch_tanh": True, "gelu": False}
# HF GPT2Config's config.json names -> ours (HF maps hidden_size etc. onto them as aliases).
_HF_NAMES = {"n_embd": "hidden_size", "n_layer": "num_hidden_layers",
             "n_head": "num_attention_heads", "n_positions": "max_position_embeddings",
             "n_inner": "intermediate_size", "activation_function": "hidden_act",
             "resid_pdrop": "hidden_dropout_prob", "attn_pdrop": "attention_probs_dropout_prob",
             "layer_norm_epsilon": "layer_norm_eps"}


@dataclasses.dataclass(frozen=True)
class GPT2Config:
  """Architecture hyper-parameters (BERT-style names; `from_hf` maps GPT2Config's n_embd etc.)."""

  vocab_size: int = 50257
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int | None = None  # HF n_inner; None = 4 * hidden_size
  hidden_act: str = "gelu_new"
  max_position_embeddings: int = 1024
  layer_norm_eps: float = 1e-5
  hidden_dropout_prob: float = 0.1  # HF resid_pdrop
  embd_pdrop: float = 0.1
  attention_probs_dropout_prob: float = 0.1  # HF attn_pdrop
  scale_attn_weights: bool = True
  scale_attn_by_inverse_layer_idx: bool = False
  initializer_range: float = 0.02
  num_labels: int = 2
  # Compute dtype: "float32" or "bfloat16". Parameters always stay float32 (master weights).
  dtype: str = "float32"
  # "last" = the last non-pad token's state (HF's head); "mean" = masked mean of the last layer.
  pooling: str = "last"

  model_type: ClassVar[str] = "gpt2"

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise hf.ModelLoadError(
          f"GPT-2 hidden size {self.hidden_size} is not a multiple of the "
          f"{self.num_attention_heads} attention heads: does config.json belong to the weights?")
    if self.pooling not in POOLINGS:
      raise hf.ModelLoadError(f"model.pooling {self.pooling!r} is not one of the GPT-2 family's "
                              f"{list(POOLINGS)}.")
    if self.hidden_act not in ACTIVATIONS:
      raise hf.ModelLoadError(f"Unsupported activation_function {self.hidden_act!r} for GPT-2; "
                              f"implemented: {sorted(ACTIVATIONS)}.")

  @property
  def mlp_size(self) -> int:
    return self.intermediate_size or 4 * self.hidden_size

  @property
  def head_dropout_prob(self) -> float:
    """The dropout on the head's input ("pre_logits"): none, as GPT2ForSequenceClassification.
    (The frozen-encoder regime should read this, not hidden_dropout_prob, for this family.)"""
    return 0.0

  @classmethod
  def from_hf(cls, config: dict[str, Any] | str | os.PathLike, **overrides) -> GPT2Config:
    """Reads a Hugging Face config.json (dict or path to the file or its directory)."""
    config = hf.family_config(config, "A GPT-2 config", MODEL_TYPES, default="gpt2")
    if config.get("add_cross_attention"):
      raise hf.ModelLoadError("GPT-2 config field add_cross_attention=true (an encoder-decoder "
                              "variant) is not implemented here.")
    config = {_HF_NAMES.get(k, k): v for k, v in config.items()}
    fields = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in config.items() if k in fields}
    kw.update(overrides)
    return cls(**kw)


PRESETS: dict[str, GPT2Config] = {
    # Randomly initialised in tests and runlocal. Its vocabulary fits every tokenizer a tiny run
    # may use: gpt2's own (50257), MiniLM's (30522, the runlocal default) or one trained in a
    # test; an id past the vocabulary would read NaN embeddings.
    "gpt2-tiny": GPT2Config(vocab_size=50257, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=128, pooling="last"),
    "gpt2": GPT2Config(),
}


def _dense(features: int, cfg: GPT2Config, name: str) -> nn.Dense:
  # HF GPT-2's Conv1D stores its weight as [in, out]: Flax's kernel layout, no transpose.
  return nn.Dense(features, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.float32,
                  kernel_init=nn.initializers.normal(cfg.initializer_range), name=name)


def _layer_norm(cfg: GPT2Config, name: str) -> nn.LayerNorm:
  # LayerNorm statistics in float32 even under bf16 compute.
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.float32, param_dtype=jnp.float32,
                      name=name)


class Block(nn.Module):
  """One pre-LN block, as GPT2Block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

  cfg: GPT2Config
  index: int

  @nn.compact
  def __call__(self, x_BxLxH, allowed_BxLxL, deterministic: bool):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    n, h = cfg.num_attention_heads, cfg.hidden_size
    d = h // n
    drop = lambda t, p: Dropout(p)(t, deterministic=deterministic)  # noqa: E731
    a = _layer_norm(cfg, "ln_1")(x_BxLxH).astype(dtype)
    qkv_BxLx3H = _dense(3 * h, cfg, "c_attn")(a)
    q_BxLxNxD, k_BxLxNxD, v_BxLxNxD = (
        t.reshape(t.shape[:2] + (n, d)) for t in jnp.split(qkv_BxLx3H, 3, axis=-1))
    scale = (d ** -0.5 if cfg.scale_attn_weights else 1.0)
    if cfg.scale_attn_by_inverse_layer_idx:
      scale /= self.index + 1
    logits_BxNxLxL = jnp.einsum("bqnd,bknd->bnqk", q_BxLxNxD, k_BxLxNxD).astype(jnp.float32)
    logits_BxNxLxL = logits_BxNxLxL * scale
    big_neg = jnp.finfo(jnp.float32).min
    logits_BxNxLxL = jnp.where(allowed_BxLxL[:, None], logits_BxNxLxL, big_neg)
    probs_BxNxLxL = jax.nn.softmax(logits_BxNxLxL, axis=-1).astype(dtype)
    probs_BxNxLxL = drop(probs_BxNxLxL, cfg.attention_probs_dropout_prob)
    ctx_BxLxH = jnp.einsum("bnqk,bknd->bqnd", probs_BxNxLxL, v_BxLxNxD).reshape(a.shape)
    a = drop(_dense(h, cfg, "attn_c_proj")(ctx_BxLxH), cfg.hidden_dropout_prob)
    x_BxLxH = x_BxLxH + a.astype(jnp.float32)
    f = _layer_norm(cfg, "ln_2")(x_BxLxH).astype(dtype)
    f = nn.gelu(_dense(cfg.mlp_size, cfg, "c_fc")(f), approximate=ACTIVATIONS[cfg.hidden_act])
    f = drop(_dense(h, cfg, "mlp_c_proj")(f), cfg.hidden_dropout_prob)
    return x_BxLxH + f.astype(jnp.float32)


class GPT2Classifier(nn.Module):
  """GPT2Model + last-token pooling + linear head (GPT2ForSequenceClassification's layout)."""

  cfg: GPT2Config

  @nn.compact
  def __call__(self, ids_BxL, mask_BxL, deterministic: bool = True):
    cfg = self.cfg
    mask_BxL = mask_BxL.astype(bool)
    length = ids_BxL.shape[1]
    emb_init = nn.initializers.normal(cfg.initializer_range)
    wte = nn.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=emb_init, name="wte")
    wpe = self.param("wpe", emb_init,
                     (cfg.max_position_embeddings, cfg.hidden_size))
    x_BxLxH = wte(ids_BxL) + wpe[None, :length]
    x_BxLxH = Dropout(cfg.embd_pdrop)(x_BxLxH, deterministic=deterministic)
    # A query attends to keys at or before it (causal) that are real tokens (the padding mask:
    # 0 on padding, unlike the official code's mask padded with the pad id; module docstring).
    causal_LxL = jnp.tril(jnp.ones((length, length), bool))
    allowed_BxLxL = causal_LxL[None] & mask_BxL[:, None, :]
    # The residual stream stays float32; matmuls run in cfg.dtype (bf16 when asked).
    for i in range(cfg.num_hidden_layers):
      x_BxLxH = Block(cfg, i, name=f"h_{i}")(x_BxLxH, allowed_BxLxL, deterministic)
    x_BxLxH = _layer_norm(cfg, "ln_f")(x_BxLxH).astype(jnp.float32)

    # The last real token (right padding); an all-padding row (a batch's filler) reads index 0.
    last_B = jnp.maximum(mask_BxL.sum(-1) - 1, 0)
    cls_BxH = jnp.take_along_axis(x_BxLxH, last_B[:, None, None], axis=1)[:, 0]
    m_BxLx1 = mask_BxL[..., None].astype(jnp.float32)
    mean_BxH = (x_BxLxH * m_BxLx1).sum(1) / jnp.maximum(m_BxLx1.sum(1), 1.0)
    pooled_BxH = mean_BxH if cfg.pooling == "mean" else cls_BxH
    pre_BxH = pooled_BxH  # no dropout before the head, as GPT2ForSequenceClassification
    logits_BxC = _dense(cfg.num_labels, cfg, "classifier")(pre_BxH).astype(jnp.float32)
    out = {"cls": cls_BxH, "pooled": pooled_BxH, "pre_logits": pre_BxH, "mean": mean_BxH,
           "hidden": x_BxLxH}
    return logits_BxC, out


# ---------------------------------------------------------------------------------------------
# Hugging Face checkpoint conversion.
# ---------------------------------------------------------------------------------------------

def _hf_name_map(cfg: GPT2Config) -> dict[tuple[str, ...], tuple[str, bool]]:
  """Our param path -> (HF tensor name without the 'transformer.' prefix, transpose?).

  Conv1D weights are [in, out] already: nothing is transposed."""
  m: dict[tuple[str, ...], tuple[str, bool]] = {
      ("wte", "embedding"): ("wte.weight", False),
      ("wpe",): ("wpe.weight", False),
      ("ln_f", "scale"): ("ln_f.weight", False),
      ("ln_f", "bias"): ("ln_f.bias", False),
  }
  for i in range(cfg.num_hidden_layers):
    hf_ = f"h.{i}."
    ours = f"h_{i}"
    for name, hf_name in (("c_attn", "attn.c_attn"), ("attn_c_proj", "attn.c_proj"),
                          ("c_fc", "mlp.c_fc"), ("mlp_c_proj", "mlp.c_proj")):
      m[(ours, name, "kernel")] = (hf_ + hf_name + ".weight", False)
      m[(ours, name, "bias")] = (hf_ + hf_name + ".bias", False)
    for ln in ("ln_1", "ln_2"):
      m[(ours, ln, "scale")] = (hf_ + ln + ".weight", False)
      m[(ours, ln, "bias")] = (hf_ + ln + ".bias", False)
  return m


# Old checkpoints (the hub's gpt2) store the causal-mask buffers h.N.attn.bias / .masked_bias.
_MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(masked_)?bias$")


def params_from_hf(state: dict[str, np.ndarray], cfg: GPT2Config, init: Params
                   ) -> tuple[Params, list[str]]:
  """Maps a HF GPT2Model/GPT2LMHeadModel/GPT2ForSequenceClassification state dict onto `init`.
  Returns params and the paths kept from `init` (the fresh classifier head). Any other tensor
  missing, or left unused, is an error naming it."""
  state = hf.strip_prefix(state, ("transformer.",))
  state = {k: v for k, v in state.items() if not _MASK_BUFFER.match(k)}
  # The LM head (tied to wte) and HF's bias-free `score` head are not ours.
  return hf.convert(state, _hf_name_map(cfg), init, fresh=("classifier",),
                    ignored=("lm_head.", "score."))


# The family interface (anchoral_jax/models/__init__.py).
Config = GPT2Config
Classifier = GPT2Classifier
