"""RoundCheckpointer: the AL state round-trips (dtypes, shapes, RNG states), and checkpoints
written before the arrays moved into the JSON item (a StandardSave "arrays" item) still restore.
The loop's kill/resume and corrupt-checkpoint paths are tests/test_loop.py's."""

import numpy as np
import orbax.checkpoint as ocp
import pytest

from anchoral_jax.run.checkpoint import ARRAYS_KEY, RoundCheckpointer, rng_from_state, rng_state


def _state(step):
  rng = np.random.default_rng(step)
  rng.integers(0, 10, 3)
  arrays = {"labelled_rows": np.arange(7, dtype=np.int64) * 3,
            "labelling_round": np.array([0, 0, 1, 1, 2, 2, 2], np.int32),
            "stop_prev": np.array([[1, 0], [0, 1]], np.int8), "empty": np.zeros(0, np.int64)}
  return arrays, {"step": step, "round": step, "rng": rng_state(rng), "q": 1.5}


def test_state_round_trips_with_dtypes_shapes_and_rng(tmp_path):
  ckpt = RoundCheckpointer(tmp_path / "checkpoints")
  for step in (1, 2):
    ckpt.save(step, *_state(step))
  ckpt.close()
  step, arrays, meta = RoundCheckpointer(tmp_path / "checkpoints").restore_latest()
  want_arrays, want_meta = _state(2)
  assert step == 2 and meta.keys() == want_meta.keys() and ARRAYS_KEY not in meta
  for k, v in want_arrays.items():
    assert arrays[k].dtype == v.dtype and arrays[k].shape == v.shape
    np.testing.assert_array_equal(arrays[k], v)
  want_rng = rng_from_state(want_meta["rng"])
  assert rng_from_state(meta["rng"]).integers(0, 2**62) == want_rng.integers(0, 2**62)
  with pytest.raises(ValueError, match=ARRAYS_KEY):
    RoundCheckpointer(tmp_path / "other").save(1, {}, {ARRAYS_KEY: 1})


def test_checkpoints_of_the_standardsave_layout_still_restore(tmp_path):
  """What every run wrote until 2026-12-06: arrays as a StandardSave item beside "meta"."""
  arrays, meta = _state(3)
  del arrays["empty"]  # StandardSave refused zero-size arrays
  mngr = ocp.CheckpointManager(tmp_path, options=ocp.CheckpointManagerOptions(
      create=True, enable_async_checkpointing=False), item_names=("arrays", "meta"))
  mngr.save(3, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays),
                                       meta=ocp.args.JsonSave(meta)), force=True)
  mngr.wait_until_finished()
  mngr.close()
  ckpt = RoundCheckpointer(tmp_path)
  step, got, got_meta = ckpt.restore_latest()
  assert step == 3 and got_meta == meta
  for k, v in arrays.items():
    np.testing.assert_array_equal(got[k], v)
  ckpt.save(4, got, {**got_meta, "step": 4})  # a resumed run goes on in the new layout
  assert not (tmp_path / "4" / "arrays").exists()
  assert RoundCheckpointer(tmp_path).restore_latest()[0] == 4
