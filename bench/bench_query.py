"""Query time per AL round vs pool size: AnchorAL vs full-pool AL vs SEALS (the paper's Time).

  .venv/bin/python bench/bench_query.py --cache-dir /tmp/qb  # 10k, 100k, 1M: ~6 min on 2 cores
                                                             # + index builds once (1M: ~16 min at M=16)
  .venv/bin/python bench/bench_query.py --sizes 10000,100000 --rounds 5

Times exactly what `loop.run` times as `time/query`: `loop.query` = the unlabelled set,
`filters.build_subpool` (anchors + index search, or SEALS' growing union) and
`strategies.acquire` (scoring the subpool with `forward_rows` + entropy top-25), over a few consecutive rounds that add 25 oracle labels each.
Training is not part of query time (and not run: the model stays fixed across rounds).

Synthetic pool: N unit embeddings (dim 384, 200 Gaussian clusters; clusters 0 and 1 are the
minority class, ~1%) in a usearch index, and N token-id rows with tweet-like lengths (mean ~30)
scored by the randomly initialised "tiny" preset. Paper defaults otherwise: 10 anchors per
class, 50 neighbours, subpool cap 10,000, scoring batch 256, 100 initial labels (5 minority).
Departures, for a 2-core machine: HNSW connectivity M=16 and ef_construction=64 (official:
64 / 200; a 1M index at M=64 takes 20+ min here); the index is built once per pool size and
shared by the filters, its build time reported apart. Compilation is excluded (one warm-up
pass over every length bucket). Note the paper's rule: when |U| <= subpool_size the AnchorAL
filter hands the whole pool to the strategy, so at 10k AnchorAL == full pool.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import harness  # bench/harness.py: bench/ is sys.path[0] when run as a script
import jax
import numpy as np

from anchoral_jax import config as config_lib
from anchoral_jax.al import filters, loop
from anchoral_jax.al import state as run_state
from anchoral_jax.data.tokenize import DEFAULT_BUCKETS, TokenizedTexts, bucket_length
from anchoral_jax.models import bert
from anchoral_jax.retrieval.index import PoolIndex
from anchoral_jax.training import scoring

FILTERS = {"anchoral": "anchoral", "full pool": "none", "seals": "seals"}
COLUMNS = ("date", "load 1/5/15", "pool", "filter", "rounds", "query s/round (mean)",
           "first round s", "last round s", "subpool (first..last)", "anchors s", "search s",
           "score s", "acquisition s", "index build s")
NUM_CLUSTERS = 200
MINORITY_CLUSTERS = (0, 1)


def make_pool(n: int, dim: int, seed: int, chunk: int = 100_000
              ) -> tuple[np.ndarray, np.ndarray, TokenizedTexts]:
  """Unit embeddings [n, dim], binary labels [n], and token rows, in chunks (flat memory)."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((NUM_CLUSTERS, dim), dtype=np.float32)
  emb = np.empty((n, dim), np.float32)
  cluster = rng.integers(0, NUM_CLUSTERS, n)
  for s in range(0, n, chunk):
    x = centres[cluster[s:s + chunk]] + 0.6 * rng.standard_normal(
        (min(chunk, n - s), dim), dtype=np.float32)
    emb[s:s + chunk] = x / np.linalg.norm(x, axis=1, keepdims=True)
  labels = np.isin(cluster, MINORITY_CLUSTERS).astype(np.int64)
  lengths = np.clip(np.rint(rng.gamma(4.0, 7.5, n)), 4, 128).astype(np.int64)  # tweet-like
  offsets = np.concatenate([[0], np.cumsum(lengths)])
  ids = rng.integers(1000, 30000, int(offsets[-1]), dtype=np.int32)
  return emb, labels, TokenizedTexts(ids, offsets, 0)


