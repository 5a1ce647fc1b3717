"""Sentence embeddings for retrieval: mean pooling + L2 norm (sentence-transformers' recipe).

The encoder is our Flax BERT with pretrained weights (default all-MiniLM-L6-v2).
`pool_embeddings` computes a task's pool into the embeddings cache (`cache.py` owns its key,
files and locks), in chunks saved as they finish, so a killed run resumes where it was.

Shape letters: N pool size, E embedding dim.
"""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np

from anchoral_jax import cache, models
from anchoral_jax.data.tokenize import ENCODE_BUCKETS, TokenizedTexts, load_tokenizer, tokenize
from anchoral_jax.training.scoring import forward_rows


def normalise(x_NxE: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(x_NxE, axis=-1, keepdims=True)
  return (x_NxE / np.maximum(norm, 1e-12)).astype(np.float32)


def embed_tokenized(params: models.Params, cfg: models.ModelConfig, tok: TokenizedTexts,
                    rows: np.ndarray | None = None, batch_size: int = 0,
                    buckets=ENCODE_BUCKETS, progress: bool = True) -> np.ndarray:
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
    model_dir = models.resolve_model_dir(model)
    self.tokenizer = load_tokenizer(model_dir)
    self.cfg, self.params = models.load_pretrained(str(model_dir), num_labels=2,
                                                   key=jax.random.key(0), dtype=dtype)

  def tokenize(self, texts, progress: bool = False) -> TokenizedTexts:
    return tokenize(self.tokenizer, texts, self.max_length, progress=progress)

  def encode(self, texts, batch_size: int = 0, progress: bool = False) -> np.ndarray:
    return embed_tokenized(self.params, self.cfg, self.tokenize(texts), batch_size=batch_size,
                           progress=progress)


def pool_embeddings(task, cache_dir: str | os.PathLike, model: str = "all-MiniLM-L6-v2",
                    max_length: int = 256, batch_size: int = 0, chunk_rows: int = 65536,
                    progress: bool = True) -> np.ndarray:
  """Cached unit-norm embeddings of the task's pool, rows aligned with `task.train`.

  Returns a read-only memmap of `<key>.npy` (a 1.2M x 768 pool is 3.7 GB: opened, not copied).
  Embeds in chunks of `chunk_rows`, each saved atomically under `<key>.parts/` and named by its
  row range, so a killed run picks up at the first missing chunk (even with another
  chunk_rows); the chunks are then copied one at a time into the final file. One process
  embeds; runs of the same task in other workdirs wait for it and load its result.
  """
  key = cache.embedding_key(model, task.fingerprint(), max_length)
  return cache.cached_embeddings(cache_dir, key, task.train.uid, lambda: _embed_parts(
      task, cache_dir, key, model, max_length, batch_size, chunk_rows, progress))


def _embed_parts(task, cache_dir: str | os.PathLike, key: str, model: str, max_length: int,
                 batch_size: int, chunk_rows: int, progress: bool) -> np.ndarray:
  from tqdm.auto import tqdm

  from anchoral_jax.parallel import show_bars

  parts = cache.parts_dir(cache_dir, key)
  parts.mkdir(parents=True, exist_ok=True)
  n = len(task.train)
  ranges = [(s, min(n, s + chunk_rows)) for s in range(0, n, chunk_rows)]
  enc = None
  with tqdm(total=n, desc="embed pool", unit="row", disable=not show_bars(progress)) as bar:
    for s, e in ranges:
      part = cache.part_path(parts, s, e)
      if not part.exists():
        enc = enc or SentenceEncoder(model, max_length)
        cache.save_array(part, enc.encode(task.train.text[s:e], batch_size=batch_size,
                                          progress=progress))
      bar.update(e - s)
  if ranges:
    dim = cache.load_part(cache.part_path(parts, *ranges[0]), mmap_mode="r").shape[1]
  else:
    dim = (enc or SentenceEncoder(model, max_length)).cfg.hidden_size
  out_NxE = cache.open_embeddings(cache_dir, key, n, dim)
  for s, e in ranges:
    out_NxE[s:e] = cache.load_part(cache.part_path(parts, s, e))
  emb_NxE = cache.commit_embeddings(cache_dir, key, out_NxE, task.train.uid, source="encoder")
  shutil.rmtree(parts, ignore_errors=True)
  return emb_NxE
