"""The base config every experiment family (configs/*.py) starts from (SPEC.md defaults).

Every field is the paper's default unless a comment says otherwise. Families import `base()`
and override; `parse_arg` reads "key=value,key2=value2" strings (big_vision style).
"""

from __future__ import annotations

import os

import ml_collections

# Sets the default of `data.cache_dir` (tokens, embeddings, indexes, XLA's compiled programs):
# on a cluster the home directory is often small or slow, and one variable in a job script is
# easier than `--config.data.cache_dir=...` on every command of a sweep.
CACHE_DIR_ENV = "ANCHORAL_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/anchoral_jax"


def parse_arg(arg: str | None, **defaults):
  """'a=1,b=x' -> ConfigDict with the given defaults (typed by the default's type)."""
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out

  def unknown(name: str) -> ValueError:
    import difflib

    close = difflib.get_close_matches(name, list(defaults), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"Unknown config argument {name!r}{hint}; known: {sorted(defaults)}.")

  for part in arg.split(","):
    if not part:
      continue
    if "=" not in part:  # a bare word sets the first boolean default to True (e.g. "runlocal")
      if part not in defaults:
        raise unknown(part)
      out[part] = True
      continue
    k, v = part.split("=", 1)
    if k not in defaults:
      raise unknown(k)
    d = defaults[k]
    out[k] = (v.lower() in ("1", "true", "yes")) if isinstance(d, bool) else type(d)(v)
  return out


def num_query_rounds(config: ml_collections.ConfigDict) -> int:
  """Query rounds of a run: (al.budget - al.initial_size) / al.query_size (budget = total)."""
  al = config.al
  return (al.budget - al.initial_size) // al.query_size