def initial_rows(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """The paper's initial set: 5 minority + 95 uniform non-minority."""
  minority = rng.choice(np.flatnonzero(labels == 1), 5, replace=False)
  rest = rng.choice(np.flatnonzero(labels == 0), 95, replace=False)
  return np.concatenate([minority, rest]).astype(np.int64)


def get_index(emb: np.ndarray, connectivity: int, expansion_add: int, cache: Path | None
              ) -> tuple[PoolIndex, float]:
  path = cache / f"query-bench-{len(emb)}-M{connectivity}-ef{expansion_add}.usearch" if cache else None
  if path is not None and path.exists():
    build_s = Path(str(path) + ".build_s")
    return PoolIndex.load(path), float(build_s.read_text()) if build_s.exists() else float("nan")
  t0 = time.perf_counter()
  index = PoolIndex.build(emb, np.arange(len(emb), dtype=np.int64), connectivity=connectivity,
                          expansion_add=expansion_add, expansion_search=50, progress=False)
  build_s = time.perf_counter() - t0
  if path is not None:
    index.save(path)
    Path(str(path) + ".build_s").write_text(f"{build_s:.1f}\n")
  return index, build_s


def run_filter(c, setup, params, labels: np.ndarray, init: np.ndarray, rounds: int
               ) -> list[dict[str, float]]:
  """`rounds` query rounds of one filter, timed as `loop.run` times them."""
  state = run_state.ALState(init.copy(), np.full(len(init), -1, np.int64), 0,
                       np.random.default_rng(c.al.strategy_seed),
                       filters.FilterState.initial(c.randomsubset.seed, c.anchoral.seed))
  out = []
  for _ in range(rounds):
    timers: dict[str, float] = {}
    info: dict = {}
    t_query = time.perf_counter()  # --- the loop's query block, verbatim ---
    _, subpool, new_rows = loop.query(c, setup, state, params, timers, info)
    timers["query"] = time.perf_counter() - t_query
    state.commit(new_rows)
    out.append({**timers, "subpool": float(len(subpool)),
                "minority": float(labels[new_rows].sum())})
  return out


def main(argv: Sequence[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", default="10000,100000,1000000")
  p.add_argument("--dim", type=int, default=384, help="retrieval embedding dim (MiniLM: 384)")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--full-rounds-at-max", type=int, default=1,
                 help="full-pool rounds at the largest size (each scores ~N rows; the cost per "
                      "round is flat, so fewer rounds suffice)")
  p.add_argument("--extrapolate-full", action="store_true",
                 help="skip full pool at the largest size; extrapolate linearly from the next")
  p.add_argument("--connectivity", type=int, default=16, help="HNSW M (official: 64)")
  p.add_argument("--expansion-add", type=int, default=64, help="ef_construction (official: 200)")
  p.add_argument("--cache-dir", default="", help="save/load the synthetic indexes here")
  p.add_argument("--build-only", action="store_true",
                 help="build and cache the indexes (needs --cache-dir), then stop")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--plot", default=str(Path(__file__).resolve().parent / "query_time_vs_pool.png"))
  p.add_argument("--no-record", action="store_true", help="print only, do not touch RESULTS.md")
  args = p.parse_args(argv)
  jax.config.update("jax_platforms", "cpu")
  cache = Path(args.cache_dir) if args.cache_dir else None
  if cache:
    cache.mkdir(parents=True, exist_ok=True)

  sizes = [int(s) for s in args.sizes.split(",")]
  c = config_lib.base()
  cfg = bert.BertConfig(**{**bert.PRESETS["tiny"].__dict__, "num_labels": 2})
  params = bert.init_params(cfg, jax.random.key(0))
  results: dict[tuple[int, str], list[dict[str, float]]] = {}
  rows = []
  for n in sizes:
    t0 = time.perf_counter()
    emb, labels, tok = make_pool(n, args.dim, args.seed)
    data_s = time.perf_counter() - t0
    index, build_s = get_index(emb, args.connectivity, args.expansion_add, cache)
    print(f"N={n}: data {data_s:.1f}s, index build {build_s:.1f}s (load {harness.load()})",
          flush=True)
    if args.build_only:
      continue
    task = SimpleNamespace(train=SimpleNamespace(labels=labels), minority_classes=(1,),
                           num_classes=2)
    setup = SimpleNamespace(task=task, pool_rows=np.arange(n, dtype=np.int64),
                            val_rows=np.zeros(0, np.int64), index=index, emb_NxE=emb,
                            emb_lookup=lambda r, e=emb: e[np.asarray(r, np.int64)],
                            pool_tok=tok, cfg=cfg)
    # Warm-up: compile every (batch, bucket) shape once, outside the timings.
    bucket_N = np.array([bucket_length(int(x), DEFAULT_BUCKETS) for x in tok.lengths_N[:50_000]])
    for r in (int(np.flatnonzero(bucket_N == b)[0]) for b in np.unique(bucket_N)):
      scoring.forward_rows(params, cfg, tok, np.array([r]), ("logits",),
                           c.train.eval_batch_size)
    init = initial_rows(labels, np.random.default_rng(654321))
    for name, f in FILTERS.items():
      rounds = args.rounds
      if name == "full pool" and n == max(sizes):
        if args.extrapolate_full:
          continue
        rounds = min(rounds, args.full_rounds_at_max)
      c.al.filter = f
      ld = harness.load()
      res = run_filter(c, setup, params, labels, init, rounds)
      results[(n, name)] = res
      q = [r["query"] for r in res]
      mean = lambda k, res=res: np.mean([r.get(k, 0.0) for r in res])  # noqa: E731
      row = {"date": harness.now(), "load 1/5/15": ld, "pool": f"{n:,}", "filter": name,
             "rounds": str(rounds), "query s/round (mean)": f"{np.mean(q):.3f}",
             "first round s": f"{q[0]:.3f}", "last round s": f"{q[-1]:.3f}",
             "subpool (first..last)": f"{int(res[0]['subpool']):,}..{int(res[-1]['subpool']):,}",
             "anchors s": f"{mean('anchors'):.3f}", "search s": f"{mean('search'):.3f}",
             "score s": f"{mean('score'):.3f}", "acquisition s": f"{mean('acquisition'):.3f}",
             "index build s": f"{build_s:.0f}"}
      rows.append(row)
      print(" | ".join(f"{k} {v}" for k, v in row.items() if k != "date"), flush=True)
    del index, emb, tok, setup

  if args.build_only:
    return
  extrapolated = None
  if args.extrapolate_full and len(sizes) > 1:
    base_n = sorted(sizes)[-2]
    per_row = np.mean([r["query"] for r in results[(base_n, "full pool")]]) / base_n
    extrapolated = (max(sizes), per_row * max(sizes))
    rows.append({"date": harness.now(), "load 1/5/15": harness.load(), "pool": f"{max(sizes):,}",
                 "filter": "full pool (EXTRAPOLATED)", "rounds": "-",
                 "query s/round (mean)": f"{extrapolated[1]:.3f}",
                 "subpool (first..last)": f"linear from {base_n:,}"})
  plot(results, sizes, extrapolated, args.plot)
  print(harness.markdown_table(COLUMNS, rows))
  if not args.no_record:
    preamble = (
        f"`bench/bench_query.py {' '.join(argv or sys.argv[1:])}`. Machine: {harness.machine()}; "
        f"{harness.versions(['jax', 'jaxlib', 'flax', 'usearch', 'numpy'])}; CPU only (no GPU "
        "lent to this session). Query time per round exactly as `loop.run` times it (unlabelled "
        "set + `build_subpool` + `acquire`: anchors, search, scoring, acquisition), entropy "
        "strategy, tiny random model, scoring batch 256, compile excluded. Synthetic clustered "
        f"unit embeddings (dim {args.dim}, ~1% minority), usearch HNSW at M={args.connectivity}, "
        f"ef_construction={args.expansion_add} (official 64/200; built once per pool, shared by "
        "the filters). At 10k AnchorAL hands the whole pool to the strategy (|U| <= "
        f"subpool_size, as the paper). Plot: `{Path(args.plot).name}`.")
    harness.append_section("Query time per round vs pool size (AnchorAL, full pool, SEALS)",
                           preamble, COLUMNS, rows)
    print(f"appended to {harness.RESULTS}")


def plot(results, sizes, extrapolated, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
  colours = {"anchoral": "C0", "full pool": "C3", "seals": "C2"}
  for name in FILTERS:
    xs = [n for n in sizes if (n, name) in results]
    ys = [np.mean([r["query"] for r in results[(n, name)]]) for n in xs]
    ax.plot(xs, ys, "o-", color=colours[name], label=name)
  if extrapolated is not None:
    base_n = sorted(sizes)[-2]
    y0 = np.mean([r["query"] for r in results[(base_n, "full pool")]])
    ax.plot([base_n, extrapolated[0]], [y0, extrapolated[1]], "o--", color=colours["full pool"],
            mfc="none", label="full pool (extrapolated)")
  ax.set(xscale="log", yscale="log", xlabel="pool size N", ylabel="query time per round (s)",
         title="Mean query time per round")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  big = max(sizes)
  for name in FILTERS:
    if (big, name) in results:
      q = [r["query"] for r in results[(big, name)]]
      ax2.plot(range(len(q)), q, "o-", color=colours[name], label=name)
  ax2.set(yscale="log", xlabel="round", ylabel="query time (s)", title=f"Per round at N={big:,}")
  ax2.grid(True, which="both", alpha=0.3)
  ax2.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
