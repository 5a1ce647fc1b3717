"""Model speed: our jitted Flax BERT vs Hugging Face PyTorch, on the same weights and batches.

  .venv/bin/python bench/bench_model.py                       # CPU, MiniLM + bert-base, ~9 min
  .venv/bin/python bench/bench_model.py --device gpu --peak-tflops 989 --dtype bfloat16

(a) Pool scoring throughput (texts/s): `scoring.forward_rows` (what the AL loop calls) vs
    `BertForSequenceClassification` under `torch.no_grad`, fed the very same length-sorted,
    bucket-padded batches of real tweets (tweets_iphone pool, MiniLM tokenizer, max length 128).
(b) Train step time: `train.train_step` (AdamW, dropout on) vs a PyTorch AdamW step with the
    same hyper-parameters, batch 32 padded to one fixed length.

The PyTorch model is built from OUR parameters (same numbers on both sides), and the logits of
the two scoring passes are compared. MiniLM uses the real all-MiniLM-L6-v2 weights; bert-base,
albert-base-v2 and gpt2 are randomly initialised at their real sizes (no weights offline), which
changes nothing for speed:

  .venv/bin/python bench/bench_model.py --models albert-base-v2,gpt2

ALBERT and GPT-2 read the same MiniLM token ids (folded into a smaller vocabulary with a modulo:
speed does not depend on which ids); GPT-2's PyTorch side finds the last token by the pad id, 0
in these batches, as our mask does. Its `score` head has no bias, so ours is zeroed.

deberta-v3-base and t5-base (random init, real sizes) run against
DebertaV2ForSequenceClassification and, for T5, T5EncoderModel under the same mean-pooled linear
head as ours (models/t5.py: the encoder-only head), both holding our parameters:

  .venv/bin/python bench/bench_model.py --models deberta-v3-base,t5-base

The FLOP count is the BERT formula (q, k, v, output, FFN, QK^T, PV); DeBERTa's c2p/p2c terms
and T5's gated third FFN matrix are not counted, so their GFLOP/s and MFU read low.

Warm-up is excluded from the timings and reported on its own: for ours, XLA compilation of
every batch shape done ahead of time with `.lower().compile()` (the jit cache reuses it), for
PyTorch one call (scoring) or step (training) on a 2-row batch. The two sides are timed in
turn (ours, PyTorch, ours, ...; median) so drifting load from other jobs hits both alike. MFU / GFLOP/s count model
FLOPs on the padded tokens actually computed: 2 x encoder matmul params per token forward,
plus attention 4 x layers x L x H per token; training is 3 x forward. `--peak-tflops` (e.g.
989 for H200 dense bf16) turns that into MFU; on CPU only GFLOP/s are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence

import harness  # bench/harness.py: bench/ is sys.path[0] when run as a script
import jax
import jax.numpy as jnp
import numpy as np

from anchoral_jax import models
from anchoral_jax.data import load_task
from anchoral_jax.data.tokenize import (
  DEFAULT_BUCKETS,
  TokenizedTexts,
  bucket_length,
  load_tokenizer,
  tokenize,
)
from anchoral_jax.models import bert, hf
from anchoral_jax.training import scoring, train

MODELS = {"minilm": "all-MiniLM-L6-v2", "bert-base": "bert-base", "albert-base-v2": "albert",
          "gpt2": "gpt2", "deberta-v3-base": "deberta",
          "t5-base": "t5"}  # name -> checkpoint (minilm) or family
COLUMNS = ("date", "load 1/5/15", "device", "model", "weights", "bench", "batch",
           "tokens real/padded", "framework", "throughput", "warm-up s (excl.)", "GFLOP/s", "MFU",
           "max abs dlogits")


# ------------------------------------------------------------------------------- FLOPs
def flops_per_token(cfg: bert.BertConfig, length: int) -> float:
  """Forward model FLOPs per token at sequence length `length` (embeddings are lookups)."""
  h, n = cfg.hidden_size, cfg.num_hidden_layers
  f = getattr(cfg, "mlp_size", None) or cfg.intermediate_size  # GPT-2: n_inner or 4 H
  matmul_params = n * (4 * h * h + 2 * h * f)  # q, k, v, attention output; two FFN matrices
  return 2.0 * matmul_params + 4.0 * n * length * h  # + QK^T and PV


def batches(tok: TokenizedTexts, rows: np.ndarray, batch: int) -> list[np.ndarray]:
  """`forward_rows`' own batching: positions sorted by length, chunks of `batch`."""
  order = np.argsort(tok.lengths_N[rows], kind="stable")
  return [order[s:s + batch] for s in range(0, len(order), batch)]


