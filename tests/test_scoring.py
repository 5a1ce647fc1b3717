"""`scoring.forward_rows` with one batch in flight equals the one-batch-at-a-time loop, across
length buckets, padded last batches and any row order."""

import dataclasses

import jax
import numpy as np

from anchoral_jax import parallel
from anchoral_jax.data.tokenize import TokenizedTexts
from anchoral_jax.models import bert
from anchoral_jax.training import scoring
from anchoral_jax.training.scoring import forward_rows, predict

BUCKETS = (8, 16, 32)


def _tokens(n, rng):
  lengths = rng.integers(3, 30, size=n)  # spans all three buckets
  flat = rng.integers(1000, 1100, size=lengths.sum()).astype(np.int32)
  offsets = np.zeros(n + 1, np.int64)
  np.cumsum(lengths, out=offsets[1:])
  return TokenizedTexts(flat, offsets)


def _reference(params, cfg, tok, rows, keys, batch_size):
  """The synchronous loop: fetch each batch's outputs before gathering the next batch."""
  out = {}
  order = np.argsort(tok.lengths_N[rows], kind="stable")
  for s in range(0, len(order), batch_size):
    chunk = order[s:s + batch_size]
    ids, mask = tok.batch(rows[chunk], BUCKETS, batch_size)
    got = parallel.to_host(predict(params, ids, mask, cfg=cfg, keys=keys))
    for k, v in got.items():
      out.setdefault(k, np.empty((len(rows),) + v.shape[1:], np.float32))[chunk] = v[:len(chunk)]
  return out


def test_forward_rows_in_flight_equals_the_synchronous_loop():
  rng = np.random.default_rng(0)
  tok = _tokens(70, rng)
  cfg = dataclasses.replace(bert.PRESETS["tiny"], vocab_size=1100, max_position_embeddings=32)
  params = bert.init_params(cfg, jax.random.key(0))
  keys = ("logits", "pooled")
  rows = rng.permutation(70)[:61].astype(np.int64)  # unsorted, padded last batch
  got = forward_rows(params, cfg, tok, rows, keys, batch_size=8, buckets=BUCKETS)
  ref = _reference(params, cfg, tok, rows, keys, 8)
  assert got.keys() == ref.keys()
  for k in keys:
    assert got[k].shape[0] == len(rows)
    np.testing.assert_array_equal(got[k], ref[k])
  empty = forward_rows(params, cfg, tok, np.zeros(0, np.int64), keys, 8, BUCKETS)
  assert all(v.shape == (0,) for v in empty.values())


def test_batch_size_zero_is_the_backend_default(monkeypatch):
  """`train.eval_batch_size = 0` (the config default) scores in the backend's measured batch:
  32 rows on CPU, 256 on a backend without a measurement; a positive size is used as given."""
  assert scoring.eval_batch_size(48) == 48
  assert scoring.eval_batch_size(0) == scoring.EVAL_BATCH["cpu"] == 32  # the tests run on CPU
  monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
  assert scoring.eval_batch_size(0) == scoring.EVAL_BATCH_OTHER == 256
  monkeypatch.undo()
  # forward_rows with 0 batches as with 32 (one compiled shape per bucket: same outputs).
  rng = np.random.default_rng(1)
  tok = _tokens(40, rng)
  cfg = dataclasses.replace(bert.PRESETS["tiny"], vocab_size=1100, max_position_embeddings=32)
  params = bert.init_params(cfg, jax.random.key(0))
  rows = np.arange(40)
  np.testing.assert_array_equal(forward_rows(params, cfg, tok, rows, buckets=BUCKETS)["logits"],
                                _reference(params, cfg, tok, rows, ("logits",), 32)["logits"])


def test_cpu_micro_batches_give_the_whole_batchs_outputs(monkeypatch):
  """On one CPU device a batch above 32 rows runs as a loop over 32-row slices in its program
  (`scoring.micro_batch`); each row's outputs are those of the whole-batch forward (float32
  rounding of a different matmul blocking at most), and only CPU with one device does it."""
  assert scoring.micro_batch(256) == scoring.micro_batch(64) == 32  # the tests: one CPU device
  assert scoring.micro_batch(32) == scoring.micro_batch(48) == 0  # one slice, or not a multiple
  rng = np.random.default_rng(2)
  tok = _tokens(100, rng)
  cfg = dataclasses.replace(bert.PRESETS["tiny"], vocab_size=1100, max_position_embeddings=32)
  params = bert.init_params(cfg, jax.random.key(0))
  keys = ("logits", "pooled", "cls")
  ids, mask = tok.batch(np.arange(96), BUCKETS, 96)
  whole = parallel.to_host(predict(params, ids, mask, cfg=cfg, keys=keys))
  sliced = parallel.to_host(predict(params, ids, mask, cfg=cfg, keys=keys, micro=32))
  for k in keys:
    np.testing.assert_allclose(sliced[k], whole[k], rtol=1e-5, atol=1e-6, err_msg=k)
  got = forward_rows(params, cfg, tok, np.arange(100), keys, batch_size=64, buckets=BUCKETS)
  ref = _reference(params, cfg, tok, np.arange(100), keys, 64)  # whole 64-row batches
  for k in keys:
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
  monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
  assert scoring.micro_batch(256) == 0
