"""Roll-in: where the training states x_t come from.

A mixture per trajectory: with probability beta the trajectory is drawn from the exploiting
model (the lagged roll-out model, or the live student), otherwise from the pretrained model
(broad coverage). beta may follow a linear schedule over iterations. An optional replay buffer
keeps roll-in trajectories of earlier iterations and mixes a fraction of them into each batch (an
iteration's fresh roll-ins enter it once the iteration is over, in chunk order, so every chunk of an
iteration sees the same buffer whichever process collects it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from vidd.core.config import ConfigError, option
from vidd.diffusion.masked import MaskedDiffusion, Trajectory
from vidd.training.context import Context


@dataclass
class RollInConfig:
    beta: float = option(1.0, "probability that a trajectory is rolled in with the exploiting model (else pretrained)")
    beta_end: float | None = option(None, "if set, beta moves linearly from `beta` to this value over the iterations")
    source: Literal["rollout", "student"] = option(
        "rollout", "the exploiting model: the lagged roll-out model (Algorithm 1) or the live student")
    replay_size: int = option(0, "trajectories kept in a replay buffer of earlier iterations' roll-ins (0: off)")
    replay_fraction: float = option(0.0, "fraction of each roll-in batch drawn from the replay buffer")

    def validate(self):
        for name in ("beta", "beta_end", "replay_fraction"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name}: must lie in [0, 1], got {v}")
        if self.replay_fraction >= 1.0:
            raise ConfigError("replay_fraction: must be < 1 (some trajectories must be fresh)")
        if self.replay_fraction > 0 and self.replay_size <= 0:
            raise ConfigError("replay_fraction: > 0 needs replay_size > 0")

    def beta_at(self, iteration: int, total: int) -> float:
        if self.beta_end is None or total <= 1:
            return self.beta
        return self.beta + (self.beta_end - self.beta) * min(1.0, iteration / (total - 1))


class RollIn:
    def __init__(self, config: RollInConfig):
        self.config = config
        self.buffer: list[torch.Tensor] = []  # (T+1, L) state sequences, on the CPU
        self.fresh: dict[int, torch.Tensor] = {}  # this iteration's fresh roll-ins by chunk, (T+1, n, L)

    def sample(self, ctx: Context, n: int) -> tuple[Trajectory, list[MaskedDiffusion | None]]:
        """n roll-in trajectories, and for each the model that drew it in this call (None: replayed). The
        trajectory's `x0_hat` holds the drawing model's argmax completions (-1 for replayed ones)."""
        cfg = self.config
        n_replay = min(len(self.buffer), round(cfg.replay_fraction * n), n - 1) if cfg.replay_size else 0
        n_fresh = n - n_replay
        beta = cfg.beta_at(ctx.iteration, ctx.total_iterations)
        n_exploit = int(torch.binomial(torch.tensor(float(n_fresh)), torch.tensor(beta), generator=ctx.generator))
        parts, drawn_by = [], []
        with ctx.timed("rollin"):
            for model, count in ((ctx.model(cfg.source), n_exploit), (ctx.pretrained, n_fresh - n_exploit)):
                if count:
                    parts.append(model.sample(count, ctx.steps, ctx.generator, record=True))
                    drawn_by += [model] * count
        states = torch.cat([p.states for p in parts], dim=1)
        x0_hat = torch.cat([p.x0_hat for p in parts], dim=1)
        if n_replay:
            pick = torch.randperm(len(self.buffer), generator=ctx.generator)[:n_replay]
            replayed = torch.stack([self.buffer[i] for i in pick.tolist()], dim=1).to(states.device)
            states = torch.cat([states, replayed], dim=1)
            x0_hat = torch.cat([x0_hat, torch.full_like(replayed[1:], -1)], dim=1)
            drawn_by += [None] * n_replay
        if cfg.replay_size:
            self.fresh[ctx.chunk] = states[:, :n_fresh].cpu()
        return Trajectory(states, parts[0].times, parts[0].mask_probs, x0_hat), drawn_by

    def commit(self, fresh: dict[int, torch.Tensor]) -> None:
        """Append an iteration's fresh roll-ins (of every process) to the replay buffer, in chunk order."""
        for j in sorted(fresh):
            self.buffer.extend(fresh[j][:, i] for i in range(fresh[j].shape[1]))
        del self.buffer[: max(0, len(self.buffer) - self.config.replay_size)]
        self.fresh = {}

    def state_dict(self) -> dict:
        return {"buffer": list(self.buffer)}

    def load_state_dict(self, state: dict) -> None:
        self.buffer = list(state["buffer"])
