#!/usr/bin/env bash
# LoRA against full fine-tuning on the antibody-cdrh3 quick preset (issue 17, docs/large-models.md):
#  1. each one's learning rate, on tuning seed 100, by the area under the *training* reward (`vidd bench --lrs`):
#     full fine-tuning at 3e-5 (the preset's), 1e-4, 3e-4; LoRA at 3e-4, 1e-3, 3e-3;
#  2. bench/memory.py at the chosen rates, seed 0, the preset's 40 iterations: peak memory (the whole process,
#     and the training iterations alone), seconds per iteration, checkpoint sizes and the evaluation reward of
#     full fine-tuning, LoRA, and LoRA with gradient checkpointing.
# Resumable: the sweeps continue their folders; OUT/memory.json is written last.
#   bash bench/lora_vs_full.sh [OUT]                 # -> bench/results/lora-vs-full (about an hour on 2 idle cores)
#   SMOKE=1 bash bench/lora_vs_full.sh /tmp/smoke    # the same steps with 2-iteration runs
# Relative paths are taken from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/lora-vs-full}
read -r -a VIDD <<< "${VIDD:-vidd}"
PYTHON=${PYTHON:-python}
if [[ ${SMOKE:-0} == 1 ]]; then
  SWEEP=(--budget 32 --eval-at-calls 16,32 --samples 4)
  MEASURE=(--set iterations=3 --set eval_every=2 --set eval_samples=4 --set final_samples=4)
else
  SWEEP=(--budget 320 --eval-at-calls 80,160,320 --samples 32)
  MEASURE=()
fi
# stop_after_idle=5: a student that collapsed onto sequences it has scored (full fine-tuning at 1e-4 did) makes a
# new call only every few iterations and would otherwise take hours to spend the budget
COMMON=(antibody-cdrh3 --preset quick --variants bench/lora/variants.yaml --first-seed 100 --seeds 1
        --set threads=1 --set stop_after_idle=5 "${SWEEP[@]}")
mkdir -p "$OUT"
SECONDS=0
"${VIDD[@]}" bench "${COMMON[@]}" --methods full --lrs 3e-5,1e-4,3e-4 --out "$OUT/sweep-full" > "$OUT/sweep-full.log" 2>&1 &
full=$!
"${VIDD[@]}" bench "${COMMON[@]}" --methods lora --lrs 3e-4,1e-3,3e-3 --out "$OUT/sweep-lora" > "$OUT/sweep-lora.log" 2>&1 &
lora=$!
wait "$full" && wait "$lora" || { echo "a sweep failed: see $OUT/sweep-*.log" >&2; exit 1; }
echo "learning-rate sweeps done after $SECONDS s"
chosen() {  # the chosen learning rate of label $1 in its sweep's choice.yaml
  "$PYTHON" -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))[sys.argv[2]]['lr'])" \
    "$OUT/sweep-$1/choice.yaml" "$1"
}
FULL_LR=$(chosen full)
LORA_LR=$(chosen lora)
echo "chosen: full fine-tuning lr $FULL_LR, LoRA lr $LORA_LR"
"$PYTHON" bench/memory.py --variants full lora lora-checkpointing "${MEASURE[@]}" \
  --lr "full=$FULL_LR" --lr "lora=$LORA_LR" --lr "lora-checkpointing=$LORA_LR" --out "$OUT/memory.json"
echo "done after $SECONDS s"
cat "$OUT/sweep-full/lr_sweep.md" "$OUT/sweep-lora/lr_sweep.md"
