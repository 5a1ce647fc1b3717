"""The library entry point (anchoral_jax.Selector / select): the same picks as the simulation's
query step, state that resumes, and clear errors."""

import conftest
import ml_collections
import numpy as np
import pytest

import anchoral_jax
from anchoral_jax.al import loop
from anchoral_jax.al import state as run_state


def _clusters(n=3000, dim=16, seed=0):
  """Unit embeddings in 30 clusters; cluster 0 is the minority class (~3%)."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(30, dim))
  cluster = rng.integers(0, 30, n)
  emb = centres[cluster] + 0.3 * rng.normal(size=(n, dim))
  emb /= np.linalg.norm(emb, axis=1, keepdims=True)
  return emb.astype(np.float32), (cluster == 0).astype(np.int64)


def test_selector_picks_what_the_run_picks(cache_dir):
  """Given a run's settings, its embeddings/index and its model outputs, a Selector proposes
  the rows `loop.query` proposes, round after round (generators and SEALS' union carry over)."""
  c = conftest.tiny_config(cache_dir, 1500, 200, **{
      "data.test_size": 0, "al.budget": 150, "al.subpool_size": 300,
      "train.trainable": "head"})
  setup = run_state.Setup(c)
  labels = setup.task.train.labels
  for filter_, strategy in [("anchoral", "entropy"), ("seals", "badge"),
                            ("randomsubset", "margin"), ("none", "random")]:
    cc = ml_collections.ConfigDict(c.to_dict())
    cc.al.filter, cc.al.strategy = filter_, strategy
    state = run_state.ALState.initial(cc, setup)
    sel = anchoral_jax.Selector(
        filter=filter_, strategy=strategy, embeddings=setup.emb_NxE, index=setup.index,
        pool_size=len(labels), minority=tuple(setup.task.minority_classes),
        subpool_size=cc.al.subpool_size, num_anchors=cc.anchoral.num_anchors,
        num_neighbours=cc.anchoral.num_neighbours, seals_neighbours=cc.seals.num_neighbours,
        strategy_seed=cc.al.strategy_seed, subset_seed=cc.randomsubset.seed,
        anchor_seed=cc.anchoral.seed)
    for _ in range(2):
      fitted = setup.regime.fit(setup.init_params, state.labelled_rows,
                                labels[state.labelled_rows])
      _, subpool, want = loop.query(cc, setup, state, fitted.params, {}, {})
      got = sel.select(lambda rows, keys, p=fitted.params: setup.regime.outputs(
          p, "pool", rows, keys), state.labelled_rows, labels[state.labelled_rows], 25)
      np.testing.assert_array_equal(got.rows, want, err_msg=f"{filter_}/{strategy}")
      np.testing.assert_array_equal(got.subpool, subpool)
      state.commit(want)


def test_every_filter_x_strategy_x_anchor_strategy_picks_a_valid_batch():
  """The whole grid on the one query step (`al.selection.select`, under the Selector) with
  synthetic embeddings and outputs: distinct unlabelled picks from the subpool (unless topped
  up), and the rows the model was asked to score counted as `rows_scored`. The same step
  inside runs, with a real model: tests/test_loop.py (every filter, every strategy)."""
  from anchoral_jax.al import filters, strategies

  emb, y = _clusters(n=1500)
  rng = np.random.default_rng(2)
  w_logits, w_pooled = rng.normal(size=(16, 2)), rng.normal(size=(16, 8))
  asked: list[int] = []

  def outputs(rows, keys):
    asked.append(len(rows))
    out = {"logits": emb[rows] @ w_logits, "pooled": emb[rows] @ w_pooled}
    return {k: out["pooled" if k == "cls" else k] for k in keys}

  labelled = np.concatenate([np.flatnonzero(y == 1)[:5], np.flatnonzero(y == 0)[:95]])
  index = anchoral_jax.Selector(embeddings=emb, filter="seals", index_threads=1).index
  grid = [(f, s, "kmeans_pp") for f in filters.FILTERS for s in strategies.STRATEGY_OUTPUTS]
  grid += [("anchoral", "entropy", a) for a in filters.ANCHOR_STRATEGIES if a != "kmeans_pp"]
  for filter_, strategy, anchors in grid:
    sel = anchoral_jax.Selector(filter=filter_, strategy=strategy, embeddings=emb, index=index,
                                minority=(1,), subpool_size=400, anchor_strategy=anchors)
    asked.clear()
    pick = sel.select(outputs, labelled, y[labelled], query_size=25)
    where = (filter_, strategy, anchors)
    assert len(set(pick.rows.tolist())) == len(pick.rows) == 25, where
    assert not set(pick.rows.tolist()) & set(labelled.tolist()), where
    if not pick.info.get("topped_up"):
      assert set(pick.rows.tolist()) <= set(pick.subpool.tolist()), where
    scored = (0 if strategy == "random" else len(pick.subpool)) + (
        len(labelled) if anchors == "entropy" and filter_ == "anchoral" else 0)
    assert pick.info.get("rows_scored", 0) == scored == sum(asked), where


def test_anchoral_around_a_numpy_model_finds_the_minority_cluster():
  emb, y = _clusters()
  labelled = np.concatenate([np.flatnonzero(y == 1)[:3], np.flatnonzero(y == 0)[:47]])
  w = np.random.default_rng(1).normal(size=(16, 2))  # an untrained "model": logits = emb @ w

  def logits(rows):
    return emb[rows] @ w

  sel = anchoral_jax.Selector(embeddings=emb, minority=(1,), subpool_size=200,
                              num_anchors=3, num_neighbours=100, index_threads=1)
  pick = sel.select(logits, labelled, y[labelled], query_size=25)
  assert len(set(pick.rows.tolist())) == 25 and not set(pick.rows) & set(labelled.tolist())
  assert set(pick.rows.tolist()) <= set(pick.subpool.tolist()) and len(pick.subpool) == 200
  # AnchorAL's subpool is drawn around the 3 minority anchors: far above the pool's share.
  assert y[pick.subpool].mean() > 3 * y.mean()
  assert pick.timers["search"] >= 0 and len(pick.info["anchor_rows"]) == 6

  # A session resumes from state_dict: the next picks equal the uninterrupted ones.
  saved = sel.state_dict()
  labelled2 = np.concatenate([labelled, pick.rows])
  nxt = sel.select(logits, labelled2, y[labelled2])
  other = anchoral_jax.Selector(embeddings=emb, minority=(1,), subpool_size=200,
                                num_anchors=3, num_neighbours=100, index=sel.index)
  other.load_state_dict(saved)
  np.testing.assert_array_equal(other.select(logits, labelled2, y[labelled2]).rows, nxt.rows)

  # A skipped row is never proposed again.
  skip = pick.rows[:5]
  again = anchoral_jax.Selector(filter="none", pool_size=len(y)).select(
      logits, labelled, y[labelled], 25, exclude=skip)
  assert not set(again.rows.tolist()) & set(skip.tolist())


def test_select_errors_are_clear():
  emb, y = _clusters(300)
  with pytest.raises(ValueError, match="Unknown strategy 'entropyy'"):
    anchoral_jax.Selector(strategy="entropyy", embeddings=emb)
  with pytest.raises(ValueError, match="Unknown filter 'anchorall'"):
    anchoral_jax.Selector(filter="anchorall", embeddings=emb)
  with pytest.raises(ValueError, match="needs the pool's `embeddings`"):
    anchoral_jax.Selector(filter="seals", pool_size=300)
  sel = anchoral_jax.Selector(filter="none", strategy="badge", pool_size=300)
  with pytest.raises(ValueError, match=r"needs outputs \['logits', 'pooled'\]"):
    sel.select(lambda rows: emb[rows, :2], [0, 1], [0, 1])
  with pytest.raises(ValueError, match="2 labelled rows but 1 labels"):
    sel.select(lambda rows: emb[rows, :2], [0, 1], [0])
  out = anchoral_jax.select(lambda rows, keys: {"logits": emb[rows, :2], "pooled": emb[rows]},
                            [0, 1], [0, 1], filter="none", strategy="badge", pool_size=300,
                            query_size=5)
  assert len(out.rows) == 5
