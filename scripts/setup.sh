#!/usr/bin/env bash
# Set up a virtual environment in .venv with vidd, its test tools and its documentation tools.
#
# PyTorch first, so that pip never resolves a build nobody asked for. VIDD_TORCH picks the build that goes
# into a .venv without torch (a torch already in .venv is kept, whatever VIDD_TORCH says):
#   cpu (default)  the CPU build, torch==2.13.0+cpu, from PyTorch's CPU index (https://download.pytorch.org/whl/cpu).
#                  Where that index cannot be reached, pip looks for the same file in the sources it is
#                  configured with (our machines keep it on disk); no other build satisfies the pin, so
#                  the set-up fails rather than install a CUDA build. On macOS: torch==2.13.0 from PyPI
#                  (PyPI's macOS build has no CUDA).
#   cuda           torch==2.13.0 from PyPI, on Linux a CUDA build (several GB)
#   cu126, cu128…  torch==2.13.0+cuXYZ, the build for that CUDA version, from https://download.pytorch.org/whl/cuXYZ
# The build installed is checked (CUDA or not) before anything else is installed.
#
# VIDD_EXTRAS: more of vidd's extras, comma-separated. `VIDD_EXTRAS=antibody` adds IgFold (and pydssp) for the
# antibody task's structure rewards: IgFold is licensed for academic, NON-COMMERCIAL use only, so the
# default set-up does not install it (its tests are skipped without it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
TORCH_INDEX=https://download.pytorch.org/whl
VIDD_TORCH=${VIDD_TORCH:-cpu}
say() { echo "setup.sh: $*" >&2; }

case "$VIDD_TORCH" in
  cpu | cuda | cu[0-9]*) ;;
  *) say "VIDD_TORCH must be cpu, cuda or a CUDA tag such as cu128, got '$VIDD_TORCH'"; exit 2 ;;
esac

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check"
torch_build() {  # e.g. "2.13.0+cpu (CUDA none)"; fails when torch does not import
  .venv/bin/python -c "import torch; print(f'{torch.__version__} (CUDA {torch.version.cuda or \"none\"})')" 2>/dev/null
}

if build=$(torch_build); then
  say "keeping torch $build, already in .venv (VIDD_TORCH=$VIDD_TORCH applies to a .venv without torch)"
else
  index=()
  case "$VIDD_TORCH" in
    cpu)
      if [ "$(uname -s)" = Darwin ]; then
        spec=torch==$TORCH_VERSION
      else
        spec=torch==$TORCH_VERSION+cpu
        if .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=15)" \
             "$TORCH_INDEX/cpu/torch/" 2>/dev/null; then
          index=(--extra-index-url "$TORCH_INDEX/cpu")
        else
          say "$TORCH_INDEX/cpu cannot be reached; looking for $spec in pip's configured sources"
        fi
      fi ;;
    cuda) spec=torch==$TORCH_VERSION ;;
    *) spec=torch==$TORCH_VERSION+$VIDD_TORCH; index=(--extra-index-url "$TORCH_INDEX/$VIDD_TORCH") ;;
  esac
  if ! $PIP install -q ${index[@]+"${index[@]}"} "$spec"; then
    say "could not install $spec (VIDD_TORCH=$VIDD_TORCH); see the comment at the top of scripts/setup.sh"
    exit 1
  fi
  build=$(torch_build)
  if [ "$VIDD_TORCH" = cpu ] && [[ $build != *"CUDA none)" ]]; then
    say "asked for the CPU build, got torch $build"; exit 1
  elif [ "$VIDD_TORCH" != cpu ] && [[ $build == *"CUDA none)" ]]; then
    say "asked for a CUDA build (VIDD_TORCH=$VIDD_TORCH), got torch $build"; exit 1
  fi
  say "installed torch $build"
fi

# test, docs: the test suite and the documentation site (mkdocs build --strict runs in the tests);
# chem: the small-molecule tasks; dist: Ray, for the reward executor (its tests run on a local cluster);
# protein: the antibody task with its cheap rewards; structure: secondary structure (pydssp, biotite) for protein-ss;
# track: experiment trackers (TensorBoard, MLflow, W&B; their tests read back real files)
EXTRAS=test,docs,chem,dist,protein,structure,track,lora${VIDD_EXTRAS:+,$VIDD_EXTRAS}
$PIP install -q -e ".[$EXTRAS]"
