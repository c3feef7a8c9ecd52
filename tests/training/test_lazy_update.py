"""The lazy update of the roll-out model, for every method that has one (vidd, vidd-x0, ddpo, ddpo-x0):
the roll-out model equals the student right after iteration K (2K, ...) and differs before it. Methods
without one (standard, ddpp, drakes) never touch it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from support.toy import make_context, same_weights, table_model, toy_model
from vidd.training.objectives import (
    DDPO, DDPP, DRAKES, VIDD, DDPOConfig, DDPOx0, DDPOx0Config, DDPPConfig, DRAKESConfig, StandardConfig,
    StandardFinetune, VIDDConfig, VIDDx0, VIDDx0Config,
)

LAZY = {
    "vidd": lambda k: VIDD(VIDDConfig(update_interval=k)),
    "vidd-x0": lambda k: VIDDx0(VIDDx0Config(update_interval=k)),
    "ddpo": lambda k: DDPO(DDPOConfig(update_interval=k)),
    "ddpo-x0": lambda k: DDPOx0(DDPOx0Config(update_interval=k)),
}
NEVER = {
    "standard": lambda: StandardFinetune(StandardConfig()),
    "ddpp": lambda: DDPP(DDPPConfig()),
    "drakes": lambda: DRAKES(DRAKESConfig()),
}


def nudge(model, step: int) -> None:
    """Stand-in for an optimiser step: change every weight of the student."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * (step + 1))


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("name", list(LAZY))
def test_rollout_is_the_student_right_after_every_kth_iteration(name, k):
    """Iterations 0 .. 3K-1, each: the student changes, then `end_of_iteration`. Right after iterations
    K-1, 2K-1, 3K-1 (the K-th, 2K-th, 3K-th) the roll-out model holds the student's weights; after every other
    iteration it holds the previous snapshot (a copy: later student steps do not leak into it).

    Kills: the lazy update never copying (e.g. in ddpo-x0), copying every iteration, one iteration early or
    late, or aliasing the student."""
    student, rollout = table_model(seed=1), table_model(seed=1)
    ctx = make_context(student, rollout, table_model(seed=2))
    method = LAZY[name](k)
    snapshot = rollout.backbone.table.detach().clone()
    for it in range(3 * k):
        ctx.iteration = it
        nudge(student, it)
        method.end_of_iteration(ctx)
        if (it + 1) % k == 0:
            assert same_weights(rollout, student), (name, k, it)
            snapshot = rollout.backbone.table.detach().clone()
        else:
            assert not same_weights(rollout, student), (name, k, it)
            assert torch.equal(rollout.backbone.table, snapshot), (name, k, it)


def test_lazy_update_reports_whether_it_copied():
    from vidd.training.objectives.base import lazy_update

    student, rollout = table_model(seed=1), table_model(seed=2)
    ctx = make_context(student, rollout)
    ctx.iteration = 0
    assert lazy_update(ctx, 2) is False and not same_weights(rollout, student)
    ctx.iteration = 1
    assert lazy_update(ctx, 2) is True and same_weights(rollout, student)
    other = table_model(seed=3)
    ctx.rollout = other
    before = other.backbone.table.detach().clone()
    assert lazy_update(ctx, 0) is False and torch.equal(other.backbone.table, before)  # interval 0: never


@pytest.mark.parametrize("name", list(NEVER))
def test_methods_without_a_lazy_update_leave_the_rollout_model_alone(name):
    """standard (the teacher is the pretrained model, never refreshed), ddpp and drakes have no roll-out
    refresh: `end_of_iteration` leaves the roll-out model as it was, iteration after iteration."""
    student, rollout = table_model(seed=1), table_model(seed=1)
    ctx = make_context(student, rollout, table_model(seed=2))
    method = NEVER[name]()
    before = rollout.backbone.table.detach().clone()
    for it in range(6):
        ctx.iteration = it
        nudge(student, it)
        method.end_of_iteration(ctx)
        assert torch.equal(rollout.backbone.table, before)


@pytest.mark.parametrize("name", list(LAZY))
def test_trainer_refreshes_the_rollout_model_after_every_second_iteration(name):
    """Through the trainer (K = 2, five iterations): right after iterations 2 and 4 the roll-out model equals
    the trained student, after iterations 1, 3 and 5 it differs."""
    from vidd.core import config as cfg
    from vidd.training import FinetuneConfig
    from vidd.training.trainer import Trainer

    config = cfg.build(FinetuneConfig, {
        "method": {"name": name, "update_interval": 2}, "iterations": 5, "steps": 4, "batch_size": 8, "accumulation": 1, "lr": 1e-2,
        "eval_every": 0, "eval_samples": 4, "final_samples": 4, "likelihood_samples": 2, "log_rollin_reward": False})
    trainer = Trainer(config, toy_model(), lambda seqs: [float(s.count("G")) for s in seqs], log=lambda *a: None)
    end, seen = trainer.method.end_of_iteration, []

    def watched(ctx):
        end(ctx)
        seen.append(same_weights(ctx.rollout, ctx.student))

    trainer.method.end_of_iteration = watched
    trainer.run()
    assert seen == [False, True, False, True, False]
    assert np.isfinite([r["loss"] for r in trainer.metrics]).all()