def scoring_work(cfg: bert.BertConfig, tok: TokenizedTexts, rows: np.ndarray, batch: int
                 ) -> tuple[float, int, int, list[int]]:
  """(forward FLOPs, real tokens, padded tokens, distinct bucket lengths) of one pass."""
  flops, real, padded, lengths = 0.0, 0, 0, set()
  for chunk in batches(tok, rows, batch):
    lens = tok.lengths_N[rows[chunk]]
    length = bucket_length(int(lens.max()), DEFAULT_BUCKETS)
    lengths.add(length)
    flops += batch * length * flops_per_token(cfg, length)
    real += int(lens.sum())
    padded += batch * length
  return flops, real, padded, sorted(lengths)


# ------------------------------------------------------------------------------- PyTorch side
def torch_model_other(cfg, params, device: str):
  """ALBERT / GPT-2: the HF *ForSequenceClassification holding exactly our parameters (the
  family's checkpoint conversion in reverse), loaded strictly."""
  import torch
  import transformers

  fam = models.family(cfg)
  common = {"vocab_size": cfg.vocab_size, "num_labels": cfg.num_labels}
  if cfg.model_type == "albert":
    hf_cfg = transformers.AlbertConfig(**common, **{
        k: getattr(cfg, k) for k in (
            "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size",
            "layer_norm_eps", "hidden_dropout_prob", "attention_probs_dropout_prob",
            "classifier_dropout_prob")})
    model, prefix = transformers.AlbertForSequenceClassification(hf_cfg), "albert."
    head = {"classifier.weight": params["classifier"]["kernel"].T,
            "classifier.bias": params["classifier"]["bias"]}
  else:
    hf_cfg = transformers.GPT2Config(
        **common, n_embd=cfg.hidden_size, n_layer=cfg.num_hidden_layers,
        n_head=cfg.num_attention_heads, n_inner=cfg.intermediate_size,
        n_positions=cfg.max_position_embeddings, activation_function=cfg.hidden_act,
        layer_norm_epsilon=cfg.layer_norm_eps, resid_pdrop=cfg.hidden_dropout_prob,
        embd_pdrop=cfg.embd_pdrop, attn_pdrop=cfg.attention_probs_dropout_prob,
        pad_token_id=0)  # the MiniLM batches pad with 0
    model, prefix = transformers.GPT2ForSequenceClassification(hf_cfg), "transformer."
    head = {"score.weight": params["classifier"]["kernel"].T}
  flat = hf.flatten(params)
  state = {prefix + name: torch.tensor(np.asarray(flat[path], np.float32).T if t is True
                                       else np.asarray(flat[path], np.float32))
           for path, (name, t) in fam._hf_name_map(cfg).items()}
  state.update({k: torch.tensor(np.asarray(v, np.float32)) for k, v in head.items()})
  model.load_state_dict(state, strict=True)
  return model.to(device)


