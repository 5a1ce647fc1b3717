"""Sentence embeddings for retrieval: mean pooling + L2 norm (sentence-transformers' recipe).

The encoder is our Flax BERT with pretrained weights (default all-MiniLM-L6-v2). Results are
cached on disk keyed by model name + task fingerprint + max length, as `<key>.npz` holding
`emb_NxE` (float32, unit-norm) and `uid_N` (the pool uids, same order as the task's train split).
Big pools are embedded in chunks written to `<key>.parts/` so a killed run resumes where it was.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import jax
import numpy as np

from anchoral_jax.models import bert
from anchoral_jax.scoring import forward_rows
from anchoral_jax.tokenize import DEFAULT_BUCKETS, TokenizedTexts, load_tokenizer, tokenize


def normalise(x_NxE: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(x_NxE, axis=-1, keepdims=True)
  return (x_NxE / np.maximum(norm, 1e-12)).astype(np.float32)


def embed_tokenized(params: bert.Params, cfg: bert.BertConfig, tok: TokenizedTexts,
                    rows: np.ndarray | None = None, batch_size: int = 128,
                    buckets=DEFAULT_BUCKETS, progress: bool = True) -> np.ndarray:
  """Unit-norm mean-pooled last-layer embeddings of `rows` (default: all) -> emb_NxH."""
  rows = np.arange(len(tok)) if rows is None else rows
  out = forward_rows(params, cfg, tok, rows, keys=("mean",), batch_size=batch_size,
                     buckets=buckets, progress=progress, desc="embed")
  return normalise(out["mean"])


class SentenceEncoder:
  """A pretrained encoder + its tokenizer, ready to embed text (no head is used)."""

  def __init__(self, model: str = "all-MiniLM-L6-v2", max_length: int = 256,
               dtype: str = "float32"):
    self.model = model
    self.max_length = max_length
    model_dir = bert.resolve_model_dir(model)
    self.tokenizer = load_tokenizer(model_dir)
    self.cfg, self.params = bert.load_pretrained(str(model_dir), num_labels=2,
                                                 key=jax.random.key(0), dtype=dtype)

  def tokenize(self, texts, progress: bool = False) -> TokenizedTexts:
    return tokenize(self.tokenizer, texts, self.max_length, progress=progress)

  def encode(self, texts, batch_size: int = 128, progress: bool = False) -> np.ndarray:
    return embed_tokenized(self.params, self.cfg, self.tokenize(texts), batch_size=batch_size,
                           progress=progress)


def cache_key(model: str, fingerprint: str, max_length: int) -> str:
  slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name if os.sep in model else model)
  return f"{slug}-L{max_length}-{fingerprint}"


def pool_embeddings(task, cache_dir: str | os.PathLike, model: str = "all-MiniLM-L6-v2",
                    max_length: int = 256, batch_size: int = 128, chunk_rows: int = 65536,
                    progress: bool = True) -> np.ndarray:
  """Cached unit-norm embeddings of the task's pool, rows aligned with `task.train`.

  Embeds in chunks of `chunk_rows`, each saved atomically, so a killed run picks up at the
  first missing chunk; the chunks are merged into one file at the end.
  """
  cache_dir = Path(cache_dir).expanduser()
  key = cache_key(model, task.fingerprint(), max_length)
  final = cache_dir / f"{key}.npz"
  if final.exists():
    with np.load(final) as z:
      emb, uid = z["emb_NxE"], z["uid_N"]
    if not np.array_equal(uid, task.train.uid):
      raise ValueError(f"Cached embeddings {final} do not match the pool's uids; delete the file.")
    return emb
  enc = SentenceEncoder(model, max_length)
  parts = cache_dir / f"{key}.parts"
  parts.mkdir(parents=True, exist_ok=True)
  n = len(task.train)
  chunks = []
  for c, s in enumerate(range(0, n, chunk_rows)):
    part = parts / f"{c:05d}.npy"
    if not part.exists():
      texts = task.train.text[s:s + chunk_rows]
      emb = enc.encode(texts, batch_size=batch_size, progress=progress)
      tmp = parts / f"{c:05d}.tmp.npy"
      np.save(tmp, emb)
      os.replace(tmp, part)
    chunks.append(np.load(part))
  emb = np.concatenate(chunks) if chunks else np.zeros((0, enc.cfg.hidden_size), np.float32)
  tmp = cache_dir / f"{key}.tmp.npz"
  np.savez(tmp, emb_NxE=emb, uid_N=task.train.uid)
  os.replace(tmp, final)
  shutil.rmtree(parts, ignore_errors=True)
  return emb
