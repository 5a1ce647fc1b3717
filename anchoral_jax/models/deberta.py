"""DeBERTa-v2/v3 with DebertaV2ForSequenceClassification's head, in Flax Linen, and Hugging Face
conversion.

Covers microsoft/deberta-v3-base (the paper's "deberta-v3-base" row) and other checkpoints whose
config.json says model_type "deberta-v2" (v3 checkpoints declare that too). The maths follows
transformers' modeling_deberta_v2.py line by line; comments mark where and why we depart.

Shape letters: B batch, L sequence length, H hidden size, E embedding size, T token types,
N heads, D head dim, R relative positions (2 x the attention span S), C classes.

Disentangled attention (He et al. 2021): besides content-to-content q.k, each head adds
content-to-position (c2p: the query . the key-projected relative embedding of q - k) and
position-to-content (p2c: the key . the query-projected relative embedding of the same distance,
read from the key's side: HF's -rel index), all divided by
sqrt(D * (1 + len(pos_att_type))). Relative distances are log-bucketed beyond
`position_buckets / 2` (HF's `make_log_bucket_position`); the bucket matrix depends only on L,
so it is built with numpy at trace time (a constant for XLA).

Outputs (`out`), as the family interface in models/__init__.py asks:
  out["cls"]        last-layer hidden state of [CLS]                        [B, H]
  out["pooled"]     the head's input: ContextPooler = act(dense([CLS])) with
                    `pooler_hidden_act` (gelu), or the masked mean with `pooling="mean"` [B, H]
  out["pre_logits"] dropout(pooled), what the linear head multiplies (`cls_dropout`) [B, H]
  out["mean"]       masked mean of the last layer                            [B, H]
  out["hidden"]     the last layer                                           [B, L, H]

Not implemented: the ConvLayer (`conv_kernel_size` > 0, used by deberta-v2-xlarge/xxlarge, not
by v3): such a config is refused with a ModelLoadError naming the field, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from anchoral_jax.models import hf
from anchoral_jax.models.bert import (
  attention_context,
  classify,
  dense,
  layer_norm,
  post_ln_residuals,
)
from anchoral_jax.models.dropout import Dropout
from anchoral_jax.models.hf import Params

MODEL_TYPES = ("deberta-v2",)  # deberta-v3 checkpoints declare "deberta-v2" too
POOLINGS = ("pooler", "mean")
DEFAULT_POOLING = "pooler"

# HF DebertaV2Config defaults for fields a config.json may omit (they differ from v3's values,
# which are our dataclass defaults, so from_hf must not fall back on ours).
_HF_DEFAULTS: dict[str, Any] = {
    "vocab_size": 128100, "hidden_size": 1536, "num_hidden_layers": 24,
    "num_attention_heads": 24, "intermediate_size": 6144, "max_position_embeddings": 512,
    "type_vocab_size": 0, "layer_norm_eps": 1e-7, "relative_attention": False,
    "max_relative_positions": -1, "position_buckets": -1, "pos_att_type": None,
    "share_att_key": False, "norm_rel_ebd": "none", "position_biased_input": True,
    "pooler_dropout": 0.0, "pooler_hidden_act": "gelu", "cls_dropout": None,
    "conv_kernel_size": 0, "embedding_size": None,
}
_ACTS = {"gelu": lambda x: nn.gelu(x, approximate=False),  # HF "gelu" is the exact erf form
         "gelu_new": lambda x: nn.gelu(x, approximate=True), "tanh": jnp.tanh, "relu": nn.relu}


@dataclasses.dataclass(frozen=True)
class DebertaConfig:
  """Architecture hyper-parameters (HF DebertaV2Config names); defaults are deberta-v3-base."""

  vocab_size: int = 128100
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 0  # 0: no token-type embeddings (v3)
  embedding_size: int | None = None  # None: = hidden_size (else a bias-free embed_proj)
  layer_norm_eps: float = 1e-7
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  initializer_range: float = 0.02
  relative_attention: bool = True
  max_relative_positions: int = -1  # < 1: max_position_embeddings
  position_buckets: int = 256  # > 0: log-bucketed distances, attention span = this
  pos_att_type: tuple[str, ...] = ("p2c", "c2p")
  share_att_key: bool = True  # positions projected by query_proj/key_proj (no pos_*_proj)
  norm_rel_ebd: str = "layer_norm"  # "layer_norm": LayerNorm on the relative embeddings
  position_biased_input: bool = False  # absolute position embeddings added to the input (v2)
  pooler_hidden_act: str = "gelu"
  pooler_dropout: float = 0.0
  cls_dropout: float | None = None  # None: hidden_dropout_prob (as HF)
  conv_kernel_size: int = 0  # > 0 needs the ConvLayer, which is not implemented
  num_labels: int = 2
  dtype: str = "float32"  # compute dtype; parameters and LayerNorms stay float32
  pooling: str = "pooler"  # "pooler" (HF's ContextPooler, the paper) or "mean"

  model_type: ClassVar[str] = "deberta-v2"

  def __post_init__(self):
    if self.pooling not in POOLINGS:
      raise hf.ModelLoadError(f"model.pooling {self.pooling!r} is not one of the DeBERTa "
                              f"family's {list(POOLINGS)}.")
    if self.conv_kernel_size > 0:
      raise hf.ModelLoadError(
          f"conv_kernel_size={self.conv_kernel_size}: this DeBERTa checkpoint needs the "
          "ConvLayer (deberta-v2-xlarge style), which anchoral_jax does not implement; "
          "deberta-v3 checkpoints (conv_kernel_size 0) load.")
    bad = set(self.pos_att_type) - {"c2p", "p2c"}
    if bad:
      raise hf.ModelLoadError(f"pos_att_type {sorted(bad)} is not supported (c2p, p2c only).")
    if self.pooler_hidden_act not in _ACTS:
      raise hf.ModelLoadError(f"Unsupported pooler_hidden_act {self.pooler_hidden_act!r}; "
                              f"expected one of {sorted(_ACTS)}.")

  @property
  def head_dropout_prob(self) -> float:
    """Dropout on the head's input (models.head_dropout): HF's `cls_dropout`, else hidden's."""
    return self.hidden_dropout_prob if self.cls_dropout is None else self.cls_dropout

  @property
  def att_span(self) -> int:
    """S: relative embeddings hold 2S rows (HF `pos_ebd_size`)."""
    return self.position_buckets if self.position_buckets > 0 else self.max_relative

  @property
  def max_relative(self) -> int:
    return (self.max_relative_positions if self.max_relative_positions >= 1
            else self.max_position_embeddings)

  @classmethod
  def from_hf(cls, config: dict[str, Any] | str | os.PathLike, **overrides) -> DebertaConfig:
    """Reads a Hugging Face config.json (dict or path to the file or its directory)."""
    config = hf.family_config(config, "A DeBERTa-v2/v3 config", MODEL_TYPES, default=None)
    if config.get("hidden_act", "gelu") != "gelu":
      raise hf.ModelLoadError(f"Unsupported hidden_act {config['hidden_act']!r}; expected 'gelu'.")
    heads, hidden = config.get("num_attention_heads", 24), config.get("hidden_size", 1536)
    if config.get("attention_head_size", hidden // heads) != hidden // heads:
      raise hf.ModelLoadError("attention_head_size != hidden_size / num_attention_heads is not "
                              "supported.")
    if config.get("pooler_hidden_size", hidden) != hidden:
      raise hf.ModelLoadError("pooler_hidden_size != hidden_size is not supported.")
    kw = {**_HF_DEFAULTS, **{k: v for k, v in config.items() if k in _HF_DEFAULTS}}
    # Not "dtype" (HF's is the stored weights' dtype, ours the compute dtype) nor "pooling".
    kw.update({k: v for k, v in config.items()
               if k in {f.name for f in dataclasses.fields(cls)} - {"dtype", "pooling"}
               and k not in kw})
    pat = kw["pos_att_type"] or ()
    if isinstance(pat, str):
      pat = pat.lower().split("|")
    kw["pos_att_type"] = tuple(x.strip() for x in pat if x.strip())
    kw["norm_rel_ebd"] = str(kw["norm_rel_ebd"] or "none").lower()
    if kw["embedding_size"] == hidden:
      kw["embedding_size"] = None
    kw.update(overrides)
    return cls(**kw)


PRESETS: dict[str, DebertaConfig] = {
    # Random init for tests and runlocal: v3's layout (shared keys, log buckets, rel-LN) at toy
    # size; 8 buckets make the log buckets matter from 5 tokens of distance on. The vocabulary is
    # deberta-v3's, so it fits every tokenizer a tiny run may use (v3's 128100, MiniLM's 30522,
    # one trained in a test): an id past the vocabulary would read NaN embeddings.
    "deberta-tiny": DebertaConfig(vocab_size=128100, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=128, position_buckets=8),
    "deberta-v3-base": DebertaConfig(),
}


def log_bucket_position(rel: np.ndarray, bucket_size: int, max_position: int) -> np.ndarray:
  """HF `make_log_bucket_position`: exact within +-bucket_size/2, log-spaced beyond. Computed in
  float32 as torch does, so the ceil() lands on the same bucket at every distance."""
  sign = np.sign(rel)
  mid = bucket_size // 2
  abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel)).astype(np.float32)
  ratio = np.log(abs_pos / np.float32(mid)) / np.log(np.float32((max_position - 1) / mid))
  log_pos = np.ceil(ratio * np.float32(mid - 1)) + np.float32(mid)
  return np.where(abs_pos <= mid, rel, log_pos * sign).astype(np.int64)


