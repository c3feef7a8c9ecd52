"""ParallelReward: batching, ordering, per-worker state, retries, timeouts, and CountedReward on top."""

import functools
import os
import random
import time

import pytest

from vidd.core.config import ConfigError
from vidd.rewards.counted import CountedReward, RewardFailure, RewardPolicy
from vidd.rewards.executors import (
    BatchTimeout,
    ExecutorConfig,
    ParallelReward,
    RewardExecutorError,
    parallel_reward,
)

from support.fake_rewards import IndexReward, PidLogReward, LogReward, FlakyReward, BrokenReward, SlowReward, DyingReward  # noqa: E402


def config(kind="process", **kw):
    kw.setdefault("workers", 2)
    kw.setdefault("start_method", "fork")  # fast to start in tests; the default (spawn) is tested once
    return ExecutorConfig(kind=kind, **kw)


# ---- tests -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["serial", "process"])
def test_order_preserved_across_batches_and_workers(kind):
    seqs = [f"seq:{i}" for i in range(23)]
    random.Random(0).shuffle(seqs)
    with ParallelReward(IndexReward, config(kind, batch_size=3)) as reward:
        for _ in range(2):
            values = reward(seqs)
            assert values.tolist() == [float(s.split(":")[1]) for s in seqs]
        assert reward(seqs[:1]).tolist() == [float(seqs[0].split(":")[1])]
        assert reward([]).shape == (0,)
    assert (reward.name, reward.higher_is_better, reward.cost_hint, reward.differentiable) == ("index", False, 0.5, False)


def test_spawned_workers_build_their_reward_once(tmp_path):
    """Default start method; the parent never builds the reward when the metadata is given."""
    log = tmp_path / "built.txt"
    factory = functools.partial(PidLogReward, str(log))
    with ParallelReward(factory, ExecutorConfig(kind="process", workers=2, batch_size=2), name="pidlog",
                        higher_is_better=True) as reward:
        for _ in range(3):
            assert reward(["a" * n for n in range(1, 12)]).tolist() == list(range(1, 12))
    pids = log.read_text().split()
    assert str(os.getpid()) not in pids
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)  # once per worker, whatever it scored


def test_forked_workers_build_their_reward_once(tmp_path):
    log = tmp_path / "built.txt"
    with ParallelReward(functools.partial(PidLogReward, str(log)), config(batch_size=1)) as reward:
        for _ in range(3):
            reward(["a" * n for n in range(1, 9)])
    pids = log.read_text().split()
    assert pids[0] == str(os.getpid())  # the metadata probe, built once in the parent
    assert len(pids) <= 3 and len(set(pids)) == len(pids)


@pytest.mark.parametrize("kind", ["serial", "process"])
def test_flaky_batch_is_retried(tmp_path, kind):
    reward = ParallelReward(functools.partial(FlakyReward, str(tmp_path / "m")), config(kind, batch_size=2, retries=1))
    with reward:
        assert reward(["a", "bb", "ccc"]).tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("kind", ["serial", "process"])
def test_failure_after_retries_is_a_clear_error(tmp_path, kind):
    with (ParallelReward(BrokenReward, config(kind, batch_size=2, retries=2)) as reward,
          pytest.raises(RewardExecutorError) as info):
        reward(["AAA", "CCC"])
    message = str(info.value)
    assert "'docking'" in message and "batch of 2" in message and "3 attempt(s)" in message
    assert "receptor grid missing" in message and isinstance(info.value.__cause__, ValueError)
    # no retries: one attempt
    factory = functools.partial(FlakyReward, str(tmp_path / "m"))
    with (ParallelReward(factory, config(kind, retries=0)) as reward,
          pytest.raises(RewardExecutorError, match="1 attempt")):
        reward(["A"])


def test_timeout_kills_the_batch_retries_and_fails_without_hanging():
    reward = ParallelReward(functools.partial(SlowReward, 30), config(batch_size=1, retries=1, timeout=1))
    with reward:
        start = time.monotonic()
        with pytest.raises(RewardExecutorError, match="did not finish within 1 s") as info:
            reward(["a", "slow", "bb"])
        assert time.monotonic() - start < 6
        assert isinstance(info.value.__cause__, BatchTimeout) and "2 attempt(s)" in str(info.value)
        assert reward(["a", "bb"]).tolist() == [1.0, 2.0]  # a fresh pool after the killed one


