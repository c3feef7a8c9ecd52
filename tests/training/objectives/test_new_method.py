"""Adding a method is one new file: a Method subclass with its Config, defined here and nowhere else.

`toy-reinforce` is plain REINFORCE on final samples (advantage = reward - batch mean); it registers by
subclassing, and the config system, `vidd config`, the trainer and the CLI pick it up with no other change.
"""

from dataclasses import dataclass

import numpy as np
import torch
from typer.testing import CliRunner

from support.toy import toy_model
from support.toy_task import ToyGC
from vidd import finetune
from vidd.cli import app
from vidd.core import config as cfg
from vidd.core.config import ConfigError, option
from vidd.training import FinetuneConfig
from vidd.training.objectives import Batch, Method, MethodConfig


@dataclass
class ToyReinforceConfig(MethodConfig):
    name: str = option("toy-reinforce", "the fine-tuning method")
    temperature: float = option(2.0, "divide the advantages by this")

    def validate(self):
        if self.temperature <= 0:
            raise ConfigError(f"temperature: must be > 0, got {self.temperature}")


class ToyReinforce(Method):
    name = "toy-reinforce"
    Config = ToyReinforceConfig

    @torch.no_grad()
    def collect(self, ctx, n):
        traj = ctx.student.sample(n, ctx.steps, ctx.generator, record=True)
        r = ctx.rewards(traj.final)
        advantage = torch.as_tensor((r - r.mean()) / self.config.temperature, dtype=torch.float32)
        return Batch({"states": traj.states.transpose(0, 1), "advantage": advantage}, traj.final,
                     {"reward_spread": float(np.ptp(r))})

    def example_loss(self, ctx, ex):
        states, total = ex["states"].transpose(0, 1), 0.0
        times, _ = ctx.student.grid(ctx.steps)
        for k in range(ctx.steps):
            x, nxt = states[k], states[k + 1]
            log_x0 = ctx.student.denoise(x, times[k].float().expand(len(x)))
            total = total + ctx.student.revealed_log_prob(x, nxt, log_x0)
        return -ex["advantage"] * total


def test_the_new_method_is_configured_documented_and_trained(tmp_path):
    config = cfg.build(FinetuneConfig, {"method": {"name": "toy-reinforce", "temperature": 0.5}, "iterations": 2,
                                        "steps": 4, "batch_size": 8, "accumulation": 1, "eval_every": 0,
                                        "final_samples": 4, "likelihood_samples": 2})
    assert isinstance(config.method, ToyReinforceConfig) and config.method.temperature == 0.5
    result = finetune(toy_model(), lambda seqs: [s.count("G") for s in seqs], config, log=lambda *a: None)
    assert [row["iteration"] for row in result.metrics] == [1, 2]
    assert all("reward_spread" in row and np.isfinite(row["loss"]) for row in result.metrics)

    shown = CliRunner().invoke(app, ["config", "finetune", "--method", "toy-reinforce"])
    assert shown.exit_code == 0, shown.output
    assert "`method.temperature` | `2.0` | divide the advantages by this" in shown.output
    assert "method.alpha" not in shown.output  # only the chosen method's fields

    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["finetune", ToyGC.name, "--preset", "quick", "--out", str(run),
                                 "--set", "method=toy-reinforce", "--set", "method.temperature=0.25"])
    assert r.exit_code == 0, r.output
    assert "temperature: 0.25" in (run / "config.yaml").read_text()
    bad = CliRunner().invoke(app, ["finetune", ToyGC.name, "--out", str(tmp_path / "bad"),
                                   "--set", "method=toy-reinforce", "--set", "method.temperature=0"])
    assert bad.exit_code == 2 and "method.temperature: must be > 0" in bad.output
