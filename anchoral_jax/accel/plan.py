"""`anchoral plan`: the run's hot programs compiled ahead of time for a target, measured by the
compiler (README "GPUs and TPUs").

Nothing runs and no accelerator is needed: every argument is a `jax.ShapeDtypeStruct` carrying
the sharding a run would give it on the target's devices (`parallel.BATCH` / `REPLICATED` on a
1-D "data" mesh; fit_many's `parallel.SEED_STATE` / `SEED_BATCH` on `parallel.seed_mesh`), and
the programs are the run's own jitted functions (training/: `train.train_step`,
`many.train_step_many`, `scoring.predict`, `head.fit_head`), lowered and compiled. The numbers
are the compiler's: its memory analysis (per device) and its cost model (FLOPs, bytes
accessed). The roofline turns them into a lower bound on time from the target's published
peaks; it is an estimate, never a measurement.

Shape letters: S seeds, B batch, L bucketed length, P padded labelled capacity, E epochs,
Q = P + B, H hidden, V validation rows.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from anchoral_jax import config as config_lib
from anchoral_jax import models, parallel
from anchoral_jax.accel import targets as targets_lib
from anchoral_jax.accel.architectures import HF_CONFIGS
from anchoral_jax.al import strategies
from anchoral_jax.data.tokenize import DEFAULT_BUCKETS
from anchoral_jax.errors import UserError
from anchoral_jax.training import head as head_regime
from anchoral_jax.training import many, scoring, train

GIB = targets_lib.GIB

# What the projection assumes about the paper's tasks where no data is at hand: (classes, pool
# rows, test rows). Pools and agnews' test from SPEC.md §7; the other test splits are "5,000
# down-sampled negatives + every minority item", approximated (≈) from the public splits.
PAPER_TASKS = {
    "agnews_business": (2, 90_910, 7_600),
    "wikitoxic": (2, 116_600, 11_100),  # ≈ 5,000 + ~6,100 toxic
    "amazoncat_agri": (2, 1_186_239, 5_300),  # ≈ 5,000 + ~300 agriculture
    "amazoncat_multi": (5, 1_186_239, 6_500),  # ≈ 5,000 + ~1,500 minority items
}
DEFAULT_TASK = (2, 0, 0)  # unknown task: binary, sizes unknown (no projection of scoring)

# Custom-call targets and attributes that mean "the device calls back into Python on the host".
HOST_CALLBACK = re.compile(r"xla_(ffi_)?python_\w*callback|is_host_transfer=true|"
                           r"host_callback|CallbackOnHost", re.IGNORECASE)


class PlanError(UserError, ValueError):
  """A config `plan` cannot read (a user error: exit 2)."""


# ---------------------------------------------------------------------------------------------
# Shapes: the model, its parameters and the run's arguments as ShapeDtypeStructs.
# ---------------------------------------------------------------------------------------------


def model_config(c: ml_collections.ConfigDict, num_classes: int) -> tuple[Any, str]:
  """The run's model config (cfg, where its architecture came from); no weights are read."""
  name, dtype, pooling = c.model.name, c.model.dtype, c.model.pooling
  if not c.model.pretrained:
    return models.preset(name, num_classes, dtype, pooling), f"preset {name!r}"
  try:
    return models.load_config(name, num_classes, dtype, pooling), "local checkpoint config.json"
  except (models.ModelLoadError, FileNotFoundError):  # no local checkpoint
    if name not in HF_CONFIGS:
      raise PlanError(f"model.name {name!r}: no local checkpoint and no built-in architecture "
                      f"(anchoral_jax/accel/architectures.py has {sorted(HF_CONFIGS)}).") from None
  hf = dict(HF_CONFIGS[name])
  fam = models.family(hf["model_type"])
  return (fam.Config.from_hf(hf, num_labels=num_classes, dtype=dtype,
                             pooling=models._pooling(fam, pooling)),
          "built-in architecture (accel/architectures.py; checkpoint not on this machine)")


def _with(tree, sharding):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def _sds(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)


