"""The shared on-disk caches under `data.cache_dir`: keys, paths, formats, safe writes, locks.

One module owns all three, so a run, `anchoral embed` and `anchoral index` always agree on
where a file lives and what it holds:

  tokens/<tok>-<fingerprint>-<split>-L<max_length>.npz   a tokenised split (`TokenizedTexts`);
      <tok> = the first 8 hex digits of sha256(the tokenizer's resolved directory).
  embeddings/<key>.npy   emb_NxE: float32, unit-norm, opened with mmap, never copied.
  embeddings/<key>.npz   its manifest: `uid_N` (the pool uids, `task.train` order) and `source`
      ('encoder' or 'import:<path>'); written last, so its presence means the matrix is whole.
  embeddings/<key>.parts/<start>-<stop>.npy   the chunks of an embedding in progress (resume).
  features/<hash>-<fingerprint>-<split>-L<max_length>/<output>.npy (+ DONE)   the frozen
      encoder's outputs (train.trainable="head"); <hash> names the encoder, pooling, dtype, width.
  index/<key>-M<connectivity>[-ef<expansion_add>][-<dtype>].usearch (+ `.meta.json`)   the
      usearch HNSW over pool rows and its settings (ef_construction and storage in the name
      when not 200 / f32); `<path>.partial` (+ `.json`) a resumable build in progress.

<key> = <model slug>-L<max_length>-e<ENCODING_VERSION>-<task fingerprint>. `shared_files`
lists what one run uses; the sweep schedules its runs by it (one builds a cache, the runs that
share it wait until it is whole, `is_built`). Every file is written under a temporary
name and published by os.replace, so readers see the old file or the new one, never half.
Shared builds run under `build_lock`: one process builds, the others wait and load its file.
An unreadable file raises CorruptCacheError naming it and the fix (delete it, run again),
except the caches that are cheap to redo (tokens) or are derived (the cached index), which are
rebuilt with a warning.

Shape letters: N pool size, E embedding dim.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import ml_collections
import numpy as np

from anchoral_jax.data.tokenize import TokenizedTexts, tokenize
from anchoral_jax.errors import CorruptCacheError
from anchoral_jax.fileio import build_lock, publish, tmp_path

if TYPE_CHECKING:  # usearch is imported where an index is read: the loop may never need one
  from usearch.index import Index

log = logging.getLogger(__name__)
T = TypeVar("T")

META_SUFFIX = ".meta.json"  # what usearch does not store itself (build and query settings)
BUILD_HINT = "build it with `anchoral index` (or PoolIndex.build(...).save(path))"


def root(config: ml_collections.ConfigDict) -> Path:
  """`data.cache_dir`: shared by every run of every workdir on this machine."""
  return Path(os.path.expanduser(config.data.cache_dir))


def save_array(path: Path, x: np.ndarray) -> None:
  """np.save, published atomically."""
  publish(path, lambda tmp: np.save(tmp, x))


def corrupt(path: Path, error: Exception, *also: Path) -> CorruptCacheError:
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


# ---------------------------------------------------------------------------------------------
# Tokens.
# ---------------------------------------------------------------------------------------------

def token_path(cache_dir: Path, model_dir: Path, fingerprint: str, split: str,
               max_length: int) -> Path:
  # The tokenizer is identified by its directory (packaged models all live in ".../model").
  tok_id = hashlib.sha256(str(Path(model_dir).resolve()).encode()).hexdigest()[:8]
  return Path(cache_dir) / "tokens" / f"{tok_id}-{fingerprint}-{split}-L{max_length}.npz"


def cached_tokens(cache_dir: Path, model_dir: Path, fingerprint: str, split: str, texts,
                  tokenizer, max_length: int) -> TokenizedTexts:
  """The split tokenised once per (tokenizer, task, split, length): loaded, else computed."""
  path = token_path(cache_dir, model_dir, fingerprint, split, max_length)
  if path.exists():
    try:
      return TokenizedTexts.load(path)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
      # A derived cache: re-tokenising is safe and cheap, so rebuild instead of failing.
      log.warning("Token cache %s is unreadable (%s); tokenising again.", path, e)
  tok = tokenize(tokenizer, texts, max_length, progress=len(texts) > 50_000)
  tok.save(path)
  return tok


# ---------------------------------------------------------------------------------------------
# Embeddings.
# ---------------------------------------------------------------------------------------------

# The encoder passes' numerics, in the keys of what they write (embeddings, their index, frozen
# features): bumped when a code change moves their float32 outputs (padding buckets, pooling
# arithmetic), so a cache from older code is not mixed with new results. Rounding-level changes
# still move an HNSW graph and with it the subpools (a demo over a 2026-12-05 cache printed
# AnchorAL - SEALS +1.12 instead of +1.48). 1: keys without it; 2: `ENCODE_BUCKETS` (2026-12-06).
ENCODING_VERSION = 2


def embedding_key(model: str, fingerprint: str, max_length: int) -> str:
  slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name if os.sep in model else model)
  return f"{slug}-L{max_length}-e{ENCODING_VERSION}-{fingerprint}"


def config_key(config: ml_collections.ConfigDict, task) -> str:
  """The key of the config's retrieval embeddings of `task` (also the index's file stem)."""
  c = config.index
  return embedding_key(c.embed_model, task.fingerprint(), c.embed_max_length)


def embed_dir(config: ml_collections.ConfigDict) -> Path:
  """Where the loop and `anchoral embed` keep pool embeddings."""
  return root(config) / "embeddings"


def embedding_paths(cache_dir: str | os.PathLike, key: str) -> tuple[Path, Path]:
  """(`<key>.npy` the matrix, `<key>.npz` the manifest): the manifest is written last."""
  cache_dir = Path(cache_dir).expanduser()
  return cache_dir / f"{key}.npy", cache_dir / f"{key}.npz"


def load_embeddings(cache_dir: str | os.PathLike, key: str,
                    uid_N: np.ndarray) -> np.ndarray | None:
  """The cached matrix memory-mapped read-only, or None when absent or incomplete.

  Raises when the cache holds another pool (uids differ), so a stale file never goes unnoticed.
  """
  emb_path, manifest = embedding_paths(cache_dir, key)
  if not manifest.exists():
    return None
  try:
    with np.load(manifest) as z:
      uid = z["uid_N"]
      if "emb_NxE" in z.files and not emb_path.exists():  # pre-mmap cache (one .npz): convert
        save_array(emb_path, np.asarray(z["emb_NxE"], np.float32))
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise corrupt(manifest, e, emb_path) from e
  if not np.array_equal(uid, uid_N):
    raise CorruptCacheError(f"Cached embeddings {manifest} do not match the pool's uids; delete "
                            f"{manifest} and {emb_path} and embed again (`anchoral embed`).")
  if not emb_path.exists():
    return None
  try:
    emb = np.load(emb_path, mmap_mode="r")
  except (OSError, ValueError, EOFError) as e:
    raise corrupt(emb_path, e, manifest) from e
  if emb.ndim != 2 or emb.shape[0] != len(uid) or emb.dtype != np.float32:
    raise CorruptCacheError(f"{emb_path} holds a {emb.dtype} {emb.shape} array, expected "
                            f"float32 [{len(uid)}, E]; delete it and {manifest} and embed again.")
  return emb


def embedding_source(cache_dir: str | os.PathLike, key: str) -> str:
  """Where a cached matrix came from ('encoder', 'import:<path>', or '' when unrecorded)."""
  _, manifest = embedding_paths(cache_dir, key)
  try:
    with np.load(manifest) as z:
      return str(z["source"]) if "source" in z.files else ""
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise corrupt(manifest, e) from e


def open_embeddings(cache_dir: str | os.PathLike, key: str, n: int, e: int) -> np.memmap:
  """A writable float32 [n, e] memmap at a temporary name; finish with `commit_embeddings`
  (or `abandon_embeddings`). Filling it chunk by chunk keeps one chunk in memory, whatever n."""
  emb_path, _ = embedding_paths(cache_dir, key)
  emb_path.parent.mkdir(parents=True, exist_ok=True)
  return np.lib.format.open_memmap(tmp_path(emb_path), mode="w+", dtype=np.float32, shape=(n, e))


def commit_embeddings(cache_dir: str | os.PathLike, key: str, emb_NxE: np.memmap,
                      uid_N: np.ndarray, source: str) -> np.ndarray:
  """Atomically publish a matrix filled via `open_embeddings`, then its manifest; returns the
  read-only mmap."""
  emb_path, manifest = embedding_paths(cache_dir, key)
  tmp = Path(emb_NxE.filename)
  emb_NxE.flush()
  del emb_NxE
  os.replace(tmp, emb_path)
  tmp_manifest = tmp_path(manifest)
  np.savez(tmp_manifest, uid_N=np.asarray(uid_N, np.int64), source=np.asarray(source))
  os.replace(tmp_manifest, manifest)
  return np.load(emb_path, mmap_mode="r")


def abandon_embeddings(emb_NxE: np.memmap) -> None:
  """Delete a matrix opened by `open_embeddings` that will not be committed."""
  tmp = emb_NxE.filename
  del emb_NxE
  Path(tmp).unlink(missing_ok=True)


def cached_embeddings(cache_dir: str | os.PathLike, key: str, uid_N: np.ndarray,
                      build: Callable[[], np.ndarray]) -> np.ndarray:
  """The cached matrix, else `build()` run by one process under the build lock."""
  emb = load_embeddings(cache_dir, key, uid_N)
  if emb is not None:
    return emb
  # The others (runs of the same task in other workdirs) wait and load its result: two at once
  # would embed twice and one would delete the parts the other reads.
  with build_lock(Path(cache_dir).expanduser() / key):
    emb = load_embeddings(cache_dir, key, uid_N)
    return build() if emb is None else emb


def parts_dir(cache_dir: str | os.PathLike, key: str) -> Path:
  return Path(cache_dir).expanduser() / f"{key}.parts"


def part_path(parts: Path, start: int, stop: int) -> Path:
  """A chunk is named by its row range, so a resume works even with another chunk size."""
  return parts / f"{start:010d}-{stop:010d}.npy"


def load_part(path: Path, **kw) -> np.ndarray:
  try:
    return np.load(path, **kw)
  except (OSError, ValueError, EOFError) as err:
    raise corrupt(path, err) from err


# ---------------------------------------------------------------------------------------------
# The frozen encoder's outputs (train.trainable="head"; written by training/head.py).
# ---------------------------------------------------------------------------------------------

def feature_dir(cache_dir: str | os.PathLike, encoder_id: str, pooling: str, dtype: str,
                hidden_size: int, fingerprint: str, split: str, max_length: int) -> Path:
  """One split's cached encoder outputs: named by the encoder (`encoder_id`: its resolved
  directory, or "random:<preset>:<seed>"), its pooling, dtype and width, and the text."""
  ident = json.dumps([encoder_id, pooling, dtype, hidden_size, ENCODING_VERSION])
  key = f"{hashlib.sha256(ident.encode()).hexdigest()[:10]}-{fingerprint}-{split}-L{max_length}"
  return Path(cache_dir).expanduser() / "features" / key


# ---------------------------------------------------------------------------------------------
# Index.
# ---------------------------------------------------------------------------------------------

# The index settings of the files named before ef_construction and storage were part of the
# name: a file with these settings keeps its unsuffixed name (not the config's defaults, which
# are config.py's: storage f16 since issue 15, so a default build carries "-f16").
UNSUFFIXED_INDEX = {"expansion_add": 200, "dtype": "f32"}


def index_path(config: ml_collections.ConfigDict, task) -> Path:
  """`index.path` when set, else the cache path keyed by embeddings and the graph's settings:
  M always; ef_construction and the storage unless they are `UNSUFFIXED_INDEX`'s."""
  if config.index.path:
    return Path(os.path.expanduser(config.index.path))
  c = config.index
  name = f"{config_key(config, task)}-M{c.connectivity}"
  if c.expansion_add != UNSUFFIXED_INDEX["expansion_add"]:
    name += f"-ef{c.expansion_add}"
  if c.get("dtype", UNSUFFIXED_INDEX["dtype"]) != UNSUFFIXED_INDEX["dtype"]:  # older configs: f32
    name += f"-{c.dtype}"
  return root(config) / "index" / f"{name}.usearch"


