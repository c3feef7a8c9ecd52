"""DDPO (Black et al. 2024) for masked diffusion: clipped PPO on the reverse-chain likelihood ratio.

`ddpo` is the textbook version: the ratio of the per-step transition probabilities
rho = p_theta(x_{k+1} | x_k) / p_old(x_{k+1} | x_k) (the reveal / stay constants cancel, so only the
`revealed_log_prob` terms enter). `ddpo-x0` is the VIDD authors' variant: the ratio of the x_0 predictions
of the trajectory's own final sample, exp(mean_pos log p_theta(x_0 | x_k) - mean_pos log p_old(x_0 | x_k)).

Both use the batch-standardised final reward as the advantage of every step of a trajectory and the
surrogate loss max(-A rho, -A clip(rho, 1 - eps, 1 + eps)). `old` is the roll-out model, refreshed every
`update_interval` iterations (K = 1: the snapshot taken before the update, as in the paper's code).
With K = 1 and one optimiser step per roll-in batch, rho = 1 when the gradient is taken, the clip is
inactive and the update is REINFORCE with a standardised-reward baseline; the clip matters for K > 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vidd.core.config import ConfigError, option
from vidd.core.numerics import chunked
from vidd.diffusion.masked import MaskedDiffusion
from vidd.training.context import Context
from vidd.training.objectives.base import Batch, Method, StateMethodConfig, lazy_update, select_timesteps
from vidd.training.rollin import RollInConfig


@dataclass
class DDPOConfig(StateMethodConfig):
    name: str = option("ddpo", "the fine-tuning method")
    clip: float = option(0.2, "PPO clip eps: rho is clipped to [1 - eps, 1 + eps] (0.2, the textbook PPO/DDPO "
                              "value; the VIDD authors' code used 1e-4 with its x0 ratio, see ddpo-x0)")
    update_interval: int = option(1, "K: refresh `old` (the roll-out model) from the student every K "
                                     "iterations (paper: 1, the snapshot before the update)")
    rollin: RollInConfig = option(
        RollInConfig(source="student"), "roll-in model (`source`): the live student (on-policy; the paper's DNA "
                                        "setting) or `rollout`, i.e. `old` (the authors' protein setting; the PPO "
                                        "setting when update_interval > 1). DDPO takes no pretrained roll-ins and no "
                                        "replay: beta stays 1")
    normalize_advantage: bool = option(True, "standardise the final rewards across the batch (paper: yes)")
    chunk: int = option(512, "states per denoiser forward when scoring with `old`")

    def validate(self):
        super().validate()
        if self.rollin.beta != 1 or self.rollin.beta_end is not None or self.rollin.replay_size:
            raise ConfigError("rollin: DDPO is on-policy; only rollin.source may change (beta 1, no beta_end, "
                              "no replay)")
        if self.clip <= 0:
            raise ConfigError(f"clip: must be > 0, got {self.clip}")
        if self.update_interval < 1:
            raise ConfigError(f"update_interval: must be >= 1, got {self.update_interval}")


@dataclass
class DDPOx0Config(DDPOConfig):
    name: str = option("ddpo-x0", "the fine-tuning method")
    clip: float = option(1e-4, "PPO clip eps (1e-4: the VIDD authors' `--ratio_clip` default)")


class DDPO(Method):
    """Clipped PPO surrogate on the per-step transition ratio, on-policy roll-in from the student."""

    name = "ddpo"
    Config = DDPOConfig

    # ------------------------------------------------ what the ratio is made of
    def targets(self, states: torch.Tensor, b: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """What the likelihood is taken of at state k of trajectory b: the next state x_{k+1}."""
        return states[k + 1, b]

    def usable(self, x_t: torch.Tensor, target: torch.Tensor, mask_index: int) -> torch.Tensor:
        """States that carry gradient: steps that reveal at least one position."""
        return ((x_t == mask_index) & (target != mask_index)).any(-1)

    def log_prob(self, model: MaskedDiffusion, x_t, target, t) -> torch.Tensor:
        """log p(x_{k+1} | x_k) up to the model-independent reveal / stay constants."""
        return model.revealed_log_prob(x_t, target, model.denoise(x_t, t))

    # ------------------------------------------------------------- the method
    @torch.no_grad()
    def collect(self, ctx: Context, n: int) -> Batch:
        cfg = self.config
        with ctx.timed("rollin"):
            traj = ctx.model(cfg.rollin.source).sample(n, ctx.steps, ctx.generator, record=True)
        r = ctx.rewards(traj.final)
        adv = (r - r.mean()) / (r.std() + 1e-8) if cfg.normalize_advantage else r
        b, k = select_timesteps(ctx, n, traj.steps, cfg.timesteps)
        x_t, target = traj.states[k, b], self.targets(traj.states, b, k)
        keep = self.usable(x_t, target, ctx.student.mask_index).cpu()  # indexes the CPU b, k too
        b, k, x_t, target = b[keep], k[keep], x_t[keep], target[keep]
        t = traj.times[k].float()
        with ctx.timed("rollout"):
            old = chunked(lambda *chunk: self.log_prob(ctx.rollout, *chunk), x_t, target, t, size=cfg.chunk,
                          empty=torch.zeros(0))
        examples = {"x_t": x_t, "target": target, "t": t, "old_log_prob": old.float(),
                    "advantage": torch.as_tensor(np.asarray(adv)[b.numpy()], dtype=torch.float32)}
        stats = {"examples": float(len(x_t)), "final_reward_mean": float(r.mean())}
        return Batch(examples, traj.final, stats)

    def example_loss(self, ctx: Context, ex: dict[str, torch.Tensor]) -> torch.Tensor:
        eps = self.config.clip
        ratio = torch.exp(self.log_prob(ctx.student, ex["x_t"], ex["target"], ex["t"]) - ex["old_log_prob"])
        adv = ex["advantage"]
        return torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps, 1 + eps))

    def end_of_iteration(self, ctx: Context) -> None:
        lazy_update(ctx, self.config.update_interval)


class DDPOx0(DDPO):
    """The VIDD authors' DDPO: ratio of the x_0 predictions of the trajectory's final sample,
    exp((1/L) sum over positions masked in x_t of [log p_theta(x_0 | x_t) - log p_old(x_0 | x_t)])."""

    name = "ddpo-x0"
    Config = DDPOx0Config

    def targets(self, states, b, k):
        return states[-1, b]

    def usable(self, x_t, target, mask_index):
        return (x_t == mask_index).any(-1)

    def log_prob(self, model, x_t, target, t):
        return model.revealed_log_prob(x_t, target, model.denoise(x_t, t)) / x_t.shape[1]
