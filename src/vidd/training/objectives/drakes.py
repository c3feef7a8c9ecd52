"""DRAKES (Wang et al., ICLR 2025): reward back-propagation through the sampling chain.

Each reverse step x_k -> x_{k+1} is drawn with the straight-through Gumbel-softmax trick over the
V + 1 outcomes of a masked position (reveal letter v with probability (m_k - m_{k+1}) / m_k p(v | x_k),
stay masked with m_{k+1} / m_k): the forward value is the hard one-hot sample, the backward pass uses
the softmax relaxation at `temperature`. The student reads the relaxed one-hot states
(`MaskedDiffusion.denoise_soft`), so d r(x_0) / d theta flows through every sampled state of the
window. The loss per sample is

    -r(x_0) + kl_weight * sum_k KL( p_theta(. | x_k) || p_pre(. | x_k) ),

the KL of the reverse transitions at the sampled states (for a masked position:
(m_k - m_{k+1}) / m_k * KL(p_theta(x_0 | x_k) || p_pre(x_0 | x_k)); the stay-masked part is shared and
cancels). Its expectation is the trajectory KL(p_theta || p_pre), the quantity logged as
`eval_kl_to_pretrained`.

Truncation (`truncate_steps` = k > 0): the first T - k steps are sampled without gradients, only the
last k carry reward gradients (DRAKES DNA: k = 50 of 128). With `truncate_kl` the KL is summed over those
k steps only; by default (as DRAKES ran it) over all T, with parameter gradients only at the early states.

How it fits the trainer: `collect` draws one noise seed per sample and runs the chain without
gradients (the monitored `finals` and the stored hard states); `example_loss` replays the same noise
with gradients (the forward values are identical, so it reproduces the same samples), scores the
relaxed final sample with the reward's `score_onehot` and counts one reward call per sample
(`CountedReward.count`). Needs a `DifferentiableReward` (e.g. the dhs-hepg2 oracles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidd.core.config import ConfigError, option
from vidd.diffusion.masked import MaskedDiffusion
from vidd.training.context import Context
from vidd.training.objectives.base import Batch, Method, MethodConfig
from vidd.rewards.base import DifferentiableReward, Reward


@dataclass
class DRAKESConfig(MethodConfig):
    name: str = option("drakes", "the fine-tuning method")
    temperature: float = option(1.0, "Gumbel-softmax temperature of the relaxed samples (DRAKES DNA: 1.0)")
    kl_weight: float = option(
        0.128, "weight of the trajectory KL to the pretrained model. DRAKES DNA used 0.001 on a per-step rate "
               "form with no step size (sum_k KL_k / m_k); with the linear schedule and T = 128 steps that "
               "equals 0.001 * 128 = 0.128 on the exact chain KL used here")
    truncate_steps: int = option(50, "gradients flow only through the last k denoising steps (0: all); DRAKES "
                                     "DNA: 50")
    truncate_kl: bool = option(False, "sum the KL over the last truncate_steps steps only (DRAKES DNA: false, "
                                      "all steps)")

    def validate(self):
        if self.temperature <= 0:
            raise ConfigError(f"temperature: must be > 0, got {self.temperature}")
        if self.kl_weight < 0:
            raise ConfigError(f"kl_weight: must be >= 0, got {self.kl_weight}")
        if self.truncate_steps < 0:
            raise ConfigError(f"truncate_steps: must be >= 0 (0: no truncation), got {self.truncate_steps}")


def differentiable_reward(reward: Reward) -> DifferentiableReward:
    """The training reward (as called in this process) as a DifferentiableReward, else a ConfigError."""
    if not isinstance(reward, DifferentiableReward):
        raise ConfigError(
            f"method drakes needs a differentiable reward (a DifferentiableReward with score_onehot, e.g. the "
            f"dhs-hepg2 oracles); reward {reward.name!r} ({type(reward).__name__}) is not differentiable. "
            f"Use vidd, standard, ddpo, ddpo-x0 or ddpp for non-differentiable rewards")
    return reward


class DRAKES(Method):
    """Direct reward back-propagation through straight-through Gumbel-softmax sampling, KL-regularised."""

    name = "drakes"
    differentiates_samples = True
    Config = DRAKESConfig

    # --------------------------------------------------------------- pieces
    @staticmethod
    def gumbel_noise(seeds: torch.Tensor, steps: int, length: int, width: int) -> torch.Tensor:
        """Gumbel noise (n, T, L, V + 1), a pure function of each sample's seed."""
        out = []
        for s in seeds.tolist():
            u = torch.rand((steps, length, width), generator=torch.Generator().manual_seed(int(s)),
                           dtype=torch.float64)
            out.append(-torch.log(-torch.log(u.clamp_min(1e-300))))
        return torch.stack(out).float()

    def soft_step(self, model: MaskedDiffusion, x: torch.Tensor, t: float, m_t: float, m_s: float,
                  gumbel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One straight-through reverse step of one-hot states x (B, L, V + 1); returns (x_next, log p(x_0|x))."""
        log_x0 = model.denoise_soft(x, torch.tensor(t, dtype=torch.float32, device=x.device))
        stay = math.log(m_s / m_t) if m_s > 0 else float("-inf")
        logits = torch.cat([log_x0 + math.log((m_t - m_s) / m_t), torch.full_like(log_x0[..., :1], stay)], -1)
        z = logits + gumbel.to(logits.device)
        hard = F.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)
        soft = torch.softmax(z / self.config.temperature, dim=-1)
        sample = hard + soft - soft.detach()  # forward: exactly `hard`
        masked = (x.argmax(-1) == model.mask_index).unsqueeze(-1)
        return torch.where(masked, sample, x), log_x0

    @staticmethod
    def step_kl(log_theta: torch.Tensor, log_pre: torch.Tensor, x_hard: torch.Tensor, mask_index: int,
                m_t: float, m_s: float) -> torch.Tensor:
        """KL(p_theta(. | x) || p_pre(. | x)) of one reverse transition, per sequence (B,)."""
        masked = (x_hard == mask_index).unsqueeze(-1)
        lt = torch.where(masked, log_theta, torch.zeros_like(log_theta))  # no -inf - -inf at carried positions
        lp = torch.where(masked, log_pre, torch.zeros_like(log_pre))
        return (m_t - m_s) / m_t * (lt.exp() * (lt - lp)).sum((-1, -2))

    def window_start(self, steps: int) -> int:
        k = self.config.truncate_steps
        return steps - k if 0 < k < steps else 0

    # ------------------------------------------------------------- the method
    @torch.no_grad()
    def collect(self, ctx: Context, n: int) -> Batch:
        differentiable_reward(ctx.reward.reward)
        model = ctx.student
        seeds = torch.randint(0, 2 ** 62, (n,), generator=ctx.generator)
        times, mask_probs = model.grid(ctx.steps)
        width = model.alphabet.size + 1
        with ctx.timed("rollin"):
            noise = self.gumbel_noise(seeds, ctx.steps, model.length, width).to(model.device)
            x = F.one_hot(torch.full((n, model.length), model.mask_index, device=model.device), width).float()
            states = [x.argmax(-1)]
            for k in range(ctx.steps):
                x, _ = self.soft_step(model, x, float(times[k]), float(mask_probs[k]), float(mask_probs[k + 1]),
                                      noise[:, k])
                states.append(x.argmax(-1))
        states = torch.stack(states, dim=1)  # (n, T + 1, L)
        return Batch({"seed": seeds, "states": states}, states[:, -1], {"examples": float(n)})

    def example_loss(self, ctx: Context, ex: dict[str, torch.Tensor]) -> torch.Tensor:
        reward = differentiable_reward(ctx.reward.reward)
        ctx.reward.check_budget(len(ex["seed"]))  # before the reward runs: `record` counts these rows after it
        x, kl = self.relaxed_sample(ctx, ex)
        r = reward.score_onehot(x[..., : x.shape[-1] - 1])
        hard = ctx.student.alphabet.decode(x.detach().argmax(-1).cpu())  # straight-through: x is one-hot
        ctx.reward.record(hard, r.detach().double().cpu().numpy())
        return -r.float() + self.config.kl_weight * kl

    def relaxed_sample(self, ctx: Context, ex: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Replay the collected chains with gradients: the straight-through final one-hot (n, L, V + 1)
        (forward value: the collected final sample) and the summed transition KL to the pretrained model (n,)."""
        cfg = self.config
        student, pretrained = ctx.student, ctx.pretrained
        states = ex["states"]
        steps, length = states.shape[1] - 1, states.shape[2]
        times, mask_probs = student.grid(steps)
        width, mask = student.alphabet.size + 1, student.mask_index
        start = self.window_start(steps)
        kl = torch.zeros(len(states), device=states.device)
        if not cfg.truncate_kl and cfg.kl_weight > 0:  # KL at the early (gradient-free) states
            for k in range(start):
                x, t = states[:, k], times[k].float()
                m_t, m_s = float(mask_probs[k]), float(mask_probs[k + 1])
                with torch.no_grad():
                    log_pre = pretrained.denoise(x, t)
                kl = kl + self.step_kl(student.denoise(x, t), log_pre, x, mask, m_t, m_s)
        noise = self.gumbel_noise(ex["seed"], steps, length, width)[:, start:].to(states.device)
        x = F.one_hot(states[:, start], width).float()
        for k in range(start, steps):
            m_t, m_s = float(mask_probs[k]), float(mask_probs[k + 1])
            hard = x.detach().argmax(-1)
            x_next, log_theta = self.soft_step(student, x, float(times[k]), m_t, m_s, noise[:, k - start])
            if cfg.kl_weight > 0:
                with torch.no_grad():
                    log_pre = pretrained.denoise(hard, times[k].float())
                kl = kl + self.step_kl(log_theta, log_pre, hard, mask, m_t, m_s)
            x = x_next
        return x, kl
