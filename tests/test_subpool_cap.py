"""A pool filter whose cap the pool never exceeds (al.subpool_size >= unlabelled pool) filters
nothing: the run says so once at set-up instead of silently being `al.filter=none`."""

import logging

import conftest

from anchoral_jax.al import loop

WARNING = "has no effect: the unlabelled pool"


def _warnings(caplog):
  return [r for r in caplog.records if r.levelno == logging.WARNING and WARNING in r.message]


def test_filter_without_effect_warns_once_at_setup(tmp_path, cache_dir, caplog):
  # 600 pool items - 100 initial labels = 500 <= 500: the whole pool every round.
  c = conftest.tiny_config(cache_dir, 600, 100, **{
      "data.test_size": 0, "al.budget": 150, "al.filter": "randomsubset",
      "al.subpool_size": 500})
  with caplog.at_level(logging.WARNING, logger="anchoral_jax.al.loop"):
    recs = loop.run(c, tmp_path / "run")
  (w,) = _warnings(caplog)
  assert "al.filter=randomsubset" in w.message and "al.subpool_size=500" in w.message
  assert all(r["subpool/size"] == 500 - 25 * r["round"] for r in recs[:-1])


def test_filter_with_effect_does_not_warn(tmp_path, cache_dir, caplog):
  c = conftest.tiny_config(cache_dir, 600, 100, **{
      "data.test_size": 0, "al.budget": 125, "al.filter": "randomsubset",
      "al.subpool_size": 499})
  with caplog.at_level(logging.WARNING, logger="anchoral_jax.al.loop"):
    loop.run(c, tmp_path / "run")
  assert _warnings(caplog) == []


def test_anchoral_without_effect_builds_no_index(tmp_path, cache_dir, caplog):
  c = conftest.tiny_config(cache_dir, 600, 100, **{
      "data.test_size": 0, "al.budget": 125, "al.filter": "anchoral", "al.subpool_size": 500,
      "data.cache_dir": str(tmp_path / "cache")})
  with caplog.at_level(logging.WARNING, logger="anchoral_jax.al.loop"):
    recs = loop.run(c, tmp_path / "run")
  assert len(_warnings(caplog)) == 1
  assert recs[0]["subpool/size"] == 500
  assert not (tmp_path / "cache" / "index").exists()
  assert not (tmp_path / "cache" / "embeddings").exists()
