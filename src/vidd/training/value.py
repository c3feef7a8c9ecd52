"""Value estimates v(x_t) of roll-in states.

`posterior-mean` (the paper's): v(x_t) ~ r(x0_hat(x_t)), the reward of a denoiser's prediction of the clean
sequence (one reward call per state). `learned` (an extension, after SVDD's Monte-Carlo regression variant):
a small network regressed on (x_t, t) -> r(x_0) of scored roll-ins, so that only the roll-ins' final samples
spend reward calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from vidd.core.config import ConfigError, option
from vidd.diffusion.masked import Trajectory, gumbel_argmax
from vidd.training.context import Context
from vidd.core.numerics import chunked, log_mean_exp


@dataclass
class LearnedValueConfig:
    hidden: int = option(32, "channels of the value network (a small CNN over the state's tokens, with the time)")
    lr: float = option(1e-3, "Adam learning rate of the value network")
    fit_steps: int = option(10, "Adam steps of the value network on its buffer after every iteration")
    fit_batch: int = option(128, "regression examples per Adam step")
    buffer: int = option(8192, "regression examples kept (the newest)")
    states_per_trajectory: int = option(8, "random states of each roll-in trajectory added to the buffer, each "
                                           "with the trajectory's r(x_0) as target")

    def validate(self):
        for name in ("hidden", "fit_steps", "fit_batch", "buffer", "states_per_trajectory"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")


@dataclass
class ValueConfig:
    kind: Literal["posterior-mean", "learned"] = option(
        "posterior-mean", "posterior-mean: v(x) = r(x0_hat(x)) from a denoiser's prediction (the paper; one reward "
                          "call per state); learned: a value network regressed on r(x_0) of scored roll-ins (an "
                          "extension: only final samples cost calls, and it estimates E[r], not the soft value)")
    denoiser: Literal["rollout", "student", "pretrained"] = option(
        "student", "posterior-mean: model whose x_0 prediction defines x0_hat: the roll-out model (Algorithm 1), the "
                   "current student (the authors' scripts) or the pretrained model")
    completions: int = option(0, "posterior-mean: 0: x0_hat = argmax completion (one reward call per state); M > 0: "
                                 "M sampled completions and v = alpha * log mean exp(r / alpha)")
    batch_size: int = option(512, "states per denoiser forward")
    learned: LearnedValueConfig = option(LearnedValueConfig(), "kind learned: the value network and its fitting")

    def validate(self):
        if self.completions < 0:
            raise ConfigError(f"completions: must be >= 0, got {self.completions}")


class ValueEstimator:
    def __init__(self, config: ValueConfig, alpha: float):
        self.config = config
        self.alpha = alpha
        self.learned = LearnedValue(config.learned) if config.kind == "learned" else None

    def reuses(self, ctx: Context, model) -> bool:
        """Whether argmax completions that `model` computed are this estimator's own (taken instead of a forward)."""
        cfg = self.config
        return cfg.kind == "posterior-mean" and cfg.completions == 0 and model is ctx.model(cfg.denoiser)

    def rollin_completions(self, ctx: Context, traj: Trajectory, drawn_by: list, k: torch.Tensor,
                           b: torch.Tensor) -> torch.Tensor:
        """`known` completions of the roll-in states traj.states[k, b] (CPU indices): the roll-in's own argmax
        completions where this estimator's denoiser drew the trajectory, -1 rows elsewhere."""
        own = torch.tensor([self.reuses(ctx, model) for model in drawn_by], dtype=torch.bool)[b] & (k < traj.steps)
        known = torch.full((len(b), traj.states.shape[-1]), -1, dtype=torch.long, device=traj.states.device)
        known[own.to(known.device)] = traj.x0_hat[k[own], b[own]]
        return known

    @torch.no_grad()
    def completions(self, ctx: Context, x: torch.Tensor, t: torch.Tensor,
                    known: torch.Tensor | None = None) -> torch.Tensor:
        """Clean completions of states x (n, L) at times t (n,): (n, L) for argmax, (n, M, L) sampled.

        Argmax completions of clean states are the states themselves, and rows of `known` (n, L) that are not
        -1 are completions the estimator's denoiser already computed (e.g. the roll-in's own forward): neither
        costs a forward."""
        model = ctx.model(self.config.denoiser)
        m = self.config.completions

        def complete(xb: torch.Tensor, tb: torch.Tensor) -> torch.Tensor:
            log_x0 = model.denoise(xb, tb.float())  # carried-over positions are one-hot
            if m == 0:
                return log_x0.argmax(-1)
            return gumbel_argmax(log_x0.unsqueeze(1).expand(-1, m, -1, -1), ctx.generator)

        with ctx.timed("value"):
            if m > 0:
                return chunked(complete, x, t, size=self.config.batch_size)
            out = torch.full_like(x, -1) if known is None else known.clone()
            clean = (x != model.mask_index).all(-1)
            out[clean] = x[clean]
            todo = out[:, 0] < 0
            if todo.any():
                out[todo] = chunked(complete, x[todo], t[todo.to(t.device)], size=self.config.batch_size)
            return out

    def __call__(self, ctx: Context, x: torch.Tensor, t: torch.Tensor, known: torch.Tensor | None = None) -> np.ndarray:
        if self.learned is not None:
            return self.learned(ctx, x, t)
        filled = self.completions(ctx, x, t, known)
        if self.config.completions == 0:
            return ctx.rewards(filled)
        n, m, length = filled.shape
        values = ctx.rewards(filled.reshape(n * m, length)).reshape(n, m)
        return log_mean_exp(values, self.alpha, axis=1)