def partial_path(path: str | os.PathLike) -> Path:
  """Where a build of the index at `path` keeps its resumable progress."""
  return Path(str(path) + ".partial")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
  """sha256 of a file, read in 16 MiB pieces (an index of a 1.2M pool is 2.3 GiB)."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      h.update(block)
  return h.hexdigest()


def save_index(index: Index, path: str | os.PathLike, meta: dict) -> None:
  """The usearch file via tmp + os.replace, then the `<path>.meta.json` sidecar."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  index.save(str(tmp))
  digest = file_sha256(tmp)  # which graph: what a run records (run/files.py)
  os.replace(tmp, path)  # atomic: a crash never leaves a half-written index behind
  meta = {**meta, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "sha256": digest}
  text = json.dumps(meta, indent=2)  # written last and atomically: `is_built` reads its presence
  publish(Path(str(path) + META_SUFFIX), lambda tmp: tmp.write_text(text))


def index_meta(path: str | os.PathLike) -> dict:
  """The `<path>.meta.json` sidecar of an index file ({} when absent or unreadable)."""
  try:
    return json.loads(Path(str(path) + META_SUFFIX).read_text())
  except (OSError, ValueError):
    return {}


def load_index(path: str | os.PathLike, view: bool = False) -> tuple[Index, dict]:
  """(usearch index, sidecar settings) of a file saved by `save_index`; `view` memory-maps it."""
  from usearch.index import Index

  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"No retrieval index at {path}: {BUILD_HINT}.")
  fix = f"delete it (and {path.name}{META_SUFFIX}) and {BUILD_HINT}"
  try:
    info = Index.metadata(str(path))
  except (ValueError, RuntimeError, OSError) as e:
    raise CorruptCacheError(f"{path} is not a readable usearch index ({e}): {fix}.") from e
  if not info:
    raise CorruptCacheError(f"{path} is not a usearch index file: {fix}.")
  if "cos" not in str(info["kind_metric"]).lower():
    raise ValueError(f"{path} uses metric {info['kind_metric']}, expected cosine: {BUILD_HINT}.")
  meta_path = Path(str(path) + META_SUFFIX)
  try:
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    index = Index.restore(str(path), view=view)
    if index is None:
      raise ValueError("usearch could not restore it")
  except (ValueError, RuntimeError, OSError) as e:  # truncated file, garbled sidecar
    raise CorruptCacheError(f"The index {path} (or its sidecar {meta_path.name}) is corrupt "
                            f"or truncated ({e}): {fix}.") from e
  return index, meta


