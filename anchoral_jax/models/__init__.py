"""Flax sequence classifiers, one file per model family, behind one interface.

The rest of the code never names a family: it calls `classifier(cfg)`, `init_params(cfg, key)`,
`load_pretrained(name, ...)` and `preset(name, ...)` here, which dispatch on the config's
`model_type` (Hugging Face's `config.json` field).

A family is a module `anchoral_jax/models/<family>.py` that defines:
  MODEL_TYPES      the HF `model_type` values it reads (e.g. ("deberta-v2",))
  POOLINGS, DEFAULT_POOLING   what `model.pooling` may name for it
  Config           a frozen dataclass: `model_type` (ClassVar), `num_labels`, `hidden_size`,
                   `hidden_dropout_prob`, `dtype` ("float32"|"bfloat16"), `pooling`, and
                   `from_hf(config_dict, **overrides)`
  Classifier(cfg)  a Linen module: `(ids_BxL, mask_BxL, deterministic) -> (logits_BxC, out)`,
                   `out` holding "cls" (the [CLS]-like vector FTbertKM uses), "pooled" (the
                   head's input features; BADGE's), "pre_logits" (dropout(pooled)), "mean"
                   (the masked mean of the last layer) and "hidden" [B, L, H]; the logits must
                   be one Dense named "classifier" applied to "pre_logits" (the frozen-encoder
                   regime trains exactly that head on cached "pooled" features)
  params_from_hf(state, cfg, init) -> (params, kept)   strict: a tensor missing or unused is
                   an error naming it (models.hf.convert)
  PRESETS          named small configs for random-init runs and tests
and is listed in FAMILIES below. Parameters are float32; `cfg.dtype` is the compute dtype.
"""

from __future__ import annotations

import dataclasses
import functools
from types import ModuleType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from anchoral_jax.models import albert, bert, deberta, gpt2, t5
from anchoral_jax.models.bert import BertClassifier, BertConfig
from anchoral_jax.models.hf import (
    ModelLoadError,
    Params,
    read_hf_config,
    read_hf_state_dict,
    resolve_model_dir,
)

FAMILY_MODULES: tuple[ModuleType, ...] = (bert, albert, gpt2, deberta, t5)
FAMILIES: dict[str, ModuleType] = {t: m for m in FAMILY_MODULES for t in m.MODEL_TYPES}
PRESETS = {name: cfg for m in FAMILY_MODULES for name, cfg in m.PRESETS.items()}
ModelConfig = Any  # a family's frozen Config dataclass (hashable: a static jit argument)
POOLINGS = tuple(dict.fromkeys(p for m in FAMILY_MODULES for p in m.POOLINGS))

__all__ = ["FAMILIES", "POOLINGS", "PRESETS", "BertClassifier", "BertConfig", "ModelConfig", "ModelLoadError",
           "Params", "classifier", "family", "init_params", "load_pretrained", "preset",
           "read_hf_config", "read_hf_state_dict", "resolve_model_dir"]


def family(cfg_or_type) -> ModuleType:
  """The family module of a config (or of a HF `model_type` string)."""
  model_type = cfg_or_type if isinstance(cfg_or_type, str) else cfg_or_type.model_type
  if model_type not in FAMILIES:
    raise ModelLoadError(
        f"model_type {model_type!r} has no Flax implementation here; implemented: "
        f"{sorted(FAMILIES)} (anchoral_jax/models).")
  return FAMILIES[model_type]


def head_dropout(cfg) -> float:
  """The dropout rate on the head's input ("pre_logits" = dropout(pooled)): the family's
  `head_dropout_prob` where it has one (HF's classifier dropout), else `hidden_dropout_prob`."""
  return float(getattr(cfg, "head_dropout_prob", cfg.hidden_dropout_prob))


def classifier(cfg) -> nn.Module:
  return family(cfg).Classifier(cfg)


def init_params(cfg, key: jax.Array, length: int = 8) -> Params:
  """Random parameters (jitted: un-jitted init costs seconds per model on a CPU; one program
  per config, so the seeds of a cell and every later call reuse it)."""
  return _init_program(cfg, length)(key)


@functools.cache
def _init_program(cfg, length: int):
  def init(key):
    ids = jnp.zeros((1, length), jnp.int32)
    return classifier(cfg).init(key, ids, jnp.ones_like(ids), deterministic=True)["params"]

  return jax.jit(init)


def _pooling(fam: ModuleType, pooling: str | None) -> str:
  """`model.pooling` for this family; "pooler" (the config default, BERT's) falls back to the
  family's default where the family has no pooler layer (GPT-2, T5)."""
  if not pooling or (pooling == "pooler" and "pooler" not in fam.POOLINGS):
    return fam.DEFAULT_POOLING
  if pooling not in fam.POOLINGS:
    raise ModelLoadError(f"model.pooling {pooling!r} is not available for "
                         f"{fam.MODEL_TYPES[0]} models; choose from {list(fam.POOLINGS)}.")
  return pooling


def preset(name: str, num_labels: int | None = None, dtype: str | None = None,
           pooling: str | None = None):
  """A named small architecture (random init), with the run's classes, dtype and pooling."""
  if name not in PRESETS:
    raise ModelLoadError(f"Unknown model preset {name!r}; choose from {sorted(PRESETS)}.")
  cfg = PRESETS[name]
  over = {k: v for k, v in (("num_labels", num_labels), ("dtype", dtype)) if v is not None}
  over["pooling"] = _pooling(family(cfg), pooling or cfg.pooling)
  return dataclasses.replace(cfg, **over)


def load_config(name_or_path: str, num_labels: int, dtype: str = "float32",
                pooling: str | None = None):
  """The family's Config from a local checkpoint's config.json (reads no weights)."""
  model_dir = resolve_model_dir(name_or_path)
  hf_cfg = read_hf_config(model_dir)
  model_type = hf_cfg.get("model_type")
  if model_type not in FAMILIES:
    raise ModelLoadError(
        f"{model_dir / 'config.json'} names model_type {model_type!r}, which has no Flax "
        f"implementation here; implemented: {sorted(FAMILIES)}.")
  fam = FAMILIES[model_type]
  return fam.Config.from_hf(hf_cfg, num_labels=num_labels, dtype=dtype,
                            pooling=_pooling(fam, pooling))


def load_pretrained(name_or_path: str, num_labels: int, key: jax.Array, dtype: str = "float32",
                    pooling: str | None = None):
  """(cfg, params) from a local HF checkpoint of any implemented family; the classifier head
  (and a part the family lets a checkpoint lack) from `key`."""
  model_dir = resolve_model_dir(name_or_path)
  cfg = load_config(str(model_dir), num_labels, dtype, pooling)
  try:
    state = read_hf_state_dict(model_dir)
  except FileNotFoundError as e:
    raise ModelLoadError(str(e)) from e
  params, _ = family(cfg).params_from_hf(state, cfg, init_params(cfg, key))
  return cfg, params
