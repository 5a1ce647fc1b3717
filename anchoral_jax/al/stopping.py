"""Stopping criteria: when more labels stop changing the model (issue 24).

Two criteria, logged every round by the simulation (loop.py: `stop/*` in metrics.jsonl, the
round each first fires in summary.json) and advised by `anchoral label status`; both read only
the model's predictions on a fixed *stop set* (`STOP_SET` pool rows drawn once, whatever is
labelled later; their labels are never used), so they need no held-out labels:

- **stabilising predictions** (Bloodgood & Vijay-Shanker, CoNLL 2009; the most reliable of 13
  criteria in arXiv 2110.03802): Cohen's kappa between the predictions of consecutive rounds'
  models on the stop set; stop once kappa >= `KAPPA` in `K` consecutive rounds. (Bloodgood &
  Vijay-Shanker average the last three kappas; K consecutive rounds above is the stricter
  reading.) Two identical prediction vectors agree perfectly: kappa 1, also when both are
  constant (where Cohen's formula is 0/0).
- **overall uncertainty** (Zhu, Wang & Hovy, COLING 2008; small-text's OverallUncertainty): the
  mean predictive entropy over the stop set, normalised by log C to [0, 1], at or below
  `UNCERTAINTY`. On a 1%-minority task the majority is predicted confidently from the start,
  so this one can fire early: the report shows the minority F1 it would have stopped at.

Shape letters: N stop-set rows, C classes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

STOP_SET = 2_000  # rows (Bloodgood & Vijay-Shanker's stop set size)
STOP_SET_SEED = 0  # one stop set for every seed of a cell: paired runs judge the same rows
KAPPA = 0.99
K = 3  # consecutive rounds
UNCERTAINTY = 0.05  # mean normalised entropy (small-text's default threshold)
CRITERIA = ("stabilised", "confident")  # the record flags: stop/stabilised, stop/confident


def stop_set(rows: np.ndarray, size: int = STOP_SET, seed: int = STOP_SET_SEED) -> np.ndarray:
  """`size` of `rows` (all when fewer), drawn once, sorted."""
  rows = np.asarray(rows, np.int64)
  if len(rows) <= size:
    return np.sort(rows)
  return np.sort(np.random.default_rng(seed).choice(rows, size, replace=False))


def cohen_kappa(a_N: np.ndarray, b_N: np.ndarray, num_classes: int) -> float:
  """Cohen's kappa of two label vectors; 1 when they are identical (module docstring)."""
  a_N, b_N = np.asarray(a_N, np.int64), np.asarray(b_N, np.int64)
  agree = float((a_N == b_N).mean())
  if agree == 1.0:
    return 1.0
  chance = float((np.bincount(a_N, minlength=num_classes) / len(a_N))
                 @ (np.bincount(b_N, minlength=num_classes) / len(b_N)))
  return (agree - chance) / (1.0 - chance)


def mean_entropy(probs_NxC: np.ndarray) -> float:
  """Mean predictive entropy, normalised by log C to [0, 1]."""
  p_NxC = np.clip(np.asarray(probs_NxC, np.float64), 1e-12, 1.0)
  return float(-(p_NxC * np.log(p_NxC)).sum(-1).mean() / math.log(p_NxC.shape[-1]))


def softmax(logits_NxC: np.ndarray) -> np.ndarray:
  z_NxC = np.asarray(logits_NxC, np.float64)
  z_NxC = np.exp(z_NxC - z_NxC.max(-1, keepdims=True))
  return z_NxC / z_NxC.sum(-1, keepdims=True)


