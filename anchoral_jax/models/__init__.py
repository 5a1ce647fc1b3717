"""Flax models. One API (Linen), one family for now (BERT: bert-base, bert-tiny, MiniLM)."""

from anchoral_jax.models.bert import (
    PRESETS,
    BertClassifier,
    BertConfig,
    init_params,
    load_pretrained,
    resolve_model_dir,
)

__all__ = ["PRESETS", "BertClassifier", "BertConfig", "init_params", "load_pretrained",
           "resolve_model_dir"]