def relative_positions(length: int, cfg: DebertaConfig) -> np.ndarray:
  """rel_LxL[q, k]: the (bucketed) distance q - k, HF `build_relative_position`."""
  rel_LxL = np.arange(length)[:, None] - np.arange(length)[None, :]
  if cfg.position_buckets > 0 and cfg.max_relative > 0:
    rel_LxL = log_bucket_position(rel_LxL, cfg.position_buckets, cfg.max_relative)
  return rel_LxL


class DisentangledSelfAttention(nn.Module):
  cfg: DebertaConfig

  @nn.compact
  def __call__(self, x_BxLxH, mask_BxL, rel_RxH, deterministic: bool):
    cfg = self.cfg
    n, h = cfg.num_attention_heads, cfg.hidden_size
    d = h // n
    length = x_BxLxH.shape[1]
    split = lambda t: t.reshape(t.shape[:-1] + (n, d))  # noqa: E731
    query, key = dense(h, cfg, "query_proj"), dense(h, cfg, "key_proj")
    q_BxLxNxD, k_BxLxNxD = split(query(x_BxLxH)), split(key(x_BxLxH))
    v_BxLxNxD = split(dense(h, cfg, "value_proj")(x_BxLxH))
    # HF counts pos_att_type even without relative attention.
    scale = np.sqrt(d * (1 + len(cfg.pos_att_type)))
    logits_BxNxLxL = jnp.einsum("bqnd,bknd->bnqk", q_BxLxNxD, k_BxLxNxD).astype(jnp.float32)
    if cfg.relative_attention:
      span = cfg.att_span
      rel_RxH = Dropout(cfg.hidden_dropout_prob)(rel_RxH, deterministic=deterministic)
      rel_LxL = relative_positions(length, cfg)
      if "c2p" in cfg.pos_att_type:
        pk_RxNxD = split(key(rel_RxH) if cfg.share_att_key
                         else dense(h, cfg, "pos_key_proj")(rel_RxH))
        c2p_BxNxLxR = jnp.einsum("bqnd,rnd->bnqr", q_BxLxNxD, pk_RxNxD).astype(jnp.float32)
        idx_LxL = np.clip(rel_LxL + span, 0, 2 * span - 1)
        logits_BxNxLxL += jnp.take_along_axis(c2p_BxNxLxR, idx_LxL[None, None], axis=-1)
      if "p2c" in cfg.pos_att_type:
        pq_RxNxD = split(query(rel_RxH) if cfg.share_att_key
                         else dense(h, cfg, "pos_query_proj")(rel_RxH))
        p2c_BxNxLxR = jnp.einsum("bknd,rnd->bnkr", k_BxLxNxD, pq_RxNxD).astype(jnp.float32)
        idx_LxL = np.clip(-rel_LxL + span, 0, 2 * span - 1)
        # Gathered per key row k at column q, then transposed to [q, k] (as HF).
        logits_BxNxLxL += jnp.swapaxes(
            jnp.take_along_axis(p2c_BxNxLxR, idx_LxL[None, None], axis=-1), -1, -2)
    # Keys are masked; HF also masks padded *query* rows (uniform attention there). Only padded
    # positions differ, and nothing reads them. From here on, BERT's attention.
    return attention_context(cfg, logits_BxNxLxL / scale, mask_BxL, v_BxLxNxD, deterministic)