class ValueNet(nn.Module):
    """v(x, t): token embedding, two (dilated) convolutions, mean and max pooling, an MLP with the time."""

    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.conv = nn.Sequential(nn.Conv1d(hidden, hidden, 5, padding=2), nn.GELU(),
                                  nn.Conv1d(hidden, hidden, 5, padding=4, dilation=2), nn.GELU())
        self.head = nn.Sequential(nn.Linear(2 * hidden + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.embed(x).transpose(1, 2))
        return self.head(torch.cat([h.mean(-1), h.amax(-1), t.float()[:, None]], -1)).squeeze(-1)


def fit_generator(seed: int, iteration: int) -> torch.Generator:
    """The randomness of the value network's fit after `iteration` (a function of the run's seed and the iteration,
    so a resumed run fits alike)."""
    state = np.random.SeedSequence([seed % 2 ** 64, iteration, 2 ** 32]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class LearnedValue:
    """A value network regressed on (x_t, t) -> r(x_0) of roll-in trajectories (targets standardised).

    Chunks add their roll-ins' regression examples with `observe` (kept per chunk, like the replay buffer); the
    trainer merges them after the iteration (`commit`, in chunk order) and the network is refitted then (`fit`):
    values lag one iteration, and before the first fit there is no value (`ready` is False). A clean state's
    value is its reward."""

    def __init__(self, config: LearnedValueConfig):
        self.config = config
        self.net: ValueNet | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.x = self.t = self.r = None  # the buffer, on the CPU
        self.scale = (0.0, 1.0)  # mean and std of the targets at the last fit
        self.fits = 0
        self.fresh: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._pending: dict | None = None  # a loaded state, applied when the network is first built

    @property
    def ready(self) -> bool:
        return self.fits > 0

    def _network(self, ctx: Context) -> ValueNet:
        if self.net is None:
            self.net = ValueNet(ctx.student.alphabet.size + 1, self.config.hidden).to(ctx.student.device)
            self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.lr)
            if self._pending is not None:
                self._load(self._pending)
                self._pending = None
        return self.net

    def observe(self, ctx: Context, traj: Trajectory, final_rewards: np.ndarray) -> None:
        """Keep `states_per_trajectory` random masked states of each trajectory with its final reward."""
        steps, n = traj.steps, traj.states.shape[1]
        per = min(self.config.states_per_trajectory, steps)
        k = torch.rand(n, steps, generator=ctx.generator).argsort(-1)[:, :per].reshape(-1)
        b = torch.arange(n).repeat_interleave(per)
        x = traj.states[k, b].cpu()
        keep = (x == ctx.student.mask_index).any(-1)
        self.fresh[ctx.chunk] = (x[keep], traj.times[k][keep].float(),
                                 torch.as_tensor(final_rewards, dtype=torch.float32)[b][keep])

    def commit(self, fresh: dict[int, tuple]) -> None:
        parts = [fresh[j] for j in sorted(fresh)]
        if self.x is not None:
            parts.insert(0, (self.x, self.t, self.r))
        if parts:
            keep = self.config.buffer
            self.x, self.t, self.r = (torch.cat(col)[-keep:] for col in zip(*parts))
        self.fresh = {}

    def fit(self, ctx: Context) -> None:
        if self.x is None or not len(self.x):
            return
        cfg, net = self.config, self._network(ctx)
        gen = fit_generator(ctx.generator.initial_seed(), ctx.iteration)
        std = float(self.r.std()) if len(self.r) > 1 else 1.0
        self.scale = (float(self.r.mean()), max(std, 1e-6))
        device = ctx.student.device
        with ctx.timed("value"), torch.enable_grad():
            net.train()
            for _ in range(cfg.fit_steps):
                i = torch.randint(len(self.x), (min(cfg.fit_batch, len(self.x)),), generator=gen)
                target = ((self.r[i] - self.scale[0]) / self.scale[1]).to(device)
                loss = ((net(self.x[i].to(device), self.t[i].to(device)) - target) ** 2).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            net.eval()
        self.fits += 1

    @torch.no_grad()
    def predict(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        net = self._network(ctx)
        out = chunked(lambda xb, tb: net(xb, tb.to(xb.device)), x, t, size=1024, empty=torch.zeros(0))
        return (out.double().cpu().numpy() * self.scale[1]) + self.scale[0]

    def __call__(self, ctx: Context, x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        """The network's value of masked states; the reward of clean ones."""
        clean = (x != ctx.student.mask_index).all(-1)
        values = np.empty(len(x))
        with ctx.timed("value"):
            values[~clean.cpu().numpy()] = self.predict(ctx, x[~clean], t.to(x.device)[~clean])
        if clean.any():
            values[clean.cpu().numpy()] = ctx.rewards(x[clean])
        return values

    def state_dict(self) -> dict:
        if self.net is None:  # never fitted, or loaded and not used since
            return {**self._pending, "buffer": (self.x, self.t, self.r)} if self._pending else {"fits": 0}
        return {"fits": self.fits, "scale": self.scale, "net": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "buffer": (self.x, self.t, self.r)}

    def load_state_dict(self, state: dict) -> None:
        self.fits = state["fits"]
        if self.fits:
            self._pending, self.net = state, None
            self.x, self.t, self.r = state["buffer"]

    def _load(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scale = tuple(state["scale"])
