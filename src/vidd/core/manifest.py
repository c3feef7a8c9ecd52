"""Verifying committed assets against their MANIFEST.json, once per file version.

MANIFEST.json lists every asset with its sha256 and size: a file entry (`path`, `sha256`, `bytes`) or a
model-folder entry (`path` and `files`: {name: {sha256, bytes}}). `verify_asset` checks the files of one
asset before it is loaded; a file whose (path, size, mtime) was verified before is not hashed again (the
results are cached in a JSON file, e.g. $VIDD_CACHE/verified-assets.json).
"""

from __future__ import annotations

import json
from pathlib import Path

from vidd.core.atomic import atomic_open
from vidd.core.errors import UserError
from vidd.core.safefiles import sha256_file

MANIFEST = "MANIFEST.json"


class AssetError(UserError):
    """A committed asset that is missing, unlisted or does not match its manifest entry."""


def manifest_files(root: Path) -> dict[str, dict]:
    """{path relative to root: {"sha256", "bytes"}} for every file the manifest of `root` lists (its paths are
    relative to the repository, `src/vidd/assets/...`)."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise AssetError(f"{manifest}: not found; the assets in {root} cannot be verified")
    out = {}
    for entry in json.loads(manifest.read_text())["files"]:
        rel = Path(entry["path"])
        if "assets" in rel.parts:
            rel = Path(*rel.parts[rel.parts.index("assets") + 1:])
        if "files" in entry:
            out.update({(rel / name).as_posix(): meta for name, meta in entry["files"].items()})
        else:
            out[rel.as_posix()] = {"sha256": entry["sha256"], "bytes": entry["bytes"]}
    return out


def checksums(path: Path) -> dict:
    """The manifest fields of a file (`sha256`, `bytes`) or of a model folder (`files`: those of each file)."""
    if path.is_dir():
        return {"files": {p.name: checksums(p) for p in sorted(path.iterdir()) if p.is_file()}}
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def verify_asset(path: Path, root: Path, cache_file: Path | None = None) -> None:
    """Check the file or model folder `path` under `root` against root/MANIFEST.json."""
    listed = manifest_files(root)
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    expected = {k: v for k, v in listed.items() if k == rel or k.startswith(rel + "/")}
    if not expected:
        raise AssetError(f"{path}: not listed in {root / MANIFEST}, so it cannot be verified")
    cache = _read_cache(cache_file)
    changed = False
    for name, meta in sorted(expected.items()):
        file = root / name
        if not file.is_file():
            raise AssetError(f"{file}: missing (listed in {root / MANIFEST})")
        stat = file.stat()
        key = str(file.resolve())
        seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": meta["sha256"]}
        if cache.get(key) == seen:
            continue
        digest = sha256_file(file) if stat.st_size == meta["bytes"] else None
        if digest != meta["sha256"]:
            found = f"sha256 {digest}" if digest else f"{stat.st_size} bytes"
            raise AssetError(f"{file}: does not match {root / MANIFEST} ({found}, expected sha256 {meta['sha256']}, "
                             f"{meta['bytes']} bytes): the file is corrupted or was replaced; restore it (e.g. "
                             f"`git checkout -- {file}`)")
        cache[key] = seen
        changed = True
    if changed and cache_file is not None:
        _write_cache(cache_file, cache)


def _read_cache(cache_file: Path | None) -> dict:
    try:
        return json.loads(cache_file.read_text()) if cache_file is not None and cache_file.is_file() else {}
    except (OSError, ValueError):  # an unreadable cache is only a cache: verify again
        return {}


def _write_cache(cache_file: Path, cache: dict) -> None:
    try:
        with atomic_open(cache_file) as f:
            json.dump(cache, f, indent=1)
    except OSError:  # a read-only cache folder: verify again next time
        pass
