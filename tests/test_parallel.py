"""Fast paths: data-parallel sharding (every model family), no recompiles across AL rounds,
bf16 compute.

Sharding is checked on 4 fake CPU devices (`--xla_force_host_platform_device_count=4`), which
must be set before jax is imported, hence one subprocess per device count running the same
script; the two write their outputs to npz files that this process compares.
"""

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import conftest
import jax
import numpy as np
import pytest

from anchoral_jax.data.tokenize import TokenizedTexts
from anchoral_jax.models import bert
from anchoral_jax.training import train

# Scoring and a short training run, computed identically whatever the device count.
_SCRIPT = textwrap.dedent("""
    import sys

    import chex
    import jax
    import numpy as np

    from anchoral_jax import models, parallel
    from anchoral_jax.training import scoring
    from anchoral_jax.training import many, train
    from anchoral_jax.models import bert

    FAMILY_PRESETS = ("albert-tiny", "gpt2-tiny", "deberta-tiny", "t5-tiny")
    from anchoral_jax.data.tokenize import TokenizedTexts

    want, out_path = int(sys.argv[1]), sys.argv[2]
    assert jax.device_count() == want, (jax.devices(), want)
    # One trace: a state whose sharding changed after step 1 would trace twice, and raise here.
    unchecked = train.train_step
    train.train_step = jax.jit(chex.assert_max_traces(train.train_step.__wrapped__, n=1),
                               static_argnames=("cfg", "opt"), donate_argnums=(0,))
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, 150)  # several length buckets, a padded last batch
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tok = TokenizedTexts(rng.integers(1, 30000, lengths.sum()).astype(np.int32), offsets, 0)
    labels = (rng.random(150) < 0.3).astype(np.int32)
    cfg = bert.PRESETS["tiny"]
    params = bert.init_params(cfg, jax.random.key(0))
    scored = scoring.forward_rows(params, cfg, tok, np.arange(150), ("logits", "pooled"),
                                  batch_size=32)
    tc = train.TrainConfig(learning_rate=1e-3, epochs=2, min_steps=1, model_selection="last")
    res = train.fit(params, cfg, tc, tok, np.arange(70), labels[:70], num_classes=2,
                    minority_classes=(1,), data_seed=0, dropout_key=jax.random.key(1))
    train.train_step = unchecked  # fit_many traces it once per (runs, length) shape
    trained = scoring.forward_rows(res.params, cfg, tok, np.arange(150), ("logits",),
                                   batch_size=32)
    leaves = jax.tree_util.tree_leaves_with_path(res.params)
    # fit_many of 2 runs: on 4 devices a 2 x 2 mesh (`parallel.seed_mesh`: each run's state on
    # 2 devices, its batch split over them), its steps of one run masked (the runs' batches
    # fall in different length buckets: 16 and 64); on one device the runs are gathered.
    runs = [np.flatnonzero(lengths <= 16)[:30], np.flatnonzero(lengths > 32)[:30]]
    two = many.fit_many([params, params], cfg, tc, [tok, tok], runs, [labels[r] for r in runs], num_classes=2, minority_classes=(1,),
                        data_seeds=[0, 1], dropout_keys=[jax.random.key(1), jax.random.key(2)])
    many_logits = {f"many{s}/logits": scoring.forward_rows(r.params, cfg, tok, np.arange(150),
                                                           ("logits",), batch_size=32)["logits"]
                   for s, r in enumerate(two)}
    fam = {}
    for name in FAMILY_PRESETS:  # every other model family: sharded scoring (train.fit is
      # family-agnostic and checked sharded with BERT above)
      fcfg = models.preset(name, num_labels=2)
      fparams = models.init_params(fcfg, jax.random.key(0))
      ftok = TokenizedTexts(tok.flat_ids_T % 1000, tok.offsets, 0)  # within every tiny vocab
      fam[name + "/logits"] = scoring.forward_rows(fparams, fcfg, ftok, np.arange(150),
                                                   ("logits",), batch_size=32)["logits"]
    np.savez(out_path, logits=scored["logits"], pooled=scored["pooled"],
             trained_logits=trained["logits"], steps=res.steps,
             losses=np.array([h["train/loss"] for h in res.history]),
             devices=parallel.num_devices(), many_steps=[r.steps for r in two],
             **many_logits,
             **{"param" + jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves}, **fam)
""")


