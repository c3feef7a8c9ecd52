"""Tasks bind a domain together: alphabet, length, data, pretrained model, rewards, metrics."""

from __future__ import annotations

import os
from pathlib import Path

from vidd.alphabets import Alphabet


def assets_dir() -> Path:
    """Committed checkpoints: $VIDD_ASSETS, else the repository's assets/ folder."""
    env = os.environ.get("VIDD_ASSETS")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "assets"


class Task:
    name: str = ""
    alphabet: Alphabet
    length: int
    registry: dict[str, type["Task"]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            Task.registry[cls.name] = cls

    @staticmethod
    def get(name: str) -> "Task":
        if name not in Task.registry:
            raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(Task.registry))}")
        return Task.registry[name]()

    def pretrain_sequences(self) -> tuple[list[str], list[str]]:
        """(training, validation) sequences for `vidd pretrain --task`."""
        raise NotImplementedError
