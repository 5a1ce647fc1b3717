"""`anchoral embed` / `anchoral index` (prepare.py): resumable chunked embedding, import of
published parquet embeddings (alignment, normalisation, clear errors), idempotent index build
that `loop.Setup` then loads from the same files."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from anchoral_jax import cache
from anchoral_jax.al import state as run_state
from anchoral_jax.data import load_task
from anchoral_jax.retrieval import embed, prepare
from anchoral_jax.retrieval.index import PoolIndex

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import conftest  # noqa: E402

POOL, TEST = 300, 50


def tiny_config(cache_dir, **index_overrides):
  return conftest.tiny_config(cache_dir, POOL, TEST,
                              **{f"index.{k}": v for k, v in index_overrides.items()})


@pytest.fixture(scope="module")
def task():
  return load_task("tweets_iphone", pool_size=POOL, test_size=TEST)


def write_parquet(path, uids, emb_NxE, fixed=False, row_group_size=64, model="synthetic"):
  """A file shaped like a pietrolesci/* embedding config: `uid` + `embedding_<model>`."""
  typ = pa.list_(pa.float32(), emb_NxE.shape[1]) if fixed else pa.list_(pa.float32())
  table = pa.table({"uid": pa.array(uids, pa.int64()),
                    f"embedding_{model}": pa.array(list(emb_NxE), typ)})
  pq.write_table(table, path, row_group_size=row_group_size)


def synthetic_file(tmp_path, task, dim=8, extra=40, drop=0, seed=0, **kw):
  """The pool's uids plus `extra` foreign ones, shuffled, raw (not unit-norm) vectors."""
  rng = np.random.default_rng(seed)
  uids = np.concatenate([task.train.uid[drop:], task.train.uid.max() + 1 + np.arange(extra)])
  uids = rng.permutation(uids)
  raw = (3.0 * rng.standard_normal((len(uids), dim))).astype(np.float32)
  path = tmp_path / "emb.parquet"
  write_parquet(path, uids, raw, **kw)
  return path, dict(zip(uids.tolist(), raw, strict=True))


def test_embed_resumes_after_a_failure_and_is_then_a_no_op(tmp_path, task, monkeypatch):
  c = tiny_config(tmp_path, embed_max_length=16)  # one length bucket: one compile, fast
  encode = embed.SentenceEncoder.encode
  calls, encoders = [], []

  def flaky(self, texts, **kw):
    calls.append(len(texts))
    encoders.append(self)
    if len(calls) == 2:
      raise RuntimeError("simulated crash in the second chunk")
    return encode(self, texts, **kw)

  monkeypatch.setattr(embed.SentenceEncoder, "encode", flaky)
  with pytest.raises(RuntimeError, match="simulated"):
    prepare.embed(c, chunk_rows=128, progress=False)
  parts = list((tmp_path / "embeddings").glob("*.parts/*.npy"))
  assert [p.name for p in parts] == ["0000000000-0000000128.npy"]
  first = np.load(parts[0])

  path = prepare.embed(c, chunk_rows=128, progress=False)
  assert calls == [128, 128, 128, 44]  # the finished chunk was not embedded again
  emb = np.load(path, mmap_mode="r")
  assert emb.shape == (POOL, 384) and not list((tmp_path / "embeddings").glob("*.parts"))
  np.testing.assert_array_equal(emb[:128], first)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
  rows = [0, 150, 299]
  ref = encode(encoders[-1], [task.train.text[i] for i in rows])
  np.testing.assert_allclose(emb[rows], ref, atol=1e-5)

  def no_encoder(*a, **kw):
    raise AssertionError("a cached pool must not load the encoder")

  monkeypatch.setattr(embed, "SentenceEncoder", no_encoder)
  assert prepare.embed(c) == path
  got = prepare.embeddings(c, task)
  assert isinstance(got, np.memmap) and Path(got.filename) == path.resolve()


@pytest.mark.parametrize("fixed", [False, True])
def test_import_aligns_to_pool_uids_and_normalises(tmp_path, task, fixed):
  path, raw = synthetic_file(tmp_path, task, fixed=fixed)
  c = tiny_config(tmp_path / "cache", import_path=str(path), embed_model="synthetic")
  out = prepare.embed(c, progress=False)
  emb = np.load(out, mmap_mode="r")
  want = np.stack([raw[u] for u in task.train.uid.tolist()])
  want /= np.linalg.norm(want, axis=1, keepdims=True)
  np.testing.assert_allclose(emb, want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
  assert cache.embedding_source(out.parent, out.stem) == f"import:{path}"


def test_import_streams_in_small_batches(tmp_path, task):
  path, raw = synthetic_file(tmp_path, task, row_group_size=1000)
  key = "k"
  emb = prepare.import_embeddings(task, path, tmp_path, key, "synthetic", batch_rows=37,
                                  progress=False)
  i = 123
  np.testing.assert_allclose(emb[i], raw[int(task.train.uid[i])] /
                             np.linalg.norm(raw[int(task.train.uid[i])]), atol=1e-6)


def _no_cache_left(directory):
  return not directory.exists() or not [p for p in directory.iterdir()]


def test_import_errors_are_clear_and_leave_no_cache(tmp_path, task):
  cache = tmp_path / "cache"
  path, _ = synthetic_file(tmp_path, task, drop=3)
  c = tiny_config(cache, import_path=str(path), embed_model="synthetic")
  with pytest.raises(ValueError, match="3 of 300 pool uids are missing"):
    prepare.embed(c, progress=False)
  assert _no_cache_left(cache / "embeddings")

  c.index.embed_model = "all-mpnet-base-v2"  # no such column in the file
  with pytest.raises(ValueError, match=r"embedding_synthetic"):
    prepare.embed(c, progress=False)

  path, _ = synthetic_file(tmp_path, task, dim=8, model="all-MiniLM-L6-v2")
  c.index.embed_model = "all-MiniLM-L6-v2"  # packaged locally: 384-d, the file has 8
  with pytest.raises(ValueError, match="8.*dims where 384 was expected"):
    prepare.embed(c, progress=False)
  assert _no_cache_left(cache / "embeddings")

  uids = task.train.uid
  ragged = pa.table({"uid": pa.array(uids, pa.int64()), "embedding_synthetic": pa.array(
      [[1.0] * (4 + (i == 5)) for i in range(len(uids))], pa.list_(pa.float32()))})
  pq.write_table(ragged, path)
  c.index.embed_model = "synthetic"
  with pytest.raises(ValueError, match=r"\[4, 5\] dims"):
    prepare.embed(c, progress=False)
  assert _no_cache_left(cache / "embeddings")


def test_cache_keys_and_paths_are_stable(tmp_path):
  """Existing caches must keep being found: the keys and the layout are pinned here."""
  c = tiny_config(tmp_path / "c", embed_model="all-MiniLM-L6-v2", embed_max_length=128,
                  connectivity=16)

  class Task:
    def fingerprint(self, split="train"):
      return f"fp{split}"

  assert cache.embedding_key("all-MiniLM-L6-v2", "fpx", 256) == "all-MiniLM-L6-v2-L256-e2-fpx"
  assert cache.embedding_key("/some/dir/my model", "fpx", 64) == "my_model-L64-e2-fpx"
  assert cache.embedding_paths(tmp_path, "k") == (tmp_path / "k.npy", tmp_path / "k.npz")
  assert cache.embed_dir(c) == tmp_path / "c" / "embeddings"
  assert cache.index_path(c, Task()) == (
      tmp_path / "c" / "index" / "all-MiniLM-L6-v2-L128-e2-fptrain-M16-f16.usearch")
  c.index.dtype = "f32"  # the storage of every index built before index.dtype: its old name
  assert cache.index_path(c, Task()) == (
      tmp_path / "c" / "index" / "all-MiniLM-L6-v2-L128-e2-fptrain-M16.usearch")
  model_dir = tmp_path / "model"
  tok = cache.token_path(tmp_path, model_dir, "fp", "test", 16)
  digest = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:8]
  assert tok == tmp_path / "tokens" / f"{digest}-fp-test-L16.npz"
  ident = hashlib.sha256(b'["random:tiny:0", "mean", "float32", 32, 2]').hexdigest()[:10]
  assert cache.feature_dir(tmp_path, "random:tiny:0", "mean", "float32", 32, "fp", "pool", 16) == (
      tmp_path / "features" / f"{ident}-fp-pool-L16")


def test_legacy_npz_cache_is_converted_to_mmap(tmp_path):
  emb = embed.normalise(np.random.default_rng(0).standard_normal((5, 3)))
  uid = np.arange(5, dtype=np.int64)
  np.savez(tmp_path / "k.npz", emb_NxE=emb, uid_N=uid)
  got = cache.load_embeddings(tmp_path, "k", uid)
  assert isinstance(got, np.memmap)
  np.testing.assert_array_equal(got, emb)


def test_index_is_built_once_and_setup_loads_the_same_files(tmp_path, task, monkeypatch):
  path, _ = synthetic_file(tmp_path, task, dim=16)
  c = tiny_config(tmp_path / "cache", import_path=str(path), embed_model="synthetic")
  c.index.connectivity = 8
  c.index.expansion_add = 32
  built = prepare.index(c, progress=False)  # embeds (imports) first: nothing was cached
  assert built == cache.index_path(c, task) and built.parent.name == "index"
  assert built.name.endswith("-M8-ef32-f16.usearch") and Path(str(built) + ".meta.json").exists()
  assert not list(built.parent.glob("*.tmp"))
  stamp = built.stat().st_mtime_ns

  def no_build(*a, **kw):
    raise AssertionError("the cached index must be reused, not rebuilt")

  monkeypatch.setattr(PoolIndex, "build", no_build)
  assert prepare.index(c, progress=False) == built and built.stat().st_mtime_ns == stamp

  c.al.filter = "anchoral"
  c.al.subpool_size = 100  # < the pool: AnchorAL filters, so Setup needs the index
  setup = run_state.Setup(c)
  assert isinstance(setup.emb_NxE, np.memmap)
  assert Path(setup.emb_NxE.filename).parent == (tmp_path / "cache" / "embeddings").resolve()
  assert setup.index.path == str(built) and len(setup.index) == POOL
  assert setup.index.ef_search == c.index.ef_search
  q = setup.view(None).emb_lookup(np.array([7, 11]))
  uids, _ = setup.index.search(q, 1, exact=True)
  np.testing.assert_array_equal(uids[:, 0], [7, 11])  # keys are pool row numbers

  proc = subprocess.run(
      [sys.executable, "-m", "anchoral_jax.cli", "index", "--config",
       str(ROOT / "configs/default.py") + ":tiny", f"--config.data.cache_dir={tmp_path / 'cache'}",
       f"--config.data.kwargs.pool_size={POOL}", f"--config.data.kwargs.test_size={TEST}",
       f"--config.index.import_path={path}", "--config.index.embed_model=synthetic",
       "--config.index.connectivity=8", "--config.index.expansion_add=32"],
      capture_output=True, text=True, cwd=ROOT, timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "nothing to do" in proc.stdout + proc.stderr
  assert built.stat().st_mtime_ns == stamp


def test_build_index_checkpoints_partials_and_removes_them(tmp_path, monkeypatch):
  """`anchoral index` saves resumable partials while building and leaves none behind."""
  saved = []
  real = cache.save_partial_index
  monkeypatch.setattr(cache, "save_partial_index",
                      lambda idx, path, settings, rows: (saved.append(rows),
                                                         real(idx, path, settings, rows)))
  emb = np.random.default_rng(0).standard_normal((400, 8)).astype(np.float32)
  c = tiny_config(tmp_path / "cache", connectivity=8)
  out = tmp_path / "index" / "x.usearch"
  idx = prepare.build_index(c, emb, out, progress=False, batch_size=100, save_every_s=0.0)
  assert saved == [100, 200, 300] and len(idx) == 400 and out.is_file()
  assert sorted(p.name for p in out.parent.iterdir()) == ["x.usearch", "x.usearch.meta.json"]


def test_mismatched_index_fails_with_the_fix(tmp_path, task):
  path, _ = synthetic_file(tmp_path, task, dim=16)
  c = tiny_config(tmp_path / "cache", import_path=str(path), embed_model="synthetic")
  c.index.connectivity = 8
  out = cache.index_path(c, task)
  emb = np.random.default_rng(0).standard_normal((10, 16)).astype(np.float32)
  PoolIndex.build(emb, np.arange(10), connectivity=8, progress=False).save(out)
  with pytest.raises(ValueError, match="delete it and run `anchoral index`"):
    prepare.index(c, progress=False)
