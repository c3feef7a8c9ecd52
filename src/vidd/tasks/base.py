"""A task says what a design domain is: alphabet and length, data, the pretrained model, its rewards
(training and evaluation), its metrics and how samples are stored. It knows nothing about training:
the run builder (`vidd.run`) turns a task and a config into a run, and the reward's executor, cache,
budget and failure policy live with the rewards (`vidd.rewards`).

Presets are data: `tasks/presets/<task>/<preset>.yaml` config layers (with a comment on each override),
and `defaults.yaml` beside them, a layer applied under every preset.

A task may have *settings* (e.g. `protein-ss`'s length and secondary-structure kind): a dataclass of `option`
fields, `Task.Settings`, filled from the run config's `task:` section (`--set task.length=64`) and fixed
for the life of the task object, like its reward weights. The config records them, so a run resumes with
them, and the training-reward factory carries them to reward workers.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import os
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from vidd.core import config as cfg
from vidd.core import plugins
from vidd.core.config import ConfigError, load_yaml
from vidd.core.errors import UserError
from vidd.core.manifest import verify_asset
from vidd.data.fetch import cache_dir
from vidd.core.runfolder import RunFolder
from vidd.eval.figures import ReportFigure
from vidd.eval.samples import SampleFormat
from vidd.eval.tables import DesignCounts, ReportTable
from vidd.core.alphabets import Alphabet
from vidd.core.seqio import read_sequences
from vidd.rewards.base import WeightedSum, as_reward
from vidd.rewards.counted import CountedReward, RewardPolicy

PRESETS_DIR = Path(__file__).parent / "presets"
PACKAGE_ASSETS = Path(__file__).resolve().parents[1] / "assets"


@dataclasses.dataclass
class NoSettings:
    """The settings of a task that has none."""


def assets_dir() -> Path:
    """The bundled models and oracles: $VIDD_ASSETS, else vidd's package data (src/vidd/assets, installed
    with the wheel)."""
    env = os.environ.get("VIDD_ASSETS")
    return Path(env) if env else PACKAGE_ASSETS


def asset(relative: str) -> Path:
    """The committed asset (a file or a model folder) at `relative` under `assets_dir()`, verified against
    src/vidd/assets/MANIFEST.json (each file version once: the result is cached in $VIDD_CACHE)."""
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
    #: the dataclass of the task's settings (config section `task:`; module docstring)
    Settings: type = NoSettings
    #: denoising steps of the chain whose ELBO is the per-sequence log-likelihood (`per_sequence`)
    likelihood_steps: int = 32
    #: the reverse chain of the task's models (`MaskedDiffusion.chain`)
    chain: str = "masked"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            Task.registry[cls.name] = cls

    @staticmethod
    def get(name: str, reward_terms: dict[str, float] | None = None, settings: dict | None = None) -> "Task":
        """The task called `name`: built in, or a plug-in's (entry point group `vidd.tasks`)."""
        cls = plugins.find(Task.registry, plugins.TASKS, name, Task)
        if cls is None:
            known = ", ".join(plugins.known(Task.registry, plugins.TASKS))
            raise UserError(f"unknown task {name!r}; known tasks: {known}")
        return cls(reward_terms, settings)

    def __init__(self, reward_terms: dict[str, float] | None = None, settings: dict | None = None):
        """`reward_terms`: weights of the task's named reward terms (config `reward.terms`); empty or None keeps
        the defaults. `settings`: values of the task's `Settings` fields (config `task:`); the others keep
        their defaults. Both are fixed for the life of the task object."""
        if reward_terms and not self.reward_terms:
            raise ConfigError(f"reward.terms: task {self.name!r} has no named reward terms (its training reward "
                              f"is fixed)")
        unknown = sorted(set(reward_terms or {}) - set(self.reward_terms))
        if unknown:
            raise ConfigError(f"reward.terms: unknown term(s) {unknown} of task {self.name!r}; "
                              f"terms: {sorted(self.reward_terms)}")
        if settings and not dataclasses.fields(self.Settings):
            raise ConfigError(f"task: task {self.name!r} has no settings, got {sorted(settings)}")
        self.settings = cfg.build(self.Settings, settings or {}, where="task")
        self.given_terms = MappingProxyType(dict(reward_terms or {}))
        weights = {k: float(v) for k, v in reward_terms.items()} if reward_terms else self.default_weights()
        self.reward_weights = MappingProxyType(weights)

    def default_weights(self) -> dict[str, float]:
        """The reward weights when config `reward.terms` gives none (the settings are known here)."""
        return dict(self.reward_terms)

    def configured(self, reward_terms: dict[str, float] | None = None, settings: dict | None = None) -> "Task":
        """This task with other reward weights and/or settings (given ones replace, the others stay): a new
        object, since a task never changes."""
        merged = {**cfg.to_dict(self.settings), **(settings or {})}
        if (not reward_terms or reward_terms == self.given_terms) and merged == cfg.to_dict(self.settings):
            return self
        return type(self)(reward_terms or dict(self.given_terms), merged)

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
    def pretrain_sequences(self, size: int = 0) -> tuple[list[str], list[str]]:
        """(training, validation) sequences for `vidd pretrain --task`: a seeded subset of `size` training
        sequences (0: the task's default; -1: all; PretrainConfig.train_sequences)."""
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

    def model_report(self, model, n_samples: int, steps: int | None = None) -> dict:
        """Held-out quality of a pretrained model (`vidd model-report`); its samples take `steps` denoising steps
        (None: the task's default)."""
        raise UserError(f"task {self.name!r} has no model report")

    # ----------------------------------------------------------- rewards
    def training_reward(self):
        """The reward fine-tuning optimises (with this task's reward weights)."""
        raise NotImplementedError

    def training_reward_factory(self):
        """A picklable function that builds `training_reward()` (for reward executors, whose workers build
        the reward themselves)."""
        return functools.partial(task_reward, self.name, type(self).__module__, dict(self.reward_weights),
                                 cfg.to_dict(self.settings))

    evaluation_reward = None  # a separate oracle for honest evaluation

    # ---------------------------------------------------- samples, metrics
    def evaluate(self, seqs: list[str], **options) -> dict:
        """The task's metrics of a set of samples."""
        raise NotImplementedError

    def per_sequence(self, seqs: list[str], reward: CountedReward | None = None, likelihood_samples: int | None = 16,
                     seed: int = 0) -> dict[str, list]:
        """One row per design, as columns (docs/metrics.md): `sequence`, the training reward `reward`, the
        evaluation reward `eval_reward` (each with its terms, `reward_<term>`, when it is a weighted sum) and
        `log_likelihood`, the ELBO under the pretrained model (`likelihood_steps` steps, `likelihood_samples`
        Monte Carlo steps; None: all). `reward`: the run's counted training reward, whose cache answers the
        sequences it scored and which counts the others as monitor calls (default: a fresh one that shows a
        sequence the reward fails on as NaN)."""
        reward = reward or CountedReward(self.training_reward(), RewardPolicy(on_failure="penalty", penalty=math.nan))
        columns = {"sequence": list(seqs), **reward.monitor_table(seqs), **self.evaluation_scores(seqs)}
        steps = self.likelihood_steps
        samples = likelihood_samples and min(likelihood_samples, steps)
        columns["log_likelihood"] = self.log_likelihood(seqs, steps, samples, seed)
        return columns

    def evaluation_scores(self, seqs: list[str]) -> dict[str, np.ndarray]:
        """Each sequence's score by the evaluation reward, `eval_reward` (with its terms, `eval_reward_<term>`, when
        it is a weighted sum); nothing when the task has no evaluation reward."""
        evaluation = self.evaluation_reward
        if isinstance(evaluation, WeightedSum):
            return evaluation.columns(seqs, "eval_reward")
        return {} if evaluation is None else {"eval_reward": as_reward(evaluation)(seqs)}

    def report_tables(self, seqs: list[str]) -> list[ReportTable]:
        """Tables of a run's report, made from its final samples: the most common samples with their counts."""
        return [DesignCounts(seqs).table()]

    def report_figures(self, folder: RunFolder, steps: int) -> list[ReportFigure]:
        """Figures of a finished run's report, drawn into `folder.figures_dir` from the run's files (`steps`: the
        run's denoising steps, for samples the task draws to compare with); none by default."""
        return []

    def oracle_input(self, seqs: list[str], oracle) -> list[str]:
        """What an assay oracle reads of each sample of this task (`vidd oracle-predict --run`): the sample."""
        return seqs

    def read_samples(self, path) -> list[str]:
        return read_sequences(path, self.alphabet, self.length)


def task_reward(name: str, module: str | None = None, terms: dict | None = None, settings: dict | None = None):
    """`Task.get(name, terms, settings).training_reward()`, as a picklable factory (with `functools.partial`)
    for reward executors. `module`, the task class's module, is imported first, so that a task defined
    outside vidd is registered in a fresh worker process too."""
    import vidd.tasks  # noqa: F401  (registers the built-in tasks; a cycle if imported at the top)

    if module and module != "__main__":
        importlib.import_module(module)
    return Task.get(name, terms, settings).training_reward()