class Layer(nn.Module):
  """One post-LN block, as DebertaV2Layer: BertLayer's but for the attention."""

  cfg: DebertaConfig

  @nn.compact
  def __call__(self, x_BxLxH, mask_BxL, rel_RxH, deterministic: bool):
    ctx_BxLxH = DisentangledSelfAttention(self.cfg, name="attention")(x_BxLxH, mask_BxL, rel_RxH,
                                                                      deterministic)
    return post_ln_residuals(self.cfg, ctx_BxLxH, x_BxLxH, deterministic)


class DebertaClassifier(nn.Module):
  """DebertaV2Model + ContextPooler + dropout + linear head (DebertaV2ForSequenceClassification)."""

  cfg: DebertaConfig

  @nn.compact
  def __call__(self, ids_BxL, mask_BxL, deterministic: bool = True):
    cfg = self.cfg
    dtype = jnp.dtype(cfg.dtype)
    mask_BxL = mask_BxL.astype(bool)
    length = ids_BxL.shape[1]
    e = cfg.embedding_size or cfg.hidden_size
    emb_init = nn.initializers.normal(cfg.initializer_range)
    x_BxLxE = nn.Embed(cfg.vocab_size, e, embedding_init=emb_init, name="word_embeddings")(ids_BxL)
    if cfg.position_biased_input:  # v2; v3 has relative positions only
      x_BxLxE += self.param("position_embeddings", emb_init, (cfg.max_position_embeddings, e))[
          None, :length]
    if cfg.type_vocab_size > 0:  # token_type_ids are all zero for single-sentence inputs
      typ_TxE = self.param("token_type_embeddings", emb_init, (cfg.type_vocab_size, e))
      x_BxLxE += typ_TxE[0][None, None]
    if cfg.embedding_size is not None:
      x_BxLxE = dense(cfg.hidden_size, cfg, "embed_proj", use_bias=False)(x_BxLxE)
    x_BxLxH = layer_norm(cfg, "embeddings_ln")(x_BxLxE)
    x_BxLxH = x_BxLxH * mask_BxL[..., None]  # as HF: padded positions start from zero
    x_BxLxH = Dropout(cfg.hidden_dropout_prob)(x_BxLxH, deterministic=deterministic)
    x_BxLxH = x_BxLxH.astype(dtype)
    rel_RxH = None
    if cfg.relative_attention:
      rel_RxH = self.param("rel_embeddings", emb_init, (2 * cfg.att_span, cfg.hidden_size))
      if "layer_norm" in cfg.norm_rel_ebd:
        rel_RxH = layer_norm(cfg, "rel_ln")(rel_RxH)
      rel_RxH = rel_RxH.astype(dtype)
    for i in range(cfg.num_hidden_layers):
      x_BxLxH = Layer(cfg, name=f"layer_{i}")(x_BxLxH, mask_BxL, rel_RxH,
                                              deterministic).astype(dtype)

    def pooler(cls_BxH):  # ContextPooler: dropout, dense, activation on the first token
      c_BxH = Dropout(cfg.pooler_dropout)(cls_BxH, deterministic=deterministic)
      return _ACTS[cfg.pooler_hidden_act](dense(cfg.hidden_size, cfg, "pooler")(c_BxH))

    return classify(cfg, x_BxLxH, mask_BxL, pooler, cfg.head_dropout_prob, deterministic)


