"""The repository carries its own specification: no file points outside it, and every
`SPEC.md §N` / `CONTRIBUTING.md §N` reference names a section heading that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Built by concatenation so that this file does not match itself.
OUTSIDE = ("ALGORITHM" + ".md", "STYLE" + ".md", "../" + "shared")
REF = re.compile(r"(SPEC|CONTRIBUTING)\.md((?:[\s,]*(?:and\s+)?§\d+(?:\s*[-–]\s*\d+)?)+)")
HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)


def _repo_files() -> list[Path]:
  """Files git tracks, plus untracked ones it does not ignore (new files count too)."""
  if shutil.which("git") is None or not (ROOT / ".git").exists():
    pytest.skip("not a git checkout: nothing to list")
  out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       cwd=ROOT, capture_output=True, check=True).stdout
  return sorted({ROOT / p for p in out.decode().split("\0") if p})


def _texts() -> dict[Path, str]:
  texts = {}
  for path in _repo_files():
    if not path.is_file():  # tracked but deleted in the working tree
      continue
    try:
      texts[path] = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:  # binary (plots, golden arrays)
      continue
  return texts


def _numbers(refs: str) -> list[int]:
  """'§2-3, §7' -> [2, 3, 7]."""
  out = []
  for lo, hi in re.findall(r"§(\d+)(?:\s*[-–]\s*(\d+))?", refs):
    out.extend(range(int(lo), int(hi or lo) + 1))
  return out


def test_nothing_points_outside_the_repository():
  bad = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
         for path, text in _texts().items()
         for i, line in enumerate(text.splitlines(), 1)
         if any(needle in line for needle in OUTSIDE)]
  assert not bad, ("These lines cite files outside the repository; cite SPEC.md §N (the "
                   "algorithm) or CONTRIBUTING.md §N (house rules) instead:\n" + "\n".join(bad))


def test_section_references_exist():
  sections = {name: set(map(int, HEADING.findall((ROOT / f"{name}.md").read_text())))
              for name in ("SPEC", "CONTRIBUTING")}
  assert sections["SPEC"] == set(range(1, 9)), "SPEC.md must keep its sections 1-8"
  bad = []
  for path, text in _texts().items():
    for m in REF.finditer(text):
      missing = [n for n in _numbers(m.group(2)) if n not in sections[m.group(1)]]
      if missing:
        line = text.count("\n", 0, m.start()) + 1
        bad.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0).strip()!r} -> no "
                   f"section {missing} in {m.group(1)}.md")
  assert not bad, "Section references to headings that do not exist:\n" + "\n".join(bad)


def test_readme_layout_names_every_module():
  """README's Layout block names every module of the package and every config file, so it
  cannot fall behind the tree again (it missed the sweep_* and family modules once)."""
  text = (ROOT / "README.md").read_text()
  block = text[text.index("## Layout"):]
  block = block[:block.index("\ntests/")]
  files = [*(ROOT / "anchoral_jax").rglob("*.py"), *(ROOT / "configs").glob("*.py")]
  missing = [str(f.relative_to(ROOT)) for f in files
             if f.stem != "__init__" and not re.search(rf"\b{re.escape(f.stem)}\b", block)]
  assert not missing, f"README's Layout does not name: {missing}"
