"""Tokenisation, fixed-shape scoring (no recompiles) and sentence embeddings vs
sentence-transformers (live when installed, else golden values from it)."""

import importlib.util
from pathlib import Path

import conftest
import jax
import numpy as np
import pytest

from anchoral_jax.data.task import Split, TextTask
from anchoral_jax.data.tokenize import TokenizedTexts, bucket_length, load_tokenizer, tokenize
from anchoral_jax.models import bert
from anchoral_jax.retrieval import embed
from anchoral_jax.training import scoring

GOLDEN = Path(__file__).parent / "golden" / "minilm.npz"
SENTENCES = [
    "Hello world, this is a test.",
    "Short one",
    "A much longer sentence about active learning for large and imbalanced pools of text.",
    "Make America Great Again! https://t.co/xyz #Trump2016",
]


@pytest.fixture(scope="module")
def encoder():
  return embed.SentenceEncoder("all-MiniLM-L6-v2", max_length=128)


def test_sentence_embeddings_match_sentence_transformers(encoder, minilm_dir):
  if importlib.util.find_spec("sentence_transformers"):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(minilm_dir), device="cpu").encode(
        SENTENCES, normalize_embeddings=True)
  else:
    ref = np.load(GOLDEN)["st_embedding"]
  ours = encoder.encode(SENTENCES, batch_size=8)
  np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
  cos = (ours * ref).sum(1)
  assert np.all(cos > 1 - 1e-4), cos


def test_tokenized_batches_are_bucketed_and_masked(minilm_dir, tmp_path):
  tok = tokenize(load_tokenizer(minilm_dir), SENTENCES, max_length=16)
  assert tok.lengths_N.max() <= 16
  ids, mask = tok.batch(np.array([1, 2]), buckets=(8, 16, 32), batch_size=4)
  assert ids.shape == (4, 16) and mask[2:].sum() == 0
  assert mask[0].sum() == tok.lengths_N[1] and ids[0, 0] == 101  # [CLS]
  np.testing.assert_array_equal(ids[1, :mask[1].sum()], tok.row(2))
  assert bucket_length(9, (8, 16)) == 16 and bucket_length(100, (8, 16)) == 16
  tok.save(tmp_path / "t.npz")
  tok2 = TokenizedTexts.load(tmp_path / "t.npz")
  np.testing.assert_array_equal(tok2.flat_ids_T, tok.flat_ids_T)


def test_scoring_compiles_once_per_bucket_not_per_pool_size(minilm_dir, monkeypatch):
  cfg = bert.PRESETS["tiny"]
  params = bert.init_params(cfg, jax.random.key(0))
  rng = np.random.default_rng(0)
  texts = [" ".join(["word"] * int(n)) for n in rng.integers(1, 12, size=300)]
  tok = tokenize(load_tokenizer(minilm_dir), texts, max_length=16)
  buckets = (16,)
  # One trace for every pool size (same shapes); a second raises.
  conftest.max_traces(monkeypatch, scoring, "predict", 1,
                     static_argnames=("cfg", "keys", "micro"))
  scoring.forward_rows(params, cfg, tok, np.arange(3), ("logits", "pooled"), 32, buckets)
  outs = {}
  for n in (5, 37, 64, 300):
    outs[n] = scoring.forward_rows(params, cfg, tok, np.arange(n), ("logits", "pooled"), 32,
                                   buckets)
  # Results do not depend on batch composition or padding rows.
  np.testing.assert_allclose(outs[300]["logits"][:37], outs[37]["logits"], atol=1e-5)
  # Unbatched reference for a few rows.
  ids, mask = tok.batch(np.arange(5), buckets)
  ref, _ = bert.BertClassifier(cfg).apply({"params": params}, ids, mask)
  np.testing.assert_allclose(outs[5]["logits"], ref, atol=1e-5)


def test_pool_embeddings_cache_and_resume(encoder, tmp_path):
  texts = tuple(SENTENCES * 5)
  task = TextTask("t", ("a", "b"), (1,), Split(texts, np.arange(20, dtype=np.int32) % 2,
                                                 np.arange(20, dtype=np.int64)),
                  Split(texts[:2], np.zeros(2, np.int32), np.arange(2, dtype=np.int64)))
  emb = embed.pool_embeddings(task, tmp_path, max_length=128, chunk_rows=8, progress=False)
  assert emb.shape == (20, 384)
  np.testing.assert_allclose(emb[:4], encoder.encode(SENTENCES), atol=1e-5)
  files = list(tmp_path.glob("*.npz"))
  assert len(files) == 1 and not list(tmp_path.glob("*.parts"))
  # Cached: a second call reads the file (same values) without recomputing.
  np.testing.assert_array_equal(embed.pool_embeddings(task, tmp_path, max_length=128), emb)
