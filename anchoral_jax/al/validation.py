"""Config validation: `validate(config)` fails early, with the fix in the message.

`loop.run` (and `anchoral sweep`, for every run it expands) calls it before anything expensive
(task, tokens, embeddings, index, training), so a typo or an impossible size costs seconds, not
a round of training. It checks the config alone, never the filesystem (`prepare.check_inputs`
does that), so a sweep can check every run on any machine. The CLI reports ConfigError in one
line with exit status 2 (CONTRIBUTING.md §9).

Every enumerated option is checked against the registry of the code that dispatches on it (one
source each: a new filter or strategy needs no edit here); tests/test_validation.py gives every
check a bad value and asserts that each field of `config.base()` is checked or says why not.
"""

from __future__ import annotations

import ml_collections

from anchoral_jax.errors import ConfigError

# The compute dtypes every model family supports (models/*.py: parameters stay float32).
MODEL_DTYPES = ("float32", "bfloat16")
# Seeds of numpy Generators (and the model's JAX key): numpy refuses negative seeds, and
# several are first used only after the set-up (embeddings, index), so they are checked here.
SEEDS = ("data.seed", "data.split_seed", "model.seed", "al.initial_seed", "al.strategy_seed",
         "anchoral.seed", "randomsubset.seed")


def _get(config: ml_collections.ConfigDict, key: str):
  node = config
  for part in key.split("."):
    node = node[part]
  return node


def validate(config: ml_collections.ConfigDict) -> None:
  """Fails early, with the fix in the message, on names and sizes that cannot work.

  Several of these used to fail only after training (a zero subpool crashed scoring) or after
  the embeddings and the index were built (a negative seed), or, worse, ran to the end with a
  silently odd setup (a negative test_size tested on 2 examples, patience 0 stopped like 1).
  """
  from anchoral_jax import models
  from anchoral_jax.al import filters, strategies
  from anchoral_jax.data import registry
  from anchoral_jax.tracking import wandb_sink as tracking_wandb_sink
  from anchoral_jax.training import train

  c = config
  al = c.al

  def choose(key: str, value, valid) -> None:
    if value not in valid:
      raise ConfigError(f"Unknown {key} {value!r}; choose from {list(valid)}.")

  choose("data.name", c.data.name, sorted(registry.BUILDERS))
  choose("al.strategy", al.strategy, sorted(strategies.STRATEGY_OUTPUTS))
  choose("al.filter", al.filter, filters.FILTERS)
  choose("anchoral.anchor_strategy", c.anchoral.anchor_strategy, filters.ANCHOR_STRATEGIES)
  for key in ("minority_anchor_strategy", "majority_anchor_strategy"):
    val = c.anchoral.get(key)
    if val:  # "" = anchor_strategy
      choose(f"anchoral.{key}", val, filters.ANCHOR_STRATEGIES)
  choose("anchoral.sampling", c.anchoral.sampling, filters.SUBPOOL_SAMPLING)
  choose("train.model_selection", c.train.model_selection, train.MODEL_SELECTIONS)
  choose("train.trainable", c.train.trainable, train.TRAINABLE)
  choose("model.pooling", c.model.pooling, models.POOLINGS)
  choose("model.dtype", c.model.dtype, MODEL_DTYPES)
  if filters.needs_index(al.filter):
    from anchoral_jax.retrieval.prepare import validate_index

    validate_index(c)
  if "wandb" in c and c.wandb.get("mode") is not None:
    try:
      tracking_wandb_sink.resolve_wandb_mode(c.wandb.mode)
    except ValueError as e:
      raise ConfigError(f"wandb.mode: {e} (aliases: dryrun = offline, run = online).") from e
  if not c.model.pretrained and c.model.name not in models.PRESETS:
    raise ConfigError(f"model.pretrained=False builds a random model from a preset, but "
                      f"model.name {c.model.name!r} is not one; choose from {sorted(models.PRESETS)} "
                      "(or set model.pretrained=True for a checkpoint).")

  positive = {"al.budget": al.budget, "al.query_size": al.query_size,
              "al.initial_size": al.initial_size, "al.subpool_size": al.subpool_size,
              "data.max_length": c.data.max_length, "train.batch_size": c.train.batch_size,
              "train.learning_rate": c.train.learning_rate,
              "train.eps": c.train.eps,  # 0: Adam divides 0 by 0 for a parameter with no gradient
              "train.patience": c.train.patience}  # <= 0 stopped exactly as 1 does
  if al.filter == "anchoral":
    positive["anchoral.num_anchors"] = c.anchoral.num_anchors
    positive["anchoral.num_neighbours"] = c.anchoral.num_neighbours
  if al.filter == "seals":
    positive["seals.num_neighbours"] = c.seals.num_neighbours
  for key, value in positive.items():
    if value <= 0:
      raise ConfigError(f"{key} must be positive (got {value}).")
  non_negative = {"data.test_size": (c.data.test_size, "0 = the full test split"),
                  "train.eval_batch_size": (c.train.eval_batch_size, "0 = the platform's default"),
                  "index.embed_batch_size": (c.index.embed_batch_size, "0 = the platform's default"),
                  "data.val_size": (c.data.val_size, "0 = no validation set"),
                  "al.initial_per_minority": (al.initial_per_minority, "per minority class"),
                  "train.epochs": (c.train.epochs, "0 = train.min_steps steps"),
                  "train.min_steps": (c.train.min_steps, "training steps per round, at least"),
                  "train.weight_decay": (c.train.weight_decay, "0 = no weight decay"),
                  **{key: (_get(c, key), "a generator's seed") for key in SEEDS}}
  for key, (value, meaning) in non_negative.items():
    if value < 0:
      raise ConfigError(f"{key} must be >= 0 ({meaning}), got {value}.")
  for key in ("train.b1", "train.b2"):
    if not 0 <= c.train[key.split(".")[1]] < 1:
      raise ConfigError(f"{key} must be in [0, 1) (an AdamW moment decay), got "
                        f"{c.train[key.split('.')[1]]}.")

  if c.train.epochs == 0 and c.train.min_steps <= 0:
    raise ConfigError("train.epochs = 0 and train.min_steps <= 0 would never train; raise one.")
  if al.budget <= al.initial_size:
    raise ConfigError(f"al.budget ({al.budget}) is the total labelled size, initial set "
                      f"included: it must exceed al.initial_size ({al.initial_size}).")
  if (al.budget - al.initial_size) % al.query_size:
    raise ConfigError(f"al.budget - al.initial_size ({al.budget} - {al.initial_size}) must be a "
                      f"multiple of al.query_size ({al.query_size}): query rounds = "
                      "(budget - initial_size) / query_size.")
  if al.initial_per_minority > al.initial_size:
    raise ConfigError(f"al.initial_per_minority ({al.initial_per_minority}) exceeds "
                      f"al.initial_size ({al.initial_size}): the initial set holds the minority "
                      "examples. Lower al.initial_per_minority or raise al.initial_size.")
  if al.filter in ("randomsubset", "anchoral") and al.subpool_size < al.query_size:
    raise ConfigError(f"al.subpool_size ({al.subpool_size}) < al.query_size ({al.query_size}): "
                      f"the {al.filter} subpool could never hold a round's picks, so every round "
                      "would top them up uniformly from the pool. Raise al.subpool_size.")
  if c.train.model_selection == "val_minority_f1" and c.data.val_size <= 0:
    raise ConfigError("train.model_selection='val_minority_f1' needs data.val_size > 0.")
