"""The built wheel works outside the checkout: vidd, its presets and its bundled models and oracles all come
from the installed wheel, and `vidd sample` / `vidd evaluate` run from another folder.

Only vidd comes from the wheel: the fresh virtual environment sees this test environment's site-packages
(through a .pth file) for torch and the other dependencies, so no download is needed. A .pth line only adds
a folder to sys.path (the .pth files inside it, such as an editable install of the checkout, are not run),
and PYTHONPATH is cleared, so the checkout cannot be imported by accident; the test checks where every file
came from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import vidd
from vidd.tasks import Task

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]


def run(cmd: list, **kwargs) -> str:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """vidd's wheel, built from a copy of the checkout's package and project files."""
    tmp = tmp_path_factory.mktemp("wheel")
    project = tmp / "project"
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, project / name)
    run(PIP + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist", project])
    built, = (tmp / "dist").glob("vidd-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel) -> Path:
    """A fresh virtual environment with vidd installed from the wheel."""
    venv = wheel.parent.parent / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    parents = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "dependencies-from-the-test-environment.pth").write_text("\n".join(parents) + "\n")
    run(PIP + ["--python", python, "install", "--no-deps", "--no-index", wheel])
    return venv


@pytest.fixture
def elsewhere(tmp_path) -> dict:
    """Arguments for a subprocess in a folder outside the checkout, with nothing pointing at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIDD_ASSETS")}
    return {"cwd": tmp_path, "env": env}


def test_the_wheel_holds_every_file_of_the_package(wheel):
    package = ROOT / "src"
    files = {p.relative_to(package).as_posix() for p in (package / "vidd").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    assert files and files == {n for n in zipfile.ZipFile(wheel).namelist() if not n.startswith("vidd-")}


def test_files_come_from_the_installed_wheel(installed, elsewhere):
    probe = ("import json, vidd; from vidd.tasks import Task, assets_dir; t = Task.get('dhs-hepg2'); "
             "print(json.dumps({'vidd': vidd.__file__, 'assets': str(assets_dir()), "
             "'presets': str(t._preset_dir()), 'names': t.preset_names(), "
             "'model': str(assets_dir() / 'dhs-hepg2' / 'pretrained'), "
             "'exists': (assets_dir() / 'dhs-hepg2' / 'pretrained' / 'model.safetensors').is_file()}))")
    where = json.loads(run([installed / "bin" / "python", "-c", probe], **elsewhere))
    site = installed.resolve()
    for key in ("vidd", "assets", "presets", "model"):
        assert Path(where[key]).resolve().is_relative_to(site), (key, where[key])
        assert not Path(where[key]).resolve().is_relative_to(ROOT), (key, where[key])
    assert where["exists"] and where["names"] == Task.get("dhs-hepg2").preset_names()


def test_installed_vidd_samples_and_evaluates_from_another_folder(installed, elsewhere):
    vidd_cmd = installed / "bin" / "vidd"
    assert run([vidd_cmd, "--version"], **elsewhere).strip() == f"vidd {vidd.__version__}"
    metadata = "from importlib.metadata import version; print(version('vidd'))"
    assert run([installed / "bin" / "python", "-c", metadata], **elsewhere).strip() == vidd.__version__
    run([vidd_cmd, "sample", "dhs-hepg2", "--n", "4", "--steps", "4", "--out", "s.fasta"], **elsewhere)
    run([vidd_cmd, "evaluate", "--task", "dhs-hepg2", "--samples", "s.fasta", "--json", "e.json",
         "--likelihood-samples", "2"], **elsewhere)
    metrics = json.loads((elsewhere["cwd"] / "e.json").read_text())
    assert metrics["n"] == 4 and set(Task.get("dhs-hepg2").table_metrics) <= set(metrics)
