#!/usr/bin/env bash
# Short fixed-seed dhs-hepg2 runs of every fine-tuning method, one folder each, for
# scripts/compare_runs.py (did a refactor change any number?).
#   bash scripts/method_smoke_runs.sh SRC_CHECKOUT OUT_FOLDER
# SRC_CHECKOUT is a vidd checkout whose src/ is used (e.g. a git worktree of an older commit).
set -euo pipefail
SRC=$1
OUT=$2
PY=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
mkdir -p "$OUT"
for m in vidd vidd-x0 standard ddpo ddpo-x0 ddpp drakes; do
  PYTHONPATH="$SRC/src" "$PY" -m vidd finetune dhs-hepg2 --preset quick --out "$OUT/$m" \
    --set method=$m --set iterations=4 --set eval_every=2 --set eval_samples=16 --set final_samples=16 \
    --set seed=3 --set threads=1 > "$OUT/$m.log" 2>&1
done
