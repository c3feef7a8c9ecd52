"""Noise schedules of the masked (absorbing-state) process.

A schedule gives the probability m(t) that a token is masked at time t in [0, 1]
(m(0) = 0: data; t = 1: noise) and its rate m'(t)/m(t) > 0, the weight of the
continuous-time MDLM ELBO. Registered by name so configs can pick one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class NoiseSchedule:
    name: str = ""
    registry: dict[str, type[NoiseSchedule]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            NoiseSchedule.registry[cls.name] = cls

    def move_chance(self, t: torch.Tensor) -> torch.Tensor:
        """m(t): probability that a token is masked at time t."""
        raise NotImplementedError

    def elbo_weight(self, t: torch.Tensor) -> torch.Tensor:
        """m'(t) / m(t) (positive: m increases with t), the weight of masked-token log-likelihoods in the continuous ELBO."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"name": self.name, **self.__dict__}

    @staticmethod
    def from_dict(d: dict) -> NoiseSchedule:
        d = dict(d)
        name = d.pop("name")
        if name not in NoiseSchedule.registry:
            raise ValueError(f"unknown noise schedule {name!r}; known: {sorted(NoiseSchedule.registry)}")
        return NoiseSchedule.registry[name](**d)


@dataclass
class LogLinearSchedule(NoiseSchedule):
    """MDLM's default: sigma(t) = -log(1 - (1 - eps) t), so m(t) = (1 - eps) t."""

    eps: float = 1e-3
    name = "loglinear"

    def move_chance(self, t):
        return (1 - self.eps) * t

    def elbo_weight(self, t):
        return 1.0 / t


@dataclass
class CosineSchedule(NoiseSchedule):
    """m(t) = 1 - cos(pi t / 2): fewer tokens revealed early in sampling."""

    name = "cosine"

    def move_chance(self, t):
        return 1 - torch.cos(math.pi / 2 * t)

    def elbo_weight(self, t):
        return (math.pi / 2) * torch.sin(math.pi / 2 * t) / (1 - torch.cos(math.pi / 2 * t))


@dataclass
class LinearSchedule(NoiseSchedule):
    """m(t) = t: on a T-step grid a fraction 1 / (T - k) of the still-masked positions is revealed at step k,
    the order-agnostic chain of `vidd.diffusion.order_agnostic` (K = ceil(#masked / steps left) per step)."""

    name = "linear"

    def move_chance(self, t):
        return t

    def elbo_weight(self, t):
        return 1.0 / t
