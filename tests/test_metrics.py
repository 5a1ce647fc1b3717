"""Metrics against scikit-learn (an independent reference) and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from anchoral_jax import metrics


def _random_case(seed: int, num_classes: int, n: int = 300):
  """Random logits where the last class never occurs in the labels and class 1 is never
  predicted: both kinds of absent class that make precision or recall undefined."""
  rng = np.random.default_rng(seed)
  labels_N = rng.integers(0, num_classes - 1, size=n)
  logits_NxC = rng.normal(size=(n, num_classes)) * 2.0
  logits_NxC[:, 1] = logits_NxC.min(axis=1) - 1.0
  return labels_N, logits_NxC


@pytest.mark.parametrize("seed,num_classes", [(0, 2), (1, 3), (2, 5), (3, 5)])
def test_matches_sklearn(seed: int, num_classes: int):
  labels_N, logits_NxC = _random_case(seed, num_classes)
  minority = [1] if num_classes == 2 else list(range(num_classes - 1))
  m = metrics.classification_metrics(labels_N, logits_NxC, num_classes, minority, prefix="test/")

  preds_N = logits_NxC.argmax(axis=1)
  labels = list(range(num_classes))
  p_C, r_C, f1_C, support_C = skm.precision_recall_fscore_support(
      labels_N, preds_N, labels=labels, zero_division=0)
  for c in labels:
    assert m[f"test/precision/class_{c}"] == pytest.approx(p_C[c], abs=1e-12)
    assert m[f"test/recall/class_{c}"] == pytest.approx(r_C[c], abs=1e-12)
    assert m[f"test/f1/class_{c}"] == pytest.approx(f1_C[c], abs=1e-12)
    assert m[f"test/support/class_{c}"] == support_C[c]
  kw = dict(labels=labels, zero_division=0)
  assert m["test/accuracy"] == pytest.approx(skm.accuracy_score(labels_N, preds_N))
  assert m["test/f1_micro"] == pytest.approx(skm.f1_score(labels_N, preds_N, average="micro", **kw))
  assert m["test/f1_macro"] == pytest.approx(skm.f1_score(labels_N, preds_N, average="macro", **kw))
  assert m["test/precision_macro"] == pytest.approx(
      skm.precision_score(labels_N, preds_N, average="macro", **kw))
  assert m["test/recall_macro"] == pytest.approx(
      skm.recall_score(labels_N, preds_N, average="macro", **kw))
  assert m["test/minority_f1"] == pytest.approx(f1_C[minority].mean())
  majority = [c for c in labels if c not in minority]
  assert m["test/majority_f1"] == pytest.approx(f1_C[majority].mean())
  probs_NxC = np.exp(logits_NxC) / np.exp(logits_NxC).sum(axis=1, keepdims=True)
  assert m["test/loss"] == pytest.approx(skm.log_loss(labels_N, probs_NxC, labels=labels))
  assert all(np.isfinite(v) for v in m.values())
  assert all(k.startswith("test/") for k in m)


def test_binary_majority_is_class_zero():
  labels_N, logits_NxC = _random_case(7, 3)
  labels_N = labels_N % 2
  logits_NxC = logits_NxC[:, :2]
  m = metrics.classification_metrics(labels_N, logits_NxC, 2, minority_classes=[1])
  assert m["majority_f1"] == m["f1/class_0"]
  assert m["minority_f1"] == m["f1/class_1"]


def test_probs_path_agrees_with_logits_path():
  rng = np.random.default_rng(4)
  labels_N, logits_NxC = rng.integers(0, 4, size=100), rng.normal(size=(100, 4))
  probs_NxC = np.exp(logits_NxC) / np.exp(logits_NxC).sum(axis=1, keepdims=True)
  from_logits = metrics.classification_metrics(labels_N, logits_NxC, 4, [3])
  from_probs = metrics.classification_metrics_from_probs(labels_N, probs_NxC, 4, [3])
  assert from_logits.keys() == from_probs.keys()
  for k, v in from_logits.items():
    assert from_probs[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
  with pytest.raises(ValueError, match="logits"):
    metrics.classification_metrics_from_probs(labels_N, logits_NxC, 4, [3])


def test_all_absent_and_degenerate_cases_are_nan_free():
  # Every prediction is class 0, labels only class 2: most ratios are 0/0.
  labels_N = np.full(5, 2)
  logits_NxC = np.tile([5.0, 0.0, 0.0], (5, 1))
  m = metrics.classification_metrics(labels_N, logits_NxC, 3, minority_classes=[1, 2])
  assert all(np.isfinite(v) for v in m.values())
  assert m["accuracy"] == 0.0 and m["minority_f1"] == 0.0 and m["majority_f1"] == 0.0


def test_no_minority_or_no_majority_classes():
  labels_N, logits_NxC = _random_case(5, 3)
  m = metrics.classification_metrics(labels_N, logits_NxC, 3)
  assert "minority_f1" not in m
  assert m["majority_f1"] == pytest.approx(m["f1_macro"])
  m = metrics.classification_metrics(labels_N, logits_NxC, 3, minority_classes=[0, 1, 2])
  assert "majority_f1" not in m
  assert m["minority_f1"] == pytest.approx(m["f1_macro"])


def test_ece_hand_computed():
  probs_NxC = np.array([
      [0.95, 0.05],  # bin 9, correct
      [0.91, 0.09],  # bin 9, wrong
      [0.35, 0.65],  # bin 6, correct
      [0.62, 0.38],  # bin 6, wrong
      [0.20, 0.80],  # bin 8 (left edge belongs to the bin), correct
      [0.85, 0.15],  # bin 8, wrong
  ])
  labels_N = np.array([0, 1, 1, 1, 1, 1])
  # Bins 9, 6, 8: |0.5 - 0.93|, |0.5 - 0.635|, |0.5 - 0.825|, each weighted 2/6.
  expected = (0.43 + 0.135 + 0.325) * 2 / 6
  assert metrics.expected_calibration_error(labels_N, probs_NxC) == pytest.approx(expected)
  m = metrics.classification_metrics_from_probs(labels_N, probs_NxC, 2, [1])
  assert m["ece"] == pytest.approx(expected)
  # Perfectly calibrated one-hot predictions that are all right: ECE 0.
  assert metrics.expected_calibration_error([0, 1], np.eye(2)) == 0.0


def test_learning_curve_auc_hand_values():
  assert metrics.learning_curve_auc([0.0, 0.5, 1.0]) == pytest.approx(1.0)
  assert metrics.learning_curve_auc([1.0] * 4) == pytest.approx(3.0)
  assert metrics.learning_curve_auc([0.7]) == 0.0
  assert metrics.learning_curve_auc(np.full(197, 1.0)) == pytest.approx(196.0)


def test_summarise_curves():
  rounds = [
      {"test/minority_f1": 0.2, "test/majority_f1": 0.9, "time/query": 30.0},
      {"test/minority_f1": 0.4, "test/majority_f1": 0.95, "time/query": 90.0},
      {"test/minority_f1": 0.6, "test/majority_f1": 1.0},  # last round: no query
  ]
  out = metrics.summarise_curves(rounds)
  assert out["auc/minority_f1"] == pytest.approx(0.3 + 0.5)
  assert out["auc/majority_f1"] == pytest.approx(0.925 + 0.975)
  assert out["query_time_min"] == pytest.approx(2.0)
  assert "auc/minority_f1" not in metrics.summarise_curves([{"test/majority_f1": 1.0}])


def test_class_counts_and_confusion_matrix():
  np.testing.assert_array_equal(metrics.class_counts([2, 2, 0], 4), [1, 0, 2, 0])
  assert metrics.class_counts(np.array([], dtype=np.int64), 3).tolist() == [0, 0, 0]
  labels_N, logits_NxC = _random_case(6, 4)
  preds_N = logits_NxC.argmax(axis=1)
  np.testing.assert_array_equal(
      metrics.confusion_matrix(labels_N, preds_N, 4),
      skm.confusion_matrix(labels_N, preds_N, labels=range(4)))


def test_fails_early_with_a_fix():
  with pytest.raises(ValueError, match="num_classes"):
    metrics.class_counts([0, 3], 3)
  with pytest.raises(ValueError, match="shape"):
    metrics.classification_metrics([0, 1], np.zeros((2, 3)), 2)
  with pytest.raises(ValueError, match="minority_classes"):
    metrics.classification_metrics([0, 1], np.zeros((2, 2)), 2, minority_classes=[2])
  with pytest.raises(ValueError, match="NaN"):
    metrics.classification_metrics([0, 1], np.array([[0.0, np.nan], [0.0, 1.0]]), 2)
