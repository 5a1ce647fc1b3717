"""Architectures of the checkpoints the paper's configs name, for `anchoral plan` without them.

Compiling needs only shapes, never weights: where a checkpoint is not on this machine, `plan`
reads its architecture here. Each entry is the subset of the checkpoint's public Hugging Face
`config.json` that the family's `Config.from_hf` reads (copied from the hub's files), so the
model `plan` compiles is the one a run would load.
"""

from __future__ import annotations

from typing import Any

_BERT_BASE = dict(model_type="bert", vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                  num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                  max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12)

HF_CONFIGS: dict[str, dict[str, Any]] = {
    "bert-base-uncased": _BERT_BASE,
    "google/bert_uncased_L-2_H-128_A-2": {**_BERT_BASE, "hidden_size": 128,
                                          "num_hidden_layers": 2, "num_attention_heads": 2,
                                          "intermediate_size": 512},
    "albert-base-v2": dict(
        model_type="albert", vocab_size=30000, embedding_size=128, hidden_size=768,
        num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        hidden_act="gelu_new", num_hidden_groups=1, inner_group_num=1,
        hidden_dropout_prob=0, attention_probs_dropout_prob=0, classifier_dropout_prob=0.1,
        max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12),
    "microsoft/deberta-v3-base": dict(
        model_type="deberta-v2", vocab_size=128100, hidden_size=768, num_hidden_layers=12,
        num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=512,
        type_vocab_size=0, relative_attention=True, max_relative_positions=-1,
        position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
        pos_att_type=["p2c", "c2p"], layer_norm_eps=1e-7, position_biased_input=False,
        pooler_hidden_size=768, pooler_dropout=0, pooler_hidden_act="gelu"),
    "gpt2": dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_ctx=1024, n_embd=768,
                 n_layer=12, n_head=12, n_inner=None, activation_function="gelu_new",
                 resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1, layer_norm_epsilon=1e-5,
                 bos_token_id=50256, eos_token_id=50256),
    "t5-base": dict(model_type="t5", vocab_size=32128, d_model=768, d_kv=64, d_ff=3072,
                    num_layers=12, num_heads=12, relative_attention_num_buckets=32,
                    relative_attention_max_distance=128, dropout_rate=0.1,
                    layer_norm_epsilon=1e-6, feed_forward_proj="relu"),
}