# ---------------------------------------------------------------------------------------------
# Hugging Face checkpoint conversion.
# ---------------------------------------------------------------------------------------------

def _hf_name_map(cfg: DebertaConfig) -> dict[tuple[str, ...], tuple[str, bool]]:
  """Our param path -> (HF tensor name without the 'deberta.' prefix, transpose?)."""
  m: dict[tuple[str, ...], tuple[str, bool]] = {
      ("word_embeddings", "embedding"): ("embeddings.word_embeddings.weight", False),
      ("embeddings_ln", "scale"): ("embeddings.LayerNorm.weight", False),
      ("embeddings_ln", "bias"): ("embeddings.LayerNorm.bias", False),
  }
  if cfg.position_biased_input:
    m[("position_embeddings",)] = ("embeddings.position_embeddings.weight", False)
  if cfg.type_vocab_size > 0:
    m[("token_type_embeddings",)] = ("embeddings.token_type_embeddings.weight", False)
  if cfg.embedding_size is not None:
    m[("embed_proj", "kernel")] = ("embeddings.embed_proj.weight", True)
  if cfg.relative_attention:
    m[("rel_embeddings",)] = ("encoder.rel_embeddings.weight", False)
    if "layer_norm" in cfg.norm_rel_ebd:
      m[("rel_ln", "scale")] = ("encoder.LayerNorm.weight", False)
      m[("rel_ln", "bias")] = ("encoder.LayerNorm.bias", False)
  if cfg.pooling == "pooler":  # top level in DebertaV2ForSequenceClassification
    m[("pooler", "kernel")] = ("pooler.dense.weight", True)
    m[("pooler", "bias")] = ("pooler.dense.bias", False)
  for i in range(cfg.num_hidden_layers):
    hf_ = f"encoder.layer.{i}."
    dense = {
        ("attention", "query_proj"): "attention.self.query_proj",
        ("attention", "key_proj"): "attention.self.key_proj",
        ("attention", "value_proj"): "attention.self.value_proj",
        ("attention_output",): "attention.output.dense",
        ("intermediate",): "intermediate.dense",
        ("output",): "output.dense",
    }
    if cfg.relative_attention and not cfg.share_att_key:
      if "c2p" in cfg.pos_att_type:
        dense[("attention", "pos_key_proj")] = "attention.self.pos_key_proj"
      if "p2c" in cfg.pos_att_type:
        dense[("attention", "pos_query_proj")] = "attention.self.pos_query_proj"
    for path, name in dense.items():
      m[(f"layer_{i}", *path, "kernel")] = (hf_ + name + ".weight", True)
      m[(f"layer_{i}", *path, "bias")] = (hf_ + name + ".bias", False)
    for ln, name in (("attention_ln", "attention.output.LayerNorm"),
                     ("output_ln", "output.LayerNorm")):
      m[(f"layer_{i}", ln, "scale")] = (hf_ + name + ".weight", False)
      m[(f"layer_{i}", ln, "bias")] = (hf_ + name + ".bias", False)
  return m


