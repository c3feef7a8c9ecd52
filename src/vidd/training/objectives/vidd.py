"""VIDD (Eq. 7 of the paper) and its x_0-level variant used by the authors for proteins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vidd.core.config import ConfigError, option
from vidd.core.numerics import chunked
from vidd.training.context import Context
from vidd.training.objectives.base import (
    Batch, RollInMethod, StateMethodConfig, effective_sample_size, importance_weights, masked_states,
)
from vidd.training.rollin import RollInConfig
from vidd.training.value import ValueConfig, ValueEstimator

LOG_1E6 = float(np.log(1e6))


@dataclass
class VIDDConfig(StateMethodConfig):
    name: str = option("vidd", "the fine-tuning method")
    alpha: float = option(1.0, "temperature alpha of the KL-regularised objective (weights exp(dv / alpha))")
    update_interval: int = option(5, "K: copy the student into the roll-out model every K iterations")
    use_value_xt: bool = option(True, "divide by exp(v(x_t) / alpha) (the soft Bellman normaliser)")
    self_normalize: bool = option(False, "normalise the weights of each batch to mean 1")
    max_log_weight: float | None = option(LOG_1E6, "clip log-weights at this value (null: no clipping)")
    baseline: Literal["none", "mean"] = option(
        "none", "control variate (not in the paper): `mean` subtracts the batch-mean weight, which removes the "
                "zero-mean score noise when the roll-out model equals the student (small batches)")
    rollin: RollInConfig = option(RollInConfig(), "where training states x_t come from")
    value: ValueConfig = option(ValueConfig(), "soft value estimate v(x) = r(x0_hat(x))")
    chunk: int = option(512, "states per denoiser forward in roll-out")

    def validate(self):
        super().validate()
        if self.alpha <= 0:
            raise ConfigError(f"alpha: must be > 0, got {self.alpha}")
        if self.update_interval < 1:
            raise ConfigError(f"update_interval: must be >= 1, got {self.update_interval}")

    def reward_calls(self, trajectories: int, states: int) -> int:
        return states * (1 + self.use_value_xt) * max(1, self.value.completions)


class VIDD(RollInMethod):
    """Value-weighted forward-KL distillation of the soft-optimal one-step policy (Algorithm 1).

    For roll-in states x_t: x_s ~ p^out(. | x_t) one step; weight w = exp((v(x_s) - v(x_t)) / alpha);
    loss = -w * sum over newly revealed positions of log p_theta(x_s | x_t).
    """

    name = "vidd"
    Config = VIDDConfig

    def __init__(self, config: VIDDConfig):
        super().__init__(config)
        self.value = ValueEstimator(config.value, config.alpha)

    def teacher(self, ctx: Context):
        """The model whose one-step samples x_s are reweighted: the lazily updated roll-out model p^out."""
        return ctx.rollout

    @torch.no_grad()
    def collect(self, ctx: Context, n: int) -> Batch:
        cfg = self.config
        traj = self.rollin.sample(ctx, n)
        b, k, x_t, t_t = masked_states(ctx, traj, cfg.timesteps)
        t_s = traj.times[k + 1].float().to(x_t.device)
        teacher = self.teacher(ctx)
        with ctx.timed("rollout"):
            x_s = chunked(lambda xb, tb, kb: teacher.step(xb, teacher.denoise(xb, tb), traj.mask_probs[kb],
                                                          traj.mask_probs[kb + 1], ctx.generator),
                          x_t, t_t, k, size=cfg.chunk, empty=x_t)
        revealed = (x_s != x_t).any(-1)  # steps that reveal nothing carry no gradient
        x_t, x_s, t_t, t_s = x_t[revealed], x_s[revealed], t_t[revealed], t_s[revealed]
        v_s = self.value(ctx, x_s, t_s)
        v_t = self.value(ctx, x_t, t_t) if cfg.use_value_xt else np.zeros_like(v_s)
        log_w = (v_s - v_t) / cfg.alpha
        weights = importance_weights(log_w, cfg.self_normalize, cfg.max_log_weight)
        ess = effective_sample_size(weights) if len(weights) else float("nan")
        if cfg.baseline == "mean" and len(weights):
            weights = weights - weights.mean()
        stats = {
            "examples": float(len(x_t)),
            "ess": ess,
            "log_weight_mean": float(log_w.mean()) if len(log_w) else float("nan"),
            "log_weight_max": float(log_w.max()) if len(log_w) else float("nan"),
        }
        examples = {"x_t": x_t, "x_s": x_s, "t": t_t, "weight": torch.as_tensor(weights, dtype=torch.float32)}
        return Batch(examples, traj.final, stats)

    def example_loss(self, ctx: Context, ex: dict[str, torch.Tensor]) -> torch.Tensor:
        log_x0 = ctx.student.denoise(ex["x_t"], ex["t"])
        return -ex["weight"] * ctx.student.revealed_log_prob(ex["x_t"], ex["x_s"], log_x0)


@dataclass
class VIDDx0Config(StateMethodConfig):
    name: str = option("vidd-x0", "the fine-tuning method")
    alpha: float = option(1.0, "temperature alpha")
    update_interval: int = option(5, "K: copy the student into the roll-out model every K iterations")
    timesteps: int = option(1, "roll-in steps used per trajectory (the authors used 1)")
    clamp: float = option(1e6, "clamp the ratio exp((r(x_0) - v(x_t)) / alpha) to [1/clamp, clamp]")
    normalize: Literal["zscore", "none"] = option(
        "zscore", "standardise the clamped ratios across the batch (negative weights occur), as the authors did")
    rollin: RollInConfig = option(RollInConfig(), "where training states x_t come from")
    value: ValueConfig = option(ValueConfig(), "value of x_t: r of the denoiser's completion")

    def validate(self):
        super().validate()
        if self.alpha <= 0 or self.clamp < 1:
            raise ConfigError("alpha, clamp: alpha must be > 0 and clamp >= 1")

    def reward_calls(self, trajectories: int, states: int) -> int:
        return trajectories + states * max(1, self.value.completions)


class VIDDx0(RollInMethod):
    """The authors' protein variant ("RW_MLE"): distil the x_0 predictor toward the roll-in's own
    final sample, weighted by the clamped (and batch-standardised) ratio exp((r(x_0) - v(x_t)) / alpha).

    loss = -w * (1/L) * sum over positions masked in x_t of log p_theta(x_0 | x_t).
    """

    name = "vidd-x0"
    Config = VIDDx0Config

    def __init__(self, config: VIDDx0Config):
        super().__init__(config)
        self.value = ValueEstimator(config.value, config.alpha)

    @torch.no_grad()
    def collect(self, ctx: Context, n: int) -> Batch:
        cfg = self.config
        x_t, t, x0, r0, traj = self.states_and_endpoints(ctx, n, cfg.timesteps)
        v_t = self.value(ctx, x_t, t)
        ratio = np.clip(np.exp(np.clip((r0 - v_t) / cfg.alpha, -50, 50)), 1 / cfg.clamp, cfg.clamp)
        weights = (ratio - ratio.mean()) / (ratio.std() + 1e-8) if cfg.normalize == "zscore" else ratio
        stats = {"examples": float(len(x_t)), "ess": effective_sample_size(weights) if len(weights) else float("nan")}
        examples = {"x_t": x_t, "x0": x0, "t": t, "weight": torch.as_tensor(weights, dtype=torch.float32)}
        return Batch(examples, traj.final, stats)

    def example_loss(self, ctx: Context, ex: dict[str, torch.Tensor]) -> torch.Tensor:
        log_x0 = ctx.student.denoise(ex["x_t"], ex["t"])
        lp = ctx.student.revealed_log_prob(ex["x_t"], ex["x0"], log_x0) / ex["x_t"].shape[1]
        return -ex["weight"] * lp
