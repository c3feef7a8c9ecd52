"""Tasks bind a domain together: alphabet, length, data, pretrained model, rewards, metrics."""

from __future__ import annotations

import functools
import importlib
import os
from contextlib import contextmanager
from pathlib import Path

from vidd.core.alphabets import Alphabet
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
            from vidd.core.errors import UserError

            raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(Task.registry))}")
        return Task.registry[name]()

    #: a FinetuneConfig layer applied under every preset (e.g. {"reward": {"executor": {"kind": "process"}}}
    #: for a task whose reward is expensive)
    defaults: dict = {}
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

    #: named reward terms `reward.terms` of the config may weight, with their default weights (empty: the
    #: task has one fixed training reward); `training_reward` and `evaluation_reward` read `reward_weights`
    reward_terms: dict[str, float] = {}

    @property
    def reward_weights(self) -> dict[str, float]:
        return getattr(self, "_reward_weights", None) or dict(self.reward_terms)

    def set_reward_terms(self, terms: dict[str, float] | None) -> None:
        """Weight the task's named reward terms (config `reward.terms`); empty or None keeps the defaults."""
        if not terms:
            return
        from vidd.core.config import ConfigError

        if not self.reward_terms:
            raise ConfigError(f"reward.terms: task {self.name!r} has no named reward terms (its training reward "
                              f"is fixed)")
        unknown = sorted(set(terms) - set(self.reward_terms))
        if unknown:
            raise ConfigError(f"reward.terms: unknown term(s) {unknown} of task {self.name!r}; "
                              f"terms: {sorted(self.reward_terms)}")
        self._reward_weights = {k: float(v) for k, v in terms.items()}

    @contextmanager
    def training_reward_on(self, policy):
        """The training reward with the terms of `policy` (the config's `reward`: a `RewardPolicy`), run as
        its `executor` says: built here for `inline`, else a `ParallelReward` whose workers each build it from
        the picklable factory `task_reward`. Closed (workers stopped) when the block ends."""
        from vidd.rewards.executors import parallel_reward

        executor = policy.executor
        self.set_reward_terms(policy.terms)
        factory = (self.training_reward if executor.kind == "inline"
                   else functools.partial(task_reward, self.name, type(self).__module__, policy.terms))
        reward = parallel_reward(factory, executor)
        try:
            yield reward
        finally:
            close = getattr(reward, "close", None)
            if callable(close):
                close()

    evaluation_reward = None  # a separate oracle for honest evaluation

    def evaluate(self, seqs: list[str], **options) -> dict:
        """The task's metrics of a set of samples."""
        raise NotImplementedError

    def read_samples(self, path) -> list[str]:
        from vidd.core.seqio import read_sequences

        return read_sequences(path, self.alphabet, self.length)

    def preset(self, name: str) -> dict:
        if name not in self.presets:
            from vidd.core.config import ConfigError

            raise ConfigError(f"task {self.name!r} has no preset {name!r}; presets: {sorted(self.presets)}")
        return self.presets[name]


def task_reward(name: str, module: str | None = None, terms: dict | None = None):
    """`Task.get(name).training_reward()` (with reward `terms`), as a picklable factory (with
    `functools.partial`) for reward executors, whose workers build the reward themselves. `module`, the task
    class's module, is imported first, so that a task defined outside vidd is registered in a fresh worker
    process too."""
    import vidd.tasks  # noqa: F401  (registers the built-in tasks)

    if module and module != "__main__":
        importlib.import_module(module)
    task = Task.get(name)
    task.set_reward_terms(terms)
    return task.training_reward()
