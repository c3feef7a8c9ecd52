"""scripts/setup.sh installs the torch build VIDD_TORCH asks for (CPU by default, from PyTorch's CPU index where
it can be reached), checks the build it got, and installs IgFold's extra only when asked.

The script runs in a copy of the repository whose .venv/bin/python is a stub: it records every call, answers
the index probe as told, and "installs" a torch build of the test's choosing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB = r"""#!/usr/bin/env bash
root="$(cd "$(dirname "$0")/../.." && pwd)"
echo "$*" >> "$root/calls.log"
if [ "$1" = -c ]; then
  case "$2" in
    *urllib*) exit "$STUB_INDEX_RC" ;;
    *"import torch"*) [ -f "$root/torch-build" ] && cat "$root/torch-build" ;;
  esac
  exit $?
fi
case "$*" in *" install "*torch==*) echo "$STUB_TORCH_BUILD" > "$root/torch-build" ;; esac
"""


def setup(tmp_path: Path, index_reachable: bool = True, torch_build: str = "2.13.0+cpu (CUDA none)",
          **variables: str) -> tuple[int, list[str], str]:
    """Run setup.sh in a stub repository: (exit code, the stub's calls, stderr)."""
    (tmp_path / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB)
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDD_")}
    env.update(variables, STUB_INDEX_RC="0" if index_reachable else "1", STUB_TORCH_BUILD=torch_build)
    r = subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], env=env, capture_output=True, text=True)
    log = tmp_path / "calls.log"
    return r.returncode, log.read_text().splitlines() if log.exists() else [], r.stderr


def pip_installs(calls: list[str]) -> list[str]:
    return [c.split(" install ", 1)[1] for c in calls if c.startswith("-m pip") and " install " in c]


def test_default_is_the_cpu_build_from_pytorchs_cpu_index_and_no_igfold(tmp_path):
    rc, calls, err = setup(tmp_path)
    assert rc == 0, err
    torch, vidd = pip_installs(calls)
    assert torch == "-q --extra-index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu"
    assert vidd == "-q -e .[test,docs,chem,dist,protein,structure,track,lora]" and "installed torch 2.13.0+cpu (CUDA none)" in err


def test_without_the_cpu_index_the_same_cpu_build_comes_from_pips_own_sources(tmp_path):
    rc, calls, err = setup(tmp_path, index_reachable=False)
    assert rc == 0 and pip_installs(calls)[0] == "-q torch==2.13.0+cpu"
    assert "https://download.pytorch.org/whl/cpu cannot be reached" in err


def test_a_cuda_build_where_the_cpu_build_was_asked_for_stops_the_setup(tmp_path):
    rc, calls, err = setup(tmp_path, torch_build="2.13.0 (CUDA 12.8)")
    assert rc == 1 and "asked for the CPU build, got torch 2.13.0 (CUDA 12.8)" in err
    assert len(pip_installs(calls)) == 1  # vidd is not installed on top


@pytest.mark.parametrize("choice, spec", [
    ("cuda", "-q torch==2.13.0"),
    ("cu128", "-q --extra-index-url https://download.pytorch.org/whl/cu128 torch==2.13.0+cu128"),
])
def test_vidd_torch_picks_a_cuda_build(tmp_path, choice, spec):
    rc, calls, err = setup(tmp_path, torch_build="2.13.0 (CUDA 12.8)", VIDD_TORCH=choice)
    assert rc == 0, err
    assert pip_installs(calls)[0] == spec
    rc, calls, err = setup(tmp_path / "cpu", torch_build="2.13.0+cpu (CUDA none)", VIDD_TORCH=choice)
    assert rc == 1 and f"asked for a CUDA build (VIDD_TORCH={choice}), got torch 2.13.0+cpu (CUDA none)" in err


def test_igfold_only_when_asked_and_a_torch_in_the_venv_is_kept(tmp_path):
    (tmp_path / "torch-build").write_text("2.11.0 (CUDA 13.0)\n")
    rc, calls, err = setup(tmp_path, VIDD_EXTRAS="antibody")
    assert rc == 0, err
    assert pip_installs(calls) == ["-q -e .[test,docs,chem,dist,protein,structure,track,lora,antibody]"]
    assert "keeping torch 2.11.0 (CUDA 13.0), already in .venv" in err


def test_an_unknown_torch_choice_is_named(tmp_path):
    rc, calls, err = setup(tmp_path, VIDD_TORCH="rocm")
    assert rc == 2 and "VIDD_TORCH must be cpu, cuda or a CUDA tag such as cu128, got 'rocm'" in err
