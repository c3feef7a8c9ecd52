"""Inference-time reward guidance baselines: no training, reward calls at sampling time.

Each method is a small class with a Config dataclass and
`generate(model, reward, n, steps, generator) -> LongTensor (n, L)`. Every reward call goes through the
`CountedReward` passed in (its `calls` is the cost; repeated sequences come from its cache when the
policy caches).

- `BestOfN` (name "best-of-n"): N pretrained samples per output, keep the best by the training reward
  (paper: N = 32 for DNA, SS and molecules, 128 for binders).
- `SVDD` (name "svdd"): SVDD-PM (Li et al. 2024), value-guided ancestral sampling. At each denoising step
  draw M candidates x_s ~ p(. | x_t) and keep the one with the highest v(x_s) = r(x0_hat(x_s)), x0_hat the
  model's argmax completion (paper code: M = 10 for DNA, 20 for proteins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vidd.core.config import ConfigError, option
from vidd.diffusion.masked import MaskedDiffusion
from vidd.rewards.counted import CountedReward


class Guidance:
    name: str = ""
    Config: type = object
    registry: dict[str, type[Guidance]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            Guidance.registry[cls.name] = cls

    @staticmethod
    def lookup(name: str) -> type[Guidance]:
        if name not in Guidance.registry:
            raise ConfigError(f"guidance: unknown method {name!r}; known: {sorted(Guidance.registry)}")
        return Guidance.registry[name]

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    def generate(self, model: MaskedDiffusion, reward: CountedReward, n: int, steps: int = 128,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def calls_per_candidate(n: int, steps: int) -> int:
        """Reward calls (at most) that one candidate per output costs: plans equal budgets."""
        raise NotImplementedError


def _score(model: MaskedDiffusion, reward: CountedReward, tokens: torch.Tensor) -> np.ndarray:
    return reward(model.alphabet.decode(tokens.cpu()))


@dataclass
class BestOfNConfig:
    n_candidates: int = option(32, "N: pretrained samples drawn per output (paper: 32 for DNA, 128 for binders)")
    batch_size: int = option(256, "samples per sampler batch")

    def validate(self):
        if self.n_candidates < 1 or self.batch_size < 1:
            raise ConfigError("n_candidates, batch_size: must be >= 1")


class BestOfN(Guidance):
    """For each output draw N samples from the model and keep the one with the highest training reward."""

    name = "best-of-n"

    @staticmethod
    def calls_per_candidate(n, steps):
        return n

    Config = BestOfNConfig

    @torch.no_grad()
    def generate(self, model, reward, n, steps=128, generator=None):
        m = self.config.n_candidates
        samples = model.sample(n * m, steps, generator, batch_size=self.config.batch_size)  # (n * M, L)
        scores = torch.as_tensor(_score(model, reward, samples)).reshape(n, m)
        best = scores.argmax(1)
        return samples.reshape(n, m, -1)[torch.arange(n), best.to(samples.device)]


@dataclass
class SVDDConfig:
    n_candidates: int = option(10, "M: candidate next states drawn per sequence and step (paper code: 10 for "
                                   "DNA, 20 for proteins)")
    alpha: float = option(0.0, "0: keep the best candidate (SVDD-PM as run in the paper); > 0: pick a "
                               "candidate with probability proportional to exp(v / alpha)")
    batch_size: int = option(64, "sequences guided together (each expands to M candidates)")

    def validate(self):
        if self.n_candidates < 1 or self.batch_size < 1:
            raise ConfigError("n_candidates, batch_size: must be >= 1")
        if self.alpha < 0:
            raise ConfigError(f"alpha: must be >= 0, got {self.alpha}")


class SVDD(Guidance):
    """SVDD-PM: at each step keep the candidate x_s whose argmax completion scores highest."""

    name = "svdd"

    @staticmethod
    def calls_per_candidate(n, steps):
        return n * steps  # every step scores each candidate's x0_hat

    Config = SVDDConfig

    @torch.no_grad()
    def generate(self, model, reward, n, steps=128, generator=None):
        bs = self.config.batch_size
        return torch.cat([self._generate(model, reward, min(bs, n - i), steps, generator) for i in range(0, n, bs)])

    def _generate(self, model, reward, n, steps, generator):
        m, alpha = self.config.n_candidates, self.config.alpha
        times, mask_probs = model.grid(steps)
        x = model.initial_state(n)
        rows = torch.arange(n, device=model.device)
        for k in range(steps):
            if not (x == model.mask_index).any():
                break
            log_x0 = model.denoise(x, times[k].float().to(model.device))
            cand = model.step(x.repeat_interleave(m, 0), log_x0.repeat_interleave(m, 0),
                              float(mask_probs[k]), float(mask_probs[k + 1]), generator)  # (n * M, L)
            x0_hat = model.denoise(cand, times[k + 1].float().to(model.device)).argmax(-1)  # carried over: exact
            values = torch.as_tensor(_score(model, reward, x0_hat)).reshape(n, m)
            if alpha > 0:
                pick = torch.multinomial(torch.softmax(values / alpha, dim=1), 1, generator=generator).squeeze(1)
            else:
                pick = values.argmax(1)
            x = cand.reshape(n, m, -1)[rows, pick.to(model.device)]
        return x