@dataclasses.dataclass
class StopState:
  """What the criteria carry from round to round (checkpointed with the run)."""

  prev_N: np.ndarray | None = None  # last round's predictions on the stop set
  stable: int = 0  # consecutive rounds with kappa >= KAPPA
  fired: dict[str, int] = dataclasses.field(default_factory=dict)  # criterion -> first round

  def update(self, r: int, probs_NxC: np.ndarray) -> dict[str, Any]:
    """Round `r`'s model on the stop set: the round's `stop/*` record fields."""
    pred_N = np.asarray(probs_NxC).argmax(-1)
    rec: dict[str, Any] = {"stop/uncertainty": mean_entropy(probs_NxC)}
    if self.prev_N is not None and len(self.prev_N) == len(pred_N):
      kappa = cohen_kappa(self.prev_N, pred_N, np.asarray(probs_NxC).shape[-1])
      self.stable = self.stable + 1 if kappa >= KAPPA else 0
      rec["stop/kappa"] = kappa
    self.prev_N = pred_N
    rec["stop/stable_rounds"] = self.stable
    if self.stable >= K:
      self.fired.setdefault("stabilised", r)
    if rec["stop/uncertainty"] <= UNCERTAINTY:
      self.fired.setdefault("confident", r)
    rec.update({f"stop/{c}": int(c in self.fired) for c in CRITERIA})
    return rec

  def meta(self) -> dict[str, Any]:
    return {"stop_stable": self.stable, "stop_fired": dict(self.fired)}

  def arrays(self) -> dict[str, np.ndarray]:
    return {} if self.prev_N is None else {"stop_prev": self.prev_N}

  @classmethod
  def restore(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> StopState:
    """From a checkpoint (one written before the criteria existed: a fresh state)."""
    prev = arrays.get("stop_prev")
    return cls(None if prev is None else np.asarray(prev, np.int64),
               int(meta.get("stop_stable", 0)), dict(meta.get("stop_fired", {})))


def summary(records: list[dict[str, Any]], f1_key: str = "test/minority_f1") -> dict[str, Any]:
  """Per criterion: the round it first fired (-1: never), the labels then and `f1_key` there
  vs at the last round (what stopping there would have cost)."""
  out: dict[str, Any] = {}
  rounds = [r for r in records if "round" in r]
  for c in CRITERIA:
    hit = next((r for r in rounds if r.get(f"stop/{c}")), None)
    out[f"stop/{c}_round"] = int(hit["round"]) if hit else -1
    out[f"stop/{c}_budget"] = int(hit["budget"]) if hit else -1
    out[f"stop/{c}_f1"] = float(hit[f1_key]) if hit and hit.get(f1_key) is not None else None
  if rounds and rounds[-1].get(f1_key) is not None:
    out["stop/final_f1"] = float(rounds[-1][f1_key])
  return out


def advice(kappas: list[float], uncertainty: float | None) -> str:
  """`anchoral label status`'s line from the kappas of consecutive models (oldest first) and
  the last model's mean normalised entropy on the stop set."""
  stable = 0
  for kappa in reversed(kappas):
    if kappa < KAPPA:
      break
    stable += 1
  if not kappas:
    text = "stopping: one model so far; its successor's predictions decide whether they settle"
  elif stable >= K:
    text = (f"stopping: predictions stabilised for {stable} rounds (kappa >= {KAPPA} between "
            "consecutive models on the stop set): you could stop here, if the minority found "
            "so far is enough (a model that has not found it yet can be stable too)")
  else:
    text = (f"stopping: not yet stable (last kappa {kappas[-1]:.3f}; {stable} of {K} rounds at "
            f">= {KAPPA})")
  if uncertainty is not None:
    low = uncertainty <= UNCERTAINTY
    text += (f"; mean uncertainty {uncertainty:.3f} "
             f"({'at or below' if low else 'above'} {UNCERTAINTY}"
             f"{': confident, though the minority may still be missed' if low else ''})")
  return text


def label_update(previous: dict[str, Any] | None, probs_NxC: np.ndarray) -> dict[str, Any]:
  """`anchoral label`'s criteria after a step's head is trained (kept in state.json): this
  model's stop-set predictions, the kappas of consecutive models so far, its uncertainty."""
  pred_N = np.asarray(probs_NxC).argmax(-1)
  kappas = list((previous or {}).get("kappas", []))
  prev = (previous or {}).get("pred")
  if prev is not None and len(prev) == len(pred_N):
    kappas.append(cohen_kappa(np.asarray(prev), pred_N, np.asarray(probs_NxC).shape[-1]))
  return {"pred": pred_N.tolist(), "kappas": kappas, "uncertainty": mean_entropy(probs_NxC)}
