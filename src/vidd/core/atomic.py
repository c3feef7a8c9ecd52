"""Atomic file writing: write to a temporary file in the same folder, then rename over the target,
so an interrupted write never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch


def umask_mode(mode: int) -> int:
    """`mode` as the process's umask lets a newly created file have it (what open() would give)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


@contextmanager
def atomic_open(path: str | Path, mode: str = "w"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save through `atomic_open`: no half-written checkpoint is ever left behind."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
