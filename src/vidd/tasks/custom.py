"""Tasks made from any masked diffusion model and any reward (docs/rewards.md):

- `CustomTask(model, reward)`: Python objects, what `vidd.finetune(model, reward)` runs;
- `custom` (`CustomTaskFromSpecs`): a model folder and reward specs given as the task's settings, what
  `vidd finetune [BASE] --model PATH --reward SPEC` runs; the run's config.yaml records them (`task:`), so
  the run resumes with `vidd finetune custom --resume RUN`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from vidd.core import config as cfg
from vidd.core.config import ConfigError, option
from vidd.diffusion.masked import MaskedDiffusion
from vidd.eval import metrics
from vidd.rewards.base import as_reward
from vidd.rewards.specs import FORMS, load_reward
from vidd.tasks.base import Task

#: the name of the task of a model folder and reward specs
CUSTOM = "custom"


class CustomTask(Task):
    """The model's alphabet and length, the given training reward and, if given, an evaluation reward; default
    metrics: the evaluation reward's median, diversity, uniqueness and the log-likelihood under the model.

    A reward is a Reward, a callable `list[str] -> floats` or a spec string (`vidd.rewards.specs`:
    `module:function`, `file.py:function`, `oracle:PATH`; `pessimism` k makes an `oracle:` training reward
    the ensemble mean - k std). With a `base` task, the model defaults to the base task's pretrained model,
    the evaluation reward to the base task's, and samples are stored in the base task's format; the metrics
    stay the default ones (the base task's own assume its own reward)."""

    def __init__(self, model: MaskedDiffusion | None, reward, evaluation_reward=None, name: str = CUSTOM, *,
                 base: Task | None = None, pessimism: float = 0.0):
        super().__init__()
        if model is None and base is None:
            raise ConfigError("task.model: a custom task needs a model (--model PATH) or a base task whose "
                              "pretrained model it fine-tunes")
        self.name, self.model, self.base = name, model, base
        self.alphabet = model.alphabet if model is not None else base.alphabet
        self.length = model.length if model is not None else base.length
        self.chain = model.chain if model is not None else base.chain
        self.reward, self.pessimism = reward, pessimism
        if isinstance(reward, str):
            self.reward_object = load_reward(reward, pessimism)  # a bad spec fails here, before any work
        elif pessimism:
            raise ConfigError("task.pessimism: applies to oracle:PATH rewards, not to a Python reward")
        else:
            self.reward_object = as_reward(reward)
        if isinstance(evaluation_reward, str):
            self.evaluation_reward = load_reward(evaluation_reward)
        elif evaluation_reward is not None:
            self.evaluation_reward = as_reward(evaluation_reward)
        else:
            self.evaluation_reward = base.evaluation_reward if base is not None else None

    def configured(self, reward_terms: dict[str, float] | None = None, settings: dict | None = None) -> "CustomTask":
        if reward_terms:
            raise ConfigError("reward.terms: a custom task has one reward; weight terms inside the reward itself")
        if settings:
            raise ConfigError(f"task: a custom task made in Python has no settings, got {sorted(settings)}")
        return self

    def pretrained_model(self) -> MaskedDiffusion:
        return self.model if self.model is not None else self.base.pretrained_model()

    def training_reward(self):
        return self.reward_object

    def training_reward_factory(self):
        """A picklable function that builds the reward: from its spec, or (a Python reward) the reward object
        itself, which must then be picklable to run on a process or Ray executor."""
        if isinstance(self.reward, str):
            return functools.partial(load_reward, self.reward, self.pessimism)
        return functools.partial(as_reward, self.reward)

    # ------------------------------------------------------------ samples (the base task's format)
    @property
    def sample_suffix(self) -> str:
        return self.base.sample_suffix if self.base is not None else super().sample_suffix

    def write_samples(self, path, seqs: list[str], scores: dict[str, list] | None = None) -> None:
        (self.base or super()).write_samples(path, seqs, scores)

    def read_samples(self, path) -> list[str]:
        return (self.base or super()).read_samples(path)

    def diversity(self, seqs: list[str]) -> float:
        return (self.base or super()).diversity(seqs)

    def evaluate(self, seqs: list[str], likelihood_steps: int = 32, likelihood_samples: int | None = 8,
                 seed: int = 0) -> dict:
        out = {}
        if self.evaluation_reward is not None:
            out["eval_reward_median"] = metrics.finite_median(self.evaluation_reward(seqs))
        loglik = self.log_likelihood(seqs, likelihood_steps, likelihood_samples, seed)
        out.update(log_likelihood_median=metrics.finite_median(loglik), diversity=self.diversity(seqs),
                   uniqueness=metrics.uniqueness(seqs), n=len(seqs))
        return out


@dataclass
class CustomSettings:
    model: str = option("", "the model to fine-tune, a model folder (`--model`); empty: the base task's "
                            "pretrained model")
    reward: str = option("", f"the training reward (`--reward`): {FORMS}")
    eval_reward: str = option("", "the evaluation reward (`--eval-reward`, same forms); empty: the base task's, "
                                  "if any")
    pessimism: float = option(0.0, "k of an oracle:PATH training reward: its ensemble mean - k std")
    base: str = option("", "a base task (`vidd finetune BASE --reward ...`): its presets, pretrained model, "
                           "evaluation reward and sample format")
    base_settings: dict = option({}, "the base task's settings, e.g. {positions: H3} for antibody-cdrh3")


class CustomTaskFromSpecs(CustomTask):
    """`custom`: a `CustomTask` whose model folder, reward specs and base task are its settings."""

    name = CUSTOM
    Settings = CustomSettings

    def __init__(self, reward_terms: dict[str, float] | None = None, settings: dict | None = None):
        if reward_terms:
            raise ConfigError("reward.terms: a custom task has one reward; weight terms inside the reward itself")
        s = cfg.build(CustomSettings, settings or {}, where="task")
        if s.base_settings and not s.base:
            raise ConfigError("task.base_settings: settings of a base task, but task.base names none")
        if not s.reward:
            raise ConfigError(f"task.reward: a custom task needs a training reward (--reward SPEC: {FORMS})")
        base = Task.get(s.base, None, s.base_settings) if s.base else None
        model = MaskedDiffusion.load(s.model) if s.model else None
        super().__init__(model, s.reward, s.eval_reward or None, base=base, pessimism=s.pessimism)
        self.settings = s

    def configured(self, reward_terms: dict[str, float] | None = None, settings: dict | None = None) -> "CustomTask":
        return Task.configured(self, reward_terms, settings)