def test_timeout_once_then_retry_succeeds(tmp_path):
    factory = functools.partial(SlowReward, 30, once=str(tmp_path / "m"))
    with ParallelReward(factory, config(batch_size=1, retries=1, timeout=1)) as reward:
        start = time.monotonic()
        # the batches running next to the slow one are lost with the killed pool and run again
        assert reward(["a", "slow", "bb", "ccc"]).tolist() == [1.0, 4.0, 2.0, 3.0]
        assert time.monotonic() - start < 6


def test_dead_worker_is_replaced(tmp_path):
    with ParallelReward(functools.partial(DyingReward, str(tmp_path / "m")), config(batch_size=1, retries=1)) as reward:
        assert reward(["a", "bb", "ccc"]).tolist() == [1.0, 2.0, 3.0]
        assert reward(["dddd"]).tolist() == [4.0]


def test_start_timeout_gives_a_new_workers_first_batch_time_to_build_its_reward():
    factory = functools.partial(SlowReward, 30, build_seconds=2)
    metadata = {"name": "slow", "higher_is_better": True}  # the parent never builds it
    with ParallelReward(factory, config(batch_size=1, retries=0, timeout=1, start_timeout=15), **metadata) as reward:
        assert reward(["a", "bb", "ccc"]).tolist() == [1.0, 2.0, 3.0]  # each worker built within 1 + 15 s
        start = time.monotonic()
        with pytest.raises(RewardExecutorError) as info:
            reward(["slow"])  # a started worker's batch has `timeout` only
        assert time.monotonic() - start < 5
        assert "did not finish within 1 s'" in str(info.value) and "start_timeout" not in str(info.value)
    with (ParallelReward(factory, config(batch_size=1, retries=1, timeout=1), **metadata) as reward,
          pytest.raises(RewardExecutorError, match=r"within 1 s \(timeout 1 s \+ start_timeout 0 s\).*raise "
                                                   r"executor.start_timeout")):
        reward(["a"])  # building takes 2 s: every new worker's first batch runs out of time


def test_serial_timeout_is_checked_after_the_batch():
    slow_to_build = functools.partial(SlowReward, 0.4, build_seconds=0.4)
    with ParallelReward(slow_to_build, config("serial", retries=0, timeout=0.2), name="slow",
                        higher_is_better=True) as reward:
        assert reward(["a"]).tolist() == [1.0]  # building the reward is not timed
        with pytest.raises(RewardExecutorError, match="took"):
            reward(["slow"])


def test_nan_reaches_counted_reward_penalty(tmp_path):
    inner = ParallelReward(functools.partial(LogReward, str(tmp_path / "log")), config(batch_size=2))
    with inner:
        counted = CountedReward(inner, RewardPolicy(on_failure="penalty", penalty=-5.0))
        values = counted(["ab", "bad1", "abc", "bad22", "a"])
        assert values.tolist() == [2.0, -5.0, 3.0, -5.0, 1.0]
        assert counted.failures == 2
        with pytest.raises(RewardFailure, match="non-finite"):
            CountedReward(inner)(["bad"])


def test_counted_reward_over_parallel_counts_distinct_calls(tmp_path):
    log = tmp_path / "log"
    with ParallelReward(functools.partial(LogReward, str(log)), config(batch_size=3)) as inner:
        counted = CountedReward(inner)
        first = ["a", "bb", "a", "ccc", "dddd", "bb", "e", "ff", "ggg"]
        assert counted(first).tolist() == [float(len(s)) for s in first]
        assert counted.calls == 7
        second = ["a", "hh", "iii", "hh"]
        assert counted(second).tolist() == [1.0, 2.0, 3.0, 2.0]
        assert counted.calls == 9
    scored = log.read_text().split()
    assert sorted(scored) == sorted(set(first) | set(second))  # every distinct sequence scored exactly once


