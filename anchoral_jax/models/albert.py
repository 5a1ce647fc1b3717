"""An ALBERT encoder with a classification head, in Flax Linen, and Hugging Face conversion.

Covers albert-base-v2 and its siblings (albert-{base,large,xlarge,xxlarge}-v{1,2}): factorised
embeddings (a small `embedding_size` projected up to `hidden_size`) and ONE transformer layer
whose weights are shared by all `num_hidden_layers` applications (Lan et al. 2020). HF's
`num_hidden_groups` / `inner_group_num` generalise that; every released checkpoint has both at
1, the only setting implemented here (another value is a ModelLoadError naming the field).

Shape letters: B batch, L sequence length, E embedding size, H hidden size, N heads, D head dim,
C classes.

Outputs (`out`), as the BERT family (anchoral_jax/models/bert.py):
  out["cls"]        last-layer hidden state of [CLS]                              [B, H]
  out["pooled"]     tanh(dense([CLS])) as AlbertForSequenceClassification, or the masked mean
                    with `pooling="mean"`                                           [B, H]
  out["pre_logits"] dropout(pooled) with `classifier_dropout_prob`, as HF's head [B, H]
  out["mean"]       masked mean of the last layer                                  [B, H]
  out["hidden"]     the last layer                                                 [B, L, H]
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from anchoral_jax.models import hf
from anchoral_jax.models.bert import classify, dense, embeddings, layer_norm, self_attention
from anchoral_jax.models.dropout import Dropout
from anchoral_jax.models.hf import Params

MODEL_TYPES = ("albert",)  # Hugging Face config.json model_type values this file reads
POOLINGS = ("pooler", "mean")
DEFAULT_POOLING = "pooler"
# HF activation names -> ours. "gelu_new" (ALBERT's default) is the tanh approximation.
ACTIVATIONS = {"gelu_new": True, "gelu_pytorch_tanh": True, "gelu": False}


@dataclasses.dataclass(frozen=True)
class AlbertConfig:
  """Architecture hyper-parameters (names follow Hugging Face's AlbertConfig)."""

  vocab_size: int = 30000
  embedding_size: int = 128
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu_new"
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_prob: float = 0.0  # albert-base-v2 ships 0: v2 dropped dropout
  attention_probs_dropout_prob: float = 0.0
  classifier_dropout_prob: float = 0.1
  initializer_range: float = 0.02
  num_labels: int = 2
  # Compute dtype: "float32" or "bfloat16". Parameters always stay float32 (master weights).
  dtype: str = "float32"
  # "pooler" = tanh(dense([CLS])) (HF's head); "mean" = masked mean of the last layer.
  pooling: str = "pooler"

  model_type: ClassVar[str] = "albert"

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise hf.ModelLoadError(
          f"ALBERT hidden size {self.hidden_size} is not a multiple of the "
          f"{self.num_attention_heads} attention heads: does config.json belong to the weights?")
    if self.pooling not in POOLINGS:
      raise hf.ModelLoadError(f"model.pooling {self.pooling!r} is not one of the ALBERT family's "
                              f"{list(POOLINGS)}.")
    if self.hidden_act not in ACTIVATIONS:
      raise hf.ModelLoadError(f"Unsupported hidden_act {self.hidden_act!r} for ALBERT; "
                              f"implemented: {sorted(ACTIVATIONS)}.")

  @property
  def head_dropout_prob(self) -> float:
    """The dropout on the head's input ("pre_logits"), as AlbertForSequenceClassification.
    (The frozen-encoder regime should read this, not hidden_dropout_prob, for this family.)"""
    return self.classifier_dropout_prob

  @classmethod
  def from_hf(cls, config: dict[str, Any] | str | os.PathLike, **overrides) -> AlbertConfig:
    """Reads a Hugging Face config.json (dict or path to the file or its directory)."""
    config = hf.family_config(config, "An ALBERT config", MODEL_TYPES, default="albert")
    for field in ("num_hidden_groups", "inner_group_num"):
      if config.get(field, 1) != 1:
        raise hf.ModelLoadError(
            f"ALBERT config field {field}={config[field]} is not implemented here (only 1, as "
            "every released ALBERT checkpoint).")
    fields = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in config.items() if k in fields}
    kw.update(overrides)
    return cls(**kw)


PRESETS: dict[str, AlbertConfig] = {
    # Randomly initialised in tests and runlocal. Its vocabulary fits every tokenizer a tiny run
    # may use: albert-base-v2's (30000), MiniLM's (30522, the runlocal default) or one trained
    # in a test; an id past the vocabulary would read NaN embeddings.
    "albert-tiny": AlbertConfig(vocab_size=30522, embedding_size=16, hidden_size=32,
                                num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                max_position_embeddings=128),
    "albert-base-v2": AlbertConfig(),
}


