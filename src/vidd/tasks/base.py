"""A task says what a design domain is: alphabet and length, data, the pretrained model, its rewards
(training and evaluation), its metrics and how samples are stored. It knows nothing about training:
the run builder (`vidd.run`) turns a task and a config into a run, and the reward's executor, cache,
budget and failure policy live with the rewards (`vidd.rewards`).

Presets are data: `tasks/presets/<task>/<preset>.yaml` config layers (with a comment on each override),
and `defaults.yaml` beside them, a layer applied under every preset.
"""

from __future__ import annotations

import functools
import importlib
import os
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from vidd.core.config import ConfigError, load_yaml
from vidd.core.errors import UserError
from vidd.core.manifest import verify_asset
from vidd.data.fetch import cache_dir
from vidd.eval.samples import SampleFormat
from vidd.core.alphabets import Alphabet
from vidd.core.seqio import read_sequences

PRESETS_DIR = Path(__file__).parent / "presets"


def assets_dir() -> Path:
    """Committed checkpoints: $VIDD_ASSETS, else the repository's assets/ folder."""
    env = os.environ.get("VIDD_ASSETS")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "assets"


def asset(relative: str) -> Path:
    """The committed asset (a file or a model folder) at `relative` under `assets_dir()`, verified against
    assets/MANIFEST.json (each file version once: the result is cached in $VIDD_CACHE)."""
    path = assets_dir() / relative
    verify_asset(path, assets_dir(), cache_dir() / "verified-assets.json")
    return path


