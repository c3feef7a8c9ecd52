"""Reward wrappers of vidd.rewards.base."""

from __future__ import annotations

import numpy as np

from vidd.rewards.base import CachedReward, FunctionReward


def test_a_cached_reward_scores_each_distinct_sequence_once_in_one_batch():
    batches = []

    def length(seqs):
        batches.append(list(seqs))
        return [float(len(s)) for s in seqs]

    reward = CachedReward(FunctionReward(length, name="length", higher_is_better=False))
    assert reward.name == "length" and reward.higher_is_better is False
    assert list(reward(["a", "bb", "a"])) == [1.0, 2.0, 1.0]
    assert list(reward(["bb", "ccc", "a"])) == [2.0, 3.0, 1.0]
    assert batches == [["a", "bb"], ["ccc"]]


def test_a_cached_reward_keeps_the_last_sequences_only():
    calls = []
    reward = CachedReward(FunctionReward(lambda seqs: calls.extend(seqs) or np.zeros(len(seqs))), size=2)
    reward(["a", "b"])
    reward(["c"])  # "a" leaves the cache
    reward(["a", "c"])
    assert calls == ["a", "b", "c", "a"]