def torch_model_deberta_t5(cfg, params, device: str):
  """DeBERTa: `DebertaV2ForSequenceClassification`; T5: `T5EncoderModel` + our head (masked
  mean, Linear) in PyTorch. Both hold exactly our parameters, loaded strictly."""
  import torch
  import transformers

  from anchoral_jax.models import deberta, t5

  flat = hf.flatten(params)

  def tensors(name_map, prefix: str) -> dict:
    return {(prefix if not name.startswith("pooler.") else "") + name:
            torch.tensor(np.asarray(flat[path], np.float32).T if t
                         else np.asarray(flat[path], np.float32))
            for path, (name, t) in name_map.items()}

  head_w = torch.tensor(np.asarray(params["classifier"]["kernel"], np.float32).T)
  head_b = torch.tensor(np.asarray(params["classifier"]["bias"], np.float32))
  if cfg.model_type == "deberta-v2":
    kw = {k: getattr(cfg, k) for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "relative_attention",
        "max_relative_positions", "position_buckets", "share_att_key", "norm_rel_ebd",
        "position_biased_input", "pooler_hidden_act", "pooler_dropout", "num_labels")}
    kw["pos_att_type"] = "|".join(cfg.pos_att_type)
    kw.update({k: getattr(cfg, k) for k in ("embedding_size", "cls_dropout")
               if getattr(cfg, k) is not None})
    model = transformers.DebertaV2ForSequenceClassification(transformers.DebertaV2Config(**kw))
    state = tensors(deberta._hf_name_map(cfg), "deberta.")
    state.update({"classifier.weight": head_w, "classifier.bias": head_b})
    model.load_state_dict(state, strict=True)
    return model.to(device)

  hf_cfg = transformers.T5Config(
      vocab_size=cfg.vocab_size, d_model=cfg.hidden_size, d_kv=cfg.head_dim,
      d_ff=cfg.intermediate_size, num_layers=cfg.num_hidden_layers,
      num_heads=cfg.num_attention_heads,
      relative_attention_num_buckets=cfg.relative_attention_num_buckets,
      relative_attention_max_distance=cfg.relative_attention_max_distance,
      dropout_rate=cfg.hidden_dropout_prob, layer_norm_epsilon=cfg.layer_norm_eps,
      feed_forward_proj=cfg.feed_forward_proj, num_labels=cfg.num_labels)

  class T5MeanHead(torch.nn.Module):
    """T5EncoderModel + masked mean + Linear: models/t5.py's classifier, in PyTorch."""

    def __init__(self):
      super().__init__()
      self.config = hf_cfg
      self.encoder = transformers.T5EncoderModel(hf_cfg)
      self.dropout = torch.nn.Dropout(cfg.hidden_dropout_prob)
      self.classifier = torch.nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, input_ids, attention_mask, labels=None):
      h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
      m = attention_mask[..., None].to(h.dtype)
      mean = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
      logits = self.classifier(self.dropout(mean))
      loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
      return transformers.modeling_outputs.SequenceClassifierOutput(loss=loss, logits=logits)

  model = T5MeanHead()
  state = {"encoder." + k: v for k, v in tensors(t5._hf_name_map(cfg), "").items()}
  state["encoder.encoder.embed_tokens.weight"] = state["encoder.shared.weight"]  # tied
  state.update({"classifier.weight": head_w, "classifier.bias": head_b})
  model.load_state_dict(state, strict=True)
  return model.to(device)


def torch_model(cfg: bert.BertConfig, params: hf.Params, device: str):
  """`BertForSequenceClassification` holding exactly our parameters."""
  import torch
  import transformers

  if cfg.model_type in ("deberta-v2", "t5"):
    return torch_model_deberta_t5(cfg, params, device)
  if cfg.model_type != "bert":
    return torch_model_other(cfg, params, device)

  hf_cfg = transformers.BertConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
      num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
      intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
      type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layer_norm_eps,
      hidden_dropout_prob=cfg.hidden_dropout_prob,
      attention_probs_dropout_prob=cfg.attention_probs_dropout_prob, num_labels=cfg.num_labels,
      hidden_act="gelu")
  model = transformers.BertForSequenceClassification(hf_cfg)
  flat = hf.flatten(params)
  state = {}
  for path, (name, transpose) in bert._hf_name_map(cfg).items():
    w = np.asarray(flat[path], np.float32)
    state["bert." + name] = torch.tensor(w.T if transpose else w)
  state["classifier.weight"] = torch.tensor(np.asarray(params["classifier"]["kernel"]).T)
  state["classifier.bias"] = torch.tensor(np.asarray(params["classifier"]["bias"]))
  missing, unexpected = model.load_state_dict(state, strict=False)
  if unexpected or [k for k in missing if "position_ids" not in k]:
    raise RuntimeError(f"Weight transfer incomplete: missing {missing}, unexpected {unexpected}")
  return model.to(device)


