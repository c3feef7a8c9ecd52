"""CountedReward: exactly which sequences are sent to the reward and counted, the budget boundary,
monitoring apart from training, evaluations recorded from outside, and the failure policy."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vidd.rewards.counted import (
    BudgetExhausted,
    CountedReward,
    RewardFailure,
    RewardPolicy,
)


class Recorder:
    """A reward that records every batch it receives: value = number of G."""

    name = "recorder"

    def __init__(self, nan_for=(), raise_for=(), sleep=0.0):
        self.batches: list[list[str]] = []
        self.nan_for, self.raise_for, self.sleep = set(nan_for), set(raise_for), sleep

    def __call__(self, seqs):
        self.batches.append(list(seqs))
        time.sleep(self.sleep)
        if self.raise_for & set(seqs):
            raise RuntimeError("oracle crashed")
        return [np.nan if s in self.nan_for else float(s.count("G")) for s in seqs]


def test_each_distinct_sequence_is_sent_and_counted_once():
    reward = Recorder()
    counted = CountedReward(reward)
    assert counted(["GG", "AG", "GG", "CC", "AG"]).tolist() == [2.0, 1.0, 2.0, 0.0, 1.0]
    assert reward.batches == [["GG", "AG", "CC"]] and counted.calls == 3
    assert counted(["CC", "GT", "GG"]).tolist() == [0.0, 1.0, 2.0]
    assert reward.batches[-1] == ["GT"] and counted.calls == 4
    assert counted(["GG"]).tolist() == [2.0] and len(reward.batches) == 2  # all cached: no call at all


def test_name_is_the_rewards():
    def gc_content(seqs):
        return [0.0 for _ in seqs]

    assert CountedReward(gc_content).name == "gc_content"


def test_without_the_cache_every_row_is_sent_and_counted():
    reward = Recorder()
    counted = CountedReward(reward, RewardPolicy(cache=False))
    assert counted(["GG", "GG", "AC"]).tolist() == [2.0, 2.0, 0.0]
    counted(["GG"])
    assert reward.batches == [["GG", "GG", "AC"], ["GG"]] and counted.calls == 4 and counted.cache == {}


@pytest.mark.parametrize("budget,calls,remaining", [(0, 10, None), (5, 4, 1), (5, 5, 0), (1, 1, 0)])
def test_budget_boundary(budget, calls, remaining):
    counted = CountedReward(Recorder(), RewardPolicy(budget=budget))
    counted([f"{'G' * i}A" for i in range(calls)])
    assert counted.calls == calls and counted.remaining == remaining


def test_a_call_past_the_budget_is_refused_before_the_reward_runs():
    reward = Recorder()
    counted = CountedReward(reward, RewardPolicy(budget=5))
    with pytest.raises(BudgetExhausted):
        counted([f"{'G' * i}A" for i in range(6)])
    assert counted.calls == 0 and reward.batches == []


def test_monitoring_is_counted_apart_and_not_cached():
    """monitor(): cached sequences are answered from the cache, the others are scored, counted in
    monitor_calls (once per distinct sequence), never in calls, and not added to the cache."""
    reward = Recorder()
    counted = CountedReward(reward)
    counted(["GA"])
    out = counted.monitor(["GA", "GG", "GG", "TT"])
    assert out.tolist() == [1.0, 2.0, 2.0, 0.0]
    assert reward.batches[-1] == ["GG", "TT"] and counted.monitor_calls == 2 and counted.calls == 1
    assert set(counted.cache) == {"GA"}
    counted.monitor(["GG"])
    assert counted.monitor_calls == 3  # not cached: scored (and counted) again


def test_record_counts_outside_evaluations_and_caches_them():
    counted = CountedReward(Recorder())
    counted.journal = {}
    counted(["AA"])
    counted.record(["GG", "GC"], np.array([[5.0], [6.0]]))
    assert counted.calls == 3 and counted.cache["GG"] == 5.0 and counted.cache["GC"] == 6.0
    assert counted.journal == {"AA": (0.0, True), "GG": (5.0, False), "GC": (6.0, False)}
    assert counted(["GG"]).tolist() == [5.0] and counted.calls == 3  # answered from the cache
    uncached = CountedReward(Recorder(), RewardPolicy(cache=False))
    uncached.record(["GG"], [1.0])
    assert uncached.calls == 1 and uncached.cache == {}


def test_failure_policies(caplog):
    reward = Recorder(nan_for={"NA"}, raise_for={"XX"})
    penalised = CountedReward(reward, RewardPolicy(on_failure="penalty", penalty=-7.0))
    with caplog.at_level("WARNING", logger="vidd.rewards.counted"):
        assert penalised(["GG", "NA", "CG"]).tolist() == [2.0, -7.0, 1.0]
        assert penalised.failures == 1 and penalised.calls == 3
        assert "1 non-finite values replaced by penalty -7.0" in caplog.text
        assert penalised(["XX", "AA"]).tolist() == [-7.0, -7.0]  # the whole batch failed
        assert penalised.failures == 3 and penalised.calls == 5
        assert "failed on a batch of 2" in caplog.text and "penalty -7.0 applied" in caplog.text
    strict = CountedReward(Recorder(nan_for={"NA"}, raise_for={"XX"}))
    with pytest.raises(RewardFailure, match="1 non-finite value.*e.g. for 'NA'"):
        strict(["GG", "NA"])
    with pytest.raises(RewardFailure, match="failed on a batch of 2"):
        strict(["XX", "AA"])
    assert strict.failures == 0


def test_seconds_accumulate_the_time_spent_in_the_reward():
    counted = CountedReward(Recorder(sleep=0.02))
    counted(["A"])
    counted(["C"])
    assert counted.seconds >= 0.04
    counted(["A"])  # cached: no time
    assert counted.seconds < 0.04 + 0.02
