#!/usr/bin/env bash
# The lever table of the molecule prior (issue 16, docs/tasks/molecules.md): pretrain each variant of the
# committed moses-qed recipe with `vidd pretrain --task moses-qed`, evaluate it with `vidd model-report` on
# $SAMPLES samples against 10,000 MOSES test molecules (FCD, QED, SA, validity, uniqueness, novelty, ...) at each
# number of sampling steps of $STEPS, and write OUT/table.md (scripts/molecule_lever_table.py).
#
#   bash scripts/molecule_prior_levers.sh [OUT]            # default OUT: runs/molecule-levers
#   DEVICE=cuda bash scripts/molecule_prior_levers.sh      # on a GPU (hours); on 2 CPU cores: days
#   SMOKE=1 bash scripts/molecule_prior_levers.sh OUT      # the same pipeline with toy models and 32 samples
#   SCALE=small bash scripts/molecule_prior_levers.sh OUT  # every lever on a small network (2 CPU cores: hours)
#   Relative paths are taken from the repository root, wherever the script is run from.
#
# Resumable: rerun the same command. A trained variant (OUT/NAME/TRAINED) and a written report are skipped, an
# interrupted pretraining resumes from OUT/NAME/state.pt. Environment: VIDD (the command, default `vidd`),
# PYTHON (default python), DEVICE (default cpu), SAMPLES (default 10000), STEPS (default "32 128"),
# VARIANTS (the names to run, default all, in the order below), WORKERS (processes that randomise SMILES,
# default: the CPU cores), SCALE (full, the default, or small), SEED (the training seed, default 0; give each
# seed its own OUT). Two processes with different VARIANTS may share one OUT: with OMP_NUM_THREADS=1 each, they
# share two cores without slowing each other down.
set -euo pipefail
OUT=${1:-runs/molecule-levers}
VIDD=${VIDD:-vidd}
PYTHON=${PYTHON:-python}
DEVICE=${DEVICE:-cpu}
WORKERS=${WORKERS:-$(nproc)}
cd "$(dirname "$0")/.."  # relative paths (OUT, VIDD_ASSETS) are taken from the repository root
ASSETS=${VIDD_ASSETS:-src/vidd/assets}

# the committed model's recipe (src/vidd/assets/MANIFEST.json): 3.19M parameters, 200,000 molecules, 19,500 steps
BASE="model.backbone=transformer model.hidden=256 model.layers=4 model.heads=8 batch_size=512 lr=2e-3
      warmup_steps=500 epochs=50 eval_every=1000"
# one lever each; `combined` takes those expected to help together (revise it from the single-lever rows).
# all-data: the 1,582,663 molecules outside the held-out set, 6.31 epochs = the base's 19,500 steps
# continued: the committed model trained on for 480 more steps (about 80 minutes on 2 CPU cores) on molecules it
#   has not seen, all of MOSES (0.155 epochs), at a lower peak lr with a short EMA (0.999 would keep half the
#   committed weights after 700 steps)
declare -A LEVERS=(
  [committed]=""
  [base]=""
  [all-data]="train_sequences=-1 epochs=6.31"
  [longer]="epochs=150"
  [larger]="model.hidden=512 model.layers=8"
  [time-conditioned]="model.time_conditioned=true"
  [cosine]="model.schedule=cosine"
  [random-smiles]="augment=random-smiles augment_workers=$WORKERS"
  [continued]="init_from=$ASSETS/moses/pretrained train_sequences=-1 epochs=0.155 lr=3e-4 warmup_steps=50
               ema=0.99 eval_every=20"
  [combined]="train_sequences=-1 epochs=20 model.hidden=512 model.layers=8 augment=random-smiles augment_workers=$WORKERS"
)
ORDER="committed base all-data longer larger time-conditioned cosine random-smiles continued combined"
RECIPE="committed recipe"
SCALE=${SCALE:-full}
[[ $SCALE == full || $SCALE == small ]] || { echo "SCALE must be full or small, got '$SCALE'" >&2; exit 2; }
if [[ $SCALE == small ]]; then
  # the same levers on a small network for 2,000 steps of 128 molecules (0.36 s per step on one CPU core, against
  # 8.7 s on two for the committed recipe; 12 minutes of training and 7 for the report), so that each lever's
  # effect can be measured without a GPU. The committed model and the data levers are left out: the base sees
  # 256,000 molecules, so all-data would differ only in which ones. The EMA spans 5% of the run, as the
  # committed recipe's does.
  BASE="model.backbone=transformer model.hidden=128 model.layers=2 model.heads=4 batch_size=128 lr=2e-3
        warmup_steps=100 epochs=1.28 ema=0.99 eval_every=250"
  LEVERS[longer]="epochs=2.56"
  LEVERS[larger]="model.hidden=192 model.layers=3 model.heads=6"
  LEVERS[combined]="model.hidden=192 model.layers=3 model.heads=6 epochs=2.56"
  ORDER="base time-conditioned cosine random-smiles larger longer combined"
  RECIPE="small recipe (SCALE=small)"