def _autocast(device: str, dtype: str):
  import torch

  if dtype == "bfloat16":
    return torch.autocast(device_type=device, dtype=torch.bfloat16)
  return contextlib.nullcontext()


def _sync(device: str) -> None:
  import torch

  if device == "cuda":
    torch.cuda.synchronize()


def torch_forward_rows(model, tok: TokenizedTexts, rows: np.ndarray, batch: int, device: str,
                       dtype: str) -> np.ndarray:
  """`forward_rows`' twin: same batches, logits back on the host in `rows` order."""
  import torch

  out = np.empty((len(rows), model.config.num_labels), np.float32)
  with torch.no_grad(), _autocast(device, dtype):
    for chunk in batches(tok, rows, batch):
      ids, mask = tok.batch(rows[chunk], DEFAULT_BUCKETS, batch)
      logits = model(input_ids=torch.from_numpy(ids.astype(np.int64)).to(device),
                     attention_mask=torch.from_numpy(mask.astype(np.int64)).to(device)).logits
      out[chunk] = logits[:len(chunk)].float().cpu().numpy()
  return out


# ------------------------------------------------------------------------------- benchmarks
def bench_scoring(cfg, params, tmodel, tok, rows, batch, reps, device, dtype, peak):
  """Both frameworks on the same rows; returns two result rows."""
  flops, real, padded, lengths = scoring_work(cfg, tok, rows, batch)
  keys = ("logits",)
  t0 = time.perf_counter()
  for length in lengths:  # ahead-of-time compile of every shape this pass will meet
    z = np.zeros((batch, length), np.int32)
    scoring.predict.lower(params, z, z, cfg=cfg, keys=keys,
                          micro=scoring.micro_batch(batch)).compile()
  ours_warm = time.perf_counter() - t0

  ours_out = {}

  def ours():
    ours_out.update(scoring.forward_rows(params, cfg, tok, rows, keys, batch_size=batch))

  t0 = time.perf_counter()
  torch_forward_rows(tmodel, tok, rows[:2], 2, device, dtype)  # warm-up on a 2-row batch
  _sync(device)
  torch_warm = time.perf_counter() - t0
  torch_out = {}

  def theirs():
    torch_out["logits"] = torch_forward_rows(tmodel, tok, rows, batch, device, dtype)
    _sync(device)

  ld = harness.load()
  secs = harness.interleaved({"ours": ours, "torch": theirs}, reps)
  ours_s, torch_s = secs["ours"], secs["torch"]
  diff = float(np.abs(ours_out["logits"] - torch_out["logits"]).max())
  out = []
  for name, secs, warm in (("ours (Flax/XLA)", ours_s, ours_warm),
                           ("HF PyTorch", torch_s, torch_warm)):
    out.append({"bench": "scoring", "batch": str(batch),
                "tokens real/padded": f"{real}/{padded}", "framework": name,
                "throughput": f"{len(rows) / secs:.1f} texts/s", "warm-up s (excl.)": f"{warm:.1f}",
                "seconds": secs, "flops": flops, "peak": peak, "max abs dlogits": f"{diff:.1e}",
                "load 1/5/15": ld})
  return out