class Task(SampleFormat):
    name: str = ""
    alphabet: Alphabet
    length: int
    registry: dict[str, type["Task"]] = {}
    #: the folder of this task's presets (None: vidd's tasks/presets/<task name>)
    presets_dir: Path | None = None
    #: `evaluate` keys in benchmark tables, the held-out reward first
    table_metrics: tuple[str, ...] = ()
    #: naturalness / diversity keys plotted against the reward in `vidd bench`
    tradeoff_metrics: tuple[str, ...] = ("diversity",)
    #: named reward terms that config `reward.terms` may weight, with their default weights (empty: the task
    #: has one fixed training reward)
    reward_terms: dict[str, float] = {}
    #: the reverse chain of the task's models (`MaskedDiffusion.chain`)
    chain: str = "masked"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            Task.registry[cls.name] = cls

    @staticmethod
    def get(name: str, reward_terms: dict[str, float] | None = None) -> "Task":
        if name not in Task.registry:
            raise UserError(f"unknown task {name!r}; known tasks: {', '.join(sorted(Task.registry))}")
        return Task.registry[name](reward_terms)

    def __init__(self, reward_terms: dict[str, float] | None = None):
        """`reward_terms`: weights of the task's named reward terms (config `reward.terms`); empty or None keeps
        the defaults. Fixed for the life of the task object."""
        if reward_terms and not self.reward_terms:
            raise ConfigError(f"reward.terms: task {self.name!r} has no named reward terms (its training reward "
                              f"is fixed)")
        unknown = sorted(set(reward_terms or {}) - set(self.reward_terms))
        if unknown:
            raise ConfigError(f"reward.terms: unknown term(s) {unknown} of task {self.name!r}; "
                              f"terms: {sorted(self.reward_terms)}")
        weights = {k: float(v) for k, v in reward_terms.items()} if reward_terms else dict(self.reward_terms)
        self.reward_weights = MappingProxyType(weights)

    def with_reward_terms(self, terms: dict[str, float] | None) -> "Task":
        """This task with other reward weights: a new object, since a task's weights never change."""
        return type(self)(terms) if terms else self

    # ----------------------------------------------------------- presets
    @classmethod
    def _preset_dir(cls) -> Path:
        return cls.presets_dir or PRESETS_DIR / cls.name

    @classmethod
    def preset_names(cls) -> list[str]:
        return sorted(p.stem for p in cls._preset_dir().glob("*.yaml") if p.stem != "defaults")

    @classmethod
    def preset(cls, name: str) -> dict:
        """The named FinetuneConfig layer (tasks/presets/<task>/<name>.yaml)."""
        if name not in cls.preset_names():
            raise ConfigError(f"task {cls.name!r} has no preset {name!r}; presets: {cls.preset_names()}")
        return load_yaml(cls._preset_dir() / f"{name}.yaml")

    @property
    def defaults(self) -> dict:
        """The FinetuneConfig layer under every preset (e.g. an expensive reward's executor)."""
        path = self._preset_dir() / "defaults.yaml"
        return load_yaml(path) if path.is_file() else {}

    # ------------------------------------------------------ model and data
    def pretrain_sequences(self) -> tuple[list[str], list[str]]:
        """(training, validation) sequences for `vidd pretrain --task`."""
        raise UserError(f"task {self.name!r} has no pretraining data")

    def pretrain_alphabet(self, train: list[str]) -> Alphabet:
        """The alphabet `vidd pretrain --task` builds its model on (by default the task's)."""
        return self.alphabet

    def pretrained_model(self):
        """The task's default masked diffusion model."""
        raise NotImplementedError

    def check_model(self, model, where: str) -> None:
        """A UserError unless `model` generates this task's sequences: the same alphabet, length and chain."""
        def shape(alphabet, length, chain) -> str:
            pad = f", padding {alphabet.pad}" if alphabet.pad else ""
            return f"{alphabet.name} ({alphabet.size} letters{pad}), length {length}, chain {chain}"

        theirs = shape(model.alphabet, model.length, model.chain)
        needed = shape(self.alphabet, self.length, self.chain)
        if (model.alphabet.letters, model.alphabet.pad) != (self.alphabet.letters, self.alphabet.pad) or \
                theirs != needed:
            raise UserError(f"{where} does not fit task {self.name!r}: the model is {theirs}; the task needs {needed}")

    @cached_property
    def likelihood_model(self):
        """The pretrained model that scores naturalness, loaded once per task object."""
        return self.pretrained_model().eval()

    def log_likelihood(self, seqs: list[str], steps: int, samples: int | None, seed: int = 0,
                       batch_size: int = 256) -> np.ndarray:
        """ELBO of the `steps`-step chain under the pretrained model (nats; `samples` Monte Carlo steps, None:
        every step)."""
        if samples is not None and not 1 <= samples <= steps:
            raise UserError(f"likelihood samples: must lie between 1 and the chain's {steps} steps (0 on the "
                            f"command line: every step), got {samples}")
        tokens = self.alphabet.encode(seqs, self.length)
        with torch.no_grad():
            return self.likelihood_model.elbo(tokens, steps, samples=samples, batch_size=batch_size,
                                              generator=torch.Generator().manual_seed(seed)).numpy()

    def model_report(self, model, n_samples: int) -> dict:
        """Held-out quality of a pretrained model (`vidd model-report`)."""
        raise UserError(f"task {self.name!r} has no model report")

    # ----------------------------------------------------------- rewards
    def training_reward(self):
        """The reward fine-tuning optimises (with this task's reward weights)."""
        raise NotImplementedError

    def training_reward_factory(self):
        """A picklable function that builds `training_reward()` (for reward executors, whose workers build
        the reward themselves)."""
        return functools.partial(task_reward, self.name, type(self).__module__, dict(self.reward_weights))

    evaluation_reward = None  # a separate oracle for honest evaluation

    # ---------------------------------------------------- samples, metrics
    def evaluate(self, seqs: list[str], **options) -> dict:
        """The task's metrics of a set of samples."""
        raise NotImplementedError

    def read_samples(self, path) -> list[str]:
        return read_sequences(path, self.alphabet, self.length)


def task_reward(name: str, module: str | None = None, terms: dict | None = None):
    """`Task.get(name, terms).training_reward()`, as a picklable factory (with `functools.partial`) for reward
    executors. `module`, the task class's module, is imported first, so that a task defined outside vidd is
    registered in a fresh worker process too."""
    import vidd.tasks  # noqa: F401  (registers the built-in tasks; a cycle if imported at the top)

    if module and module != "__main__":
        importlib.import_module(module)
    return Task.get(name, terms).training_reward()
