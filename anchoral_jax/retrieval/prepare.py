"""Data preparation at scale: `anchoral embed` and `anchoral index` (SPEC.md §4, §7).

embed: the pool's retrieval embeddings, into the cache `anchoral run` reads
  (`<data.cache_dir>/embeddings/<key>.npy` + `<key>.npz` manifest, see `cache.py`), either
  computed by our Flax encoder in resumable chunks, or imported from the published parquet
  files (`index.import_path`; the Hugging Face pietrolesci/* embedding configs, columns `uid`
  and `embedding_<model>`), aligned to the task's uids and normalised to unit norm.
index: the usearch HNSW over those embeddings (keys = pool row numbers), streamed from the
  memory-mapped matrix and saved atomically at the path the loop loads (`cache.index_path`).

Memory: the matrix is only ever opened with mmap; at most one chunk (or one parquet batch) of
float32 embeddings is held beyond it, so a 1.2M x 768 pool (3.7 GB) prepares on a 24 GiB
machine, where the index itself (vectors + graph, ~4.5 GB at M=64) is the largest resident
object. `memory_mib()` reports peak RSS so runs and the benchmark can show it.

Shape letters: N pool size, E embedding dim, B rows in one parquet batch.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import ml_collections
import numpy as np

from anchoral_jax import cache, fileio
from anchoral_jax.data import TextTask, load_task
from anchoral_jax.data.tokenize import PACKAGED_TOKENIZERS
from anchoral_jax.errors import CorruptCacheError
from anchoral_jax.retrieval import embed as embedding
from anchoral_jax.retrieval.index import PoolIndex

log = logging.getLogger(__name__)

CHUNK_ROWS = 65536  # rows embedded (and saved) per resumable chunk; ~200 MB at E=768
IMPORT_BATCH_ROWS = 65536  # parquet rows decoded at once when importing


def memory_mib() -> dict[str, float]:
  """Current and peak resident memory of this process (MiB), from /proc/self/status.

  `peak` (VmHWM) counts mapped file pages too; `anon` (RssAnon) is what cannot be paged out.
  """
  out = {}
  try:
    with open("/proc/self/status") as f:
      for line in f:
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
          out[{"VmHWM": "peak", "VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}[name]] = (
              int(value.split()[0]) / 1024)
  except OSError:  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS
    import resource

    out["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
  return out


def _task(config: ml_collections.ConfigDict) -> TextTask:
  return load_task(config.data.name, **config.data.kwargs.to_dict())


def _abspath(path: str | os.PathLike) -> str:
  return os.path.abspath(os.path.expanduser(str(path)))


def _check_model(field: str, name: str, hint: str = "") -> None:
  """Fails at once (validation.ConfigError naming the config `field`) when the model `name` is not
  available locally: otherwise it is found only after the task is loaded and tokenised (or
  the pool embedded), as a bare FileNotFoundError. Resolves directories, reads no file."""
  from anchoral_jax import models
  from anchoral_jax.errors import ConfigError

  try:
    models.resolve_model_dir(name)
  except FileNotFoundError as e:
    raise ConfigError(f"{field}: {e}{hint}") from e


def validate_index(config: ml_collections.ConfigDict) -> None:
  """The `index.*` fields `anchoral embed/index` and the retrieval filters use: checked before
  the pool is embedded (a bad index.dtype failed only after minutes of embedding). Part of
  al/validation.py's `validate` for the retrieval filters."""
  from anchoral_jax.errors import ConfigError
  from anchoral_jax.retrieval.index import STORAGE

  c = config.index
  if c.dtype not in STORAGE:
    raise ConfigError(f"Unknown index.dtype {c.dtype!r}; choose from {list(STORAGE)}.")
  for key in ("embed_max_length", "connectivity", "expansion_add", "ef_search"):
    if c[key] <= 0:
      raise ConfigError(f"index.{key} must be positive (got {c[key]}).")
  if c.build_threads < 0:
    raise ConfigError(f"index.build_threads must be >= 0 (1 = reproducible, 0 = all cores), got "
                      f"{c.build_threads}.")
  if c.embed_batch_size < 0:
    raise ConfigError(f"index.embed_batch_size must be >= 0 (0 = the platform's default), got "
                      f"{c.embed_batch_size}.")


def _check_embed_model(config: ml_collections.ConfigDict) -> None:
  validate_index(config)  # the index.* fields, before the task is loaded and embedded
  if not config.index.import_path:  # imported embeddings need no encoder
    _check_model("index.embed_model", config.index.embed_model)