class AlbertLayer(nn.Module):
  """One post-LN block, as AlbertLayer (attention + its LayerNorm, FFN + full_layer LayerNorm)."""

  cfg: AlbertConfig

  @nn.compact
  def __call__(self, x_BxLxH, mask_BxL, deterministic: bool):
    cfg = self.cfg
    h = cfg.hidden_size
    # BERT's self-attention, its projections directly in this layer (AlbertAttention's names).
    ctx_BxLxH = self_attention(cfg, x_BxLxH, mask_BxL, deterministic)
    a_BxLxH = Dropout(cfg.hidden_dropout_prob)(dense(h, cfg, "dense")(ctx_BxLxH),
                                                  deterministic=deterministic)
    x_BxLxH = layer_norm(cfg, "attention_ln")(a_BxLxH + x_BxLxH)
    f = dense(cfg.intermediate_size, cfg, "ffn")(x_BxLxH)
    f = nn.gelu(f, approximate=ACTIVATIONS[cfg.hidden_act])
    # HF applies no dropout to the FFN output here (AlbertLayer.ff_chunk); neither do we.
    f = dense(h, cfg, "ffn_output")(f)
    return layer_norm(cfg, "full_layer_ln")(f + x_BxLxH)


class AlbertClassifier(nn.Module):
  """AlbertModel + dropout + linear head (AlbertForSequenceClassification's layout)."""

  cfg: AlbertConfig

  @nn.compact
  def __call__(self, ids_BxL, mask_BxL, deterministic: bool = True):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    mask_BxL = mask_BxL.astype(bool)
    # BERT's embeddings at the factorised width E, projected up to H.
    x_BxLxE = embeddings(self, cfg, ids_BxL, cfg.embedding_size, deterministic)
    x_BxLxH = dense(cfg.hidden_size, cfg, "embedding_hidden_mapping_in")(x_BxLxE.astype(dtype))
    # One set of layer weights applied num_hidden_layers times (ALBERT's cross-layer sharing).
    layer = AlbertLayer(cfg, name="layer")
    for _ in range(cfg.num_hidden_layers):
      x_BxLxH = layer(x_BxLxH.astype(dtype), mask_BxL, deterministic)
    pooler = lambda c_BxH: jnp.tanh(dense(cfg.hidden_size, cfg, "pooler")(c_BxH))  # noqa: E731
    return classify(cfg, x_BxLxH, mask_BxL, pooler, cfg.head_dropout_prob, deterministic)


# ---------------------------------------------------------------------------------------------
# Hugging Face checkpoint conversion.
# ---------------------------------------------------------------------------------------------

def _hf_name_map(cfg: AlbertConfig) -> dict[tuple[str, ...], tuple[str, bool]]:
  """Our param path -> (HF tensor name without the 'albert.' prefix, transpose?)."""
  m: dict[tuple[str, ...], tuple[str, bool]] = {
      ("word_embeddings", "embedding"): ("embeddings.word_embeddings.weight", False),
      ("position_embeddings",): ("embeddings.position_embeddings.weight", False),
      ("token_type_embeddings",): ("embeddings.token_type_embeddings.weight", False),
      ("embeddings_ln", "scale"): ("embeddings.LayerNorm.weight", False),
      ("embeddings_ln", "bias"): ("embeddings.LayerNorm.bias", False),
      ("embedding_hidden_mapping_in", "kernel"): ("encoder.embedding_hidden_mapping_in.weight",
                                                  True),
      ("embedding_hidden_mapping_in", "bias"): ("encoder.embedding_hidden_mapping_in.bias", False),
  }
  if cfg.pooling == "pooler":  # with mean pooling the checkpoint's pooler goes unused
    m[("pooler", "kernel")] = ("pooler.weight", True)
    m[("pooler", "bias")] = ("pooler.bias", False)
  layer = "encoder.albert_layer_groups.0.albert_layers.0."
  dense = {"query": "attention.query", "key": "attention.key", "value": "attention.value",
           "dense": "attention.dense", "ffn": "ffn", "ffn_output": "ffn_output"}
  for ours, name in dense.items():
    m[("layer", ours, "kernel")] = (layer + name + ".weight", True)
    m[("layer", ours, "bias")] = (layer + name + ".bias", False)
  for ours, name in (("attention_ln", "attention.LayerNorm"),
                     ("full_layer_ln", "full_layer_layer_norm")):
    m[("layer", ours, "scale")] = (layer + name + ".weight", False)
    m[("layer", ours, "bias")] = (layer + name + ".bias", False)
  return m


def params_from_hf(state: dict[str, np.ndarray], cfg: AlbertConfig, init: Params
                   ) -> tuple[Params, list[str]]:
  """Maps a HF AlbertModel/AlbertFor* state dict onto `init`. Returns params and the paths kept
  from `init`: the fresh classifier head, and a pooler the checkpoint lacks (AlbertForMaskedLM
  saves none). Any other tensor missing, or left unused, is an error naming it."""
  state = hf.strip_prefix(state, ("albert.",))
  # Pre-training heads (MLM, sentence order), a task head, and non-persistent index buffers.
  ignored = ["predictions.", "sop_classifier.", "classifier.", "embeddings.position_ids",
             "embeddings.token_type_ids"]
  if cfg.pooling != "pooler":
    ignored.append("pooler.")
  return hf.convert(state, _hf_name_map(cfg), init, fresh=("classifier", "pooler"),
                    ignored=ignored)


# The family interface (anchoral_jax/models/__init__.py).
Config = AlbertConfig
Classifier = AlbertClassifier
