"""A stand-in assets folder for a test: its MANIFEST.json, so that vidd verifies the assets in it."""

import json
from pathlib import Path

from vidd.core.manifest import MANIFEST, checksums


def write_manifest(root: Path, *assets: str) -> None:
    """root/MANIFEST.json listing `assets` (paths relative to root: files or model folders)."""
    files = [{"path": f"assets/{a}", **checksums(root / a), "what": "test stand-in", "commands": []} for a in assets]
    (root / MANIFEST).write_text(json.dumps({"files": files}))