def save_partial_index(index: Index, path: str | os.PathLike, settings: dict,
                       rows: int) -> None:
  """The first `rows` rows' index, atomically, then the sidecar that vouches for it."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  sidecar = Path(str(path) + ".json")
  sidecar.unlink(missing_ok=True)  # a file without its sidecar is never trusted
  tmp = path.with_name(path.name + ".tmp")
  index.save(str(tmp))
  os.replace(tmp, path)
  sidecar.write_text(json.dumps({**settings, "rows": rows}))


def restore_partial_index(path: str | os.PathLike,
                          settings: dict) -> tuple[Index | None, int]:
  """(index, rows) of a partial build of the same embeddings and settings, else (None, 0)."""
  from usearch.index import Index

  path, sidecar = Path(path), Path(str(path) + ".json")
  if not (path.is_file() and sidecar.is_file()):
    return None, 0
  try:
    meta = json.loads(sidecar.read_text())
    rows = int(meta.pop("rows"))
    if meta != settings:
      log.warning("Ignoring the partial index at %s: built for other embeddings or settings.",
                  path)
      return None, 0
    index = Index.restore(str(path))
    if index is None or len(index) != rows:
      raise ValueError(f"holds {0 if index is None else len(index)} vectors, sidecar says {rows}")
    index.expansion_add = settings["expansion_add"]  # not stored in the file (restores as 128)
  except (ValueError, KeyError, RuntimeError, OSError) as e:
    log.warning("Ignoring the unreadable partial index at %s (%s); building from the start.",
                path, e)
    return None, 0
  log.info("Resuming the index build at row %d of %d from %s.", rows, settings["n"], path)
  return index, rows


def discard_partial_index(path: str | os.PathLike) -> None:
  Path(path).unlink(missing_ok=True)
  Path(str(path) + ".json").unlink(missing_ok=True)


def load_or_build_index(path: Path, load: Callable[[Path], T],
                        build: Callable[[Path], T]) -> T:
  """`load(path)`, else `build(path)` (which saves it there) run once under the build lock.

  A corrupt file is rebuilt with a warning: the index is derived from the embeddings.
  """
  if path.exists():  # the warm path takes no lock
    try:
      return load(path)
    except CorruptCacheError as e:
      log.warning("Rebuilding the cached index: %s", e)
  with build_lock(path):
    if path.exists():  # another process may have built (or rebuilt) it while we waited
      try:
        return load(path)
      except CorruptCacheError as e:
        log.warning("Rebuilding the cached index: %s", e)
        discard_partial_index(partial_path(path))
        path.unlink(missing_ok=True)
    return build(path)


# ---------------------------------------------------------------------------------------------
# What one run shares with others.
# ---------------------------------------------------------------------------------------------

def is_built(path: str | os.PathLike) -> bool:
  """Whether a `shared_files` path is whole: a features folder once its `DONE` is written, the
  embedding matrix once its manifest is, an index once its `.meta.json` sidecar is (each is
  written last), tokens once the file exists (published by os.replace)."""
  path = Path(path)
  if path.suffix == ".npy":
    return embedding_paths(path.parent, path.stem)[1].exists()
  if path.suffix == ".usearch":
    return path.with_name(path.name + META_SUFFIX).exists()
  if path.suffix == ".npz":
    return path.exists()
  return (path / "DONE").exists()


def shared_files(config: ml_collections.ConfigDict, task, tokenizer_dir: Path, encoder_id: str,
                 model_cfg, retrieval: bool) -> set[Path]:
  """Every shared cache file (or folder) a run of `config` on `task` reads or builds: the pool's
  and test split's tokens; the frozen encoder's outputs (train.trainable="head"); for a retrieval
  filter (`retrieval`) the pool embeddings and the index. The run writes exactly these paths
  (the functions above); `anchoral sweep` lets one run build each and the others wait."""
  c, cache_dir = config, root(config)
  files = {token_path(cache_dir, tokenizer_dir, task.fingerprint(split), split, c.data.max_length)
           for split in ("train", "test")}
  if c.train.trainable == "head":
    m = model_cfg
    files |= {feature_dir(cache_dir, encoder_id, m.pooling, m.dtype, m.hidden_size,
                          task.fingerprint(split), name, c.data.max_length)
              for name, split in (("pool", "train"), ("test", "test"))}
  if retrieval:
    files |= {embedding_paths(embed_dir(config), config_key(config, task))[0],
              index_path(config, task)}
  return files
