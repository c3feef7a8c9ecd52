#!/usr/bin/env bash
# Set up a virtual environment in .venv with vidd and its test tools.
# PyTorch is installed first, from the pinned CPU build (torch==2.13.0; a local wheel on our
# machines), so pip never resolves a multi-GB CUDA build. A GPU user installs the CUDA build of
# their choice into .venv first (see README); a torch that is already importable is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  $PIP install -q --disable-pip-version-check "${VIDD_TORCH_SPEC:-torch==2.13.0}"
fi
# dist: Ray, for the reward executor (its tests run on a local cluster); protein, antibody: the antibody task
# (antibody installs IgFold, licensed for academic, non-commercial use only); track: TensorBoard, MLflow, W&B
EXTRAS=test,chem,dist,protein,antibody,track
$PIP install -q --disable-pip-version-check -e ".[$EXTRAS]"
