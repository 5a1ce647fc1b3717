"""Compilation kept apart: the compile clock, the persistent cache switch, and a tiny run whose
round-0 query time (cold: every program compiles) stays close to round 1's (warm)."""

from pathlib import Path

import conftest
import jax
import jax.numpy as jnp
import pytest

from anchoral_jax import parallel
from anchoral_jax.al import loop
from anchoral_jax.tracking.jsonl import load_metrics


def test_compile_clock_counts_nested_spans_once():
  clock = parallel.CompileClock([(0.0, 1.0), (0.2, 0.5), (0.9, 1.5), (3.0, 4.0)])
  assert clock.seconds == pytest.approx(2.5)  # [0, 1.5] and [3, 4]
  assert parallel.CompileClock().seconds == 0.0


def test_compile_clock_sees_a_compile_and_not_a_cache_hit():
  @jax.jit
  def inner(x):
    return jnp.sin(x) * 2

  @jax.jit
  def f(x):  # inner's trace nests in f's: counted once
    return inner(x) @ x.T + 1

  x = jnp.ones((8, 8))
  with parallel.compile_clock() as cold:
    f(x).block_until_ready()
  with parallel.compile_clock() as warm:
    f(x).block_until_ready()
  assert cold.seconds > 0 and cold.spans
  assert warm.seconds == 0 and not warm.spans


def test_compilation_cache_is_on_by_default_and_can_be_turned_off(tmp_path, monkeypatch):
  updates = {}
  monkeypatch.setattr(jax.config, "update", lambda k, v: updates.__setitem__(k, v))
  monkeypatch.delenv(parallel.COMPILATION_CACHE_ENV, raising=False)
  path = parallel.enable_compilation_cache(tmp_path / "cache")
  assert path == tmp_path / "cache" / "xla" and path.is_dir()
  assert updates["jax_compilation_cache_dir"] == str(path)
  assert updates["jax_persistent_cache_min_compile_time_secs"] < 1.0  # JAX's default skips CPU
  updates.clear()
  for off in ("0", "false", "off"):
    monkeypatch.setenv(parallel.COMPILATION_CACHE_ENV, off)
    assert parallel.enable_compilation_cache(tmp_path / "other") is None
  assert not updates and not (tmp_path / "other").exists()


def test_query_time_excludes_compilation(tmp_path, cache_dir):
  """Round 0 compiles every scoring program (3.8 s against 0.07 s for round 1 when compilation
  counted as query time); with compilation in time/compile the two are alike. The bound is
  loose (5x, plus slack for a loaded machine): it catches compilation, not noise."""
  c = conftest.tiny_config(cache_dir, 1500, 200, **{"data.test_size": 0, "al.budget": 175,
                                                     "al.subpool_size": 400})
  jax.clear_caches()  # earlier tests in this process may have compiled the same programs
  loop.run(c, tmp_path)
  recs, _ = load_metrics(Path(tmp_path) / "metrics.jsonl")
  assert [r["round"] for r in recs] == [0, 1, 2, 3]
  assert all("time/compile" in r for r in recs)
  assert recs[0]["time/compile"] > 0
  q0, q1 = recs[0]["time/query"], recs[1]["time/query"]
  assert 0 < q0 <= 5 * q1 + 0.5, (q0, q1)
  assert recs[-1]["time/cumulative_query"] == pytest.approx(sum(r["time/query"] for r in recs[:-1]))
