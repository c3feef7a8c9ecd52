"""The trainer's announced upper bound on reward calls per iteration (`FinetuneConfig.derived`), against a
count by hand and against the calls one iteration really makes (no cache)."""

from __future__ import annotations

import pytest

from toy import toy_model
from vidd.core import config as cfg
from vidd.finetune import FinetuneConfig, finetune

KEY = "reward calls per iteration (at most, before caching)"
BASE = {"iterations": 1, "steps": 4, "batch_size": 4, "accumulation": 2, "lr": 1e-3, "eval_every": 0,
        "eval_samples": 4, "final_samples": 4, "likelihood_samples": 2, "log_rollin_reward": False,
        "reward": {"cache": False}}


@pytest.mark.parametrize("method,per_state", [("vidd", 2), ("vidd-x0", 2), ("ddpp", 2), ("standard", 1),
                                              ("ddpo", 1), ("ddpo-x0", 1), ("drakes", 1)])
def test_reward_call_bound_by_hand(method, per_state):
    """8 trajectories; vidd and standard use all 4 steps (states: 32), ddpo all T (32), vidd-x0 one step per
    trajectory (8), ddpp all (32), drakes (no per-state values) 32 x 1. Methods with a v(x_t) term (vidd,
    vidd-x0, ddpp) make up to two reward calls per state, the others one; log_rollin_reward adds one per
    trajectory.

    Kills: use_value_xt on the methods without a v(x_t) term (standard, ddpo, drakes) flipped."""
    config = cfg.build(FinetuneConfig, {**BASE, "method": method})
    states = 8 * (1 if method == "vidd-x0" else 4)
    assert config.derived()[KEY] == states * per_state
    logged = cfg.build(FinetuneConfig, {**BASE, "method": method, "log_rollin_reward": True})
    assert logged.derived()[KEY] == states * per_state + 8


@pytest.mark.parametrize("method", ["vidd", "standard"])
def test_one_iteration_stays_within_the_bound(method):
    reward = lambda seqs: [float(s.count("G")) for s in seqs]  # noqa: E731
    config = cfg.build(FinetuneConfig, {**BASE, "method": method})
    result = finetune(toy_model(), reward, config, log=lambda *a: None)
    assert 0 < result.reward_calls <= config.derived()[KEY]
