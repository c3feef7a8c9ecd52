"""The documentation site builds in strict mode (broken links, anchors and API references fail), and the
licence audit lists every bundled asset and every dependency vidd asks for."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from vidd.tasks import assets_dir

ROOT = Path(__file__).resolve().parents[2]


def test_the_documentation_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocstrings", reason="the documentation tools come with the [docs] extra")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert 'id="vidd.tasks.base.Task.get"' in api and 'id="vidd.core.plugins.find"' in api


def test_the_licence_audit_lists_every_asset_and_dependency():
    audit = (ROOT / "docs" / "licenses.md").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    asked = project["dependencies"] + [r for rs in project["optional-dependencies"].values() for r in rs]
    for name in {Requirement(r).name for r in asked} - {"vidd"}:
        assert f"\n| {name} | `{name}" in audit, f"{name} is missing from docs/licenses.md"
    for extra in project["optional-dependencies"]:
        assert f"## Extra `[{extra}]`" in audit
    for path in assets_dir().rglob("*"):
        if path.is_file() and path.name != "MANIFEST.json":
            folder, *inside = path.relative_to(assets_dir()).parts
            assert f"`{'/'.join(inside)}`" in audit and f"`{folder}/`" in audit
