"""`anchoral label`'s classifier: a linear head on the frozen encoder's features.

Trained by `training.head.HeadRegime` (the simulation's frozen-encoder regime, SPEC.md §5 "Here")
on the cached sentence embeddings, from the same initial head every step; `export` writes it
with the human labels and its predictions over the pool, `apply` scores a new file with it.

Two departures from the simulation's training, both for a handful of minority labels:
- the last epoch's head, not the best by training minority F1 (the paper's selection): a head
  that predicts no minority row scores F1 0 in every epoch, so the selection kept the head of
  epoch 1 (barely trained: p(minority) 0.49-0.51 everywhere, pool AUC 0.66-0.74 vs 0.82-0.92
  for the last epoch's, 3-8 tech labels of 10-160 on 2,000 BBC sentences) and the patience of
  10 epochs stopped training right after;
- classes balanced by repeating each class's rows (round(largest class / class) times), so
  the minority is not a rounding error of the loss and uncertainty means "could be minority".
Its probabilities are therefore not the pool's; `export` chooses the minority threshold by
cross-validation on the human labels (`choose_threshold`), stored in classifier.json.

Shape letters: N rows, E embedding width, C classes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from anchoral_jax.fileio import write_text_atomic
from anchoral_jax.label.inputs import read_texts
from anchoral_jax.label.workdir import (
  LabelError,
  Settings,
  labelled_rows,
  load_head,
  load_pool,
  load_settings,
  now,
  read_answers,
  save_head,
)

HEAD_LR = 1e-2  # a linear head from scratch (configs/reproduce_cpu.py); 4e-5 is for fine-tuning
# Dropout on the head's input while it trains: BERT's hidden_dropout_prob (Hugging Face's
# BertConfig default, 0.1), which HF's BertForSequenceClassification applies before its
# classifier when classifier_dropout is unset; the value this driver has always used.
HEAD_DROPOUT = 0.1


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """The model config `training.head.HeadRegime` gets: with the encoder frozen and its features
  cached, all it reads is the head's dropout (`models.head_dropout`: a family's
  `head_dropout_prob`, else its `hidden_dropout_prob`, BERT's name used here), so no encoder
  config is needed (hashable: part of the regime's static settings)."""

  hidden_dropout_prob: float = HEAD_DROPOUT


def head_regime(emb_NxE: np.ndarray, num_classes: int, minority: tuple[int, ...], seed: int):
  """`training.head.HeadRegime` over the cached embeddings (every feature key is the embedding)."""
  import jax

  from anchoral_jax.training.head import HeadRegime
  from anchoral_jax.training.train import TrainConfig

  tc = TrainConfig(learning_rate=HEAD_LR, trainable="head", model_selection="last")
  feats = {"pooled": emb_NxE, "mean": emb_NxE, "cls": emb_NxE}
  return HeadRegime(cfg=HeadConfig(), tc=tc, features={"pool": feats}, num_classes=num_classes,
                    minority=minority, data_seed=seed, dropout_key=jax.random.key(seed))


def init_head(e: int, c: int, seed: int) -> dict:
  """BERT's head initialiser (normal, std 0.02; zero bias), the same weights every step."""
  rng = np.random.default_rng(seed)
  return {"classifier": {"kernel": (rng.standard_normal((e, c)) * 0.02).astype(np.float32),
                         "bias": np.zeros(c, np.float32)}}


def balanced(rows: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Each class's rows repeated round(largest class / class) times (module docstring)."""
  labels = np.asarray(labels, np.int64)
  count_C = np.bincount(labels)
  rep_C = np.round(count_C.max() / np.maximum(count_C, 1)).astype(np.int64)
  return np.repeat(np.asarray(rows, np.int64), rep_C[labels]), np.repeat(labels, rep_C[labels])


def train_head(emb_NxE: np.ndarray, rows: np.ndarray, labels: np.ndarray, s: Settings):
  """(regime, params) trained on the labelled rows, balanced, from the same initial head every
  step."""
  regime = head_regime(emb_NxE, len(s.classes), s.minority_idx, s.seed)
  rows_b, labels_b = balanced(rows, labels)
  fit = regime.fit(init_head(emb_NxE.shape[1], len(s.classes), s.seed), rows_b, labels_b)
  return regime, fit.params


def minority_score(p_NxC: np.ndarray, minority: Sequence[int]) -> np.ndarray:
  """P(some minority class): what the threshold applies to."""
  return np.asarray(p_NxC)[:, list(minority)].sum(-1)


def decide(p_NxC: np.ndarray, minority: Sequence[int], threshold: float) -> np.ndarray:
  """Class per row: the likeliest minority class where P(minority) >= threshold, else the
  likeliest other class."""
  p_NxC = np.asarray(p_NxC)
  is_min_C = np.isin(np.arange(p_NxC.shape[1]), list(minority))
  best_min = np.where(is_min_C, p_NxC, -1.0).argmax(-1)
  best_maj = np.where(is_min_C, -1.0, p_NxC).argmax(-1)
  if not is_min_C.all() and is_min_C.any():
    return np.where(minority_score(p_NxC, minority) >= threshold, best_min, best_maj)
  return p_NxC.argmax(-1)


def threshold_curve(score_N: np.ndarray, y_N: np.ndarray):
  """(thresholds, precision, recall, f1) for "minority iff score >= t", t over the distinct
  scores, highest first."""
  order = np.argsort(-score_N, kind="stable")
  s_sorted, y_sorted = score_N[order], np.asarray(y_N, bool)[order]
  tp = np.cumsum(y_sorted)
  last = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # the end of each run of equal scores
  t, tp = s_sorted[last], tp[last]
  pred = np.flatnonzero(last) + 1
  precision, recall = tp / pred, tp / max(int(y_sorted.sum()), 1)
  f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
  return t, precision, recall, f1


def choose_threshold(emb_NxE: np.ndarray, rows: np.ndarray, labels: np.ndarray, s: Settings,
                     recall_target: float | None = None, folds: int = 5) -> dict:
  """The minority threshold from out-of-fold scores on the human labels (stratified folds).

  Default: the threshold of the best out-of-fold minority F1. The human labels are enriched in
  the minority, so the pool's F1 at it is lower (its precision falls with the prevalence) while
  its recall carries over; with `recall_target`, the highest threshold whose out-of-fold recall
  reaches it. Fewer than 2 labels on either side: 0.5, said so."""
  y_N = np.isin(labels, s.minority_idx)
  n_min, n_maj = int(y_N.sum()), int((~y_N).sum())
  rule = f"recall >= {recall_target}" if recall_target is not None else "max minority F1"
  if min(n_min, n_maj) < 2:
    return {"threshold": 0.5, "rule": f"0.5: {n_min} minority and {n_maj} other labels are "
            "too few to cross-validate", "folds": 0}
  k = min(folds, n_min, n_maj)
  rng = np.random.default_rng([s.seed, 5])
  fold_N = np.zeros(len(y_N), np.int64)
  for side in (y_N, ~y_N):
    idx = np.flatnonzero(side)
    fold_N[rng.permutation(idx)] = np.arange(len(idx)) % k
  oof_N = np.zeros(len(y_N))
  for f in range(k):
    tr = fold_N != f
    if len(set(labels[tr].tolist())) < len(s.classes):  # a class with one label: other folds
      oof_N[~tr] = 0.5
      continue
    _, params = train_head(emb_NxE, rows[tr], labels[tr], s)
    oof_N[~tr] = minority_score(probs_of(params, emb_NxE[rows[~tr]]), s.minority_idx)
  t, precision, recall, f1 = threshold_curve(oof_N, y_N)
  if recall_target is None:
    i = int(np.argmax(f1))
  else:
    i = int(np.flatnonzero(recall >= recall_target)[0])
  return {"threshold": float(t[i]), "rule": f"{rule}, {k}-fold cross-validation on the "
          f"{len(y_N)} human labels", "folds": k, "cv_precision": round(float(precision[i]), 4),
          "cv_recall": round(float(recall[i]), 4), "cv_f1": round(float(f1[i]), 4)}


def probs_of(params: dict, emb_NxE: np.ndarray) -> np.ndarray:
  h = params["classifier"]
  logits = np.asarray(emb_NxE, np.float32) @ np.asarray(h["kernel"]) + np.asarray(h["bias"])
  logits -= logits.max(-1, keepdims=True)
  p = np.exp(logits)
  return p / p.sum(-1, keepdims=True)


@dataclasses.dataclass
class LabelClassifier:
  """The exported classifier: the frozen encoder (by name) + the trained linear head."""

  classes: list[str]
  encoder: str
  max_length: int
  params: dict

  def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
    from anchoral_jax.retrieval.embed import SentenceEncoder

    enc = SentenceEncoder(self.encoder, max_length=self.max_length)
    return probs_of(self.params, enc.encode(list(texts), progress=len(texts) > 2000))


def load_classifier(path: str | os.PathLike) -> LabelClassifier:
  """The classifier `anchoral label export` wrote to `path`, in one call."""
  path = Path(path)
  meta_path, head_path = path / "classifier.json", path / "head.npz"
  if not (meta_path.is_file() and head_path.is_file()):
    raise LabelError(f"{path} holds no exported classifier (classifier.json and head.npz): "
                     "write one with `anchoral label export --workdir W --out DIR`.")
  meta = json.loads(meta_path.read_text())
  return LabelClassifier(meta["classes"], meta["encoder"], meta["max_length"],
                         load_head(head_path))


def gold_labels(workdir: Path, s: Settings, pool) -> pd.DataFrame:
  """labels.csv: every human label (the last answer of each id; skipped rows are not labels),
  with its batch (0: seed labels), time and source (seed, audit or selected)."""
  records, _ = read_answers(workdir)
  state = json.loads((workdir / "state.json").read_text())
  audit = set(state.get("audit", {}).get("ids", []))
  last: dict[str, dict] = {}
  for r in records:
    last[r["id"]] = r
  kept = [r for r in last.values() if r["label"] is not None]
  texts = pool.texts[pool.rows_of([r["id"] for r in kept])] if kept else []
  return pd.DataFrame({
      "id": [r["id"] for r in kept], "text": list(texts), "label": [r["label"] for r in kept],
      "batch": [r["batch"] for r in kept], "time": [r["time"] for r in kept],
      "source": ["seed" if r["batch"] == 0 else "audit" if r["id"] in audit else "selected"
                 for r in kept]})


def _prob_columns(p_NxC: np.ndarray, classes: Sequence[str]) -> dict:
  return {f"p_{c}": np.round(p_NxC[:, k], 6) for k, c in enumerate(classes)}


def export(workdir: Path, out: Path, recall_target: float | None = None) -> str:
  s = load_settings(workdir)
  pool = load_pool(workdir)
  records, _ = read_answers(workdir)
  rows, labels, _ = labelled_rows(records, pool, s)
  missing = [c for k, c in enumerate(s.classes) if k not in set(labels.tolist())]
  if missing:
    raise LabelError(f"No labels yet for class(es) {', '.join(missing)}: a classifier needs "
                     "at least one of each. Answer more batches (`anchoral label next`).")
  if recall_target is not None and not 0 < recall_target <= 1:
    raise LabelError(f"--recall-target {recall_target}: give a recall in (0, 1], e.g. 0.9.")
  thr = choose_threshold(pool.emb_NxE, rows, labels, s, recall_target)
  _, params = train_head(pool.emb_NxE, rows, labels, s)
  out.mkdir(parents=True, exist_ok=True)
  save_head(out, params)
  meta = {"classes": s.classes, "minority": s.minority, "encoder": s.model,
          "max_length": s.max_length, "features": "unit-norm mean-pooled last layer",
          "labels": len(rows), "threshold": thr, "settings": dataclasses.asdict(s),
          "time": now()}
  write_text_atomic(out / "classifier.json", json.dumps(meta, indent=1))
  gold = gold_labels(workdir, s, pool)
  write_text_atomic(out / "labels.csv", gold.to_csv(index=False))
  p_NxC = probs_of(params, pool.emb_NxE)
  model = [s.classes[g] for g in decide(p_NxC, s.minority_idx, thr["threshold"])]
  human = dict(zip(gold["id"], gold["label"], strict=True))
  df = pd.DataFrame({"id": pool.ids, "text": pool.texts,
                     "label": [human.get(i, m) for i, m in zip(pool.ids, model, strict=True)],
                     "source": ["human" if i in human else "model" for i in pool.ids],
                     "model_label": model, **_prob_columns(p_NxC, s.classes)})
  write_text_atomic(out / "predictions.csv", df.to_csv(index=False))
  return (f"Exported the classifier ({len(rows)} labels) to {out}: minority threshold "
          f"{thr['threshold']:.3f} ({thr['rule']}); your {len(gold)} labels in "
          f"{out / 'labels.csv'}; predictions over the {len(pool.ids)} pool rows (your label "
          f"where you gave one, source=human) in {out / 'predictions.csv'}.")


def apply(model: Path, data: str, text_column: str, id_column: str | None, out: Path,
          threshold: float | None = None) -> str:
  """Scores `data` into `out`: its own columns, then predicted_label and p_<class>."""
  from anchoral_jax.data.user import read_table

  clf = load_classifier(model)
  meta = json.loads((Path(model) / "classifier.json").read_text())
  if threshold is None:
    threshold = meta.get("threshold", {}).get("threshold", 0.5)
  elif not 0 <= threshold <= 1:
    raise LabelError(f"--threshold {threshold}: give a probability in [0, 1].")
  ids, texts = read_texts(data, text_column, id_column)
  df = read_table(data)
  p_NxC = clf.predict_proba(list(texts))
  minority = [clf.classes.index(c) for c in meta.get("minority", [])]
  new = {"predicted_label": [clf.classes[g] for g in decide(p_NxC, minority, threshold)],
         **_prob_columns(p_NxC, clf.classes)}
  for name, values in new.items():
    col = name
    while col in df.columns:  # the input's own columns are kept as they are
      col = f"anchoral_{col}"
    df[col] = values
  write_text_atomic(Path(out), df.to_csv(index=False))
  found = sum(v in meta.get("minority", []) for v in new["predicted_label"])
  return (f"Scored {len(ids)} rows of {data} at minority threshold {threshold:.3f}: {found} "
          f"predicted {','.join(meta.get('minority', []))}; {out}")
