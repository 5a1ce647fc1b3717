"""`anchoral label`'s classifier: a linear head on the frozen encoder's features.

Trained by `regimes.HeadRegime` (the simulation's frozen-encoder regime, SPEC.md §5 "Here")
on the cached sentence embeddings, from the same initial head every step; `export` writes it
with its predictions over the pool, `apply` scores a new file with it.

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
  """The model config `regimes.HeadRegime` gets: with the encoder frozen and its features
  cached, all it reads is the head's dropout (`models.head_dropout`: a family's
  `head_dropout_prob`, else its `hidden_dropout_prob`, BERT's name used here), so no encoder
  config is needed (hashable: part of the regime's static settings)."""

  hidden_dropout_prob: float = HEAD_DROPOUT


def head_regime(emb_NxE: np.ndarray, num_classes: int, minority: tuple[int, ...], seed: int):
  """`regimes.HeadRegime` over the cached embeddings (every feature key is the embedding)."""
  import jax

  from anchoral_jax.training.head import HeadRegime
  from anchoral_jax.training.train import TrainConfig

  tc = TrainConfig(learning_rate=HEAD_LR, trainable="head")
  feats = {"pooled": emb_NxE, "mean": emb_NxE, "cls": emb_NxE}
  return HeadRegime(cfg=HeadConfig(), tc=tc, features={"pool": feats}, num_classes=num_classes,
                    minority=minority, data_seed=seed, dropout_key=jax.random.key(seed))


def init_head(e: int, c: int, seed: int) -> dict:
  """BERT's head initialiser (normal, std 0.02; zero bias), the same weights every step."""
  rng = np.random.default_rng(seed)
  return {"classifier": {"kernel": (rng.standard_normal((e, c)) * 0.02).astype(np.float32),
                         "bias": np.zeros(c, np.float32)}}


def train_head(emb_NxE: np.ndarray, rows: np.ndarray, labels: np.ndarray, s: Settings):
  """(regime, params) trained on the labelled rows, from the same initial head every step."""
  regime = head_regime(emb_NxE, len(s.classes), s.minority_idx, s.seed)
  fit = regime.fit(init_head(emb_NxE.shape[1], len(s.classes), s.seed), rows, labels)
  return regime, fit.params


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


def _predictions_frame(ids, texts, p_NxC: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
  return pd.DataFrame({"id": ids, "text": texts,
                       "label": [classes[g] for g in p_NxC.argmax(-1)],
                       "probability": np.round(p_NxC.max(-1), 6)})


def export(workdir: Path, out: Path) -> str:
  s = load_settings(workdir)
  pool = load_pool(workdir)
  records, _ = read_answers(workdir)
  rows, labels, _ = labelled_rows(records, pool, s)
  missing = [c for k, c in enumerate(s.classes) if k not in set(labels.tolist())]
  if missing:
    raise LabelError(f"No labels yet for class(es) {', '.join(missing)}: a classifier needs "
                     "at least one of each. Answer more batches (`anchoral label next`).")
  _, params = train_head(pool.emb_NxE, rows, labels, s)
  out.mkdir(parents=True, exist_ok=True)
  save_head(out, params)
  meta = {"classes": s.classes, "minority": s.minority, "encoder": s.model,
          "max_length": s.max_length, "features": "unit-norm mean-pooled last layer",
          "labels": len(rows), "settings": dataclasses.asdict(s), "time": now()}
  write_text_atomic(out / "classifier.json", json.dumps(meta, indent=1))
  df = _predictions_frame(pool.ids, pool.texts, probs_of(params, pool.emb_NxE), s.classes)
  write_text_atomic(out / "predictions.csv", df.to_csv(index=False))
  return (f"Exported the classifier ({len(rows)} labels) to {out}; predictions over the "
          f"{len(pool.ids)} pool rows in {out / 'predictions.csv'}.")


def apply(model: Path, data: str, text_column: str, id_column: str | None, out: Path) -> str:
  clf = load_classifier(model)
  ids, texts = read_texts(data, text_column, id_column)
  df = _predictions_frame(ids, texts, clf.predict_proba(list(texts)), clf.classes)
  write_text_atomic(Path(out), df.to_csv(index=False))
  return f"Scored {len(ids)} rows of {data}: {out}"
