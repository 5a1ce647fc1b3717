"""`validation.validate`: every option of `config.base()` is checked (or the test says why it
need not be), each check fails with one ConfigError naming the option, and the valid values of
every enumerated option are those of the registry the code dispatches on."""

from __future__ import annotations

import ml_collections
import pandas as pd
import pytest
from conftest import tiny_config

from anchoral_jax import config as common
from anchoral_jax import errors, models
from anchoral_jax.al import filters, strategies, validation
from anchoral_jax.al import state as run_state
from anchoral_jax.al.validation import validate
from anchoral_jax.data import registry
from anchoral_jax.errors import ConfigError
from anchoral_jax.retrieval import index
from anchoral_jax.training import train

# (key, bad value, other overrides the check needs, what else the message names)
BAD = [
    # Enumerated options.
    ("data.name", "tweets", {}, "tweets_iphone"),
    ("al.strategy", "entrop", {}, "entropy"),
    ("al.filter", "anchor", {}, "anchoral"),
    ("anchoral.anchor_strategy", "kmeanspp", {}, "kmeans_pp"),
    ("anchoral.anchor_strategy", "", {}, "kmeans_pp"),  # "" means "the same" only per class
    ("anchoral.minority_anchor_strategy", "rand", {}, "kmeans_pp"),
    ("anchoral.majority_anchor_strategy", "rand", {}, "kmeans_pp"),
    ("anchoral.sampling", "top", {}, "softmax"),
    ("train.model_selection", "best", {}, "train_minority_f1"),
    ("train.trainable", "encoder", {}, "'head'"),
    ("model.pooling", "cls", {}, "mean"),
    ("model.dtype", "float16", {}, "bfloat16"),
    ("index.dtype", "i8", {"al.filter": "anchoral"}, "f16"),
    ("index.dtype", "float16", {"al.filter": "seals"}, "f32"),
    ("wandb.mode", "offlne", {}, "offline"),
    ("model.name", "not-a-preset", {"model.pretrained": False}, "model.pretrained"),
    # Sizes and rates.
    ("al.budget", 0, {}, "positive"),
    ("al.query_size", 0, {}, "positive"),
    ("al.initial_size", 0, {}, "positive"),
    ("al.subpool_size", 0, {}, "positive"),
    ("data.max_length", 0, {}, "positive"),
    ("train.batch_size", 0, {}, "positive"),
    ("train.eval_batch_size", -1, {}, ">= 0"),
    ("train.learning_rate", 0.0, {}, "positive"),
    ("train.eps", 0.0, {}, "positive"),
    ("train.patience", 0, {}, "positive"),
    ("anchoral.num_anchors", 0, {"al.filter": "anchoral"}, "positive"),
    ("anchoral.num_neighbours", -1, {"al.filter": "anchoral"}, "positive"),
    ("seals.num_neighbours", 0, {"al.filter": "seals"}, "positive"),
    *[(f"index.{k}", 0, {"al.filter": f}, "positive")
      for k in ("embed_max_length", "connectivity", "expansion_add", "ef_search")
      for f in ("seals", "anchoral")],
    ("index.embed_batch_size", -1, {}, ">= 0"),
    ("index.build_threads", -1, {"al.filter": "anchoral"}, ">= 0"),
    ("data.test_size", -5, {}, ">= 0"),
    ("data.val_size", -1, {}, ">= 0"),
    ("al.initial_per_minority", -1, {}, ">= 0"),
    ("train.epochs", -1, {}, ">= 0"),
    ("train.min_steps", -1, {}, ">= 0"),
    ("train.weight_decay", -0.01, {}, ">= 0"),
    *[(key, -1, {}, ">= 0") for key in validation.SEEDS],
    ("train.b1", 1.0, {}, "[0, 1)"),
    ("train.b2", -0.1, {}, "[0, 1)"),
    # Rules across fields.
    ("train.min_steps", 0, {"train.epochs": 0}, "train.epochs"),
    ("al.budget", 100, {"al.initial_size": 100}, "al.initial_size"),
    ("al.budget", 130, {}, "multiple of al.query_size"),
    ("al.initial_per_minority", 101, {"al.initial_size": 100}, "al.initial_size"),
    ("al.subpool_size", 24, {"al.filter": "randomsubset", "al.query_size": 25}, "al.query_size"),
    ("al.subpool_size", 24, {"al.filter": "anchoral", "al.query_size": 25}, "al.query_size"),
    ("train.model_selection", "val_minority_f1", {"data.val_size": 0}, "data.val_size"),
]

