"""Exact reward budgets for every method, free log-only calls, evaluation at reward-call thresholds, and the
training seconds and updates recorded with every evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from support.toy import toy_model
from vidd import FinetuneConfig, finetune
from vidd.core import config as cfg
from vidd.rewards.base import DifferentiableReward
from vidd.rewards.counted import BudgetExhausted, CountedReward, RewardPolicy
from vidd.training.objectives import VIDDConfig
from vidd.training.trainer import Trainer

QUIET = {"log": lambda *a: None}
G = 2


class GCount(DifferentiableReward):
    """Number of G (DRAKES can back-propagate through it); remembers every sequence it is sent."""

    name = "g-count"

    def __init__(self):
        super().__init__()
        self.sent: list[str] = []

    def score(self, seqs):
        self.sent.extend(seqs)
        return [float(s.count("G")) for s in seqs]

    def score_onehot(self, onehot):
        return onehot[..., G].sum(-1)


def config(method, **over) -> FinetuneConfig:
    base = {"method": method, "iterations": 200, "steps": 4, "batch_size": 6, "accumulation": 2, "lr": 3e-3,
            "eval_every": 0, "eval_samples": 4, "final_samples": 4, "likelihood_samples": 2}
    return cfg.build(FinetuneConfig, cfg.merge(base, over))


METHODS = ["vidd", {"name": "vidd", "rollout": "rollin", "value": {"denoiser": "rollout"}},
           {"name": "vidd", "rollout": "rollin", "value": {"kind": "learned"}},
           "vidd-x0", "standard", "ddpo", "ddpo-x0", "ddpp", "drakes"]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m if isinstance(m, str) else "-".join(
    str(v) for v in (m["rollout"], m["value"].get("kind", "posterior-mean"))))
@pytest.mark.parametrize("cache", [True, False])
def test_the_budget_is_never_overshot(method, cache):
    """Every method stops at or under the budget, having trimmed its last collection: afterwards not one more
    trajectory per chunk fits under the method's bound on its calls (with the cache, a method that collapses
    onto a few sequences may reach the iteration limit first)."""
    budget = 61
    trainer = Trainer(config(method, iterations=60, reward={"budget": budget, "cache": cache}), toy_model(seed=3),
                      GCount(), log=lambda *a: None)
    result = trainer.run()
    assert result.reward_calls <= budget
    if cache and len(result.metrics) == 60:
        return
    assert trainer._trajectories() == 0
    left = budget - result.reward_calls
    m = trainer.config.method
    assert m.reward_calls(2, m.training_states(2, 4)) > left  # one trajectory in each of the 2 chunks


def test_a_call_past_the_budget_is_refused_before_the_reward_runs():
    reward = GCount()
    counted = CountedReward(reward, RewardPolicy(budget=3))
    counted(["AAAA", "CCCC"])
    with pytest.raises(BudgetExhausted):
        counted(["GGGG", "TTTT"])
    assert counted.calls == 2 and reward.sent == ["AAAA", "CCCC"]
    assert counted(["AAAA"]).tolist() == [0.0]  # cached answers cost nothing
    with pytest.raises(BudgetExhausted):
        counted.record(["GGGG", "TTTT"], [1.0, 0.0])


def test_a_method_that_breaks_its_bound_stops_under_the_budget(monkeypatch):
    """A method whose `reward_calls` bound is too low (here: 1 call per update for VIDD) meets the refusal:
    the iteration is dropped and the run ends under the budget."""
    monkeypatch.setattr(VIDDConfig, "reward_calls", lambda self, trajectories, states: 1)
    result = finetune(toy_model(), GCount(), config("vidd", reward={"budget": 60}), **QUIET)
    assert result.reward_calls <= 60 and len(result.metrics) < 200


def test_log_only_calls_are_free():
    """Scoring the roll-ins for the log costs no training calls: a run with it makes the same training calls and
    the same model as one without (what it adds are monitor calls)."""
    runs = [finetune(toy_model(), GCount(), config("vidd", iterations=3, log_rollin_reward=log), **QUIET)
            for log in (True, False)]
    assert runs[0].reward_calls == runs[1].reward_calls
    assert [r["loss"] for r in runs[0].metrics] == [r["loss"] for r in runs[1].metrics]
    assert runs[0].metrics[-1]["monitor_reward_calls"] > runs[1].metrics[-1]["monitor_reward_calls"]


def test_evaluations_happen_when_the_calls_cross_each_threshold():
    thresholds = [40, 90, 91, 200]
    result = finetune(toy_model(), GCount(), config("vidd", iterations=12, eval_at_calls=thresholds), **QUIET)
    rows = result.metrics
    before = [0] + [r["reward_calls"] for r in rows[:-1]]
    expected = [any(b < c <= r["reward_calls"] for c in thresholds) or i == len(rows) - 1
                for i, (b, r) in enumerate(zip(before, rows))]
    assert ["eval_reward_median" in r or "eval_train_reward_median" in r for r in rows] == expected
    assert sum(expected) >= 3


def test_every_row_records_training_seconds_without_evaluation_and_updates():
    result = finetune(toy_model(), GCount(), config("vidd", iterations=4, eval_every=2), **QUIET)
    rows = result.metrics
    assert [r["updates"] for r in rows] == [1, 2, 3, 4]
    increments = np.diff([0.0] + [r["train_seconds"] for r in rows])
    spent = np.array([r["iteration_seconds"] - r["seconds_eval"] for r in rows])
    assert np.all(increments <= spent + 1e-6) and np.all(increments > 0)
    assert rows[1]["seconds_eval"] > 0 and rows[-1]["train_seconds"] < rows[-1]["wall_seconds"]


def test_a_run_that_stops_making_new_calls_ends():
    """stop_after_idle: on length-2 DNA (16 sequences, all soon in the cache) the run ends after n iterations in
    a row without a new reward call, long before `iterations`."""
    result = finetune(toy_model(length=2), GCount(), config("ddpo", stop_after_idle=3, log_rollin_reward=False),
                      **QUIET)
    calls = [r["reward_calls"] for r in result.metrics]
    assert len(calls) < 200 and calls[-4:] == [calls[-1]] * 4 and calls[-5] < calls[-1]