@dataclasses.dataclass
class Shapes:
  """What the programs are built from: the model, the mesh, the run's settings."""

  cfg: Any
  tc: train.TrainConfig
  mesh: Mesh
  params: Any  # ShapeDtypeStructs, unsharded
  key: jax.ShapeDtypeStruct  # a typed PRNG key's shape and dtype

  @property
  def chips(self) -> int:
    return self.mesh.devices.size

  def sharding(self, spec: PartitionSpec) -> NamedSharding:
    return NamedSharding(self.mesh, spec)


def make_shapes(c: ml_collections.ConfigDict, devices: Sequence[Any], num_classes: int
                ) -> tuple[Shapes, str]:
  cfg, source = model_config(c, num_classes)
  mesh = Mesh(np.asarray(devices), ("data",), axis_types=(AxisType.Auto,))
  key = jax.eval_shape(lambda: jax.random.key(0))
  params = jax.eval_shape(lambda k: models.init_params(cfg, k), key)
  tc = train.TrainConfig(**c.train.to_dict())
  return Shapes(cfg, tc, mesh, params, key), source


# ---------------------------------------------------------------------------------------------
# The programs: each a function of its batch size returning the run's jitted function, lowered.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Program:
  kind: str  # "train step", "fit_many step", "score logits", "head-regime fit"
  title: Callable[[int], str]  # batch -> what the row is called
  lower: Callable[[int], Any]  # batch -> jax.stages.Lowered
  batch: int  # the batch a run uses (rows per step / per scoring call, all seeds together)
  batch_unit: int  # batches are multiples of this (chips; seeds x chips for fit_many)
  note: str = ""


def train_step_program(sh: Shapes, length: int) -> Program:
  opt = train.make_optimizer(sh.tc)
  rep, bat = sh.sharding(parallel.REPLICATED), sh.sharding(parallel.BATCH)
  state = _with(jax.eval_shape(
      lambda p: train.TrainState(p, opt.init(p), jnp.zeros((), jnp.int32)), sh.params), rep)

  def lower(b: int):
    return train.train_step.lower(
        state, _sds((b, length), jnp.int32, bat), _sds((b, length), jnp.int32, bat),
        _sds((b,), jnp.int32, bat), _sds((b,), jnp.float32, bat),
        _with(sh.key, rep), cfg=sh.cfg, opt=opt)

  return Program("train step", lambda b: f"train step (B={b}, L={length})", lower,
                 parallel.round_batch(sh.tc.batch_size, sh.chips), sh.chips)


def fit_many_program(sh: Shapes, length: int, seeds: int) -> Program:
  """`train_step_many` with every one of S runs stepping (the common case of `fit_many`)."""
  opt = train.make_optimizer(sh.tc)
  layout = parallel.seed_mesh(seeds, sh.mesh.devices)
  rep, bat = NamedSharding(layout, parallel.REPLICATED), NamedSharding(layout, parallel.SEED_BATCH)
  split = NamedSharding(layout, parallel.SEED_STATE)
  state = _with(jax.eval_shape(
      lambda p: train.TrainState(jax.tree.map(lambda x: jnp.zeros((seeds,) + x.shape, x.dtype),
                                              p),
                                 jax.vmap(opt.init)(jax.tree.map(
                                     lambda x: jnp.zeros((seeds,) + x.shape, x.dtype), p)),
                                 jnp.zeros((seeds,), jnp.int32)), sh.params), split)
  keys = _sds((seeds,), sh.key.dtype, split)

  def lower(b: int):
    per = b // seeds
    return many.train_step_many.lower(
        state, _sds((seeds,), jnp.int32, rep), _sds((seeds, per, length), jnp.int32, bat),
        _sds((seeds, per, length), jnp.int32, bat), _sds((seeds, per), jnp.int32, bat),
        _sds((seeds, per), jnp.float32, bat), keys, cfg=sh.cfg, opt=opt)

  bs = parallel.round_batch(sh.tc.batch_size, sh.chips)
  return Program("fit_many step", lambda b: f"fit_many step (S={seeds} x B={b // seeds}, "
                 f"L={length})", lower, seeds * bs,
                 seeds * sh.chips)


