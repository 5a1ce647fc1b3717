r"""Other classifiers: AG News-Business and Amazon-Agri, Entropy behind each pool filter, 8 seeds.

Lesci & Vlachos (NAACL 2024), "other models" analysis; official launcher pietrolesci/anchoral
`bin/run_other_models.sh` (its stray `num_neighbours=500,5000` is not carried over). Models:
bert-tiny (google/bert_uncased_L-2_H-128_A-2), albert-base-v2, deberta-v3-base, gpt2, t5-base.

Decision: only BERT-family encoders are implemented (anchoral_jax/models/bert.py). The other
four keep their entries in MODELS (checkpoint, family, the paper's notes) but `get_config` of
one of them raises NotImplementedError at once (before a job is queued, rather than failing
deep in the loader with a misleading "not in the HF cache"), and the sweep leaves them out.
When a family lands in anchoral_jax/models, flip its `implemented` flag.
So the sweep is 2 datasets x 3 filters x bert-tiny x 8 seeds = 48 runs.

Tiny (offline; bert-tiny's architecture randomly initialised on 1,500 embedded tweets;
24 runs, ~40 s each, ~10 min with --parallel 2 on 2 CPU cores):

  anchoral sweep --config configs/other_models.py:runlocal --runs_dir runs/other-local --parallel 2
  anchoral report runs/other-local

Full size (datasets in $ANCHORAL_DATA_DIR, the checkpoint in the local HF cache; bert-tiny runs
take minutes on a GPU):

  anchoral sweep --config configs/other_models.py --runs_dir runs/other_models --backend slurm
  anchoral report runs/other_models

Expected (paper, shape): AnchorAL's advantage over RandomSubset and SEALS holds across model
sizes; the small bert-tiny reaches a much lower minority F1 than bert-base.

Arguments: model=bert-tiny|albert-base-v2|deberta-v3-base|gpt2|t5-base  dataset=  filter=
  runlocal (alias tiny). Sweep only: models=a+b (implemented ones), datasets=, filters=, seeds=N.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ml_collections

from anchoral_jax import config as common
from anchoral_jax.sweep import load_module

main = load_module(Path(__file__).with_name("main.py"))  # configs/ is not a package

EXPERIMENT = "other_models"
DATASETS = ("agnews_business", "amazoncat_agri")  # the paper's two datasets here
FILTERS = ("randomsubset", "seals", "anchoral")
STRATEGY = "entropy"


@dataclasses.dataclass(frozen=True)
class Model:
  checkpoint: str  # Hugging Face name, read from the local cache (never downloaded)
  family: str  # HF model_type
  implemented: bool
  local_preset: str = "tiny"  # runlocal: randomly initialised anchoral_jax.models.bert preset
  note: str = ""


MODELS = {
    "bert-tiny": Model("google/bert_uncased_L-2_H-128_A-2", "bert", True, "bert-tiny",
                       "2 layers, hidden 128 (Turc et al. 2019)"),
    "albert-base-v2": Model("albert-base-v2", "albert", False,
                            note="shared layers, factorised embeddings"),
    "deberta-v3-base": Model("microsoft/deberta-v3-base", "deberta-v2", False,
                             note="disentangled attention, SentencePiece vocabulary"),
    "gpt2": Model("gpt2", "gpt2", False,
                  note="pad = eos; classify from the last non-pad token. QUIRK: the official "
                  "code padded the attention mask with the pad id (a bug), not to be copied"),
    "t5-base": Model("t5-base", "t5", False, note="encoder only, mean-pooled, linear head"),
}
IMPLEMENTED = tuple(k for k, m in MODELS.items() if m.implemented)
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
  if not m.implemented:
    raise NotImplementedError(
        f"model={a.model} ({m.checkpoint}, model_type {m.family!r}) is not implemented yet: "
        f"anchoral_jax.models has BERT-family encoders only (implemented: {list(IMPLEMENTED)}). "
        "Add the family under anchoral_jax/models, then set implemented=True in "
        "configs/other_models.py MODELS.")
  if a.filter not in FILTERS:
    raise ValueError(f"Unknown filter {a.filter!r}; choose from {list(FILTERS)}.")
  runlocal = a.runlocal or a.tiny
  c = main.paper_config(EXPERIMENT, a.dataset, STRATEGY, a.filter, runlocal)
  c.model.name = m.checkpoint
  if runlocal:
    c.model.name = m.local_preset  # the architecture, randomly initialised
  c.wandb.group = f"{EXPERIMENT}/dataset={c.data.name}/model={a.model}/filter={a.filter}"
  c.wandb.tags = tuple(t for t in c.wandb.tags if not t.startswith("model:")) + (
      f"model:{a.model}",)
  return c


def sweep(add: main.Add, arg: str | None = None) -> None:
  a = parse(arg)
  # Not yet implemented, so left out by default (see the module docstring): albert-base-v2,
  # deberta-v3-base, gpt2, t5-base. Asking for one by name fails with the explanation.
  models = main.pick(a.models, tuple(MODELS), "models") if a.models else IMPLEMENTED
  for name in models:
    if not MODELS[name].implemented:
      get_config(f"model={name}")  # raises NotImplementedError
  if a.runlocal or a.tiny:
    datasets = (main.LOCAL_DATASET,)
  else:
    datasets = main.pick(a.datasets, DATASETS, "datasets")
  for dataset in datasets:
    for model in models:
      for filter in main.pick(a.filters, FILTERS, "filters"):
        for seeds in main.seed_points(a.seeds):
          add(dataset=dataset, model=model, filter=filter, **seeds)
