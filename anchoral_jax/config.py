"""The base config every experiment family (configs/*.py) starts from (SPEC.md defaults).

Every field is the paper's default unless a comment says otherwise. Families import `base()`
and override; `parse_arg` reads "key=value,key2=value2" strings (big_vision style).
"""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, **defaults):
  """'a=1,b=x' -> ConfigDict with the given defaults (typed by the default's type)."""
  out = ml_collections.ConfigDict(defaults)
  if not arg:
    return out
  for part in arg.split(","):
    if not part:
      continue
    if "=" not in part:  # a bare word sets the first boolean default to True (e.g. "runlocal")
      if part not in defaults:
        raise ValueError(f"Unknown config argument {part!r}; known: {sorted(defaults)}.")
      out[part] = True
      continue
    k, v = part.split("=", 1)
    if k not in defaults:
      raise ValueError(f"Unknown config argument {k!r}; known: {sorted(defaults)}.")
    d = defaults[k]
    out[k] = (v.lower() in ("1", "true", "yes")) if isinstance(d, bool) else type(d)(v)
  return out


def num_query_rounds(config: ml_collections.ConfigDict) -> int:
  """Query rounds of a run: (al.budget - al.initial_size) / al.query_size (budget = total)."""
  al = config.al
  return (al.budget - al.initial_size) // al.query_size


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  c.data.name = "tweets_iphone"  # anchoral_jax.data.registry name
  c.data.kwargs = ml_collections.ConfigDict()  # passed to the dataset builder
  c.data.cache_dir = "~/.cache/anchoral_jax"  # tokens, embeddings, index (keyed by content hash)
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
  c.train.eval_batch_size = 256  # rows per scoring batch (pool/test)
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
  c.al.strategy_seed = 42  # fixed in the paper
  c.al.subpool_size = 10_000  # randomsubset size and anchoral's top-M cap

  c.anchoral = ml_collections.ConfigDict()
  c.anchoral.num_anchors = 10  # per class
  c.anchoral.num_neighbours = 50  # per anchor
  c.anchoral.anchor_strategy = "kmeans_pp"  # kmeans_pp|random|kmeans|entropy
  # QUIRK fix (SPEC.md §2): separate strategies that really take effect ("" = anchor_strategy)
  c.anchoral.minority_anchor_strategy = ""
  c.anchoral.majority_anchor_strategy = ""
  c.anchoral.sampling = "topk"  # topk (paper) | softmax (variant, unused in the paper)
  c.anchoral.seed = 42  # one persistent anchor RNG across rounds and classes

  c.seals = ml_collections.ConfigDict()
  c.seals.num_neighbours = 50

  c.randomsubset = ml_collections.ConfigDict()
  c.randomsubset.seed = 42

  c.index = ml_collections.ConfigDict()
  c.index.embed_model = "all-MiniLM-L6-v2"  # paper: all-mpnet-base-v2 (not packaged offline)
  c.index.embed_max_length = 256
  c.index.embed_batch_size = 128
  c.index.path = ""  # prebuilt index (`anchoral index`); "" = build and cache automatically
  # Precomputed pool embeddings to import instead of embedding (`anchoral embed`): a parquet with
  # columns `uid` and `embedding_<embed_model>` (Hugging Face pietrolesci/* embedding configs,
  # e.g. all-mpnet-base-v2 as in the paper); "" = embed with our encoder.
  c.index.import_path = ""
  c.index.view = False  # memory-map the index instead of loading it (big pools)
  c.index.connectivity = 64  # HNSW M (official hnswlib setting)
  c.index.expansion_add = 200  # ef_construction
  c.index.ef_search = 50  # QUIRK: the official query-time ef ended up == k (50)

  c.wandb = ml_collections.ConfigDict()
  c.wandb.mode = "offline"  # offline (default, no network) | disabled | online (opt-in)
  c.wandb.project = "anchoral-jax"
  c.wandb.group = ""  # default set by the family config
  c.wandb.tags = ()
  c.wandb.dir = ""  # "" = <workdir>
  return c
