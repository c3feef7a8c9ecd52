#!/usr/bin/env bash
# The paper's Table 1 layout for parp1-docking (issue 16, docs/tasks/molecules.md), at least 64 final molecules
# per method, and a grid of each method's 12 best designs:
#   1. VIDD: `vidd finetune parp1-docking --preset quick` to its end (OUT/vidd);
#   2. DDPO, Best-of-N and the pretrained model at VIDD's number of docking calls (`vidd bench`, OUT/equal-calls);
#   3. Best-of-32 as the paper defines it: 32 pretrained candidates per molecule (`vidd bench`, OUT/best-of-32);
#   4. OUT/table.md and OUT/grids/*.png (scripts/parp1_table.py; it docks the samples of the sampling rows once
#      at exhaustiveness 1 to rank them, OUT/.../scores.tsv).
#
#   bash scripts/parp1_table.sh [OUT]          # default OUT: runs/parp1-table; many hours of docking on 2 cores
#   SMOKE=1 bash scripts/parp1_table.sh OUT    # the same pipeline on moses-qed (QED instead of docking), toy scale
#
# Resumable: rerun the same command; finished parts are skipped, an interrupted run resumes (`vidd finetune
# --resume`, `vidd bench` continues its folder). Environment: VIDD (the command, default `vidd`), PYTHON (default
# python), SAMPLES (final molecules per method, default 64; the paper's Best-of-N takes 32 x SAMPLES calls).
set -euo pipefail
OUT=${1:-runs/parp1-table}
VIDD=${VIDD:-vidd}
PYTHON=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
TASK=parp1-docking
SETTINGS=()  # settings of every run
if [[ -n "${SMOKE:-}" ]]; then
  TASK=moses-qed
  SAMPLES=${SAMPLES:-8}
  SETTINGS=(--set iterations=2 --set eval_every=1 --set eval_samples=4 --set batch_size=4 --set steps=8
            --set method.timesteps=2 --set task.report_prior_samples=8)
fi
SAMPLES=${SAMPLES:-64}
mkdir -p "$OUT"

# 1. VIDD, the task's preset to its end
run="$OUT/vidd"
if [[ -f "$run/final_eval.json" ]]; then
  echo "VIDD: finished before, skipped"
elif [[ -f "$run/checkpoints/last.pt" ]]; then
  echo "VIDD: resuming"
  $VIDD finetune "$TASK" --resume "$run" "${SETTINGS[@]}"
else
  rm -rf "$run"  # started but never checkpointed: start again
  echo "VIDD: the $TASK quick preset"
  $VIDD finetune "$TASK" --preset quick --out "$run" --set final_samples="$SAMPLES" "${SETTINGS[@]}"
fi
CALLS=$("$PYTHON" -c "import json, sys; print(json.load(open(sys.argv[1]))['reward_calls'])" "$run/final_eval.json")
echo "VIDD made $CALLS training-reward calls"

# 2. the other methods at VIDD's calls, cheapest first, 3. Best-of-32 (bench skips what is done and resumes what is not)
$VIDD bench "$TASK" --methods pretrained,best-of-n,ddpo --budget "$CALLS" --samples "$SAMPLES" --preset quick \
  --variants "$HERE/parp1_table_variants.yaml" --out "$OUT/equal-calls" "${SETTINGS[@]}"
$VIDD bench "$TASK" --methods best-of-n --budget $((32 * SAMPLES)) --samples "$SAMPLES" --preset quick \
  --out "$OUT/best-of-32" "${SETTINGS[@]}"

# 4. the table and the grids
"$PYTHON" "$HERE/parp1_table.py" "$OUT" --task "$TASK" > "$OUT/table.md"
cat "$OUT/table.md"