def _run(devices: int, tmp_path: Path) -> dict[str, np.ndarray]:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  out = tmp_path / f"out{devices}.npz"
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(devices), str(out)], env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-4000:]
  with np.load(out) as z:
    return dict(z)


@pytest.mark.slow
def test_sharded_equals_unsharded(tmp_path):
  one, four = _run(1, tmp_path), _run(4, tmp_path)
  assert int(one["devices"]) == 1 and int(four["devices"]) == 4
  assert int(one["steps"]) == int(four["steps"]) == 6
  assert {k.split("/")[0] for k in one if "/" in k} == {
      "albert-tiny", "gpt2-tiny", "deberta-tiny", "t5-tiny",  # every family, sharded
      "many0", "many1"}  # fit_many's runs split over the devices
  assert list(one["many_steps"]) == list(four["many_steps"]) == [2, 2]
  assert one.keys() == four.keys()
  for k in sorted(set(one) - {"devices"}):
    np.testing.assert_allclose(four[k], one[k], atol=1e-5, rtol=1e-5, err_msg=k)


def _tokens(n: int, lo: int, hi: int) -> TokenizedTexts:
  rng = np.random.default_rng(n)
  lengths = rng.integers(lo, hi + 1, n)
  offsets = np.concatenate([[0], np.cumsum(lengths)])
  return TokenizedTexts(rng.integers(1, 30000, lengths.sum()).astype(np.int32), offsets, 0)


def test_fit_does_not_recompile_across_rounds(monkeypatch):
  """Labelled sets of 100, 125, 150 rows (one bucket: lengths 17..32) -> one trace in all.

  Catches a fresh optimiser per round (a static arg hashed by identity) and ragged batches.
  """
  cfg = dataclasses.replace(bert.PRESETS["tiny"], num_labels=3)  # a cache entry of our own
  params = bert.init_params(cfg, jax.random.key(0))
  tok = _tokens(150, 17, 32)
  labels = np.arange(150, dtype=np.int32) % 3
  conftest.max_traces(monkeypatch, train, "train_step", 1, static_argnames=("cfg", "opt"),
                      donate_argnums=(0,))  # a second trace raises
  for n in (100, 125, 150):
    tc = train.TrainConfig(epochs=1, min_steps=1)  # equal configs built anew, as each run does
    train.fit(params, cfg, tc, tok, np.arange(n), labels[:n], num_classes=3,
              minority_classes=(1,), data_seed=0, dropout_key=jax.random.key(1))


def test_bf16_compute_keeps_float32_params():
  cfg = dataclasses.replace(bert.PRESETS["tiny"], dtype="bfloat16")
  params = bert.init_params(cfg, jax.random.key(0))
  tok = _tokens(64, 3, 16)
  labels = (np.arange(64) % 2).astype(np.int32)
  tc = train.TrainConfig(learning_rate=1e-3, epochs=1, min_steps=4, model_selection="last")
  res = train.fit(params, cfg, tc, tok, np.arange(64), labels, num_classes=2,
                  minority_classes=(1,), data_seed=0, dropout_key=jax.random.key(1))
  assert res.steps == 4
  assert {x.dtype for x in jax.tree.leaves(res.params)} == {np.dtype(np.float32)}
  assert all(np.isfinite(h["train/loss"]) for h in res.history)
  logits, out = bert.BertClassifier(cfg).apply({"params": res.params}, tok.batch(np.arange(4))[0],
                                               tok.batch(np.arange(4))[1])
  assert logits.dtype == np.float32 and np.isfinite(np.asarray(logits)).all()
  # The encoder really computed in bf16: its hidden states carry bf16 rounding.
  hidden = np.asarray(out["hidden"])
  assert np.array_equal(hidden, np.asarray(hidden.astype(jax.numpy.bfloat16), np.float32))