# The paper's AL settings (Lesci & Vlachos, NAACL 2024), written here once: the config below,
# al.filters.FilterConfig, anchoral_jax.Selector and `anchoral label` take them from here.
PAPER_SUBPOOL_SIZE = 10_000  # RandomSubset's subpool size and AnchorAL's cap M
PAPER_NUM_ANCHORS = 10  # AnchorAL: per class
PAPER_NUM_NEIGHBOURS = 50  # AnchorAL: per anchor; SEALS: per labelled row
PAPER_SEED = 42  # the strategy's, RandomSubset's and AnchorAL's generators (fixed in the paper)


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  c.data.name = "tweets_iphone"  # anchoral_jax.data.registry name
  c.data.kwargs = ml_collections.ConfigDict()  # passed to the dataset builder
  # tokens, embeddings, index (keyed by content hash); $ANCHORAL_CACHE_DIR moves the default
  c.data.cache_dir = os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
  c.data.max_length = 512  # tokens; paper: 512 with dynamic padding
  c.data.seed = 654321  # data order (training batches); paper seeds 654321 / 123456
  c.data.split_seed = 42  # test/val sub-sampling
  c.data.test_size = 0  # 0 = the full test split; >0 = stratified sample (demo speed only)
  c.data.val_size = 0  # >0 = stratified validation set held out of the pool (not in the paper)

  c.model = ml_collections.ConfigDict()
  c.model.name = "bert-base-uncased"  # local dir, packaged model, HF-cache name or preset
  c.model.pretrained = True  # False: random init from bert.PRESETS[name] (tests)
  c.model.tokenizer = ""  # tokenizer source when it differs from model.name (presets)
  c.model.dtype = "float32"  # compute dtype: float32 or bfloat16 (params stay float32)
  c.model.seed = 654321  # head init + dropout; paper seeds 654321 / 123456
  # What the head reads: "pooler" (tanh dense on [CLS], BertForSequenceClassification: the
  # paper) | "mean" (masked mean of the last layer: sentence-transformers encoders' pooling).
  c.model.pooling = "pooler"

  # The training defaults, written only here: `train.TrainConfig` reads its defaults from
  # these (tests/test_train.py checks the two have the same fields).
  c.train = ml_collections.ConfigDict()
  c.train.learning_rate = 4e-5
  c.train.b1 = 0.9
  c.train.b2 = 0.999
  c.train.eps = 1e-8
  c.train.weight_decay = 0.01
  c.train.batch_size = 32
  c.train.epochs = 10
  c.train.min_steps = 100  # steps = max(epochs x batches, min_steps)
  c.train.patience = 10  # early stopping, epochs
  c.train.model_selection = "train_minority_f1"  # paper; or "val_minority_f1", "last"
  # Rows per scoring batch (pool/test); 0 = the platform's measured best (scoring.EVAL_BATCH).
  c.train.eval_batch_size = 0
  # Which parameters train: "all" (the paper: full fine-tuning) | "head" (encoder frozen, its
  # outputs computed once per task and cached, only the linear head trains: fast on a CPU).
  c.train.trainable = "all"

  c.al = ml_collections.ConfigDict()
  c.al.strategy = "entropy"  # random|entropy|least_confidence|margin|badge|ftbertkm
  c.al.filter = "anchoral"  # none|randomsubset|seals|anchoral
  # TOTAL labelled-set size at the end, the initial set included (the official `max_budget`):
  # (5000 - 100) / 25 = 196 query rounds, rounds 0..196 (the last only trains and tests).
  c.al.budget = 5000
  c.al.query_size = 25  # labels per round
  c.al.initial_size = 100
  c.al.initial_per_minority = 5  # per minority class, then uniform non-minority fill
  c.al.initial_seed = 654321  # paper seeds 654321 / 123456
  c.al.strategy_seed = PAPER_SEED
  c.al.subpool_size = PAPER_SUBPOOL_SIZE  # randomsubset size and anchoral's top-M cap

  c.anchoral = ml_collections.ConfigDict()
  c.anchoral.num_anchors = PAPER_NUM_ANCHORS  # per class
  c.anchoral.num_neighbours = PAPER_NUM_NEIGHBOURS  # per anchor
  c.anchoral.anchor_strategy = "kmeans_pp"  # kmeans_pp|random|kmeans|entropy
  # QUIRK fix (SPEC.md §2): separate strategies that really take effect ("" = anchor_strategy)
  c.anchoral.minority_anchor_strategy = ""
  c.anchoral.majority_anchor_strategy = ""
  c.anchoral.sampling = "topk"  # topk (paper) | softmax (variant, unused in the paper)
  c.anchoral.seed = PAPER_SEED  # one persistent anchor RNG across rounds and classes

  c.seals = ml_collections.ConfigDict()
  c.seals.num_neighbours = PAPER_NUM_NEIGHBOURS

  c.randomsubset = ml_collections.ConfigDict()
  c.randomsubset.seed = PAPER_SEED

  c.index = ml_collections.ConfigDict()
  c.index.embed_model = "all-MiniLM-L6-v2"  # paper: all-mpnet-base-v2 (not packaged offline)
  c.index.embed_max_length = 256
  c.index.embed_batch_size = 0  # 0 = the backend's default (32 on CPU: 1.15-1.33x faster than 128)
  c.index.path = ""  # prebuilt index (`anchoral index`); "" = build and cache automatically
  # Precomputed pool embeddings to import instead of embedding (`anchoral embed`): a parquet with
  # columns `uid` and `embedding_<embed_model>` (Hugging Face pietrolesci/* embedding configs,
  # e.g. all-mpnet-base-v2 as in the paper); "" = embed with our encoder.
  c.index.import_path = ""
  c.index.view = False  # memory-map the index instead of loading it (big pools)
  c.index.connectivity = 64  # HNSW M (official hnswlib setting)
  c.index.expansion_add = 200  # ef_construction
  c.index.dtype = "f16"  # vector storage: f16 (1.5x faster build/search, same recall) | f32
  c.index.ef_search = 50  # QUIRK: the official query-time ef ended up == k (50)
  # threads adding vectors: 1 = the same graph at every build (a rebuilt cache, another run's
  # machine); 0 = all cores, faster on many cores, but each build differs (bench/RESULTS.md)
  c.index.build_threads = 1

  c.wandb = ml_collections.ConfigDict()
  c.wandb.mode = "offline"  # offline (default, no network) | disabled | online (opt-in)
  c.wandb.project = "anchoral-jax"
  c.wandb.entity = ""  # "" = $WANDB_ENTITY, else the W&B account's default entity
  # One naming rule for every config: a sweep's run is named by its path in the sweep and
  # grouped by experiment/cell, however it is started (the sweep passes both; `anchoral run`
  # on a sweep's workdir reads them from its overrides.json).
  c.wandb.name = ""  # "" = the run's path in its sweep, else the workdir's folder name
  c.wandb.job_type = "al"
  c.wandb.group = ""  # default set by the family config
  c.wandb.tags = ()
  c.wandb.dir = ""  # "" = <workdir>
  return c