def score_program(sh: Shapes, length: int, keys: tuple[str, ...], batch: int) -> Program:
  rep, bat = sh.sharding(parallel.REPLICATED), sh.sharding(parallel.BATCH)
  params = _with(sh.params, rep)

  def lower(b: int):
    return scoring.predict.lower(params, _sds((b, length), jnp.int32, bat),
                                 _sds((b, length), jnp.int32, bat), cfg=sh.cfg, keys=keys)

  name = f"score {'+'.join(keys)}"
  return Program(name, lambda b: f"{name} (B={b}, L={length})", lower, batch, sh.chips)


def fit_head_program(sh: Shapes, budget: int, minority: tuple[int, ...]) -> Program:
  """One round of the frozen-encoder regime: `fit_head` as `HeadRegime.fit` calls it, on one
  device (its arguments are host arrays, so the run places it on the first device)."""
  tc = sh.tc
  one = SingleDeviceSharding(sh.mesh.devices.flat[0])
  head = _with(sh.params["classifier"], one)
  hidden = head["kernel"].shape[0]
  p = head_regime._capacity(budget)
  e = max(tc.epochs, tc.min_steps)
  opt = train.make_optimizer(dataclasses.replace(tc, trainable="all"))
  i32 = _sds((), jnp.int32, one)

  def lower(b: int):
    return head_regime.fit_head.lower(
        head, _sds((p, hidden), jnp.float32, one), _sds((p,), jnp.int32, one), i32,
        _sds((e, p + b), jnp.int32, one), i32, _with(sh.key, one),
        _sds((1, hidden), jnp.float32, one), _sds((1,), jnp.int32, one), i32,
        opt=opt, batch_size=b, minority=minority, selection=tc.model_selection,
        patience=tc.patience, dropout=models.head_dropout(sh.cfg))

  return Program("head-regime fit", lambda b: f"head-regime fit (P={p}, E={e}, B={b})", lower,
                 tc.batch_size, 1,
                 "a while loop: the cost model counts its body once, not per step")


# ---------------------------------------------------------------------------------------------
# Compiling and reading the compiler's analyses.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Compiled:
  batch: int
  seconds: float
  error: str = ""
  argument: int = 0  # bytes per device
  output: int = 0
  temp: int = 0
  alias: int = 0  # donated arguments reused as outputs
  flops: float = 0.0  # per device, the compiler's cost model
  bytes_accessed: float = 0.0
  host_callbacks: tuple[str, ...] = ()

  @property
  def ok(self) -> bool:
    return not self.error

  @property
  def peak(self) -> int:
    """Per-device bytes live at once: arguments + outputs (less what donation aliases) +
    temporaries."""
    return self.argument + self.output - self.alias + self.temp


def _cost(compiled) -> dict[str, float]:
  cost = compiled.cost_analysis()
  if isinstance(cost, list | tuple):  # older jax: one dict per program
    cost = cost[0] if cost else {}
  return dict(cost or {})


def host_callbacks(hlo_text: str) -> tuple[str, ...]:
  """The lines of an HLO module that call back into Python on the host (none may exist in a
  hot program: each would stall the device for a host round trip)."""
  return tuple(line.strip()[:160] for line in hlo_text.splitlines() if HOST_CALLBACK.search(line))


def compile_program(program: Program, batch: int) -> Compiled:
  t0 = time.perf_counter()
  try:
    compiled = program.lower(batch).compile()
  except Exception as e:  # noqa: BLE001 (the compiler's error is the result to report)
    msg = str(e).strip().splitlines()
    return Compiled(batch, time.perf_counter() - t0, error=(msg[0] if msg else type(e).__name__))
  seconds = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  cost = _cost(compiled)
  return Compiled(batch, seconds, argument=int(mem.argument_size_in_bytes),
                  output=int(mem.output_size_in_bytes), temp=int(mem.temp_size_in_bytes),
                  alias=int(mem.alias_size_in_bytes), flops=float(cost.get("flops", 0.0)),
                  bytes_accessed=float(cost.get("bytes accessed", 0.0)),
                  host_callbacks=host_callbacks(compiled.as_text()))


