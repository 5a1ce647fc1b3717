"""The accelerator extras (`pip install -e ".[cuda12]"` / `".[tpu]"`, README "GPUs and TPUs")
name the same JAX range as the base install, so an accelerator install never moves JAX to a
version the code was not tested with; and pip resolves them for the installed JAX."""

import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {"cuda12": "jax-cuda12-plugin", "tpu": "libtpu"}  # extra -> the package it must pull
NETWORK_ENV = "ANCHORAL_TEST_NETWORK"


def _project() -> dict:
  return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _jax_all(requirements: list[str]) -> dict[str, Requirement]:
  """The jax requirements by their environment marker (Python 3.11 and 3.12+ differ)."""
  return {str(r.marker): r for r in map(Requirement, requirements) if r.name == "jax"}


def _jax(requirements: list[str]) -> Requirement:
  """The jax requirement that applies to the running interpreter."""
  (req,) = [r for r in _jax_all(requirements).values() if r.marker is None or r.marker.evaluate()]
  return req


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_extra_names_the_base_jax_range(extra):
  project = _project()
  base = _jax_all(project["dependencies"])
  extra_reqs = _jax_all(project["optional-dependencies"][extra])
  assert set(extra_reqs) == set(base)  # one range per marker on both sides
  for marker, req in extra_reqs.items():
    assert req.extras == {extra}
    assert req.specifier == base[marker].specifier, marker
  req = _jax(project["optional-dependencies"][extra])
  assert importlib.metadata.version("jax") in req.specifier  # the JAX the tests run on


def test_jax_markers_cover_every_supported_python():
  """Each Python that `requires-python` admits gets exactly one jax range (3.11: < 0.11)."""
  from packaging.markers import Marker
  from packaging.specifiers import SpecifierSet

  project = _project()
  reqs = list(_jax_all(project["dependencies"]).values())
  for minor in range(8, 20):
    version = f"3.{minor}"
    if f"{version}.0" not in SpecifierSet(project["requires-python"]):
      continue
    env = {"python_version": version, "python_full_version": f"{version}.0"}
    hits = [r for r in reqs if r.marker is None or Marker(str(r.marker)).evaluate(env)]
    assert len(hits) == 1, (version, hits)
    if minor == 11:
      assert "0.11" not in hits[0].specifier  # jax >= 0.11 needs Python >= 3.12


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_pip_resolves_the_extra_for_the_installed_jax(extra, tmp_path):
  """`pip install --dry-run` of the extra's requirement, held to the installed JAX: the plugin
  (or libtpu) must come out of the resolution, else the extra installs CPU JAX only.

  Resolving downloads package indexes, and tests stay offline (CONTRIBUTING.md §9): opt in with
  ANCHORAL_TEST_NETWORK=1. (Resolving ".[cuda12]" with --no-deps would check nothing: it stops
  at this project.)"""
  if os.environ.get(NETWORK_ENV) != "1":
    pytest.skip(f"needs the package index (network): set {NETWORK_ENV}=1 to run it")
  project = _project()
  (req,) = [r for r in project["optional-dependencies"][extra] if Requirement(r).name == "jax"
            and (Requirement(r).marker is None or Requirement(r).marker.evaluate())]
  jax_version = importlib.metadata.version("jax")
  report = tmp_path / "report.json"
  r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                      "--quiet", "--report", str(report), req, f"jax=={jax_version}"],
                     capture_output=True, text=True, timeout=600)
  if r.returncode != 0:
    unreachable = ("Failed to establish", "NewConnectionError", "ConnectTimeoutError",
                   "Temporary failure in name resolution", "Network is unreachable")
    if any(s in r.stderr for s in unreachable):
      pytest.skip(f"package index not reachable: {r.stderr.strip().splitlines()[-1]}")
    pytest.fail(f"pip could not resolve {req} with jax=={jax_version}:\n{r.stderr[-3000:]}")
  installed = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
               for i in json.loads(report.read_text())["install"]}
  assert installed["jax"] == jax_version
  assert EXTRAS[extra] in installed, sorted(installed)
  if extra == "cuda12":  # the plugin is released in lockstep with jax
    assert installed["jax-cuda12-plugin"] == jax_version