def test_failed_batch_under_penalty(tmp_path):
    # raise (default): CountedReward gives the penalty to the whole call
    policy = RewardPolicy(on_failure="penalty", penalty=-1.0)
    counted = CountedReward(ParallelReward(BrokenReward, config("serial", retries=0)), policy)
    assert counted(["a", "b"]).tolist() == [-1.0, -1.0] and counted.failures == 2
    # nan: only the failed batch gets it
    factory = functools.partial(FlakyReward, str(tmp_path / "m"))
    counted = CountedReward(ParallelReward(factory, config("serial", batch_size=2, retries=0, on_batch_failure="nan")),
                            policy)
    assert counted(["a", "bb", "ccc"]).tolist() == [-1.0, -1.0, 3.0] and counted.failures == 2


def test_bad_factories_and_configs():
    with pytest.raises(TypeError, match="factory"):
        ParallelReward(IndexReward(), config())
    with pytest.raises(TypeError, match="cannot be sent to worker processes"):
        ParallelReward(lambda: IndexReward(), config())
    with ParallelReward(lambda: IndexReward(), config("serial", batch_size=4)) as reward:  # serial: no pickling
        assert reward(["s:1", "s:2"]).tolist() == [1.0, 2.0]
    with pytest.raises(ConfigError, match="batch_size"):
        ExecutorConfig(batch_size=0)
    with pytest.raises(ConfigError, match="start_timeout: must be >= 0"):
        ExecutorConfig(timeout=5, start_timeout=-1)
    with pytest.raises(ConfigError, match="cpus_per_worker"):
        ExecutorConfig(kind="ray", cpus_per_worker=0)
    assert ExecutorConfig().n_workers == (os.cpu_count() or 1)


def test_inline_is_the_default_and_means_no_executor():
    assert ExecutorConfig().kind == "inline"
    reward = parallel_reward(IndexReward)  # inline: the reward itself, called in this process
    assert isinstance(reward, IndexReward) and reward(["s:3"]).tolist() == [3.0]
    assert parallel_reward(lambda: IndexReward(), ExecutorConfig(kind="inline")).name == "index"
    with pytest.raises(ConfigError, match="'inline' means no executor"):
        ParallelReward(IndexReward, ExecutorConfig(kind="inline"))
    with parallel_reward(IndexReward, config("serial", batch_size=2)) as reward:
        assert isinstance(reward, ParallelReward) and reward(["s:1", "s:2", "s:3"]).tolist() == [1.0, 2.0, 3.0]
    with ParallelReward(IndexReward) as reward:  # no config: a process pool with the default settings
        assert reward.config.kind == "process"


class FakeRay:
    """Just the session calls of the `ray` module."""

    def __init__(self, up=False, refuse=False):
        self.up, self.refuse, self.inits, self.shutdowns = up, refuse, [], 0

    def is_initialized(self):
        return self.up

    def init(self, address=None):
        if self.refuse:
            raise ConnectionError(f"could not find any running Ray instance at {address}")
        self.inits.append(address)
        self.up = True

    def shutdown(self):
        self.up, self.shutdowns = False, self.shutdowns + 1


def test_ray_session_address_and_ownership(monkeypatch):
    from vidd.rewards import executors

    monkeypatch.setattr(executors, "_RAY_SESSION", {"owned": False, "users": 0})
    ray = FakeRay()
    executors._ray_acquire(ray, "auto")  # auto: ray.init() finds RAY_ADDRESS / a local cluster, else starts one
    executors._ray_acquire(ray, "auto")  # a second executor joins the session
    assert ray.inits == [None]
    executors._ray_release(ray)
    assert ray.shutdowns == 0
    executors._ray_release(ray)  # the last user of a session it started shuts Ray down
    assert ray.shutdowns == 1 and not ray.up
    for address in ("local", "ray://head:10001", "10.0.0.1:6379"):
        executors._ray_acquire(ray, address)
        executors._ray_release(ray)
    assert ray.inits == [None, "local", "ray://head:10001", "10.0.0.1:6379"]
    ray = FakeRay(up=True)  # someone else's session: used, never shut down
    executors._ray_acquire(ray, "auto")
    executors._ray_release(ray)
    assert ray.inits == [] and ray.shutdowns == 0
    with pytest.raises(ConfigError, match="executor.address 'nowhere:1': cannot connect to Ray"):
        executors._ray_acquire(FakeRay(refuse=True), "nowhere:1")
    assert executors._RAY_SESSION == {"owned": False, "users": 0}


def test_ray_executor_without_ray_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'vidd\[dist\]'"):
        ParallelReward(IndexReward, ExecutorConfig(kind="ray"))