@dataclasses.dataclass
class MaxBatch:
  estimate: int  # from two compiles, linear in the batch
  confirmed: int  # the largest batch compiled and fitting (0: none)
  note: str


def largest_batch(program: Program, first: Compiled, memory: int) -> MaxBatch:
  """The largest batch whose per-device peak fits `memory`: per-device memory is linear in the
  batch (fixed params and optimiser state + activations per row), so two compiles give the line;
  one more compile at the estimate confirms it (and steps down 10% at a time, twice, if not)."""
  unit = program.batch_unit
  if not first.ok:
    return MaxBatch(0, 0, "n/a: did not compile at the run's batch")
  second = compile_program(program, first.batch * 2)
  if not second.ok or second.peak <= first.peak:
    return MaxBatch(0, 0, f"n/a: a second compile at {first.batch * 2} gave "
                    f"{second.error or 'no growth'}")
  per_row = (second.peak - first.peak) / first.batch
  fixed = first.peak - per_row * first.batch
  estimate = int((memory - fixed) // per_row) // unit * unit
  if estimate < unit:
    return MaxBatch(estimate, 0, f"fixed memory alone is {fixed / GIB:.2f} GiB")
  trial = estimate
  for _ in range(3):
    third = second if trial == second.batch else compile_program(program, trial)
    if third.ok and third.peak <= memory:
      return MaxBatch(estimate, trial, f"confirmed by compiling at {trial}" if trial == estimate
                      else f"estimate {estimate} did not fit; {trial} did")
    trial = max(unit, int(trial * 0.9) // unit * unit)
  return MaxBatch(estimate, 0, f"estimate {estimate} and two 10% smaller did not fit")


# ---------------------------------------------------------------------------------------------
# The plan: programs for a config, compiled; the roofline; the sweep's projection.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
  program: Program
  result: Compiled
  max_batch: MaxBatch | None
  per_round: str  # how many times a round runs it


@dataclasses.dataclass
class Plan:
  target: targets_lib.Target
  config_spec: str
  arch_source: str
  rows: list[Row]
  lines: list[str]  # the projection's lines (empty when not a sweep / nothing to project)


def roofline(target: targets_lib.Target, r: Compiled) -> tuple[float, float] | None:
  """(seconds, MFU at that bound) per call: max(FLOPs / peak, bytes / bandwidth) per device."""
  if not (target.peak_flops and target.hbm_bytes_per_s and r.ok and r.flops):
    return None
  t = max(r.flops / target.peak_flops, r.bytes_accessed / target.hbm_bytes_per_s)
  return t, r.flops / (t * target.peak_flops)


def task_shape(c: ml_collections.ConfigDict) -> tuple[int, int, int]:
  return PAPER_TASKS.get(c.data.name, DEFAULT_TASK)


def _reachable_buckets(max_length: int) -> tuple[int, ...]:
  """The length buckets a batch can take when texts are cut at `max_length` tokens."""
  top = min((b for b in DEFAULT_BUCKETS if b >= max_length), default=max(DEFAULT_BUCKETS))
  return tuple(b for b in DEFAULT_BUCKETS if b <= top)


def programs(c: ml_collections.ConfigDict, sh: Shapes, platform: str, seeds: int,
             score_keys: Sequence[tuple[str, ...]], minority: tuple[int, ...],
             all_buckets: bool = True) -> list[tuple[Program, str, bool]]:
  """(program, how often a round runs it, search its largest batch) for the config's run;
  `all_buckets` False: the scoring forward at the longest bucket only (the memory bound)."""
  top = _reachable_buckets(c.data.max_length)
  if not all_buckets:
    top = top[-1:]
  length = top[-1]
  out: list[tuple[Program, str, bool]] = []
  if sh.tc.trainable == "all":
    out.append((train_step_program(sh, length), "steps per round (num_epochs x batches)", True))
    if seeds > 1:
      out.append((fit_many_program(sh, length, seeds), f"the same steps, {seeds} seeds at once "
                  "(--group_seeds)", True))
  else:
    out.append((fit_head_program(sh, c.al.budget, minority), "once per round", False))
  eval_b = parallel.round_batch(scoring.eval_batch_size(sh.tc.eval_batch_size, platform),
                                sh.chips)
  for keys in score_keys:  # logits (test set, uncertainty) at every bucket, the others at the
    for b in top if keys == ("logits",) else top[-1:]:  # longest (the memory bound)
      out.append((score_program(sh, b, keys, eval_b), "subpool or test rows / batch",
                  b == length))
  return out


def _sweep_runs(spec: str, overrides: dict[str, Any]) -> list[ml_collections.ConfigDict] | None:
  """The configs of the sweep of `spec` (None: the file has no sweep)."""
  from anchoral_jax.sweep import runs as sweep_runs

  path = spec.partition(":")[0]
  if not hasattr(sweep_runs.load_module(path), "sweep"):
    return None
  return [sweep_runs.build_config(run) for run in sweep_runs.expand(spec, overrides)]


def _cell_size(spec: str, overrides: dict[str, Any]) -> int:
  from anchoral_jax.sweep import runs as sweep_runs

  cells: dict[str, int] = {}
  for run in sweep_runs.expand(spec, overrides):
    cells[run.cell] = cells.get(run.cell, 0) + 1
  return max(cells.values(), default=1)


def score_keys_for(strategy_names: Sequence[str]) -> list[tuple[str, ...]]:
  """The distinct output sets the runs' forwards ask for: logits (test set, uncertainty) and
  each strategy's (BADGE: logits + pooled; FTbertKM: cls)."""
  keys = [("logits",)]
  for s in strategy_names:
    k = strategies.STRATEGY_OUTPUTS[s]
    if k and k not in keys:
      keys.append(k)
  return keys


def make_plan(c: ml_collections.ConfigDict, target_name: str, *, spec: str = "",
              overrides: dict[str, Any] | None = None, search: bool = True,
              seeds: int | None = None, all_buckets: bool = True,
              log: Callable[[str], None] = lambda s: None) -> Plan:
  """Compiles the config's hot programs for the target; `search` also finds each one's largest
  batch. `seeds`: fit_many's S (default: the sweep's cell size, 1 without a sweep)."""
  target = targets_lib.get(target_name)
  devices = target.devices()
  num_classes = task_shape(c)[0]
  minority = tuple(range(num_classes - 1)) if num_classes > 2 else (1,)
  sh, source = make_shapes(c, devices, num_classes)
  runs = _sweep_runs(spec, overrides or {}) if spec else None
  if runs is not None:
    runs = [r for r in runs if r.model.name == c.model.name]
  if seeds is None:
    seeds = _cell_size(spec, overrides or {}) if runs else 1
  names = sorted({r.al.strategy for r in runs} if runs else {c.al.strategy})
  rows: list[Row] = []
  for program, per_round, big in programs(c, sh, target.platform, seeds, score_keys_for(names),
                                          minority, all_buckets):
    log(f"compiling {program.title(program.batch)} ...")
    result = compile_program(program, program.batch)
    mb = largest_batch(program, result, target.memory_bytes) if (search and big) else None
    rows.append(Row(program, result, mb, per_round))
  lines = projection(c, target, rows, runs, seeds) if target.peak_flops else []
  return Plan(target, spec, source, rows, lines)


# ---------------------------------------------------------------------------------------------
# The projection: how many times each program runs, times its roofline bound.
# ---------------------------------------------------------------------------------------------


def round_steps(c: ml_collections.ConfigDict) -> list[int]:
  """Training steps of every round 0..R of a run (`train.num_epochs` x batches; early stopping
  can only shorten a round, so this is an upper bound)."""
  tc = train.TrainConfig(**c.train.to_dict())
  rounds = config_lib.num_query_rounds(c)
  out = []
  for r in range(rounds + 1):
    n = c.al.initial_size + r * c.al.query_size
    out.append(train.num_epochs(n, tc) * math.ceil(n / tc.batch_size))
  return out


def _bound(plan_rows: list[Row], target, kind: str, length: int | None = None) -> float | None:
  """The roofline bound of the first row of `kind` (at `length` tokens, if given)."""
  for row in plan_rows:
    p = row.program
    if p.kind == kind and (length is None or p.title(p.batch).endswith(f"L={length})")):
      rl = roofline(target, row.result)
      return rl[0] if rl else None
  return None


def run_seconds(c: ml_collections.ConfigDict, target, rows: list[Row], length: int
                ) -> tuple[float, float, float] | None:
  """(train, score, test) roofline seconds of one whole run, every batch at `length` tokens."""
  t_train = _bound(rows, target, "train step")
  t_logits = _bound(rows, target, "score logits", length)
  keys = strategies.STRATEGY_OUTPUTS[c.al.strategy]
  t_strat = _bound(rows, target, f"score {'+'.join(keys)}", length) if keys else 0.0
  if t_train is None or t_logits is None or t_strat is None:
    return None
  _, pool, test = task_shape(c)
  eval_b = next(r.program.batch for r in rows if r.program.kind.startswith("score "))
  steps = sum(round_steps(c))
  rounds = config_lib.num_query_rounds(c)
  if c.al.filter == "none":
    sub = [pool - c.al.initial_size - r * c.al.query_size for r in range(rounds)]
  else:  # randomsubset / anchoral: the cap; seals: grows, assumed at the cap too
    sub = [min(c.al.subpool_size, pool - c.al.initial_size - r * c.al.query_size)
           for r in range(rounds)]
  score = sum(math.ceil(max(s, 0) / eval_b) for s in sub) * t_strat if keys else 0.0
  testing = (rounds + 1) * math.ceil(test / eval_b) * t_logits
  return steps * t_train, score, testing


def projection(c, target, rows: list[Row], runs, seeds: int) -> list[str]:
  length = _reachable_buckets(c.data.max_length)[-1]
  if train.TrainConfig(**c.train.to_dict()).trainable != "all":
    return ["projection: only for train.trainable=all (the head regime's cost is one encoder "
            "pass at set-up plus a tiny head fit per round)"]
  if not task_shape(c)[1]:
    return [f"projection: pool/test sizes of {c.data.name!r} unknown here (PAPER_TASKS in "
            "anchoral_jax/accel/plan.py): none made"]
  out = ["ESTIMATE from the compiler's cost model (roofline lower bounds, not measurements). "
         f"Assumes: every batch padded to L={length} (dynamic padding makes real ones shorter), "
         "every round trains num_epochs x batches steps (no early stop), SEALS's subpool at "
         "the al.subpool_size cap, test set scored every round, perfect overlap of host work; "
         "k-means++ and index search (host CPU) not counted."]
  one = run_seconds(c, target, rows, length)
  if one is None:
    return out + ["projection: a program it needs did not compile"]
  tr, sc, te = one
  steps = round_steps(c)
  out.append(f"one run ({c.data.name}, {c.al.strategy}+{c.al.filter}): "
             f"{len(steps)} rounds, {sum(steps):,} train steps; bound {_hms(tr + sc + te)} "
             f"(train {_hms(tr)}, scoring {_hms(sc)}, test {_hms(te)}); per round: training "
             f"{_hms(tr / sum(steps) * steps[0])} (first) to {_hms(tr / sum(steps) * steps[-1])} "
             f"(last), scoring {_hms(sc / max(1, len(steps) - 1))}, test {_hms(te / len(steps))}")
  if runs:
    total = 0.0
    for rc in runs:
      t = run_seconds(rc, target, rows, length)
      total += sum(t) if t else 0.0
    hours = total / 3600
    out.append(f"sweep: {len(runs)} runs with {c.model.name} -> {hours:,.1f} h on one "
               f"{target.name} slice = {hours * target.chips:,.1f} chip-hours (runs one after "
               f"another, each data-parallel over the {target.chips} chips)")
    t_many = _bound(rows, target, "fit_many step")
    t_one = _bound(rows, target, "train step")
    if t_many and t_one and seeds > 1:
      out.append(f"  with --group_seeds (S={seeds}): a fit_many step bounds at {_ms(t_many)} vs "
                 f"{seeds} x {_ms(t_one)} for single steps (training time x "
                 f"{t_many / (seeds * t_one):.2f})")
  return out


# ---------------------------------------------------------------------------------------------
# The report.
# ---------------------------------------------------------------------------------------------


def _gib(x: float) -> str:
  return f"{x / GIB:.2f}"


def _ms(s: float) -> str:
  return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.1f} s"


def _hms(s: float) -> str:
  return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def _flops(x: float) -> str:
  return f"{x / 1e12:.3f} T" if x >= 1e11 else f"{x / 1e9:.2f} G"


def format_plan(plan: Plan) -> str:
  t = plan.target
  peak = (f"peaks {t.peak_flops / 1e12:g} TFLOP/s bf16, {t.hbm_bytes_per_s / 1e9:g} GB/s per chip"
          if t.peak_flops else "no peak numbers: no roofline")
  lines = [f"anchoral plan: {plan.config_spec or 'config'} on {t.name} ({t.chips} chip"
           f"{'s' if t.chips > 1 else ''}, {_gib(t.memory_bytes)} GiB each; {peak}; source: "
           f"{t.source})",
           f"model architecture: {plan.arch_source}",
           "Memory: per device, from the compiler's memory analysis (arguments + outputs - "
           "donated + temporaries). FLOPs and bytes: per device, the compiler's cost model. "
           "Bound: max(FLOPs/peak, bytes/bandwidth), a lower bound on time; MFU at that bound.",
           "",
           "| program | compiled (s) | args | temps | out | peak GiB / chip | fits | largest "
           "batch | FLOPs | bytes | bound | MFU@bound | per round |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in plan.rows:
    p, r = row.program, row.result
    name = p.title(r.batch)
    if not r.ok:
      lines.append(f"| {name} | FAILED ({r.seconds:.0f} s): {r.error[:200]} | | | | | | | | | | |"
                   f" {row.per_round} |")
      continue
    fits = "yes" if r.peak <= t.memory_bytes else "NO"
    if r.host_callbacks:
      fits += f"; {len(r.host_callbacks)} HOST CALLBACK(S)"
    mb = ("-" if row.max_batch is None else
          f"{row.max_batch.confirmed or '?'} ({row.max_batch.note})")
    rl = roofline(t, r)
    bound, mfu = (_ms(rl[0]), f"{rl[1]:.0%}") if rl else ("-", "-")
    lines.append(f"| {name} | {r.seconds:.1f} | {_gib(r.argument)} | {_gib(r.temp)} | "
                 f"{_gib(r.output)} | {_gib(r.peak)} | {fits} | {mb} | {_flops(r.flops)} | "
                 f"{r.bytes_accessed / GIB:.2f} GiB | {bound} | {mfu} | {row.per_round} |")
  lines.append("| k-means++ / k-means (BADGE, FTbertKM, AnchorAL anchors) | host numpy "
               "(clustering.py), not an accelerator program | | | | | | | | | | | per query |")
  if plan.lines:
    lines += ["", *plan.lines]
  return "\n".join(lines)


def main(config: ml_collections.ConfigDict, target: str, spec: str,
         overrides: dict[str, Any], search: bool, all_buckets: bool = True) -> None:
  import sys

  def log(s: str) -> None:
    print(s, file=sys.stderr, flush=True)

  plan = make_plan(config, target, spec=spec, overrides=overrides, search=search,
                   all_buckets=all_buckets, log=log)
  print(format_plan(plan))
