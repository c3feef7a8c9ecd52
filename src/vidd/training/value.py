"""Soft value estimates v(x_t) ~ r(x0_hat(x_t)) from a denoiser's prediction of the clean sequence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vidd.core.config import ConfigError, option
from vidd.diffusion.masked import gumbel_argmax
from vidd.training.context import Context
from vidd.core.numerics import chunked, log_mean_exp


@dataclass
class ValueConfig:
    denoiser: Literal["rollout", "student", "pretrained"] = option(
        "student", "model whose x_0 prediction defines x0_hat: the roll-out model (Algorithm 1), the "
                   "current student (the authors' scripts) or the pretrained model")
    completions: int = option(0, "0: x0_hat = argmax completion (one reward call per state); M > 0: M "
                                 "sampled completions and v = alpha * log mean exp(r / alpha)")
    batch_size: int = option(512, "states per denoiser forward")

    def validate(self):
        if self.completions < 0:
            raise ConfigError(f"completions: must be >= 0, got {self.completions}")


class ValueEstimator:
    def __init__(self, config: ValueConfig, alpha: float):
        self.config = config
        self.alpha = alpha

    @torch.no_grad()
    def completions(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Clean completions of states x (n, L) at times t (n,): (n, L) for argmax, (n, M, L) sampled."""
        model = ctx.model(self.config.denoiser)
        m = self.config.completions

        def complete(xb: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
            log_x0 = model.denoise(xb, tb.float())  # carried-over positions are one-hot
            if m == 0:
                return log_x0.argmax(-1)
            return gumbel_argmax(log_x0.unsqueeze(1).expand(-1, m, -1, -1), ctx.generator)

        with ctx.timed("value"):
            return chunked(complete, x, t, size=self.config.batch_size)

    def __call__(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        filled = self.completions(ctx, x, t)
        if self.config.completions == 0:
            return ctx.rewards(filled)
        n, m, length = filled.shape
        values = ctx.rewards(filled.reshape(n * m, length)).reshape(n, m)
        return log_mean_exp(values, self.alpha, axis=1)
