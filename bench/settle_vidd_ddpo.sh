#!/usr/bin/env bash
# Settle VIDD against DDPO on dhs-hepg2 (docs/benchmarks.md, "VIDD against DDPO"):
#  1. on tuning seeds (100, 101), each fine-tuning method's learning rate and the most reward-efficient VIDD
#     setting (vidd-efficient), chosen by the area under the *training* reward against log(calls) alone;
#  2. the benchmark on seeds 0, 1, 2 with those choices, evaluated at 384 ... 6,144 calls on 128 samples;
#     paired VIDD - DDPO differences with bootstrap intervals;
#  3. the trade-off alpha buys: vidd-efficient at alpha 0.3, 1 and 3 on seed 0, at the sweep's budget.
# Every stage resumes where it stopped (rerun the same command); JOBS worker processes (default 2, one per core)
# share each stage's runs. Labels: bench/settle/variants.yaml.
#   bash bench/settle_vidd_ddpo.sh [OUT]               # -> bench/results/dhs-hepg2-settle
#   SMOKE=1 bash bench/settle_vidd_ddpo.sh /tmp/smoke  # the same stages at a tiny scale (minutes)
#   VIDD="python -m vidd" bash bench/settle_vidd_ddpo.sh
#   LRS=1e-3,3e-3 TUNING_SEEDS=1 bash bench/settle_vidd_ddpo.sh   # a cheaper sweep (also SWEEP_BUDGET, SWEEP_SAMPLES)
# Relative paths are taken from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/dhs-hepg2-settle}
read -r -a VIDD <<< "${VIDD:-vidd}"
JOBS=${JOBS:-2}
VARIANTS=bench/settle/variants.yaml
CANDIDATES=vidd-rollin,vidd-rollin-4steps,vidd-rollin-small,vidd-learned
if [[ ${SMOKE:-0} == 1 ]]; then
  SWEEP=(--budget 96 --eval-at-calls 48,96 --samples 8 --seeds 1 --lrs 1e-3,3e-3)
  MAIN=(--budget 192 --eval-at-calls 48,96,192 --samples 8 --seeds 2)
  ALPHA=(--budget 96 --eval-at-calls 48,96 --samples 8 --seeds 1)
  SHAPES=(--set steps=8 --set batch_size=4 --set likelihood_samples=1)
else  # the sweep's knobs (the largest share of the cost after DDPO and DRAKES) may be set from the environment
  B=${SWEEP_BUDGET:-1536}
  SWEEP=(--budget "$B" --eval-at-calls $((B / 4)),$((B / 2)),"$B" --samples "${SWEEP_SAMPLES:-64}"
         --seeds "${TUNING_SEEDS:-2}" --lrs "${LRS:-3e-4,1e-3,3e-3}")
  MAIN=(--budget 6144 --eval-at-calls 384,768,1536,3072,6144 --samples 128 --seeds 3)
  ALPHA=(--budget "$B" --eval-at-calls $((B / 4)),$((B / 2)),"$B" --samples 128 --seeds 1)
  SHAPES=()
fi
COMMON=(dhs-hepg2 --preset bench --variants "$VARIANTS" --set threads=1 "${SHAPES[@]}")

workers() {  # JOBS copies of one `vidd bench` command on one folder; fails if one fails
  local log=$1 pids=() i
  shift
  for i in $(seq "$JOBS"); do
    "${VIDD[@]}" bench "$@" > "$log.$i" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i"; done
}

mkdir -p "$OUT"
SECONDS=0
workers "$OUT/lr-sweep.log" "${COMMON[@]}" "${SWEEP[@]}" --first-seed 100 \
  --methods vidd-paper,$CANDIDATES,ddpo,standard,drakes --pick vidd-efficient=$CANDIDATES --out "$OUT/lr-sweep"
echo "learning-rate sweep done after $SECONDS s"
workers "$OUT/main.log" "${COMMON[@]}" "${MAIN[@]}" --variants "$OUT/lr-sweep/choice.yaml" \
  --methods vidd-paper,vidd-efficient,ddpo,standard,drakes,best-of-n,svdd,pretrained \
  --compare vidd-efficient:ddpo,vidd-paper:ddpo --out "$OUT/main"
echo "benchmark done after $SECONDS s"
workers "$OUT/alpha.log" "${COMMON[@]}" "${ALPHA[@]}" --variants "$OUT/lr-sweep/choice.yaml" \
  --methods vidd-efficient-alpha0.3,vidd-efficient,vidd-efficient-alpha3,pretrained --out "$OUT/alpha"
echo "alpha trade-off done after $SECONDS s"
cat "$OUT/lr-sweep/lr_sweep.md" "$OUT/main/table.md" "$OUT/alpha/table.md"
