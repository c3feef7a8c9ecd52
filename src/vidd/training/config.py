"""The settings of a fine-tuning run: the fields every method shares, and the chosen method's section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vidd.core.config import ConfigError, option
from vidd.rewards.counted import RewardPolicy
from vidd.training.copies import ModelConfig
from vidd.training.objectives import MethodConfig, VIDDConfig


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
    log_rollin_reward: bool = option(True, "score each iteration's roll-in samples with the training reward "
                                           "(counted calls) to log reward statistics")
    eval_every: int = option(10, "iterations between evaluations of the student (0: only at the end)")
    eval_samples: int = option(64, "student samples per evaluation")
    final_samples: int = option(256, "student samples scored by the final evaluation (final_eval.json)")
    likelihood_samples: int = option(16, "Monte Carlo steps of the pretrained model's ELBO per sample")
    checkpoint_every: int = option(10, "iterations between checkpoints (the last iteration is always saved)")
    seed: int = option(0, "random seed (a CPU run is bit-reproducible, resumed or not)")
    threads: int = option(0, "torch CPU threads (0: torch default)")
    device: str = option("cpu", "torch device (`cuda` under torchrun: cuda:LOCAL_RANK)")
    overlap: bool = option(
        False, "collect two accumulation chunks at a time in threads, so one chunk samples its roll-ins while "
               "the other waits for its rewards (worth it when the reward runs on an executor, reward.executor; "
               "the results are the same as without)")
    distributed_backend: Literal["auto", "gloo", "nccl"] = option(
        "auto", "torch.distributed backend of a data-parallel run (torchrun, WORLD_SIZE > 1) when the trainer "
                "starts the process group: auto = nccl for CUDA devices, else gloo")

    def __post_init__(self):
        if isinstance(self.method, str):  # FinetuneConfig(method="ddpo"): that method's defaults
            self.method = MethodConfig.subtype_for(self.method)()

    def validate(self):
        for name in ("iterations", "steps", "batch_size", "accumulation", "loss_chunk", "eval_samples",
                     "final_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")

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
        calls = self.method.reward_calls(trajectories, states) + (trajectories if self.log_rollin_reward else 0)
        rows = {"trajectories per update": trajectories, "training states per update (at most)": states,
                "reward calls per iteration (at most, before caching)": calls}
        if world > 1:
            rows.update({"processes": world, "accumulation steps per process": self.accumulation // world,
                         "trajectories per process per update": trajectories // world})
        return rows
