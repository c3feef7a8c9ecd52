"""Torch device names in configs: checked when the config is built (the name) and before a run starts
(that the device exists here)."""

from __future__ import annotations

import torch

from vidd.core.config import ConfigError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def parse_device(name: str, where: str = "device") -> torch.device:
    """The device a name gives (`cpu`, `cuda`, `cuda:1`, `mps`), or a ConfigError naming what is allowed."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise ConfigError(f"{where}: {name!r} is not a torch device vidd runs on; one of cpu, cuda, cuda:N, mps")
    return device


def check_available(name: str, where: str = "device") -> None:
    """The device exists on this machine."""
    device = parse_device(name, where)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise ConfigError(f"{where}: {name!r} is not available here ({count} CUDA device(s) visible to "
                              f"torch {torch.__version__})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{where}: 'mps' is not available here")
