"""Regenerates tests/golden/*.npz from the independent references (needs torch and
sentence-transformers): `python tests/make_golden.py [minilm] [albert] [gpt2] [deberta] [t5]`
(all by default). The tests use the live references when they import and these stored values
otherwise. A model family's golden file comes from `write_golden` in its
tests/test_model_<family>.py (a small random HF model: its weights, inputs and outputs)."""

import importlib
import sys
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer, BertModel

from anchoral_jax.models.hf import resolve_model_dir

SENTENCES = [
    "Hello world, this is a test.",
    "Short one",
    "A much longer sentence about active learning for large and imbalanced pools of text.",
    "Make America Great Again! https://t.co/xyz #Trump2016",
]


def main():
  d = str(resolve_model_dir("all-MiniLM-L6-v2"))
  tok = AutoTokenizer.from_pretrained(d)
  enc = tok(SENTENCES, padding=True, return_tensors="np")
  model = BertModel.from_pretrained(d).eval()
  with torch.no_grad():
    o = model(input_ids=torch.tensor(enc["input_ids"]),
              attention_mask=torch.tensor(enc["attention_mask"]))
  st = SentenceTransformer(d, device="cpu").encode(SENTENCES, normalize_embeddings=True)
  out = Path(__file__).parent / "golden" / "minilm.npz"
  np.savez_compressed(out, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                      hidden=o.last_hidden_state.numpy(), pooled=o.pooler_output.numpy(),
                      st_embedding=st)
  print("wrote", out)


if __name__ == "__main__":
  names = sys.argv[1:] or ["minilm", "albert", "gpt2", "deberta", "t5"]
  if "minilm" in names:
    main()
  sys.path.insert(0, str(Path(__file__).parent))
  for family in (n for n in names if n != "minilm"):
    importlib.import_module(f"test_model_{family}").write_golden()
    print("wrote", Path(__file__).parent / "golden" / f"{family}.npz")