def check_inputs(config: ml_collections.ConfigDict, retrieval: bool) -> None:
  """What `anchoral run` needs on disk, checked before any expensive step: the classifier's
  model and tokenizer, and when the filter retrieves (`retrieval`, from `filters.needs_index`)
  the retrieval encoder, `index.path` and `index.import_path`."""
  from anchoral_jax.errors import ConfigError

  c = config
  if c.model.tokenizer and c.model.tokenizer not in PACKAGED_TOKENIZERS:
    _check_model("model.tokenizer", c.model.tokenizer)
  if c.model.pretrained or not c.model.tokenizer:  # the weights, or (no tokenizer) the tokenizer
    _check_model("model.name", c.model.name, "" if c.model.pretrained else
                 " (model.pretrained=False: set model.tokenizer to the tokenizer's model)")
  if retrieval:
    _check_embed_model(c)
  if retrieval and c.index.path and not Path(os.path.expanduser(c.index.path)).is_file():
    raise ConfigError(f"index.path {c.index.path} does not exist. Build it with `anchoral index` "
                      "or leave index.path empty to build and cache it automatically.")
  if retrieval and c.index.import_path and not os.path.isfile(_abspath(c.index.import_path)):
    raise ConfigError(f"index.import_path {_abspath(c.index.import_path)} does not exist: point "
                      "it at a parquet file of a pietrolesci/* embedding config (columns uid, "
                      "embedding_<model>).")


# ---------------------------------------------------------------------------------------------
# Embeddings.
# ---------------------------------------------------------------------------------------------

def embeddings(config: ml_collections.ConfigDict, task: TextTask, *,
               chunk_rows: int = CHUNK_ROWS, progress: bool = True,
               encoder_mean: np.ndarray | None = None) -> np.ndarray:
  """The pool's cached embeddings (read-only memmap [N, E]), imported or computed if missing.

  `encoder_mean`: the pool's mean-pooled outputs of `index.embed_model` at
  `index.embed_max_length`, already computed (the frozen-encoder regime's features); when the
  cache is cold they are normalised and cached instead of a second pass over the pool.
  """
  directory, key = cache.embed_dir(config), cache.config_key(config, task)
  cached = cache.load_embeddings(directory, key, task.train.uid)
  if cached is not None:
    source = cache.embedding_source(directory, key)
    wanted = (f"import:{_abspath(config.index.import_path)}" if config.index.import_path
              else "encoder")
    if source and source != wanted:
      log.warning("Using cached embeddings %s from %s although the config asks for %s; "
                  "delete %s.npy/.npz to replace them.", key, source, wanted, directory / key)
    return cached
  if encoder_mean is not None and not config.index.import_path:
    out_NxE = cache.open_embeddings(directory, key, *encoder_mean.shape)
    for s in range(0, len(encoder_mean), chunk_rows):
      out_NxE[s:s + chunk_rows] = embedding.normalise(encoder_mean[s:s + chunk_rows])
    return cache.commit_embeddings(directory, key, out_NxE, task.train.uid, source="encoder")
  if config.index.import_path:
    return import_embeddings(task, config.index.import_path, directory, key,
                             config.index.embed_model,
                             expected_dim=model_dim(config.index.embed_model), progress=progress)
  return embedding.pool_embeddings(task, directory, config.index.embed_model,
                                   config.index.embed_max_length, config.index.embed_batch_size,
                                   chunk_rows=chunk_rows, progress=progress)


def embed(config: ml_collections.ConfigDict, *, chunk_rows: int = CHUNK_ROWS,
          progress: bool = True) -> Path:
  """`anchoral embed`: fill the embeddings cache; returns the matrix path. Re-running resumes."""
  _check_embed_model(config)
  task = _task(config)
  directory, key = cache.embed_dir(config), cache.config_key(config, task)
  path, _ = cache.embedding_paths(directory, key)
  if cache.load_embeddings(directory, key, task.train.uid) is not None:
    embeddings(config, task)  # warns if the cache came from another source than configured
    log.info("Embeddings already cached at %s (%s); nothing to do.", path,
             cache.embedding_source(directory, key) or "unrecorded source")
    return path
  t0 = time.perf_counter()
  emb = embeddings(config, task, chunk_rows=chunk_rows, progress=progress)
  log.info("Embeddings %s of %s at %s (%.1f s, peak RSS %.0f MiB).", emb.shape, task.name, path,
           time.perf_counter() - t0, memory_mib()["peak"])
  return path


def _embedding_column(schema, model: str, path: str) -> str:
  column = f"embedding_{model}"
  available = [n for n in schema.names if n.startswith("embedding_")]
  if "uid" not in schema.names:
    raise ValueError(f"{path} has no `uid` column (columns: {schema.names}); the published "
                     "embedding configs have `uid` and `embedding_<model>`.")
  if column not in schema.names:
    raise ValueError(f"{path} has no column {column!r} (embedding columns: {available}); set "
                     "index.embed_model to the model named in one of them, e.g. "
                     f"--config.index.embed_model={available[0][10:] if available else '...'}")
  return column


