"""Sentence embeddings for retrieval: mean pooling + L2 norm (sentence-transformers' recipe).

The encoder is our Flax BERT with pretrained weights (default all-MiniLM-L6-v2). Results are
cached on disk keyed by model name + task fingerprint + max length, as `<key>.npy` (`emb_NxE`,
float32, unit-norm, opened with mmap so million-row pools are never copied into memory) and a
`<key>.npz` manifest holding `uid_N` (the pool uids, same order as the task's train split) and
`source`; the manifest is written last, so its presence means the matrix is complete. Big pools
are embedded in chunks written to `<key>.parts/` so a killed run resumes where it was.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path

import jax
import numpy as np

from anchoral_jax import models
from anchoral_jax.scoring import forward_rows
from anchoral_jax.tokenize import DEFAULT_BUCKETS, TokenizedTexts, load_tokenizer, tokenize
from anchoral_jax.workdir import CorruptCacheError, build_lock


def normalise(x_NxE: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(x_NxE, axis=-1, keepdims=True)
  return (x_NxE / np.maximum(norm, 1e-12)).astype(np.float32)


def embed_tokenized(params: models.Params, cfg: models.ModelConfig, tok: TokenizedTexts,
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
    model_dir = models.resolve_model_dir(model)
    self.tokenizer = load_tokenizer(model_dir)
    self.cfg, self.params = models.load_pretrained(str(model_dir), num_labels=2,
                                                   key=jax.random.key(0), dtype=dtype)

  def tokenize(self, texts, progress: bool = False) -> TokenizedTexts:
    return tokenize(self.tokenizer, texts, self.max_length, progress=progress)

  def encode(self, texts, batch_size: int = 128, progress: bool = False) -> np.ndarray:
    return embed_tokenized(self.params, self.cfg, self.tokenize(texts), batch_size=batch_size,
                           progress=progress)


def cache_key(model: str, fingerprint: str, max_length: int) -> str:
  slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name if os.sep in model else model)
  return f"{slug}-L{max_length}-{fingerprint}"


def cache_paths(cache_dir: str | os.PathLike, key: str) -> tuple[Path, Path]:
  """(`<key>.npy` the matrix, `<key>.npz` the manifest): the manifest is written last."""
  cache_dir = Path(cache_dir).expanduser()
  return cache_dir / f"{key}.npy", cache_dir / f"{key}.npz"


def load_cached(cache_dir: str | os.PathLike, key: str, uid_N: np.ndarray) -> np.ndarray | None:
  """The cached matrix memory-mapped read-only, or None when absent or incomplete.

  Raises when the cache holds another pool (uids differ), so a stale file never goes unnoticed.
  """
  emb_path, manifest = cache_paths(cache_dir, key)
  if not manifest.exists():
    return None
  try:
    with np.load(manifest) as z:
      uid = z["uid_N"]
      if "emb_NxE" in z.files and not emb_path.exists():
        _write_matrix(emb_path, z["emb_NxE"])  # pre-mmap cache (one .npz): convert once
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise _corrupt(manifest, e, emb_path) from e
  if not np.array_equal(uid, uid_N):
    raise CorruptCacheError(f"Cached embeddings {manifest} do not match the pool's uids; delete "
                            f"{manifest} and {emb_path} and embed again (`anchoral embed`).")
  if not emb_path.exists():
    return None
  try:
    emb = np.load(emb_path, mmap_mode="r")
  except (OSError, ValueError, EOFError) as e:
    raise _corrupt(emb_path, e, manifest) from e
  if emb.ndim != 2 or emb.shape[0] != len(uid) or emb.dtype != np.float32:
    raise CorruptCacheError(f"{emb_path} holds a {emb.dtype} {emb.shape} array, expected "
                            f"float32 [{len(uid)}, E]; delete it and {manifest} and embed again.")
  return emb


def _corrupt(path: Path, error: Exception, *also: Path) -> CorruptCacheError:
  """One message naming the unreadable cache file and the fix: delete it and recompute.

  Never passes numpy's own advice on: for a garbled file it suggests `allow_pickle=`, which
  would unpickle whatever the file holds (unsafe, and no fix for a truncated write).
  """
  reason = ("not a numpy file" if "pickle" in str(error)
            else f"{type(error).__name__}: {error}")
  files = " and ".join(str(f) for f in (path, *also))
  return CorruptCacheError(f"The cache file {path} is corrupt or truncated ({reason}). It is "
                           f"only a cache: delete {files} and run the command again to "
                           "recompute it (`anchoral embed`).")


def manifest_source(cache_dir: str | os.PathLike, key: str) -> str:
  """Where a cached matrix came from ('encoder', 'import:<path>', or '' when unrecorded)."""
  _, manifest = cache_paths(cache_dir, key)
  try:
    with np.load(manifest) as z:
      return str(z["source"]) if "source" in z.files else ""
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise _corrupt(manifest, e) from e


def _write_matrix(path: Path, emb_NxE: np.ndarray) -> None:
  tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")  # per process: no races
  np.save(tmp, np.asarray(emb_NxE, np.float32))
  os.replace(tmp, path)


def open_matrix(cache_dir: str | os.PathLike, key: str, n: int, e: int) -> np.memmap:
  """A writable float32 [n, e] memmap at a temporary name; finish with `commit_matrix`.

  Filling the cache through a memmap keeps at most the caller's chunk in memory, whatever n.
  """
  emb_path, _ = cache_paths(cache_dir, key)
  emb_path.parent.mkdir(parents=True, exist_ok=True)
  tmp = emb_path.with_name(f"{emb_path.stem}.{os.getpid()}.tmp.npy")
  return np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, e))


def commit_matrix(cache_dir: str | os.PathLike, key: str, emb_NxE: np.memmap,
                  uid_N: np.ndarray, source: str) -> np.ndarray:
  """Atomically publish a matrix filled via `open_matrix`, then its manifest; returns the mmap."""
  emb_path, manifest = cache_paths(cache_dir, key)
  tmp = Path(emb_NxE.filename)
  emb_NxE.flush()
  del emb_NxE
  os.replace(tmp, emb_path)
  tmp_manifest = manifest.with_name(f"{manifest.stem}.{os.getpid()}.tmp.npz")
  np.savez(tmp_manifest, uid_N=np.asarray(uid_N, np.int64), source=np.asarray(source))
  os.replace(tmp_manifest, manifest)
  return np.load(emb_path, mmap_mode="r")


def pool_embeddings(task, cache_dir: str | os.PathLike, model: str = "all-MiniLM-L6-v2",
                    max_length: int = 256, batch_size: int = 128, chunk_rows: int = 65536,
                    progress: bool = True) -> np.ndarray:
  """Cached unit-norm embeddings of the task's pool, rows aligned with `task.train`.

  Returns a read-only memmap of `<key>.npy` (a 1.2M x 768 pool is 3.7 GB: opened, not copied).
  Embeds in chunks of `chunk_rows`, each saved atomically under `<key>.parts/` and named by its
  row range, so a killed run picks up at the first missing chunk (even with another
  chunk_rows); the chunks are then copied one at a time into the final file.
  """
  cache_dir = Path(cache_dir).expanduser()
  key = cache_key(model, task.fingerprint(), max_length)
  uid_N = task.train.uid
  emb = load_cached(cache_dir, key, uid_N)
  if emb is not None:
    return emb
  # One process embeds, the others (runs of the same task in other workdirs) wait and load its
  # result: two at once would embed twice and one would delete the parts the other reads.
  with build_lock(cache_dir / key):
    emb = load_cached(cache_dir, key, uid_N)
    if emb is None:
      emb = _embed_parts(task, cache_dir, key, model, max_length, batch_size, chunk_rows,
                         progress)
  return emb


def _embed_parts(task, cache_dir: Path, key: str, model: str, max_length: int, batch_size: int,
                 chunk_rows: int, progress: bool) -> np.ndarray:
  from tqdm.auto import tqdm

  uid_N = task.train.uid
  parts = cache_dir / f"{key}.parts"
  parts.mkdir(parents=True, exist_ok=True)
  n = len(task.train)
  ranges = [(s, min(n, s + chunk_rows)) for s in range(0, n, chunk_rows)]
  enc = None
  with tqdm(total=n, desc="embed pool", unit="row", disable=not progress) as bar:
    for s, e in ranges:
      part = parts / f"{s:010d}-{e:010d}.npy"
      if not part.exists():
        enc = enc or SentenceEncoder(model, max_length)
        out = enc.encode(task.train.text[s:e], batch_size=batch_size, progress=progress)
        tmp = part.with_name(f"{part.stem}.{os.getpid()}.tmp.npy")  # per process: no races
        np.save(tmp, out)
        os.replace(tmp, part)
      bar.update(e - s)
  def load_part(s: int, e: int, **kw) -> np.ndarray:
    part = parts / f"{s:010d}-{e:010d}.npy"
    try:
      return np.load(part, **kw)
    except (OSError, ValueError, EOFError) as err:
      raise _corrupt(part, err) from err

  if ranges:
    dim = load_part(*ranges[0], mmap_mode="r").shape[1]
  else:
    dim = (enc or SentenceEncoder(model, max_length)).cfg.hidden_size
  out_NxE = open_matrix(cache_dir, key, n, dim)
  for s, e in ranges:
    out_NxE[s:e] = load_part(s, e)
  emb = commit_matrix(cache_dir, key, out_NxE, uid_N, source="encoder")
  shutil.rmtree(parts, ignore_errors=True)
  return emb
