"""The settings of a fine-tuning run: the fields every method shares, and the chosen method's section."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vidd.core.config import ConfigError, option, to_dict
from vidd.core.devices import parse_device
from vidd.rewards.counted import RewardPolicy
from vidd.training.copies import ModelConfig
from vidd.training.objectives import MethodConfig, VIDDConfig
from vidd.training.trackers import Tracker


#: the fields (and sections) a resumed run may change: how long it runs, how it is evaluated and where it runs
RESUMABLE = ("iterations", "eval_every", "eval_samples", "final_samples", "likelihood_samples", "checkpoint_every",
             "threads", "device", "overlap", "distributed_backend", "reward.budget", "reward.on_failure",
             "reward.max_failure_fraction", "reward.executor", "report_to", "eval_at_calls", "stop_after_idle")


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in data.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@dataclass
class FinetuneConfig:
    method: MethodConfig = option(
        VIDDConfig(), "the fine-tuning method and its settings: `name` picks the method (vidd, vidd-x0, standard, "
                      "ddpo, ddpo-x0, ddpp, drakes or a plug-in), the other fields are that method's own "
                      "(`vidd config finetune --method NAME`); `--set method=NAME` starts from its defaults")
    iterations: int = option(200, "outer iterations S (one optimiser step each)")
    steps: int = option(128, "denoising steps T of every roll-in and evaluation sample")
    batch_size: int = option(32, "roll-in trajectories per accumulation step")
    accumulation: int = option(4, "accumulation steps per optimiser step (with N processes each collects "
                                  "accumulation / N of them: the global batch does not change)")
    lr: float = option(1e-4, "Adam learning rate")
    weight_decay: float = option(0.0, "Adam weight decay")
    grad_clip: float = option(1.0, "gradient-norm clip")
    loss_chunk: int = option(256, "training examples per student forward/backward (memory bound)")
    reward: RewardPolicy = option(RewardPolicy(), "reward cache, budget and failure policy")
    model: ModelConfig = option(
        ModelConfig(), "how the student, roll-out and pretrained models hold and train their weights: full "
                       "fine-tuning or LoRA, precision, compilation, gradient checkpointing (docs/large-models.md)")
    task: dict = option(
        {}, "the task's settings, e.g. {length: 64, structure: helix} for protein-ss (fields: docs/tasks/*.md); "
            "empty: the task's defaults")
    log_rollin_reward: bool = option(True, "score each iteration's roll-in samples with the training reward to "
                                           "log reward statistics (free where training calls scored them, else "
                                           "counted as monitor calls, outside the budget)")
    stop_after_idle: int = option(0, "end the run after this many consecutive iterations without a new training-"
                                      "reward call (0: never); under a budget, a model that collapsed onto sequences "
                                      "it has scored before would otherwise train for free until `iterations`")
    eval_every: int = option(10, "iterations between evaluations of the student (0: only at the end)")
    eval_at_calls: list[int] = option([], "also evaluate after the iteration in which the distinct training-reward "
                                          "calls reach each of these numbers, e.g. [768, 1536, 3072]")
    eval_samples: int = option(64, "student samples per evaluation")
    final_samples: int = option(256, "student samples scored by the final evaluation (final_eval.json)")
    likelihood_samples: int = option(16, "Monte Carlo steps of the pretrained model's ELBO per sample (at most "
                                         "`steps`: a larger value evaluates every step)")
    checkpoint_every: int = option(10, "iterations between checkpoints (the last iteration is always saved)")
    seed: int = option(0, "random seed (a CPU run is bit-reproducible, resumed or not)")
    threads: int = option(0, "torch CPU threads (0: torch default)")
    device: str = option("cpu", "torch device (`cuda` under torchrun: cuda:LOCAL_RANK)")
    overlap: bool = option(
        False, "collect two accumulation chunks at a time in threads, so one chunk samples its roll-ins while "
               "the other waits for its rewards (worth it when the reward runs on an executor, reward.executor; "
               "the results are the same as without)")
    report_to: list[str] = option(
        [], "experiment trackers that log every metrics row, the config and the final evaluation: any of "
            "tensorboard, mlflow, wandb (docs/tracking.md; each needs its extra, e.g. pip install 'vidd[mlflow]')")
    distributed_backend: Literal["auto", "gloo", "nccl"] = option(
        "auto", "torch.distributed backend of a data-parallel run (torchrun, WORLD_SIZE > 1) when the trainer "
                "starts the process group: auto = nccl for CUDA devices, else gloo")

    def __post_init__(self):
        if isinstance(self.method, str):  # FinetuneConfig(method="ddpo"): that method's defaults
            self.method = MethodConfig.subtype_for(self.method)()

    def validate(self):
        for name in ("iterations", "steps", "batch_size", "accumulation", "loss_chunk", "checkpoint_every",
                     "likelihood_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in self.report_to:
            Tracker.lookup(name)  # an unknown tracker or a missing library fails before any work starts
        for name in ("eval_samples", "final_samples"):
            if getattr(self, name) < 2:
                raise ConfigError(f"{name}: must be >= 2 (diversity compares pairs of samples), got "
                                  f"{getattr(self, name)}")
        for name in ("eval_every", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name, low in (("lr", "> 0"), ("grad_clip", "> 0"), ("weight_decay", ">= 0")):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (low == "> 0" and value == 0):
                raise ConfigError(f"{name}: must be a finite number {low}, got {value}")
        parse_device(self.device)
        if self.stop_after_idle < 0:
            raise ConfigError(f"stop_after_idle: must be >= 0 (0: never), got {self.stop_after_idle}")
        if any(c < 1 for c in self.eval_at_calls):
            raise ConfigError(f"eval_at_calls: every threshold must be >= 1, got {self.eval_at_calls}")

    def resume_changes(self, stored: "FinetuneConfig") -> dict[str, list]:
        """The settings this config changes in the run `stored` describes, as {dotted field: [old, new]}.
        A resumed run may change only `RESUMABLE` fields (its length, evaluation and logistics); a change of
        anything that makes it another run (method, seed, model, batch shapes, learning rate, ...) is an error."""
        old, new = _flatten(to_dict(stored)), _flatten(to_dict(self))
        changes = {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
        refused = [k for k in changes if not any(k == f or k.startswith(f + ".") for f in RESUMABLE)]
        if "method.name" in refused:  # another method: its other fields differ too
            refused = ["method.name"]
        if refused:
            shown = ", ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused[:3])
            shown += f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
            raise ConfigError(f"--resume: {shown} would make it another run; a resumed run may change only "
                              f"{', '.join(RESUMABLE)} (start a new run with --out for the rest)")
        return changes

    def check_world(self, world: int) -> None:
        """A data-parallel run of `world` processes keeps the global batch (batch_size x accumulation
        trajectories per update): each process collects accumulation / world of the chunks, so
        accumulation must be a multiple of world."""
        if world <= 1 or self.accumulation % world == 0:
            return
        total = self.batch_size * self.accumulation
        fits = [a for a in range(world, total + 1, world) if total % a == 0]
        if fits:
            a = min(fits, key=lambda a: (abs(a - self.accumulation), -a))
            hint = f"e.g. accumulation={a} with batch_size={total // a} keeps the {total} trajectories per update"
        else:
            a = -(-self.accumulation // world) * world
            hint = f"e.g. accumulation={a} ({self.batch_size * a} trajectories per update)"
        raise ConfigError(
            f"accumulation: {self.accumulation} chunks of batch_size {self.batch_size} cannot be split evenly over "
            f"{world} processes; accumulation must be a multiple of the number of processes ({hint})")

    def derived(self, world: int = 1) -> dict:
        trajectories = self.batch_size * self.accumulation
        states = self.method.training_states(trajectories, self.steps)
        rows = {"trajectories per update": trajectories, "training states per update (at most)": states,
                "reward calls per iteration (at most, before caching)": self.method.reward_calls(trajectories, states)}
        if world > 1:
            rows.update({"processes": world, "accumulation steps per process": self.accumulation // world,
                         "trajectories per process per update": trajectories // world})
        return rows