# ---------------------------------------------------------------------------------------------
# Field docs: what `anchoral run/config/sweep --help` prints (`fields_help`). One line per field
# of `base()`, kept here beside it so that a new field without a doc fails
# tests/test_cli_help.py rather than going undocumented on the command line.
# ---------------------------------------------------------------------------------------------

SECTION_DOCS = {
    "data": "the task, its cache and its splits (SPEC.md §7)",
    "model": "the classifier: a BERT-style encoder and a linear head (SPEC.md §5)",
    "train": "fine-tuning in every round: AdamW, epochs, model selection (SPEC.md §5)",
    "al": "the active-learning loop: budget, rounds, base strategy, pool filter (SPEC.md §1-3)",
    "anchoral": "the AnchorAL filter: anchors per class and their neighbours (SPEC.md §2)",
    "seals": "the SEALS filter (SPEC.md §2)",
    "randomsubset": "the RandomSubset filter (SPEC.md §2)",
    "index": "retrieval embeddings and the usearch HNSW index (SPEC.md §4)",
    "wandb": "the optional W&B sink; metrics.jsonl in the workdir is always written",
}

FIELD_DOCS = {
    "data.name": "task name in anchoral_jax.data.registry (embedded tasks, tfds tasks, "
                 "user files via data.kwargs)",
    "data.kwargs": "keyword arguments for the task's builder, e.g. a user task's train/test "
                   "file paths and column names",
    "data.cache_dir": "where tokens, embeddings, indexes and compiled programs are cached "
                      f"(default ${CACHE_DIR_ENV}, else {DEFAULT_CACHE_DIR})",
    "data.max_length": "tokens per text, longer texts are truncated (paper: 512)",
    "data.seed": "order of the training batches (paper seeds 654321 / 123456)",
    "data.split_seed": "seed of the test/validation sub-sampling",
    "data.test_size": "0 = the full test split; >0 = a stratified sample of that size (demos)",
    "data.val_size": ">0 = a stratified validation set held out of the pool (not in the paper)",
    "model.name": "encoder: a local dir, a packaged model, a Hugging Face cache name or a preset",
    "model.pretrained": "false = random init from the preset's shape (tests)",
    "model.tokenizer": "tokenizer source when it differs from model.name (presets); "
                       "'' = model.name",
    "model.dtype": "compute dtype: float32 or bfloat16 (parameters stay float32)",
    "model.seed": "head init and dropout (paper seeds 654321 / 123456)",
    "model.pooling": "what the head reads: pooler (tanh dense on [CLS], the paper) or mean",
    "train.learning_rate": "AdamW learning rate (paper: 4e-5)",
    "train.b1": "AdamW beta1",
    "train.b2": "AdamW beta2",
    "train.eps": "AdamW epsilon",
    "train.weight_decay": "AdamW weight decay",
    "train.batch_size": "labelled examples per training step",
    "train.epochs": "epochs per round, at least (steps = max(epochs x batches, min_steps))",
    "train.min_steps": "training steps per round, at least (realised as whole epochs)",
    "train.patience": "early stopping: epochs without a better selection metric",
    "train.model_selection": "which epoch's weights a round keeps: train_minority_f1 (paper), "
                             "val_minority_f1 or last",
    "train.eval_batch_size": "rows per scoring batch (pool and test forward passes); 0 = the "
                             "platform's default (CPU 32, GPU/TPU 256)",
    "train.trainable": "all (full fine-tuning, the paper) or head (frozen encoder, cached "
                       "features: fast on a CPU)",
    "al.strategy": "base strategy: random, entropy, least_confidence, margin, badge, ftbertkm",
    "al.filter": "pool filter before the strategy: none, randomsubset, seals, anchoral",
    "al.budget": "total labelled-set size at the end, the initial set included (paper: 5000)",
    "al.query_size": "labels queried per round (paper: 25)",
    "al.initial_size": "size of the initial labelled set (paper: 100)",
    "al.initial_per_minority": "initial examples drawn from each minority class (paper: 5)",
    "al.initial_seed": "seed of the initial labelled set (paper seeds 654321 / 123456)",
    "al.strategy_seed": "seed of the base strategy's randomness (fixed at 42 in the paper)",
    "al.subpool_size": "RandomSubset's subpool size and AnchorAL's top-M cap (paper: 10000)",
    "anchoral.num_anchors": "anchors per class and round (paper: 10)",
    "anchoral.num_neighbours": "pool neighbours each anchor retrieves (paper: 50)",
    "anchoral.anchor_strategy": "how anchors are picked: kmeans_pp, random, kmeans, entropy",
    "anchoral.minority_anchor_strategy": "anchor strategy for minority classes "
                                         "('' = anchor_strategy)",
    "anchoral.majority_anchor_strategy": "anchor strategy for the other classes "
                                         "('' = anchor_strategy)",
    "anchoral.sampling": "subpool from the scores: topk (paper) or softmax (a variant)",
    "anchoral.seed": "the one anchor RNG that advances across rounds and classes",
    "seals.num_neighbours": "pool neighbours each labelled query retrieves (paper: 50)",
    "randomsubset.seed": "seed of the fresh random subpool drawn every round",
    "index.embed_model": "sentence encoder of the retrieval embeddings (paper: "
                         "all-mpnet-base-v2)",
    "index.embed_max_length": "tokens per text for the retrieval embeddings",
    "index.embed_batch_size": "texts per embedding batch (0 = the backend's default: 32 on CPU)",
    "index.path": "a prebuilt index (`anchoral index`); '' = build and cache it automatically",
    "index.import_path": "parquet of precomputed pool embeddings to import; '' = embed here",
    "index.view": "memory-map the index instead of loading it (big pools)",
    "index.connectivity": "HNSW M, links per node (official setting: 64)",
    "index.expansion_add": "HNSW ef_construction (official setting: 200)",
    "index.dtype": "index vector storage: f16 (default) or f32 (the official index's)",
    "index.ef_search": "HNSW query-time ef (the official code's ended up equal to k: 50)",
    "index.build_threads": "threads building the index: 1 = the same graph at every build "
                           "(reproducible); 0 = all cores (faster, each build differs)",
    "wandb.mode": "offline (default, no network), disabled or online (opt-in)",
    "wandb.project": "W&B project",
    "wandb.entity": "W&B entity (user or team; '' = $WANDB_ENTITY, else the account's default)",
    "wandb.name": "W&B run name ('' = the run's path in its sweep, else the workdir's name)",
    "wandb.job_type": "W&B job type of an AL run ('al'; `anchoral embed`/`index` log runs of "
                      "type 'embed'/'index')",
    "wandb.group": "W&B group ('' = the family's default; sweeps set experiment/cell)",
    "wandb.tags": "W&B tags, a tuple of strings",
    "wandb.dir": "where W&B writes its files ('' = the workdir)",
}


