"""The trainer's announced upper bound on reward calls per iteration (`FinetuneConfig.derived`), against a
count by hand and against the calls one iteration really makes (no cache)."""

from __future__ import annotations

import pytest

from support.toy import toy_model
from vidd.core import config as cfg
from vidd import FinetuneConfig, finetune

KEY = "reward calls per iteration (at most, before caching)"
BASE = {"iterations": 1, "steps": 4, "batch_size": 4, "accumulation": 2, "lr": 1e-3, "eval_every": 0,
        "eval_samples": 4, "final_samples": 4, "likelihood_samples": 2, "log_rollin_reward": False,
        "reward": {"cache": False}}


@pytest.mark.parametrize("method,expected", [("vidd", 32 * 2), ("vidd-x0", 8 + 8), ("ddpp", 8 + 32),
                                             ("standard", 32), ("ddpo", 8), ("ddpo-x0", 8), ("drakes", 8)])
def test_reward_call_bound_by_hand(method, expected):
    """8 trajectories of 4 steps. vidd (fresh roll-outs) values x_t and the roll-out x_s of all 32 states;
    vidd-x0 scores each trajectory's final sample and values one state per trajectory; ddpp scores the 8
    final samples and values all 32 states; standard values the 32 roll-out samples; ddpo, ddpo-x0 and drakes
    score the final samples only. Calls that only feed the log are not part of the bound (they are free when
    they reuse training calls, and counted apart as monitor calls otherwise).

    Kills: vidd's use_value_xt dropped from its count."""
    config = cfg.build(FinetuneConfig, {**BASE, "method": method})
    assert config.derived()[KEY] == expected
    logged = cfg.build(FinetuneConfig, {**BASE, "method": method, "log_rollin_reward": True})
    assert logged.derived()[KEY] == expected


@pytest.mark.parametrize("method", ["vidd", "standard"])
def test_one_iteration_stays_within_the_bound(method):
    reward = lambda seqs: [float(s.count("G")) for s in seqs]  # noqa: E731
    config = cfg.build(FinetuneConfig, {**BASE, "method": method})
    result = finetune(toy_model(), reward, config, log=lambda *a: None)
    assert 0 < result.reward_calls <= config.derived()[KEY]
