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


def test_a_journaled_reward_resumes_from_the_scores_it_kept(tmp_path):
    """Batches of 2 are journaled as they come; a new reward on the same journal scores only what is missing."""
    calls = []

    def length(seqs):
        calls.append(list(seqs))
        return [float(len(s)) for s in seqs]

    journal = tmp_path / "scores.tsv"
    first = CachedReward(FunctionReward(length)).keep_in(journal, batch_size=2)
    assert list(first(["a", "bb", "ccc"])) == [1.0, 2.0, 3.0]
    assert calls == [["a", "bb"], ["ccc"]] and journal.read_text() == "a\t1.0\nbb\t2.0\nccc\t3.0\n"
    calls.clear()
    again = CachedReward(FunctionReward(length)).keep_in(journal)
    assert list(again(["ccc", "dddd", "a"])) == [3.0, 4.0, 1.0]
    assert calls == [["dddd"]]


def test_a_new_journal_gets_the_scores_answered_from_memory_and_none_stops_journaling(tmp_path):
    calls = []

    def length(seqs):
        calls.extend(seqs)
        return [float(len(s)) for s in seqs]

    reward = CachedReward(FunctionReward(length)).keep_in(tmp_path / "first.tsv")
    reward(["a", "bb"])
    reward.keep_in(tmp_path / "second.tsv")
    assert list(reward(["bb", "ccc", "bb"])) == [2.0, 3.0, 2.0]
    assert calls == ["a", "bb", "ccc"]  # "bb" answered from memory, scored once
    assert (tmp_path / "second.tsv").read_text() == "ccc\t3.0\nbb\t2.0\n"
    reward(["ccc", "a"])
    assert (tmp_path / "second.tsv").read_text() == "ccc\t3.0\nbb\t2.0\na\t1.0\n"
    reward.keep_in(None)
    reward(["dddd", "bb"])
    assert calls[-1] == "dddd" and len((tmp_path / "second.tsv").read_text().splitlines()) == 3
    assert (tmp_path / "first.tsv").read_text() == "a\t1.0\nbb\t2.0\n"


def test_a_failed_scoring_is_not_journaled_so_a_rerun_tries_it_again(tmp_path):
    calls = []

    def fails_on_x(seqs):
        calls.extend(seqs)
        return [float("nan") if s == "x" else 1.0 for s in seqs]

    journal = tmp_path / "scores.tsv"
    reward = CachedReward(FunctionReward(fails_on_x)).keep_in(journal)
    assert np.isnan(reward(["x", "y"])[0]) and np.isnan(reward(["x"])[0])
    assert calls == ["x", "y"] and journal.read_text() == "y\t1.0\n"  # in memory, not in the journal
    CachedReward(FunctionReward(fails_on_x)).keep_in(journal)(["x", "y"])
    assert calls == ["x", "y", "x"]
