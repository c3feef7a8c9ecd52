#!/usr/bin/env bash
# Mutation testing of vidd's core maths (not part of CI): plants one small bug at a time in a private copy
# of the tree and runs the fast tests that guard the file (scripts/mutation.py; see docs/testing.md).
#
#   scripts/mutation.sh                 # every mapped file, in the background, niced
#   scripts/mutation.sh --foreground    # the same in this shell
#   scripts/mutation.sh --files src/vidd/training/value.py --max-per-file 20
#
# Writes docs/results/mutation/report.md and report.json; progress in docs/results/mutation/run.log.
# About 35 minutes of one core for the whole set. PYTHON picks the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT=docs/results/mutation
mkdir -p "$OUT"
if [ "${1:-}" = "--foreground" ]; then
  shift
  exec nice -n 10 "$PY" scripts/mutation.py "$@"
fi
nohup nice -n 10 "$PY" scripts/mutation.py "$@" > "$OUT/run.log" 2>&1 &
echo "mutation testing started (pid $!); progress: tail -f $OUT/run.log"