# Fields validate() leaves alone, and why: what they mean is checked elsewhere, or anything goes.
NOT_CHECKED = {
    "data.kwargs": "the task builder's arguments: the builder checks them (data/errors.py)",
    "data.cache_dir": "a directory, created on first use",
    "model.pretrained": "a bool (ConfigDict fixes the type); model.name checks the preset",
    "model.tokenizer": "on disk: prepare.check_inputs",
    "index.embed_model": "on disk: prepare.check_inputs",
    "index.path": "on disk: prepare.check_inputs / prepare.cached_index",
    "index.import_path": "on disk: prepare.check_inputs",
    "index.view": "a bool",
    "wandb.project": "free text for W&B",
    "wandb.group": "free text for W&B",
    "wandb.tags": "free text for W&B",
    "wandb.dir": "a directory ('' = the workdir)",
    "wandb.entity": "free text for W&B ('' = $WANDB_ENTITY)",
    "wandb.name": "free text for W&B ('' = the sweep's run path or the workdir's name)",
    "wandb.job_type": "free text for W&B",
}


def _config(tmp_path, overrides: dict) -> ml_collections.ConfigDict:
  return tiny_config(tmp_path, 400, 100, **overrides)


@pytest.mark.parametrize(("key", "value", "others", "hint"), BAD,
                         ids=[f"{b[0]}={b[1]!r}" + ("+" + ",".join(b[2]) if b[2] else "")
                              for b in BAD])
def test_each_check_names_its_option(tmp_path, key, value, others, hint):
  config = _config(tmp_path, {**others, key: value})
  with pytest.raises(ConfigError) as e:
    validate(config)
  assert key in str(e.value) and hint in str(e.value)


def test_every_field_of_base_is_checked_or_says_why_not():
  checked = {b[0] for b in BAD}
  fields = set(common.field_keys(common.base()))
  assert not checked & set(NOT_CHECKED)
  assert fields == checked | set(NOT_CHECKED), (
      "A field of config.base() that validate() neither checks (add the check and a BAD row) "
      f"nor lists in NOT_CHECKED: {sorted(fields - checked - set(NOT_CHECKED))}; stale rows: "
      f"{sorted((checked | set(NOT_CHECKED)) - fields)}")


ENUMS = [
    ("data.name", sorted(registry.BUILDERS), {}),
    ("al.strategy", sorted(strategies.STRATEGY_OUTPUTS), {}),
    ("al.filter", filters.FILTERS, {}),
    ("anchoral.anchor_strategy", filters.ANCHOR_STRATEGIES, {}),
    ("anchoral.minority_anchor_strategy", ("", *filters.ANCHOR_STRATEGIES), {}),
    ("anchoral.majority_anchor_strategy", ("", *filters.ANCHOR_STRATEGIES), {}),
    ("anchoral.sampling", filters.SUBPOOL_SAMPLING, {}),
    ("train.model_selection", train.MODEL_SELECTIONS, {"data.val_size": 50}),
    ("train.trainable", train.TRAINABLE, {}),
    ("model.pooling", models.POOLINGS, {}),
    ("model.dtype", validation.MODEL_DTYPES, {}),
    ("index.dtype", index.STORAGE, {"al.filter": "anchoral"}),
]


@pytest.mark.parametrize(("key", "values", "others"), ENUMS, ids=[e[0] for e in ENUMS])
def test_every_registered_value_is_accepted(tmp_path, key, values, others):
  for value in values:
    validate(_config(tmp_path, {**others, key: value}))


def test_loop_reexports_validation():
  assert validation.validate is validate and errors.ConfigError is ConfigError


def test_initial_minority_examples_beyond_the_initial_set_fail_in_setup(tmp_path):
  """Two minority classes x 6 > 10 initial labels: config-only validation cannot see the task's
  minority classes, so the set-up checks it right after loading the task, before tokens,
  model, embeddings and index (it used to fail in `initial_set`, after all of them)."""
  rows = [(f"text {i} about {c}", c) for c in ("a", "b", "c") for i in range(40)]
  path = tmp_path / "user.csv"
  pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
  c = _config(tmp_path, {"data.name": "user", "al.initial_size": 10, "al.budget": 35,
                         "al.initial_per_minority": 6, "data.test_size": 0})
  c.data.kwargs = ml_collections.ConfigDict({
      "path": str(path), "text_column": "text", "label_column": "label",
      "class_names": "a,b,c", "minority_classes": "b,c"})
  validate(c)
  with pytest.raises(ConfigError, match=r"al.initial_per_minority \(6\) for each of the 2 "
                                        r"minority classes .* asks for 12 initial examples"):
    run_state.Setup(c)
