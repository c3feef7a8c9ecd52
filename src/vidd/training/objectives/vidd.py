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
    self_normalize: bool = option(False, "normalise the weights of each collected batch to mean 1: the "
                                         "self-normalised form of Eq. 7, which keeps its distillation target")
    max_log_weight: float | None = option(LOG_1E6, "clip log-weights at this value (null: no clipping)")
    baseline: Literal["none", "mean"] = option(
        "none", "`mean` subtracts the batch-mean weight (not in the paper, and not a control variate of Eq. 7: "
                "it drops the pull towards the roll-out model and leaves advantage-weighted policy gradient; "
                "docs/methods/vidd.md)")
    rollout: Literal["fresh", "rollin"] = option(
        "fresh", "where the roll-out sample x_s comes from: a fresh one-step sample at every state (fresh), or the "
                 "roll-in's own next state when the roll-out model drew the trajectory (rollin: consecutive "
                 "states share their value calls and no roll-out forward is made; other trajectories still get a "
                 "fresh one)")
    inner_steps: int = option(1, "optimiser steps on each collected batch (> 1 needs a batch that does not depend "
                                 "on the student: value.denoiser rollout or pretrained, or a learned value, and "
                                 "rollin.source rollout)")
    rollin: RollInConfig = option(RollInConfig(), "where training states x_t come from")
    value: ValueConfig = option(ValueConfig(), "value estimate v(x): r(x0_hat(x)), or a learned value network")
    chunk: int = option(512, "states per denoiser forward in roll-out")

    def validate(self):
        super().validate()
        if self.alpha <= 0:
            raise ConfigError(f"alpha: must be > 0, got {self.alpha}")
        if self.update_interval < 1:
            raise ConfigError(f"update_interval: must be >= 1, got {self.update_interval}")
        if self.inner_steps < 1:
            raise ConfigError(f"inner_steps: must be >= 1, got {self.inner_steps}")
        student_values = self.value.kind == "posterior-mean" and self.value.denoiser == "student"
        if self.inner_steps > 1 and (student_values or self.rollin.source == "student"):
            raise ConfigError(
                f"inner_steps: {self.inner_steps} steps on one batch are steps on one objective only when the batch "
                f"does not depend on the student; set value.denoiser to rollout or pretrained (or value.kind: "
                f"learned) and rollin.source to rollout")
        if self.rollout == "rollin" and self.rollin.source != "rollout":
            raise ConfigError("rollout: `rollin` takes the roll-in's next state as the roll-out sample, which needs "
                              "roll-ins by the roll-out model (rollin.source: rollout)")

    def reward_calls(self, trajectories: int, states: int) -> int:
        per_value = max(1, self.value.completions)
        rollin = self.rollin
        all_shared = self.rollout == "rollin" and rollin.beta == 1 and rollin.beta_end in (None, 1) \
            and not rollin.replay_size
        fresh_states = 0 if all_shared else states  # examples whose x_s is a fresh roll-out sample
        if self.value.kind == "learned":  # the roll-ins' final samples, and fresh x_s that are clean
            return trajectories + fresh_states
        if self.rollout == "fresh":
            return states * (1 + self.use_value_xt) * per_value
        # one value per distinct chain state: (T + 1) per trajectory when every step is used, else two per state
        consecutive = self.timesteps == 0 or states < trajectories * self.timesteps
        chain = trajectories + states if consecutive else 2 * states
        return (chain + fresh_states) * per_value


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
        traj, drawn_by = self.rollin.sample(ctx, n)
        learned, final_rewards = self.value.learned, None
        if learned is not None:  # the regression data of the value network: r(x_0) of every roll-in
            final_rewards = ctx.rewards(traj.final)
            learned.observe(ctx, traj, final_rewards)
            if not learned.ready:  # nothing to weigh with before the first fit: this batch only feeds it
                return Batch({}, traj.final, {"examples": 0.0})
        b, k, x_t, t_t = masked_states(ctx, traj, cfg.timesteps)
        t_s = traj.times[k + 1].float().to(x_t.device)
        teacher = self.teacher(ctx)
        # examples whose x_s is the roll-in's own next state (a draw from the teacher); the others roll out afresh
        shared = torch.tensor([m is teacher and cfg.rollout == "rollin" for m in drawn_by], dtype=torch.bool)[b]
        x_s, teacher_x0 = traj.states[k + 1, b], torch.full_like(x_t, -1)
        fresh = ~shared.to(x_t.device)
        if fresh.any():
            with ctx.timed("rollout"):
                rolled = chunked(lambda xb, tb, kb: self.roll_out(ctx, teacher, traj, xb, tb, kb), x_t[fresh],
                                 t_t[fresh], k[~shared], size=cfg.chunk)
            x_s[fresh], teacher_x0[fresh] = rolled[:, 0], rolled[:, 1]
        revealed = (x_s != x_t).any(-1)  # steps that reveal nothing carry no gradient
        x_t, x_s, t_t, t_s, teacher_x0 = (v[revealed] for v in (x_t, x_s, t_t, t_s, teacher_x0))
        b, k, shared = (v[revealed.cpu()] for v in (b, k, shared))
        if cfg.rollout == "rollin":
            v_s, v_t = self.chain_values(ctx, traj, drawn_by, b, k, shared, x_s, t_s, final_rewards)
        else:
            v_s = self.value(ctx, x_s, t_s)
            if cfg.use_value_xt:
                known = self.value.rollin_completions(ctx, traj, drawn_by, k, b)
                if self.value.reuses(ctx, teacher):  # the roll-out's own forward at x_t
                    known = torch.where(known[:, :1] < 0, teacher_x0, known)
                v_t = self.value(ctx, x_t, t_t, known)
            else:
                v_t = np.zeros_like(v_s)
        log_w = (v_s - v_t) / cfg.alpha
        weights = importance_weights(log_w, cfg.self_normalize, cfg.max_log_weight)
        ess = effective_sample_size(weights) if len(weights) else float("nan")
        if cfg.baseline == "mean" and len(weights):
            weights = weights - weights.mean()
        stats = {
            "examples": float(len(x_t)),
            "ess": ess,
            "ess_used": effective_sample_size(weights) if len(weights) else float("nan"),
            "log_weight_mean": float(log_w.mean()) if len(log_w) else float("nan"),
            "log_weight_max": float(log_w.max()) if len(log_w) else float("nan"),
        }
        if cfg.rollout == "rollin":
            stats["shared_rollout"] = float(shared.float().mean()) if len(shared) else float("nan")
        examples = {"x_t": x_t, "x_s": x_s, "t": t_t, "weight": torch.as_tensor(weights, dtype=torch.float32)}
        return Batch(examples, traj.final, stats)

    @staticmethod
    def roll_out(ctx: Context, teacher, traj, x_t, t_t, k) -> torch.Tensor:
        """One fresh step x_s ~ teacher(. | x_t), with the teacher's argmax completion of x_t: (n, 2, L)."""
        log_x0 = teacher.denoise(x_t, t_t)
        x_s = teacher.step(x_t, log_x0, traj.mask_probs[k], traj.mask_probs[k + 1], ctx.generator)
        return torch.stack([x_s, log_x0.argmax(-1)], dim=1)

    def chain_values(self, ctx: Context, traj, drawn_by, b, k, shared, x_s, t_s,
                     final_rewards: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """v(x_s), v(x_t) with one value per distinct state of a roll-in chain, computed at the step where the
        state first appears: v(x_t) is the value of chain state k (as x_s of the last step that changed it), and
        a shared x_s is chain state k + 1, so consecutive examples share a value (and its reward call), and the
        final state's value is r(x_0) (`final_rewards`, when already known, else a call). Fresh x_s get values
        of their own."""
        steps, width = traj.steps, traj.states.shape[1]
        changed = torch.ones(steps + 1, width, dtype=torch.bool)
        changed[1:] = (traj.states[1:] != traj.states[:-1]).any(-1).cpu()
        first = torch.where(changed, torch.arange(steps + 1)[:, None], 0).cummax(0).values  # (T + 1, B)
        wanted = [(k + 1)[shared] * width + b[shared]]
        if self.config.use_value_xt:
            wanted.append(first[k, b] * width + b)
        keys, where = torch.unique(torch.cat(wanted), return_inverse=True)
        j, jb = keys // width, keys % width
        values = np.empty(len(keys))
        known = torch.zeros(len(keys), dtype=torch.bool)
        if final_rewards is not None:  # a clean chain state is its trajectory's final sample
            known = (traj.states[j, jb] != ctx.student.mask_index).all(-1).cpu()
            values[known.numpy()] = final_rewards[jb[known].numpy()]
        j, jb = j[~known], jb[~known]
        values[(~known).numpy()] = self.value(ctx, traj.states[j, jb], traj.times[j].float(),
                                              self.value.rollin_completions(ctx, traj, drawn_by, j, jb))
        n_shared = int(shared.sum())
        v_s = np.empty(len(b))
        v_s[shared.numpy()] = values[where[:n_shared].numpy()]
        if (~shared).any():
            fresh = (~shared).to(x_s.device)
            v_s[(~shared).numpy()] = self.value(ctx, x_s[fresh], t_s[fresh])
        v_t = values[where[n_shared:].numpy()] if self.config.use_value_xt else np.zeros_like(v_s)
        return v_s, v_t

    def example_loss(self, ctx: Context, ex: dict[str, torch.Tensor]) -> torch.Tensor:
        log_x0 = ctx.student.denoise(ex["x_t"], ex["t"])
        return -ex["weight"] * ctx.student.revealed_log_prob(ex["x_t"], ex["x_s"], log_x0)

    def end_of_iteration(self, ctx: Context) -> None:
        super().end_of_iteration(ctx)
        if self.value.learned is not None:
            self.value.learned.fit(ctx)

    def chunk_state(self) -> dict:
        state = super().chunk_state()
        if self.value.learned is not None:
            for j, data in self.value.learned.fresh.items():
                state.setdefault(j, {})["value"] = data
        return state

    def merge_chunk_state(self, state: dict) -> None:
        super().merge_chunk_state(state)
        if self.value.learned is not None:
            self.value.learned.commit({j: part["value"] for j, part in state.items() if "value" in part})

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.value.learned is not None:
            state["value"] = self.value.learned.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.value.learned is not None:
            self.value.learned.load_state_dict(state["value"])


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
        if self.value.kind != "posterior-mean":
            raise ConfigError(f"value.kind: vidd-x0 values states by a denoiser's completion only (posterior-mean), "
                              f"got {self.value.kind!r}")

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
        x_t, t, x0, r0, v_t, traj = self.states_and_endpoints(ctx, n, cfg.timesteps, self.value)
        ratio = np.clip(np.exp(np.clip((r0 - v_t) / cfg.alpha, -50, 50)), 1 / cfg.clamp, cfg.clamp)
        weights = (ratio - ratio.mean()) / (ratio.std() + 1e-8) if cfg.normalize == "zscore" else ratio
        stats = {"examples": float(len(x_t)), "ess": effective_sample_size(weights) if len(weights) else float("nan")}
        examples = {"x_t": x_t, "x0": x0, "t": t, "weight": torch.as_tensor(weights, dtype=torch.float32)}
        return Batch(examples, traj.final, stats)

    def example_loss(self, ctx: Context, ex: dict[str, torch.Tensor]) -> torch.Tensor:
        log_x0 = ctx.student.denoise(ex["x_t"], ex["t"])
        lp = ctx.student.revealed_log_prob(ex["x_t"], ex["x0"], log_x0) / ex["x_t"].shape[1]
        return -ex["weight"] * lp
