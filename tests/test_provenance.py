"""Every start of a run records which code (git commit) and package versions produced it, in
`<workdir>/provenance.json` (a list, appended on resume) and in the W&B config."""

import json
import platform
import re
import subprocess

import conftest
import numpy as np

from anchoral_jax.al import loop
from anchoral_jax.run import workdir as workdir_lib
from anchoral_jax.tracking import tracker as tracking


def test_record_provenance_appends_and_keeps_an_unreadable_file(tmp_path):
  first = workdir_lib.record_provenance(tmp_path)
  assert len(first) == 1
  entry = first[0]
  assert set(entry) == {"started", "host", "git_sha", "git_dirty", "python", "os", "versions"}
  assert set(entry["versions"]) == set(workdir_lib.PACKAGES)
  assert entry["versions"]["jax"] and entry["versions"]["numpy"] == np.__version__
  assert entry["python"] == platform.python_version() and entry["os"] == platform.platform()
  assert entry["git_dirty"] in (True, False, None)
  assert entry["git_sha"] == "" or re.fullmatch(r"[0-9a-f]{40}", entry["git_sha"])
  second = workdir_lib.record_provenance(tmp_path)
  assert len(second) == 2 and second[0] == entry
  assert json.loads((tmp_path / "provenance.json").read_text()) == second
  (tmp_path / "provenance.json").write_text("{not json")
  assert len(workdir_lib.record_provenance(tmp_path)) == 1
  assert (tmp_path / "provenance.json.unreadable").read_text() == "{not json"


def test_git_dirty_flags_uncommitted_changes_to_tracked_files(tmp_path):
  def git(*args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                   check=True, capture_output=True)

  assert workdir_lib.git_dirty(cwd=tmp_path) is None  # not a checkout
  git("init", "-q")
  (tmp_path / "a.py").write_text("x = 1\n")
  git("add", "a.py")
  git("commit", "-qm", "one")
  assert workdir_lib.git_dirty(cwd=tmp_path) is False
  (tmp_path / "new.py").write_text("")  # untracked: not what ran
  assert workdir_lib.git_dirty(cwd=tmp_path) is False
  (tmp_path / "a.py").write_text("x = 2\n")
  assert workdir_lib.git_dirty(cwd=tmp_path) is True


def test_git_sha_is_empty_without_git(monkeypatch):
  def no_git(*a, **k):
    raise FileNotFoundError("git")

  monkeypatch.setattr(subprocess, "run", no_git)
  assert workdir_lib.git_sha() == "" and workdir_lib.git_dirty() is None


def test_run_records_provenance_per_start_and_in_the_wandb_config(tmp_path, cache_dir,
                                                                   monkeypatch):
  seen = []
  real = tracking.make_tracker

  def spy(workdir, wandb_cfg, run_config):
    seen.append(run_config)
    return real(workdir, wandb_cfg, run_config)

  monkeypatch.setattr(tracking, "make_tracker", spy)
  c = conftest.tiny_config(cache_dir, 600, 100, **{
      "data.test_size": 0, "al.budget": 125, "al.filter": "none"})
  workdir = tmp_path / "run"
  loop.run(c, workdir)
  starts = json.loads((workdir / "provenance.json").read_text())
  assert len(starts) == 1 and starts[0]["git_sha"] == workdir_lib.git_sha()
  assert seen[0]["provenance"] == starts and seen[0]["al"]["budget"] == 125
  (workdir / "DONE").unlink()  # a resume (killed before DONE) appends, never overwrites
  loop.run(c, workdir)
  again = json.loads((workdir / "provenance.json").read_text())
  assert len(again) == 2 and again[0] == starts[0]
  assert seen[1]["provenance"] == again