fi
if [[ -n "${SMOKE:-}" ]]; then
  # toy scale: a 1-layer model on 64 molecules for one epoch; 32 samples of 8 steps
  TOY="model.hidden=16 model.layers=1 model.heads=2 batch_size=16 epochs=1 warmup_steps=1 eval_every=1000
       eval_sequences=16 train_sequences=64"
  SAMPLES=${SAMPLES:-32}
  STEPS=${STEPS:-8}
else
  TOY=""
fi
SAMPLES=${SAMPLES:-10000}
STEPS=${STEPS:-32 128}
VARIANTS=${VARIANTS:-$ORDER}

sets() {  # key=value words -> --set key=value arguments
  for kv in "$@"; do printf -- '--set\n%s\n' "$kv"; done
}

mkdir -p "$OUT"
for name in $VARIANTS; do
  [[ " $ORDER " == *" $name "* ]] || { echo "unknown variant $name; variants: $ORDER" >&2; exit 2; }
  dir="$OUT/$name"
  mkdir -p "$dir"
  if [[ $name == committed ]]; then
    model=()  # the task's own model: src/vidd/assets/moses/pretrained
    echo "the committed model (vidd model-report --task moses-qed)" > "$dir/settings.txt"
  else
    # shellcheck disable=SC2086  # word splitting of the settings is intended
    mapfile -t args < <(sets $BASE ${LEVERS[$name]} seed=${SEED:-0} device=$DEVICE $TOY)
    # shellcheck disable=SC2086  # unquoted: the settings on one line
    echo ${LEVERS[$name]:-the $RECIPE} > "$dir/settings.txt"
    if [[ -f "$dir/TRAINED" ]]; then
      echo "$name: trained before, skipped"
    else
      resume=()
      [[ -f "$dir/state.pt" ]] && resume=(--resume)
      echo "$name: pretraining ${resume[*]}"
      start=$SECONDS
      $VIDD pretrain --task moses-qed --out "$dir" "${resume[@]}" "${args[@]}" >> "$dir/pretrain.log" 2>&1
      echo $((SECONDS - start)) >> "$dir/train_seconds"  # one line per (resumed) part
      touch "$dir/TRAINED"
    fi
    model=(--checkpoint "$dir/model")
  fi
  for steps in $STEPS; do
    report="$dir/report-${steps}steps.json"
    if [[ -f "$report" ]]; then
      echo "$name: report at $steps steps done before, skipped"
      continue
    fi
    echo "$name: model report at $steps steps"
    $VIDD model-report --task moses-qed "${model[@]}" --samples "$SAMPLES" --steps "$steps" --device "$DEVICE" \
      --json "$report" > "$dir/report-${steps}steps.log" 2>&1
  done
done
"$PYTHON" scripts/molecule_lever_table.py "$OUT" $VARIANTS > "$OUT/table.md"
cat "$OUT/table.md"