def _batch_matrix(col, path: str, column: str, expected_dim: int | None) -> np.ndarray:
  """A pyarrow list/fixed-size-list column of B rows -> float32 [B, E] (dims checked)."""
  import pyarrow as pa
  import pyarrow.compute as pc

  if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
          or pa.types.is_fixed_size_list(col.type)):
    raise ValueError(f"{path}: column {column!r} has type {col.type}, expected a list of floats.")
  if col.null_count:
    raise ValueError(f"{path}: column {column!r} has {col.null_count} null embeddings.")
  lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
  dim = expected_dim if expected_dim is not None else int(lengths[0]) if len(lengths) else 0
  if len(lengths) and (lengths.min() != dim or lengths.max() != dim):
    raise ValueError(f"{path}: column {column!r} holds vectors of {sorted(set(lengths.tolist()))} "
                     f"dims where {dim} was expected (the model's hidden size or the file's "
                     "first vector): the file is inconsistent or belongs to another model.")
  flat = col.flatten().to_numpy(zero_copy_only=False)
  return np.asarray(flat, np.float32).reshape(len(lengths), dim)


def import_embeddings(task: TextTask, path: str | os.PathLike, cache_dir: str | os.PathLike,
                      key: str, model: str, *, expected_dim: int | None = None,
                      batch_rows: int = IMPORT_BATCH_ROWS, progress: bool = True) -> np.ndarray:
  """Precomputed embeddings from a parquet file into the cache, in `task.train` row order.

  Streams `batch_rows` rows at a time (pyarrow `iter_batches`, row group by row group), keeps
  only uids of the pool (the published files also cover rows the pool construction dropped,
  and the test split), normalises to unit norm (cosine index) and writes them straight into
  the memory-mapped cache file. Fails, leaving no cache behind, on a missing `uid` or
  `embedding_<model>` column, inconsistent or unexpected dims, duplicated pool uids, or pool
  uids absent from the file.
  """
  import pyarrow.parquet as pq
  from tqdm.auto import tqdm

  from anchoral_jax.parallel import show_bars

  path = _abspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"index.import_path {path} does not exist: point it at a parquet "
                            "file of a pietrolesci/* embedding config (columns uid, "
                            "embedding_<model>).")
  pf = pq.ParquetFile(path)
  column = _embedding_column(pf.schema_arrow, model, path)
  uid_N = np.asarray(task.train.uid, np.int64)
  n = len(uid_N)
  order = np.argsort(uid_N, kind="stable")
  sorted_uid = uid_N[order]
  count_N = np.zeros(n, np.int32)  # times each pool uid was found in the file
  out_NxE = None
  dim = expected_dim
  zero_rows = 0
  try:
    with tqdm(total=pf.metadata.num_rows, desc="import embeddings", unit="row",
              disable=not show_bars(progress)) as bar:
      for batch in pf.iter_batches(batch_size=batch_rows, columns=["uid", column]):
        uid_B = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
        emb_BxE = _batch_matrix(batch.column(1), path, column, dim)
        dim = emb_BxE.shape[1]
        if out_NxE is None:
          out_NxE = cache.open_embeddings(cache_dir, key, n, dim)
        pos_B = np.minimum(np.searchsorted(sorted_uid, uid_B), n - 1)
        hit_B = sorted_uid[pos_B] == uid_B
        rows = order[pos_B[hit_B]]
        np.add.at(count_N, rows, 1)
        if rows.size:
          zero_rows += int((np.abs(emb_BxE[hit_B]).max(axis=1) == 0).sum())
          out_NxE[rows] = embedding.normalise(emb_BxE[hit_B])
        bar.update(len(uid_B))
    if (count_N > 1).any():
      dup = uid_N[count_N > 1]
      raise ValueError(f"{path}: {len(dup)} pool uids appear more than once (e.g. "
                       f"{dup[:5].tolist()}); deduplicate the file.")
    if (count_N == 0).any():
      missing = uid_N[count_N == 0]
      raise ValueError(
          f"{len(missing)} of {n} pool uids are missing from {path} (e.g. {missing[:5].tolist()}): "
          f"the file must cover the train split of {task.name}; check data.name/data.kwargs match "
          "the dataset the embeddings were computed for.")
    if zero_rows:
      log.warning("%s: %d imported embeddings are all zeros; cosine search cannot rank them.",
                  path, zero_rows)
    return cache.commit_embeddings(cache_dir, key, out_NxE, uid_N, source=f"import:{path}")
  except BaseException:
    if out_NxE is not None:
      cache.abandon_embeddings(out_NxE)
    raise