def bench_train(cfg, params, tmodel, ids, mask, labels, steps, device, dtype, peak):
  import torch

  batch, length = ids.shape
  flops = 3.0 * batch * length * flops_per_token(cfg, length)
  tokens = f"{int(mask.sum())}/{mask.size}"
  tc = train.TrainConfig()
  opt = train.make_optimizer(tc)
  weight = np.ones(batch, np.float32)
  key = jax.random.key(0)
  p = jax.tree.map(jnp.array, params)
  state = train.TrainState(p, opt.init(p), jnp.zeros((), jnp.int32))
  t0 = time.perf_counter()
  train.train_step.lower(state, ids, mask, labels, weight, key, cfg=cfg, opt=opt).compile()
  ours_warm = time.perf_counter() - t0

  def ours():
    nonlocal state
    state, loss, _ = train.train_step(state, ids, mask, labels, weight, key, cfg=cfg, opt=opt)
    float(loss)  # fit() reads the loss every step: the same sync

  tmodel.train()
  topt = torch.optim.AdamW(tmodel.parameters(), lr=tc.learning_rate, betas=(tc.b1, tc.b2),
                           eps=tc.eps, weight_decay=tc.weight_decay)
  t_ids = torch.from_numpy(ids.astype(np.int64)).to(device)
  t_mask = torch.from_numpy(mask.astype(np.int64)).to(device)
  t_y = torch.from_numpy(labels.astype(np.int64)).to(device)

  def step(n: int) -> None:
    topt.zero_grad(set_to_none=True)
    with _autocast(device, dtype):
      loss = tmodel(input_ids=t_ids[:n], attention_mask=t_mask[:n], labels=t_y[:n]).loss
    loss.backward()
    topt.step()
    loss.item()

  t0 = time.perf_counter()
  step(2)  # warm-up: allocates AdamW state, same code paths
  torch_warm = time.perf_counter() - t0
  ld = harness.load()
  secs = harness.interleaved({"ours": ours, "torch": lambda: step(batch)}, steps)
  ours_s, torch_s = secs["ours"], secs["torch"]
  tmodel.eval()
  out = []
  for name, secs, warm in (("ours (Flax/XLA)", ours_s, ours_warm),
                           ("HF PyTorch", torch_s, torch_warm)):
    out.append({"bench": f"train step (L={length})", "batch": str(batch),
                "tokens real/padded": tokens, "framework": name,
                "throughput": f"{1000 * secs:.0f} ms/step", "warm-up s (excl.)": f"{warm:.1f}",
                "seconds": secs, "flops": flops, "peak": peak, "max abs dlogits": "",
                "load 1/5/15": ld})
  return out


def finish_rows(rows: list[dict], **common: str) -> list[dict[str, str]]:
  for r in rows:
    achieved = r.pop("flops") / r.pop("seconds")
    peak = r.pop("peak")
    r["GFLOP/s"] = f"{achieved / 1e9:.1f}"
    r["MFU"] = f"{100 * achieved / (peak * 1e12):.1f}%" if peak else "n/a (no peak given)"
    r.update(common)
  return rows


