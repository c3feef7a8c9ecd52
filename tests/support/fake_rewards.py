"""Fake rewards for the executor tests: module level in an importable module, so worker processes
(spawned, forked or Ray actors) can unpickle their factories."""

import os
import random
import time
from pathlib import Path

import numpy as np

from vidd.rewards.base import Reward




class IndexReward(Reward):
    """The value is the index written in the sequence ("seq:17" -> 17), after a random short sleep."""

    name = "index"
    higher_is_better = False
    cost_hint = 0.5

    def score(self, seqs):
        time.sleep(random.uniform(0, 0.01) * len(seqs))
        return [float(s.split(":")[1]) for s in seqs]


class PidLogReward(Reward):
    """Writes its process id to `path` when built; scores the length."""

    name = "pidlog"

    def __init__(self, path):
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")

    def score(self, seqs):
        return [float(len(s)) for s in seqs]


class LogReward(Reward):
    """Appends every scored sequence to `path`; NaN for sequences starting with 'bad'."""

    name = "log"

    def __init__(self, path):
        self.path = path

    def score(self, seqs):
        with open(self.path, "a") as f:
            f.write("".join(s + "\n" for s in seqs))
        return [np.nan if s.startswith("bad") else float(len(s)) for s in seqs]


class FlakyReward(Reward):
    """Fails the first time any batch is scored (across processes, through a marker file)."""

    name = "flaky"

    def __init__(self, marker):
        self.marker = marker

    def score(self, seqs):
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            raise RuntimeError("transient failure")
        return [float(len(s)) for s in seqs]


class BrokenReward(Reward):
    name = "docking"

    def score(self, seqs):
        raise ValueError("receptor grid missing")


class SlowReward(Reward):
    """Sleeps `seconds` on batches containing 'slow' (only the first time when `once` is a marker path), and
    `build_seconds` when built (a model or a receptor's maps loading)."""

    name = "slow"

    def __init__(self, seconds, once=None, build_seconds=0.0):
        self.seconds, self.once = seconds, once
        time.sleep(build_seconds)

    def score(self, seqs):
        if "slow" in seqs and not (self.once and os.path.exists(self.once)):
            if self.once:
                Path(self.once).touch()
            time.sleep(self.seconds)
        return [float(len(s)) for s in seqs]


class DyingReward(Reward):
    """The worker process dies (as if killed for memory) on the first batch, across processes."""

    name = "dying"

    def __init__(self, marker):
        self.marker = marker

    def score(self, seqs):
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return [float(len(s)) for s in seqs]
