"""Tasks bind a domain together: alphabet, length, data, pretrained model, rewards, metrics."""

from __future__ import annotations

import os
from pathlib import Path

from vidd.alphabets import Alphabet
from vidd.samples import SampleFormat


def assets_dir() -> Path:
    """Committed checkpoints: $VIDD_ASSETS, else the repository's assets/ folder."""
    env = os.environ.get("VIDD_ASSETS")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "assets"


class Task(SampleFormat):
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
            from vidd.errors import UserError

            raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(Task.registry))}")
        return Task.registry[name]()

    #: named FinetuneConfig layers, e.g. {"quick": {...}, "paper": {...}}
    presets: dict[str, dict] = {}
    #: `evaluate` keys in benchmark tables, the held-out reward first
    table_metrics: tuple[str, ...] = ()
    #: naturalness / diversity keys plotted against the reward in `vidd bench`
    tradeoff_metrics: tuple[str, ...] = ("diversity",)

    def pretrain_sequences(self) -> tuple[list[str], list[str]]:
        """(training, validation) sequences for `vidd pretrain --task`."""
        raise NotImplementedError

    def pretrain_alphabet(self, train: list[str]) -> Alphabet:
        """The alphabet `vidd pretrain --task` builds its model on (by default the task's)."""
        return self.alphabet

    def pretrained_model(self):
        """The task's default masked diffusion model."""
        raise NotImplementedError

    def training_reward(self):
        """The reward fine-tuning optimises."""
        raise NotImplementedError

    evaluation_reward = None  # a separate oracle for honest evaluation

    def evaluate(self, seqs: list[str], **options) -> dict:
        """The task's metrics of a set of samples."""
        raise NotImplementedError

    def read_samples(self, path) -> list[str]:
        from vidd.seqio import read_sequences

        return read_sequences(path, self.alphabet, self.length)

    def preset(self, name: str) -> dict:
        if name not in self.presets:
            from vidd.config import ConfigError

            raise ConfigError(f"task {self.name!r} has no preset {name!r}; presets: {sorted(self.presets)}")
        return self.presets[name]
