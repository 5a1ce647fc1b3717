"""Host-side classification metrics and learning-curve summaries (numpy only).

Evaluation runs once per AL round on a few thousand test rows, so plain numpy on the host is
fast enough and keeps the numbers independent of the jitted model code. Conventions follow
scikit-learn with `labels=range(C)` and `zero_division=0`: a class absent from the labels and/or
the predictions gets precision/recall/F1 = 0 instead of NaN, and macro averages run over all C
classes.

Shape letters: N = examples, C = classes, B = calibration bins, R = AL rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

ECE_BINS = 10  # equal-width confidence bins (SPEC.md §6)


def class_counts(labels: np.ndarray | Sequence[int], num_classes: int) -> np.ndarray:
  """Counts per class (int64 [C]), zeros for absent classes; rejects out-of-range labels."""
  labels_N = _check_labels(labels, num_classes)
  return np.bincount(labels_N, minlength=num_classes).astype(np.int64)


def confusion_matrix(
    labels: np.ndarray | Sequence[int], preds: np.ndarray | Sequence[int], num_classes: int
) -> np.ndarray:
  """int64 [C, C] with rows = true class, columns = predicted class."""
  labels_N = _check_labels(labels, num_classes)
  preds_N = _check_labels(preds, num_classes)
  if labels_N.shape != preds_N.shape:
    raise ValueError(f"labels {labels_N.shape} and preds {preds_N.shape} differ in shape.")
  flat = labels_N * num_classes + preds_N
  return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def classification_metrics(
    labels: np.ndarray | Sequence[int],
    logits: np.ndarray,
    num_classes: int,
    minority_classes: Sequence[int] = (),
    prefix: str = "",
) -> dict[str, float]:
  """All per-round metrics from raw logits [N, C] (softmax taken here, loss is exact).

  Keys (each with `prefix` prepended): `accuracy`, `f1_micro`, `f1_macro`,
  `precision_macro`, `recall_macro`, `{f1,precision,recall,support}/class_{c}`,
  `majority_f1` (mean F1 over the non-minority classes: class 0 in binary tasks, "others" in
  amazoncat-multi), `minority_f1` (mean F1 over `minority_classes`), `ece`, `loss`. Either
  group's key is omitted when the group is empty (no minority classes / every class minority).
  """
  logits_NxC = np.asarray(logits, dtype=np.float64)
  _check_scores(logits_NxC, num_classes)
  shifted_NxC = logits_NxC - logits_NxC.max(axis=1, keepdims=True)
  logp_NxC = shifted_NxC - np.log(np.exp(shifted_NxC).sum(axis=1, keepdims=True))
  return _metrics(labels, logp_NxC, np.exp(logp_NxC), num_classes, minority_classes, prefix)


def classification_metrics_from_probs(
    labels: np.ndarray | Sequence[int],
    probs: np.ndarray,
    num_classes: int,
    minority_classes: Sequence[int] = (),
    prefix: str = "",
) -> dict[str, float]:
  """Same as `classification_metrics` for already-normalised probabilities [N, C].

  The loss clips probabilities at 1e-12 so a confident mistake costs ~27.6 nats, not inf.
  """
  probs_NxC = np.asarray(probs, dtype=np.float64)
  _check_scores(probs_NxC, num_classes)
  if np.any(probs_NxC < 0) or not np.allclose(probs_NxC.sum(axis=1), 1.0, atol=1e-4):
    raise ValueError(
        "probs rows must be non-negative and sum to 1; pass raw logits to "
        "classification_metrics instead.")
  logp_NxC = np.log(np.clip(probs_NxC, 1e-12, 1.0))
  return _metrics(labels, logp_NxC, probs_NxC, num_classes, minority_classes, prefix)


def expected_calibration_error(
    labels: np.ndarray | Sequence[int], probs: np.ndarray, num_bins: int = ECE_BINS
) -> float:
  """Top-label ECE: sum_b |B_b|/N * |accuracy_b - mean confidence_b|, equal-width bins.

  Bins are [k/B, (k+1)/B) with confidence 1.0 in the last bin (torchmetrics' convention, which
  the official code's metric library uses).
  """
  probs_NxC = np.asarray(probs, dtype=np.float64)
  labels_N = np.asarray(labels)
  conf_N = probs_NxC.max(axis=1)
  correct_N = (probs_NxC.argmax(axis=1) == labels_N).astype(np.float64)
  bin_N = np.clip(np.floor(conf_N * num_bins).astype(np.int64), 0, num_bins - 1)
  conf_sum_B = np.bincount(bin_N, weights=conf_N, minlength=num_bins)
  correct_sum_B = np.bincount(bin_N, weights=correct_N, minlength=num_bins)
  # |sum(acc) - sum(conf)| / N == |B|/N * |mean acc - mean conf|; empty bins contribute 0.
  return float(np.abs(correct_sum_B - conf_sum_B).sum() / len(labels_N))


def learning_curve_auc(values_per_round: Sequence[float] | np.ndarray) -> float:
  """Area under a per-round curve: trapezoid rule, unit spacing (the paper's AUC).

  With F1 in [0, 1] and R rounds the maximum is R - 1 (e.g. 196 for the paper's 197 rounds).
  """
  values_R = np.asarray(values_per_round, dtype=np.float64)
  if values_R.ndim != 1:
    raise ValueError(f"Expected a 1-d sequence of per-round values, got shape {values_R.shape}.")
  return float(np.trapezoid(values_R, dx=1.0))


def summarise_curves(
    rounds: Sequence[Mapping[str, float]],
    minority_key: str = "test/minority_f1",
    majority_key: str = "test/majority_f1",
    query_time_key: str = "time/query",
) -> dict[str, float]:
  """Paper headline numbers from per-round metric dicts in round order.

  Returns `auc/minority_f1` and `auc/majority_f1` (AUC over the rounds that carry the key;
  omitted when none does) and `query_time_min`: the cumulative query time (`query_time_key`,
  seconds per round; rounds without it, e.g. the last, count as 0) in minutes.
  """
  out: dict[str, float] = {}
  for name, key in (("auc/minority_f1", minority_key), ("auc/majority_f1", majority_key)):
    values = [float(r[key]) for r in rounds if key in r]
    if values:
      out[name] = learning_curve_auc(values)
  out["query_time_min"] = sum(float(r.get(query_time_key, 0.0)) for r in rounds) / 60.0
  return out


def _metrics(
    labels: np.ndarray | Sequence[int],
    logp_NxC: np.ndarray,
    probs_NxC: np.ndarray,
    num_classes: int,
    minority_classes: Sequence[int],
    prefix: str,
) -> dict[str, float]:
  labels_N = _check_labels(labels, num_classes)
  if labels_N.shape[0] != logp_NxC.shape[0]:
    raise ValueError(f"{labels_N.shape[0]} labels but {logp_NxC.shape[0]} score rows.")
  if labels_N.shape[0] == 0:
    raise ValueError("Cannot compute metrics on an empty set.")
  minority = sorted({int(c) for c in minority_classes})
  if any(c < 0 or c >= num_classes for c in minority):
    raise ValueError(f"minority_classes {minority} must lie in [0, {num_classes}).")

  preds_N = probs_NxC.argmax(axis=1)
  cm_CxC = confusion_matrix(labels_N, preds_N, num_classes)
  tp_C = np.diag(cm_CxC).astype(np.float64)
  pred_C = cm_CxC.sum(axis=0).astype(np.float64)  # tp + fp
  true_C = cm_CxC.sum(axis=1).astype(np.float64)  # tp + fn (support)
  precision_C = _safe_div(tp_C, pred_C)
  recall_C = _safe_div(tp_C, true_C)
  f1_C = _safe_div(2 * tp_C, pred_C + true_C)  # == 2PR/(P+R); 0 when tp == 0
  n = float(labels_N.shape[0])

  # The paper's "Majority" is class 0 in binary tasks and "others" in amazoncat-multi: both
  # are "the classes that are not minority"; without minority classes this is macro F1.
  majority = [c for c in range(num_classes) if c not in minority]

  m: dict[str, float] = {
      "accuracy": float(tp_C.sum() / n),
      # Single-label: total fp == total fn == N - tp, so micro F1 == accuracy.
      "f1_micro": float(_safe_div(2 * tp_C.sum(), pred_C.sum() + true_C.sum())),
      "f1_macro": float(f1_C.mean()),
      "precision_macro": float(precision_C.mean()),
      "recall_macro": float(recall_C.mean()),
      "ece": expected_calibration_error(labels_N, probs_NxC),
      "loss": float(-logp_NxC[np.arange(labels_N.shape[0]), labels_N].mean()),
  }
  if majority:
    m["majority_f1"] = float(f1_C[majority].mean())
  if minority:
    m["minority_f1"] = float(f1_C[minority].mean())
  for c in range(num_classes):
    m[f"f1/class_{c}"] = float(f1_C[c])
    m[f"precision/class_{c}"] = float(precision_C[c])
    m[f"recall/class_{c}"] = float(recall_C[c])
    m[f"support/class_{c}"] = float(true_C[c])
  return {prefix + k: v for k, v in m.items()}


def _safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
  """num / den with 0 where den == 0 (scikit-learn's zero_division=0)."""
  num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
  return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _check_labels(labels: np.ndarray | Sequence[int], num_classes: int) -> np.ndarray:
  labels_N = np.asarray(labels)
  if labels_N.ndim != 1 or (labels_N.size and not np.issubdtype(labels_N.dtype, np.integer)):
    raise ValueError(f"Labels must be a 1-d integer array, got {labels_N.dtype}{labels_N.shape}.")
  labels_N = labels_N.astype(np.int64)
  if labels_N.size and (labels_N.min() < 0 or labels_N.max() >= num_classes):
    raise ValueError(
        f"Labels must lie in [0, {num_classes}); got range "
        f"[{labels_N.min()}, {labels_N.max()}]. Check num_classes.")
  return labels_N


def _check_scores(scores_NxC: np.ndarray, num_classes: int) -> None:
  if scores_NxC.ndim != 2 or scores_NxC.shape[1] != num_classes:
    raise ValueError(f"Expected scores of shape [N, {num_classes}], got {scores_NxC.shape}.")
  if not np.all(np.isfinite(scores_NxC)):
    raise ValueError("Scores contain NaN/inf: the model diverged or the batch was padded wrongly.")
