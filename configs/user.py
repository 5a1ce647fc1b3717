r"""Your own labelled text file as an AL task (CSV/TSV, parquet or JSON lines).

  anchoral run --config configs/user.py --workdir runs/mydata \
    --config.data.kwargs.path=reviews.csv --config.data.kwargs.text_column=review \
    --config.data.kwargs.label_column=stars --config.data.kwargs.class_names=neg,pos \
    --config.data.kwargs.minority_classes=pos --config.data.kwargs.prevalence=0.01

Everything else is the paper's setup with the embedded default's encoder (all-MiniLM-L6-v2,
offline) as classifier and retrieval model; override `model.name` with a local checkpoint
directory for another BERT-family model. Runtime depends on the pool size (embedding ~150
texts/s on 2 CPU cores) and on the budget (paper: 5,000 labels, 200 rounds).

Argument: `runlocal` shrinks budget and training for a first smoke run.
"""

import ml_collections

from anchoral_jax import config as common


def get_config(arg: str | None = None):
  a = common.parse_arg(arg, runlocal=False)
  c = common.base()
  c.data.name = "user"
  c.data.kwargs = ml_collections.ConfigDict({
      "path": "",  # the file (required)
      "text_column": "text",
      "label_column": "label",
      "class_names": "",  # comma-separated, in label-index order (required)
      "minority_classes": "",  # comma-separated names (required)
      "test_path": "",  # "" = stratified test split of `path`
      "uid_column": "",  # "" = row numbers
      "test_fraction": 0.2,
      "prevalence": 0.0,  # > 0: down-sample the minority to this share of the pool
      "seed": 42,
  })
  c.data.max_length = 256
  c.model.name = "all-MiniLM-L6-v2"
  c.wandb.group = "user"
  if a.runlocal:
    c.al.budget = 200  # total: 100 initial + 4 query rounds of 25
    c.train.epochs = 3
    c.train.min_steps = 24
  return c
