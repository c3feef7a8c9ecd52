"""The Ray executor on one local cluster: ordering across actors, per-actor state, retries, timeouts,
crashed actors and the failure policy. The fake rewards are support.fake_rewards'."""

import functools
import os
import random
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: install the [dist] extra (pip install 'vidd[dist]')")

from support import fake_rewards
from support.fake_rewards import (
    BrokenReward,
    DyingReward,
    FlakyReward,
    IndexReward,
    PidLogReward,
    SlowReward,
)

from vidd.rewards.counted import CountedReward, RewardPolicy
from vidd.rewards.executors import (
    BatchTimeout,
    ExecutorConfig,
    ParallelReward,
    RewardExecutorError,
)


def config(**kw):
    kw.setdefault("workers", 2)
    kw.setdefault("cpus_per_worker", 0.5)  # two actors and their replacements fit on any machine
    return ExecutorConfig(kind="ray", **kw)


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module, started by an executor (address `local`) that stays open until the
    end, so every test's executor joins its session; the executor that started Ray shuts it down last."""
    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process")
    ray.cloudpickle.register_pickle_by_value(fake_rewards)  # actors need not import the tests' helpers
    keeper = ParallelReward(IndexReward, config(address="local", workers=1))
    assert ray.is_initialized()
    yield
    keeper.close()
    ray.cloudpickle.unregister_pickle_by_value(fake_rewards)
    assert not ray.is_initialized()


def test_order_across_actors_and_state_built_once_per_actor(tmp_path):
    built = tmp_path / "built.txt"
    factory = functools.partial(PidLogReward, str(built))  # scores the length
    seqs = ["a" * n for n in range(1, 24)]
    random.Random(0).shuffle(seqs)
    with ParallelReward(factory, config(batch_size=3), name="pidlog", higher_is_better=True) as reward:
        assert repr(reward) == "ParallelReward('pidlog', kind='ray', workers=2)"
        for _ in range(3):
            assert reward(seqs).tolist() == [float(len(s)) for s in seqs]
        assert reward(seqs[:1]).tolist() == [float(len(seqs[0]))] and reward([]).shape == (0,)
    pids = built.read_text().split()
    assert str(os.getpid()) not in pids  # the metadata was given: never built in the driver
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)  # once per actor, over every batch and call


def test_raising_batch_is_retried_then_fails_with_the_worker_traceback(tmp_path):
    with ParallelReward(functools.partial(FlakyReward, str(tmp_path / "m")), config(batch_size=2)) as reward:
        assert reward(["a", "bb", "ccc"]).tolist() == [1.0, 2.0, 3.0]
    with (ParallelReward(BrokenReward, config(batch_size=2, retries=2)) as reward,
          pytest.raises(RewardExecutorError) as info):
        reward(["AAA", "CCC"])
    assert "'docking'" in str(info.value) and "3 attempt(s)" in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, ValueError) and "receptor grid missing" in str(cause)
    assert "in score" in str(cause)  # the actor's traceback


def test_failure_policy_after_retries(tmp_path):
    """nan: only the failed batch is penalised; raise: CountedReward penalises the whole call."""
    policy = RewardPolicy(on_failure="penalty", penalty=-5.0)
    factory = functools.partial(FlakyReward, str(tmp_path / "m"))
    with ParallelReward(factory, config(workers=1, batch_size=2, retries=0, on_batch_failure="nan")) as inner:
        counted = CountedReward(inner, policy)
        assert counted(["a", "bb", "ccc"]).tolist() == [-5.0, -5.0, 3.0] and counted.failures == 2
    with ParallelReward(BrokenReward, config(workers=1, retries=0)) as inner:
        counted = CountedReward(inner, policy)
        assert counted(["x", "y"]).tolist() == [-5.0, -5.0] and counted.failures == 2


def test_timed_out_batch_kills_its_actor_and_is_retried(tmp_path):
    """Each actor takes longer to start and build its reward than `timeout`: `start_timeout` covers that."""
    timeout, start_timeout = 3, 60
    factory = functools.partial(SlowReward, 120, once=str(tmp_path / "m"), build_seconds=timeout + 1)
    with ParallelReward(factory, config(batch_size=1, retries=1, timeout=timeout, start_timeout=start_timeout),
                        name="slow", higher_is_better=True) as reward:
        assert reward(["a", "bb"]).tolist() == [1.0, 2.0]  # both actors started
        start = time.monotonic()
        assert reward(["a", "slow", "bb", "ccc"]).tolist() == [1.0, 4.0, 2.0, 3.0]
        assert timeout <= time.monotonic() - start < timeout + start_timeout  # the retry ran on a fresh actor
        assert reward(["dddd"]).tolist() == [4.0]


@pytest.mark.slow
def test_batch_timing_out_every_time_fails_without_hanging():
    with ParallelReward(functools.partial(SlowReward, 120), config(batch_size=1, retries=1, timeout=8)) as reward:
        start = time.monotonic()
        with pytest.raises(RewardExecutorError, match="did not finish within 8 s") as info:
            reward(["a", "slow"])
        assert time.monotonic() - start < 30
        assert isinstance(info.value.__cause__, BatchTimeout) and "2 attempt(s)" in str(info.value)


def test_crashed_actor_is_replaced_and_its_batch_retried(tmp_path):
    with ParallelReward(functools.partial(DyingReward, str(tmp_path / "m")), config(batch_size=1)) as reward:
        assert reward(["a", "bb", "ccc"]).tolist() == [1.0, 2.0, 3.0]
        assert reward(["dddd", "eeeee"]).tolist() == [4.0, 5.0]
    with (ParallelReward(functools.partial(DyingReward, str(tmp_path / "m2")), config(retries=0)) as reward,
          pytest.raises(RewardExecutorError, match="1 attempt") as info):
        reward(["a"])
    assert isinstance(info.value.__cause__, ray.exceptions.RayActorError)


def test_lambda_factory_and_whole_cluster_sizing(caplog):
    """cloudpickle sends a lambda; workers=0 fits the cluster's CPUs; asking for more actors than fit warns."""
    cpus = int(ray.cluster_resources()["CPU"])
    with ParallelReward(lambda: IndexReward(), config(workers=0, cpus_per_worker=1)) as reward:
        assert reward.executor.capacity == max(1, cpus)
        assert np.array_equal(reward(["s:2", "s:1"]), [2.0, 1.0])
    with ParallelReward(IndexReward, config(workers=cpus + 1, cpus_per_worker=1)):  # no actor starts unused
        assert f"{cpus + 1} actors asked for, but the cluster has room for {cpus} now" in caplog.text