def model_dim(model: str) -> int | None:
  """Hidden size of a locally available encoder (to check imported dims), else None."""
  import json

  from anchoral_jax.models import resolve_model_dir

  try:
    cfg = json.loads((resolve_model_dir(model) / "config.json").read_text())
  except (FileNotFoundError, ValueError):
    return None
  return int(cfg["hidden_size"]) if "hidden_size" in cfg else None


# ---------------------------------------------------------------------------------------------
# Index.
# ---------------------------------------------------------------------------------------------

def build_index(config: ml_collections.ConfigDict, emb_NxE: np.ndarray, path: str | os.PathLike,
                *, progress: bool = True, batch_size: int = 65536,
                save_every_s: float = 600.0) -> PoolIndex:
  """Build over pool row numbers, streaming `batch_size` rows of the memmap, and save atomically.

  Keys are pool row numbers (the loop's bookkeeping unit); one graph per (task, retrieval
  model, M), so every run and every resume of a task searches the very same graph. Built with
  `index.build_threads=1` (the default) in row order, a rebuild is the same file, byte for
  byte; with more threads, or resumed from a partial build, it is another graph (each run
  records the sha256 of the graph it searched: run/files.py, record_index).
  """
  c = config.index
  partial = cache.partial_path(path)  # resumable: a killed build restarts from here
  idx = PoolIndex.build(emb_NxE, np.arange(len(emb_NxE), dtype=np.int64),
                        connectivity=c.connectivity, expansion_add=c.expansion_add,
                        expansion_search=c.ef_search, batch_size=batch_size, progress=progress,
                        partial_path=partial, save_every_s=save_every_s, dtype=c.dtype,
                        threads=c.build_threads)
  idx.save(path)  # usearch file via tmp + os.replace, then the .meta.json sidecar
  cache.discard_partial_index(partial)
  return idx


def _check_index(idx: PoolIndex, emb_NxE: np.ndarray, path: Path) -> None:
  if len(idx) != emb_NxE.shape[0] or idx.ndim != emb_NxE.shape[1]:
    raise CorruptCacheError(
        f"The index at {path} holds {len(idx)} vectors of dim {idx.ndim} but the pool's "
        f"embeddings are {tuple(emb_NxE.shape)}: delete it and run `anchoral index` again (or "
        "fix index.path).")


def cached_index(config: ml_collections.ConfigDict, task: TextTask,
                 emb_NxE: np.ndarray) -> PoolIndex:
  """The loop's index: load it from `index_path`, or build and cache it there first.

  The cached build runs under an exclusive lock (`<path>.lock`): runs of one task in other
  workdirs wait for it and then load the very same graph, instead of racing (the last rename
  winning) and searching different graphs. A corrupt cached index is rebuilt (it is derived
  from the embeddings); a corrupt `index.path` is the user's file, so that fails with the fix.
  """
  from anchoral_jax.errors import ConfigError

  path = cache.index_path(config, task)
  if config.index.path:
    if not path.exists():
      raise ConfigError(f"index.path {path} does not exist. Build it with `anchoral index` "
                        "or leave index.path empty to build and cache it automatically.")
    idx = PoolIndex.load(path, view=config.index.view)
  else:
    progress = len(emb_NxE) > 50_000
    idx = cache.load_or_build_index(path, lambda p: PoolIndex.load(p, view=config.index.view),
                                    lambda p: build_index(config, emb_NxE, p, progress=progress))
  _check_index(idx, emb_NxE, path)
  idx.ef_search = config.index.ef_search  # query-time beam width (not part of the cache key)
  return idx


def index(config: ml_collections.ConfigDict, *, progress: bool = True) -> Path:
  """`anchoral index`: build the retrieval index where the loop loads it; a no-op if it exists.

  Embeds (or imports) first when the embeddings are not cached yet.
  """
  _check_embed_model(config)
  task = _task(config)
  emb_NxE = embeddings(config, task, progress=progress)
  path = cache.index_path(config, task)
  with fileio.build_lock(path):  # one build per path, even with `anchoral run`s next to it
    if path.exists():
      _check_index(PoolIndex.load(path, view=True), emb_NxE, path)
      log.info("Index already built at %s (%d vectors); nothing to do (delete it to rebuild).",
               path, len(emb_NxE))
      return path
    t0 = time.perf_counter()
    build_index(config, emb_NxE, path, progress=progress)
  log.info("Index of %d x %d built at %s in %.1f s (peak RSS %.0f MiB).", *emb_NxE.shape, path,
           time.perf_counter() - t0, memory_mib()["peak"])
  return path
