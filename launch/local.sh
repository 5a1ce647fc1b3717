#!/bin/bash
# A local sweep, then its report, in one command:
#   launch/local.sh CONFIG[:ARG] RUNS_DIR [PARALLEL] [--config.key=value ...]
# e.g. launch/local.sh configs/ablations.py:runlocal runs/ablations-local 2
# Re-running skips DONE runs and resumes the others. ANCHORAL=... overrides the program.
set -euo pipefail
if [ $# -lt 2 ]; then sed -n '2,5p' "$0" >&2; exit 2; fi
config=$1
runs=$2
shift 2
parallel=1
if [ $# -gt 0 ] && [[ $1 != --* ]]; then parallel=$1; shift; fi
ANCHORAL=${ANCHORAL:-anchoral}
# shellcheck disable=SC2086  # ANCHORAL is a command line: split on purpose
$ANCHORAL sweep --config "$config" --runs-dir "$runs" --parallel "$parallel" "$@"
# shellcheck disable=SC2086
$ANCHORAL report "$runs"