def load_model(name: str, dtype: str) -> tuple[bert.BertConfig, hf.Params, str]:
  key = jax.random.key(0)
  if name == "minilm":
    cfg, params = bert.load_pretrained(MODELS[name], 2, key, dtype=dtype)
    return cfg, params, "real (all-MiniLM-L6-v2)"
  if name in ("albert-base-v2", "gpt2", "deberta-v3-base", "t5-base"):  # real-size preset
    cfg = models.preset(name, num_labels=2, dtype=dtype)
    params = models.init_params(cfg, key)
    if cfg.model_type == "gpt2":  # HF's score head has no bias: make ours match
      params["classifier"]["bias"] = jnp.zeros_like(params["classifier"]["bias"])
    return cfg, params, "random init (both sides)"
  cfg = bert.BertConfig(num_labels=2, dtype=dtype)
  return cfg, bert.init_params(cfg, key), "random init (both sides)"


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                 help="gpu: jax picks the GPU, PyTorch uses cuda")
  p.add_argument("--models", default="minilm,bert-base", help=f"comma list of {list(MODELS)}")
  p.add_argument("--batches", default="32,256", help="scoring batch sizes")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="compute dtype (ours: BertConfig.dtype; PyTorch: autocast)")
  p.add_argument("--texts", type=int, default=0,
                 help="tweets scored per pass (0: 256 for minilm, 64 for bert-base at batch 32), "
                      "never fewer than one batch")
  p.add_argument("--reps", type=int, default=0, help="timed passes (0: 2 minilm, 1 bert-base)")
  p.add_argument("--train-steps", type=int, default=0, help="timed steps (0: 5 / 3)")
  p.add_argument("--train-length", type=int, default=64, help="train batch padded length")
  p.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch intra-op threads "
                 "(XLA:CPU uses every core)")
  p.add_argument("--peak-tflops", type=float, default=0.0,
                 help="accelerator peak for MFU (H200: 989 dense bf16, ~67 fp32)")
  p.add_argument("--no-record", action="store_true", help="print only, do not touch RESULTS.md")
  args = p.parse_args(argv)

  import torch

  if args.device == "cpu":
    jax.config.update("jax_platforms", "cpu")
  tdevice = "cuda" if args.device == "gpu" else "cpu"
  torch.set_num_threads(args.threads)
  jdev = jax.devices()[0]
  info = (f"jax backend {jdev.platform} ({jdev.device_kind}); torch device {tdevice}, "
          f"{torch.get_num_threads()} threads")
  print(info, flush=True)

  task = load_task("tweets_iphone")
  tokenizer = load_tokenizer(hf.resolve_model_dir(MODELS["minilm"]))
  tok = tokenize(tokenizer, task.train.text, 128)
  rng = np.random.default_rng(0)
  sample = rng.permutation(len(tok))
  train_rows = rng.choice(len(tok), 32, replace=False)
  ids, mask = tok.batch(train_rows, (args.train_length,), 32)  # longer tweets truncated
  labels = task.train.labels[train_rows].astype(np.int32)

  results = []
  for name in args.models.split(","):
    big = name != "minilm"
    t0 = time.perf_counter()
    cfg, params, weights = load_model(name, args.dtype)
    mtok, m_ids = tok, ids
    if cfg.vocab_size < len(tokenizer):  # ALBERT's 30000 < MiniLM's 30522: fold the ids
      mtok = TokenizedTexts(tok.flat_ids_T % cfg.vocab_size, tok.offsets, tok.pad_id)
      m_ids = ids % cfg.vocab_size
    tmodel = torch_model(cfg, params, tdevice).eval()
    print(f"{name}: loaded in {time.perf_counter() - t0:.1f}s", flush=True)
    reps = args.reps or (1 if big else 2)
    rows_out = []
    for b in (int(x) for x in args.batches.split(",")):
      n = max(b, args.texts or (64 if big else 256))
      rows_out += bench_scoring(cfg, params, tmodel, mtok, sample[:n], b, reps, tdevice,
                                args.dtype, args.peak_tflops)
      print(f"  scoring batch {b} done", flush=True)
    rows_out += bench_train(cfg, params, tmodel, m_ids, mask, labels,
                            args.train_steps or (3 if big else 5), tdevice, args.dtype,
                            args.peak_tflops)
    print("  train done", flush=True)
    results += finish_rows(rows_out, date=harness.now(), device=f"{args.device} ({jdev.device_kind})",
                           model=f"{name} ({args.dtype})", weights=weights)
    del tmodel, params

  print(harness.markdown_table(COLUMNS, results))
  if not args.no_record:
    preamble = (
        f"`bench/bench_model.py {' '.join(argv or sys.argv[1:])}`. Machine: {harness.machine()}; "
        f"{harness.versions(['jax', 'jaxlib', 'flax', 'optax', 'torch', 'transformers'])}; "
        f"{info}. Same parameters on both sides (PyTorch model built from ours; `max abs dlogits` "
        "compares the two scoring outputs). Inputs: tweets_iphone pool, MiniLM tokenizer, max "
        "length 128, length-sorted and bucket-padded exactly as `forward_rows`; the train batch "
        f"is 32 tweets padded/truncated to {args.train_length}. bert-base is randomly "
        "initialised (no weights offline). Warm-up (ours: XLA compile of every shape; PyTorch: "
        "a 2-row call/step) is excluded from throughput; the two sides are timed alternately "
        "(median). GFLOP/s and MFU count model FLOPs on "
        "padded tokens (2N + attention per token forward, x3 for training)."
        + (" CPU run: no GPU was lent to this session." if args.device == "cpu" else ""))
    harness.append_section("Model: Flax vs PyTorch (scoring throughput, train step)", preamble,
                           COLUMNS, results)
    print(f"appended to {harness.RESULTS}")


if __name__ == "__main__":
  main()
