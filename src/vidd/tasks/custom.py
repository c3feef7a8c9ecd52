"""A task made from any masked diffusion model and any reward: what `vidd.finetune(model, reward)` runs."""

from __future__ import annotations

from vidd.core.config import ConfigError
from vidd.diffusion.masked import MaskedDiffusion
from vidd.eval import metrics
from vidd.rewards.base import as_reward
from vidd.tasks.base import Task


class CustomTask(Task):
    """The model's alphabet and length, the given training reward (a Reward or a callable
    `list[str] -> floats`) and, if given, an evaluation reward; default metrics: the evaluation reward's
    median, diversity, uniqueness and the log-likelihood under the model."""

    def __init__(self, model: MaskedDiffusion, reward, evaluation_reward=None, name: str = "custom"):
        super().__init__()
        self.name = name
        self.model = model
        self.alphabet = model.alphabet
        self.length = model.length
        self.chain = model.chain
        self.reward = reward
        self.evaluation_reward = as_reward(evaluation_reward) if evaluation_reward is not None else None

    def configured(self, reward_terms: dict[str, float] | None = None, settings: dict | None = None) -> "CustomTask":
        if reward_terms:
            raise ConfigError("reward.terms: a custom task has one reward; weight terms inside the reward itself")
        if settings:
            raise ConfigError(f"task: a custom task has no settings, got {sorted(settings)}")
        return self

    def pretrained_model(self) -> MaskedDiffusion:
        return self.model

    def training_reward(self):
        return as_reward(self.reward)

    def training_reward_factory(self):
        """The reward object itself: it must be picklable to run on a process or Ray executor."""
        return self.training_reward

    def evaluate(self, seqs: list[str], likelihood_steps: int = 32, likelihood_samples: int | None = 8,
                 seed: int = 0) -> dict:
        out = {}
        if self.evaluation_reward is not None:
            out["eval_reward_median"] = metrics.finite_median(self.evaluation_reward(seqs))
        loglik = self.log_likelihood(seqs, likelihood_steps, likelihood_samples, seed)
        out.update(log_likelihood_median=metrics.finite_median(loglik), diversity=metrics.diversity(seqs),
                   uniqueness=metrics.uniqueness(seqs), n=len(seqs))
        return out
