"""The method interface: one small class per fine-tuning method.

Each iteration the trainer calls `collect` (no gradients: roll-in, roll-out, values, weights)
`accumulation` times, turns every returned batch of training examples into per-example losses
with `example_loss` (in chunks, back-propagated as it goes), takes one optimiser step, then
calls `end_of_iteration` (e.g. the lazy update of the roll-out model).

Every `collect` call is a chunk with its own randomness (`ctx.generator`, `ctx.chunk`); in a
data-parallel run the chunks are spread over processes. Statistics must therefore stay within
one collected batch (e.g. advantage standardisation), and state that later iterations read goes
through `chunk_state` / `merge_chunk_state`, which the trainer merges across processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vidd.core import plugins
from vidd.core.config import ConfigError, option
from vidd.training.context import Context
from vidd.training.copies import copy_student_to_rollout
from vidd.training.rollin import RollIn
from vidd.training.value import ValueEstimator


@dataclass
class Batch:
    examples: dict[str, torch.Tensor]  # every tensor has the examples on its first axis
    finals: torch.Tensor  # clean roll-in samples of this batch (B, L), for monitoring
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(next(iter(self.examples.values()))) if self.examples else 0


@dataclass
class MethodConfig:
    """The base of every method's settings (the run config's `method` section). `name` picks the method;
    the section holds that method's fields only (`vidd config finetune --method NAME` lists them)."""

    name: str = option("", "the fine-tuning method")

    @classmethod
    def subtype_for(cls, name: str) -> type["MethodConfig"]:
        return Method.lookup(name).Config

    def training_states(self, trajectories: int, steps: int) -> int:
        """Training examples one update takes from `trajectories` roll-ins of `steps` steps (at most)."""
        return trajectories

    def reward_calls(self, trajectories: int, states: int) -> int:
        """Training-reward calls of one update at most, before caching (roll-in logging not included)."""
        return trajectories


@dataclass
class StateMethodConfig(MethodConfig):
    """A method trained on states x_t of roll-in trajectories."""

    timesteps: int = option(0, "roll-in steps used per trajectory (0: all T; else a random subset)")

    def validate(self):
        if self.timesteps < 0:
            raise ConfigError(f"timesteps: must be >= 0 (0: all steps), got {self.timesteps}")

    def training_states(self, trajectories: int, steps: int) -> int:
        return trajectories * min(self.timesteps or steps, steps)


