"""DDPP (Rector-Brooks et al., discrete denoising posterior prediction), as the VIDD authors ran it.

For roll-in states x_t and the trajectory's own final sample x_0, regress the student's x_0 log-likelihood
onto the pretrained one plus the reward, with log Z(x_t) replaced by a one-shot value estimate:

    loss = [ lp_theta(x_0 | x_t) - lp_pre(x_0 | x_t) - r(x_0) / alpha + v_pre(x_t) / alpha ]^2,

lp(x_0 | x_t) = sum over positions masked in x_t of log p(x_0^l | x_t), divided by L when
`length_normalize` (the authors' code), and v_pre(x_t) = r(argmax completion of x_t by the pretrained
model). The loss pulls lp_theta(x_0 | x_t) towards lp_pre(x_0 | x_t) + (r(x_0) - v_pre(x_t)) / alpha, the
reward-tilted pretrained posterior with the one-shot value standing in for its normaliser. The roll-in may be
off-policy (pretrained for DNA) without importance weights: a squared loss is minimised pointwise
wherever the roll-in has support.

Scale caveat (kept for reproduction): with `length_normalize` the log-likelihoods are averaged over L
while the reward is not, so the regression target is effectively p_pre exp(L r / alpha) at the level of
the summed log-likelihood: the reward is L times stronger than alpha says. `length_normalize: false` uses
sums, which matches the stated alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidd.core.config import ConfigError, option
from vidd.core.numerics import chunked
from vidd.training.context import Context
from vidd.training.objectives.base import Batch, RollInMethod, StateMethodConfig
from vidd.training.rollin import RollInConfig
from vidd.training.value import ValueConfig, ValueEstimator


@dataclass
class DDPPConfig(StateMethodConfig):
    name: str = option("ddpp", "the fine-tuning method")
    alpha: float = option(1.0, "temperature alpha of the target p_pre exp(r / alpha); paper: 1")
    length_normalize: bool = option(True, "average the log-likelihoods over L, as the authors' code did (reward "
                                          "scale inconsistent with alpha); false: sums")
    rollin: RollInConfig = option(RollInConfig(beta=0.0, source="student"),
                                  "where x_t comes from (paper DNA: pretrained, beta 0; proteins: the student, "
                                  "beta 1)")
    value_batch_size: int = option(512, "states per pretrained-denoiser forward for v_pre(x_t)")

    def validate(self):
        super().validate()
        if self.alpha <= 0:
            raise ConfigError(f"alpha: must be > 0, got {self.alpha}")

    def reward_calls(self, trajectories: int, states: int) -> int:
        return trajectories + states


class DDPP(RollInMethod):
    """Squared-error posterior prediction of the reward-tilted x_0 | x_t log-likelihood (pretrained anchor)."""

    name = "ddpp"
    Config = DDPPConfig

    def __init__(self, config: DDPPConfig):
        super().__init__(config)
        self.value = ValueEstimator(ValueConfig(denoiser="pretrained", batch_size=config.value_batch_size),
                                    config.alpha)

    def log_likelihood(self, model, x_t, x0, t) -> torch.Tensor:
        lp = model.revealed_log_prob(x_t, x0, model.denoise(x_t, t))
        return lp / x_t.shape[1] if self.config.length_normalize else lp

    @torch.no_grad()
    def collect(self, ctx: Context, n: int) -> Batch:
        cfg = self.config
        x_t, t, x0, r0, v_t, traj = self.states_and_endpoints(ctx, n, cfg.timesteps, self.value)
        bs = self.value.config.batch_size
        with ctx.timed("value"):
            lp_pre = chunked(lambda *chunk: self.log_likelihood(ctx.pretrained, *chunk), x_t, x0, t, size=bs,
                             empty=torch.zeros(0))
        target = torch.as_tensor((r0 - v_t) / cfg.alpha, dtype=torch.float32)
        examples = {"x_t": x_t, "x0": x0, "t": t, "anchor": lp_pre.float().cpu() + target}
        stats = {"examples": float(len(x_t)), "target_mean": float(target.mean()) if len(target) else float("nan")}
        return Batch(examples, traj.final, stats)

    def example_loss(self, ctx: Context, ex: dict[str, torch.Tensor]) -> torch.Tensor:
        return (self.log_likelihood(ctx.student, ex["x_t"], ex["x0"], ex["t"]) - ex["anchor"]) ** 2