def field_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Dotted keys of a config's fields (ConfigDict's sorted order); an empty section
  (data.kwargs) is one field, since its content is the builder's, not the config's."""
  out = []
  for k, v in config.items(preserve_field_references=True):
    if isinstance(v, ml_collections.ConfigDict) and len(v):
      out += field_keys(v, f"{prefix}{k}.")
    else:
      out.append(prefix + k)
  return out


def fields_help(config: ml_collections.ConfigDict | None = None) -> str:
  """Every field of `config` (default `base()`) with its value and doc, grouped by section:
  the `--config.<key>=value` overrides a user can pass, found from the command line."""
  config = base() if config is None else config
  lines, section = [], None
  sections, docs = list(SECTION_DOCS), list(FIELD_DOCS)  # base()'s order, then the family's

  def order(key: str) -> tuple[int, int, str]:
    top = key.split(".")[0]
    return (sections.index(top) if top in sections else len(sections),
            docs.index(key) if key in docs else len(docs), key)

  for key in sorted(field_keys(config), key=order):
    top = key.split(".")[0]
    if top != section:
      section = top
      lines.append(f"\n  {top}: {SECTION_DOCS.get(top, '(added by the config family)')}")
    node = config
    for part in key.split("."):
      node = node[part]
    value = "{}" if isinstance(node, ml_collections.ConfigDict) else repr(node)
    doc = FIELD_DOCS.get(key, "(added by the config family)")
    lines.append(f"    --config.{key}={value}  {doc}")
  return "\n".join(lines).lstrip("\n")