class Method:
    name: str = ""
    Config: type[MethodConfig] = MethodConfig
    registry: dict[str, type["Method"]] = {}
    #: trains a model (False for inference-time methods such as Best-of-N)
    trains: bool = True
    #: back-propagates the reward through relaxed one-hot samples: needs a DifferentiableReward called in this
    #: process and a backbone that takes relaxed input (checked before a run starts)
    differentiates_samples: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.Config().name != cls.name:
                raise TypeError(f"{cls.__name__}.Config must default `name` to {cls.name!r}")
            Method.registry[cls.name] = cls

    @staticmethod
    def lookup(name: str) -> type["Method"]:
        """The method called `name`: built in, or a plug-in's (entry point group `vidd.methods`)."""
        method = plugins.find(Method.registry, plugins.METHODS, name, Method)
        if method is None:
            known = plugins.known(Method.registry, plugins.METHODS)
            raise ConfigError(f"method: unknown method {name!r}; known: {known}")
        return method

    def __init__(self, config):
        self.config = config

    def collect(self, ctx: Context, n: int) -> Batch:
        raise NotImplementedError

    def example_loss(self, ctx: Context, examples: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def end_of_iteration(self, ctx: Context) -> None:
        pass

    @property
    def inner_steps(self) -> int:
        """Optimiser steps the trainer takes on each iteration's collected batches."""
        return getattr(self.config, "inner_steps", 1)

    def chunk_state(self) -> dict:
        """What this process's `collect` calls of the iteration keep for later iterations, by chunk index
        (picklable, on the CPU; e.g. fresh roll-ins for a replay buffer). The trainer gathers it from
        every process and hands the union to `merge_chunk_state` before `end_of_iteration`."""
        return {}

    def merge_chunk_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def lazy_update(ctx: Context, interval: int) -> bool:
    """Copy the student into the roll-out model after every `interval` optimiser steps (its adapters only
    with LoRA)."""
    if interval > 0 and (ctx.iteration + 1) % interval == 0:
        copy_student_to_rollout(ctx.student, ctx.rollout)
        return True
    return False


def importance_weights(log_w: np.ndarray, self_normalize: bool, max_log_weight: float | None) -> np.ndarray:
    """exp(log_w) computed safely: optionally clipped in log space, or self-normalised to mean 1."""
    log_w = np.asarray(log_w, dtype=np.float64)
    if not np.isfinite(log_w).all():
        raise FloatingPointError("non-finite log-weights (check the reward's failure policy)")
    if max_log_weight is not None:
        log_w = np.minimum(log_w, max_log_weight)
    if self_normalize:
        shifted = np.exp(log_w - log_w.max())
        return shifted * (len(log_w) / shifted.sum())
    with np.errstate(over="ignore"):
        weights = np.exp(log_w)
    if not np.isfinite(weights).all():
        raise FloatingPointError(
            "importance weights overflow: set max_log_weight or self_normalize=true, or lower the reward scale / "
            "raise alpha")
    return weights


def effective_sample_size(weights: np.ndarray) -> float:
    """(sum w)^2 / sum w^2, as a fraction of the number of weights."""
    w = np.abs(weights)
    return float(w.sum() ** 2 / max(len(w) * (w ** 2).sum(), 1e-300))


class RollInMethod(Method):
    """A method whose training states come from a `RollIn` (config field `rollin`); the roll-in's
    replay buffer is part of the checkpoint, and `update_interval`, if the config has one, drives
    the lazy update of the roll-out model."""

    def __init__(self, config):
        super().__init__(config)
        self.rollin = RollIn(config.rollin)

    def states_and_endpoints(self, ctx: Context, n: int, per_trajectory: int, value: ValueEstimator):
        """Roll in n trajectories; return their masked training states x_t with times t, each state's
        own clean endpoint x_0, the training reward r(x_0), the value v(x_t) and the trajectories."""
        traj, drawn_by = self.rollin.sample(ctx, n)
        b, k, x_t, t = masked_states(ctx, traj, per_trajectory)
        r0 = ctx.rewards(traj.final)[b.numpy()]
        return x_t, t, traj.final[b], r0, value(ctx, x_t, t, value.rollin_completions(ctx, traj, drawn_by, k, b)), traj

    def end_of_iteration(self, ctx: Context) -> None:
        interval = getattr(self.config, "update_interval", 0)
        if interval:
            lazy_update(ctx, interval)

    def chunk_state(self) -> dict:
        return {j: {"rollin": states} for j, states in self.rollin.fresh.items()}

    def merge_chunk_state(self, state: dict) -> None:
        self.rollin.commit({j: part["rollin"] for j, part in state.items() if "rollin" in part})

    def state_dict(self) -> dict:
        return {"rollin": self.rollin.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.rollin.load_state_dict(state["rollin"])


def masked_states(ctx: Context, traj, per_trajectory: int):
    """Training states of roll-in trajectories that still have a masked position:
    (trajectory index b, step index k, states x_t, denoiser times t)."""
    b, k = select_timesteps(ctx, traj.states.shape[1], traj.steps, per_trajectory)
    x_t = traj.states[k, b]
    keep = (x_t == ctx.student.mask_index).any(-1).cpu()  # indexes the CPU b, k and the model-device x_t
    return b[keep], k[keep], x_t[keep], traj.times[k[keep]].float().to(x_t.device)


def select_timesteps(ctx: Context, batch: int, steps: int, per_trajectory: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(trajectory index, step index) pairs: all T steps, or `per_trajectory` random ones per trajectory."""
    if per_trajectory <= 0 or per_trajectory >= steps:
        ks = torch.arange(steps).repeat(batch, 1)
    else:
        ks = torch.rand(batch, steps, generator=ctx.generator).argsort(-1)[:, :per_trajectory]
    bs = torch.arange(batch).unsqueeze(1).expand_as(ks)
    return bs.reshape(-1), ks.reshape(-1)
