"""The AL task: a pool (train split) and a test split of labelled texts, addressed by uid.

Every dataset builder returns a `TextTask`. Row order inside a split is arbitrary; the uid is
the stable identity used by the labelled set, the embeddings cache and the index.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: texts, integer labels in [0, C) and unique int64 uids (same length)."""

  text: tuple[str, ...]
  labels: np.ndarray  # int32 [N]
  uid: np.ndarray  # int64 [N], unique within the split

  def __post_init__(self):
    n = len(self.text)
    if self.labels.shape != (n,) or self.uid.shape != (n,):
      raise ValueError(
          f"Split arrays disagree: {n} texts, labels {self.labels.shape}, uid {self.uid.shape}.")
    if len(np.unique(self.uid)) != n:
      raise ValueError("Split uids must be unique.")

  def __len__(self) -> int:
    return len(self.text)

  def subset(self, idx: np.ndarray) -> Split:
    idx = np.asarray(idx)
    return Split(tuple(self.text[i] for i in idx), self.labels[idx], self.uid[idx])


@dataclasses.dataclass(frozen=True)
class TextTask:
  """An imbalanced AL task. `minority_classes` drive the initial set and the headline metrics."""

  name: str
  class_names: tuple[str, ...]
  minority_classes: tuple[int, ...]
  train: Split
  test: Split
  provenance: str = ""

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def fingerprint(self, split: str = "train") -> str:
    """Content hash of one split's texts and uids (default the pool): keys the token,
    embedding and index caches, so two tasks share a cache only when that split is equal.
    Computed once per split (a 1.2M pool takes a second to hash; a run asks several times)."""
    memo = self.__dict__.setdefault("_fingerprints", {})  # not a field: equality ignores it
    if split not in memo:
      memo[split] = self._hash(split)
    return memo[split]

  def _hash(self, split: str) -> str:
    part = getattr(self, split)
    h = hashlib.sha256()
    h.update(self.name.encode())
    h.update(part.uid.tobytes())
    for t in part.text:
      h.update(t.encode("utf-8", "replace"))
      h.update(b"\0")
    return h.hexdigest()[:16]

  def describe(self) -> str:
    def counts(s: Split) -> str:
      c = np.bincount(s.labels, minlength=self.num_classes)
      return ", ".join(f"{n}={k}" for n, k in zip(self.class_names, c, strict=True))

    return (f"{self.name}: pool {len(self.train)} ({counts(self.train)}); "
            f"test {len(self.test)} ({counts(self.test)}); minority {self.minority_classes}")