def params_from_hf(state: dict[str, np.ndarray], cfg: DebertaConfig,
                   init: Params) -> tuple[Params, list[str]]:
  """Maps a HF DebertaV2Model / DebertaV2For* state dict onto `init`. Returns params and the
  paths kept from `init`: the fresh classifier, and the pooler a pre-trained (masked-LM)
  checkpoint does not have. Any other tensor missing, or left unused, is an error naming it."""
  state = hf.strip_prefix(state, ("deberta.",))
  # Pre-training heads (v3's RTD/MLM heads), task heads and buffers.
  ignored = ["lm_predictions.", "mask_predictions.", "cls.", "classifier.",
             "embeddings.position_ids"]
  if not cfg.position_biased_input:  # HF ignores a stray one too (_keys_to_ignore_on_load_...)
    ignored.append("embeddings.position_embeddings")
  if not cfg.relative_attention:  # HF builds the rel-embedding LayerNorm even then, unused
    ignored.append("encoder.LayerNorm.")
  if cfg.pooling != "pooler":
    ignored.append("pooler.")
  return hf.convert(state, _hf_name_map(cfg), init, fresh=("classifier", "pooler"),
                    ignored=ignored)


# The family interface (anchoral_jax/models/__init__.py).
Config = DebertaConfig
Classifier = DebertaClassifier
