"""Standard fine-tuning: one round of value-weighted MLE toward the pretrained model's soft-optimal policy.

The paper's "standard fine-tuning" baseline (DNA setting): VIDD's Eq. (7) with everything that makes
VIDD iterative switched off. Roll-in from the pretrained model (beta = 0), one-step samples x_s from the
pretrained model (the teacher base is never refreshed), values from the pretrained denoiser, and
weights exp(v(x_s) / alpha) without the v(x_t) normaliser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vidd.core.config import ConfigError, option
from vidd.training.context import Context
from vidd.training.objectives.base import StateMethodConfig
from vidd.training.objectives.vidd import LOG_1E6, VIDD, VIDDConfig
from vidd.training.rollin import RollInConfig
from vidd.training.value import ValueConfig


@dataclass
class StandardConfig(StateMethodConfig):
    name: str = option("standard", "the fine-tuning method")
    alpha: float = option(1.0, "temperature alpha (weights exp(v(x_s) / alpha)); paper: 1")
    self_normalize: bool = option(False, "normalise the weights of each batch to mean 1 (paper: no normalisation)")
    max_log_weight: float | None = option(LOG_1E6, "clip log-weights at this value (null: no clipping)")
    baseline: Literal["none", "mean"] = option(
        "none", "control variate (not in the paper): `mean` subtracts the batch-mean weight")
    value: ValueConfig = option(ValueConfig(denoiser="pretrained"),
                                "soft value v(x) of the pretrained model's completions (completions 0: the argmax "
                                "completion, the paper; M > 0: alpha * log mean exp(r / alpha) over M samples)")
    chunk: int = option(512, "states per denoiser forward in roll-out")

    def validate(self):
        super().validate()
        if self.alpha <= 0:
            raise ConfigError(f"alpha: must be > 0, got {self.alpha}")
        if self.value.kind != "posterior-mean":
            raise ConfigError(f"value.kind: standard fine-tuning values states by the pretrained model's completion "
                              f"only (posterior-mean), got {self.value.kind!r}")
        if self.value.denoiser != "pretrained":
            raise ConfigError(f"value.denoiser: standard fine-tuning values states with the pretrained model only, "
                              f"got {self.value.denoiser!r} (use method vidd for the other denoisers)")

    def reward_calls(self, trajectories: int, states: int) -> int:
        return states * max(1, self.value.completions)

    def as_vidd(self) -> VIDDConfig:
        """The equivalent VIDD settings: pretrained roll-in, pretrained values, no v(x_t) divisor."""
        return VIDDConfig(
            alpha=self.alpha, timesteps=self.timesteps, use_value_xt=False, self_normalize=self.self_normalize,
            max_log_weight=self.max_log_weight, baseline=self.baseline, chunk=self.chunk,
            rollin=RollInConfig(beta=0.0),
            value=self.value,
        )


class StandardFinetune(VIDD):
    """Single-round value-weighted MLE with a fixed pretrained teacher (the paper's "standard fine-tuning").

    loss = -exp(v_pre(x_s) / alpha) * log p_theta(x_s | x_t), x_t from pretrained roll-ins, x_s ~ p_pre(. | x_t).
    """

    name = "standard"
    Config = StandardConfig

    def __init__(self, config: StandardConfig):
        super().__init__(config.as_vidd())
        self.settings = config

    def teacher(self, ctx: Context):
        return ctx.pretrained

    def end_of_iteration(self, ctx: Context) -> None:
        pass  # the teacher is never refreshed (the authors' K = 100000)
