"""The one door every training-reward call goes through: cache, counter, budget, failure policy.

Oracle calls are the real cost in biology, so every *distinct* sequence sent to the underlying
reward is counted; repeated sequences are answered from the cache for free.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vidd.core.config import ConfigError, option
from vidd.core.errors import UserError
from vidd.rewards.base import Reward, WeightedSum, as_reward
from vidd.rewards.executors import ExecutorConfig

log = logging.getLogger(__name__)


class RewardFailure(UserError, RuntimeError):
    pass


class BudgetExhausted(RuntimeError):
    """A training-reward call that would take the distinct calls past `budget`; nothing was evaluated."""


@dataclass
class RewardPolicy:
    cache: bool = option(True, "answer repeated sequences from a cache (not counted again)")
    budget: int = option(0, "distinct training-reward calls a run may make, never more: the last collection is "
                            "trimmed, or training stops, before the budget would be exceeded (0: no budget)")
    on_failure: Literal["error", "penalty"] = option(
        "error", "what a NaN/inf value or an exception from the reward becomes: stop with an error, "
                 "or the `penalty` value (logged and counted as failures)")
    penalty: float = option(-10.0, "value given to failed sequences when on_failure = penalty")
    max_failure_fraction: float = option(
        0.5, "with on_failure = penalty: end the run with an error once more than this fraction of the sequences "
             "scored failed (a reward that fails everywhere trains on a constant); 1: never")
    terms: dict = option(
        {}, "weights of the task's named reward terms, e.g. {developability: 1, naturalness: 1, igfold: 1} for "
            "antibody-cdrh3 (empty: the task's default training reward)")
    executor: ExecutorConfig = option(
        ExecutorConfig(), "where a task's training reward runs (`vidd finetune`, `vidd bench`): inline, or "
                          "batched on a serial / process-pool / Ray executor with retries and timeouts")

    def validate(self):
        if self.budget < 0:
            raise ConfigError(f"budget: must be >= 0 (0: no budget), got {self.budget}")
        if not math.isfinite(self.penalty):
            raise ConfigError(f"penalty: must be a finite number, got {self.penalty}")
        if not 0 < self.max_failure_fraction <= 1:
            raise ConfigError(f"max_failure_fraction: must lie in (0, 1] (1: never stop), got "
                              f"{self.max_failure_fraction}")


class CountedReward:
    def __init__(self, reward, policy: RewardPolicy | None = None):
        self.reward: Reward = as_reward(reward)
        self.policy = policy or RewardPolicy()
        self.cache: dict[str, float] = {}
        self.calls = 0
        self.monitor_calls = 0
        self.failures = 0
        self.seconds = 0.0
        #: None, or (data-parallel training) a dict noting every newly cached sequence as sequence ->
        #: (value, paid through __call__) until the trainer merges the processes' caches and counters
        self.journal: dict[str, tuple[float, bool]] | None = None
        #: calls are serialised: with `overlap`, two accumulation chunks may call from two threads
        self._lock = threading.RLock()

    @property
    def name(self) -> str:
        return self.reward.name

    @property
    def remaining(self) -> int | None:
        """Calls left in the budget (None: no budget)."""
        return self.policy.budget - self.calls if self.policy.budget > 0 else None

    def check_budget(self, n: int) -> None:
        """Refuse `n` more distinct calls when they would exceed the budget."""
        if self.policy.budget > 0 and self.calls + n > self.policy.budget:
            raise BudgetExhausted(f"{n} more reward calls would exceed the budget of {self.policy.budget} "
                                  f"({self.calls} made)")

    def check_failures(self) -> None:
        """Stop (RewardFailure) once more than `policy.max_failure_fraction` of the sequences scored failed."""
        scored = self.calls + self.monitor_calls
        if scored and self.failures > self.policy.max_failure_fraction * scored:
            raise RewardFailure(
                f"reward {self.name!r} failed on {self.failures} of the {scored} sequences scored "
                f"({self.failures / scored:.0%}), more than reward.max_failure_fraction = "
                f"{self.policy.max_failure_fraction:g}: the run would train on penalties; fix the reward (its "
                f"failures are logged) or raise reward.max_failure_fraction")

    def __call__(self, seqs: list[str]) -> np.ndarray:
        with self._lock:
            return self._call(list(seqs))

    def _call(self, seqs: list[str]) -> np.ndarray:
        todo = list(dict.fromkeys(s for s in seqs if s not in self.cache)) if self.policy.cache else seqs
        if todo:
            self.check_budget(len(todo))
            start = time.perf_counter()
            values = self._evaluate(todo)
            self.seconds += time.perf_counter() - start
            self.calls += len(todo)
            if not self.policy.cache:
                return values
            self._remember(todo, values.tolist(), paid=True)
        return np.array([self.cache[s] for s in seqs], dtype=np.float64)

    def record(self, seqs: list[str], values) -> None:
        """Count evaluations made outside `__call__` (e.g. a differentiable reward scored on relaxed
        one-hot samples by DRAKES): every row counts against the budget, and the values enter the cache
        so the same sequences are not paid for again."""
        seqs = list(seqs)
        with self._lock:
            self.check_budget(len(seqs))
            self.calls += len(seqs)
            if self.policy.cache:
                self._remember(seqs, np.asarray(values, dtype=np.float64).reshape(-1).tolist(), paid=False)

    def _remember(self, seqs: list[str], values: list[float], paid: bool) -> None:
        self.cache.update(zip(seqs, values))
        if self.journal is not None:
            self.journal.update((s, (v, paid)) for s, v in zip(seqs, values))

    def monitor(self, seqs: list[str]) -> np.ndarray:
        """Score samples for monitoring only: counted apart (`monitor_calls`), not against the budget,
        and kept out of the cache so training-call accounting does not depend on evaluation frequency."""
        seqs = list(seqs)
        with self._lock:
            todo = list(dict.fromkeys(s for s in seqs if s not in self.cache))
            fresh = dict(zip(todo, self._evaluate(todo).tolist())) if todo else {}
            self.monitor_calls += len(todo)
            return np.array([self.cache.get(s, fresh.get(s)) for s in seqs], dtype=np.float64)

    def monitor_table(self, seqs: list[str]) -> dict[str, np.ndarray]:
        """Per-sequence columns for monitoring: `reward` (as `monitor`) and, for a weighted sum scored in this
        process, each term as `reward_<term>`; then every distinct sequence is scored term by term (the cache
        holds totals only) and counted as a monitor call."""
        if not isinstance(self.reward, WeightedSum):
            return {"reward": self.monitor(seqs)}
        unique = list(dict.fromkeys(seqs))
        with self._lock:
            try:
                columns = self.reward.columns(unique, "reward")
            except Exception:  # the reward is user code: its total goes through the failure policy instead
                return {"reward": self.monitor(seqs)}
            self.monitor_calls += len(unique)
        where = {s: i for i, s in enumerate(unique)}
        rows = [where[s] for s in seqs]
        return {k: v[rows] for k, v in columns.items()}

    def _evaluate(self, seqs: list[str]) -> np.ndarray:
        try:
            values = self.reward(seqs)
        except Exception as e:  # the reward is user code: apply the declared policy
            if self.policy.on_failure == "error":
                raise RewardFailure(f"reward {self.name!r} failed on a batch of {len(seqs)}: {e!r}") from e
            log.warning("reward %r failed on a batch of %d (%r); penalty %s applied",
                        self.name, len(seqs), e, self.policy.penalty)
            self.failures += len(seqs)
            return np.full(len(seqs), self.policy.penalty)
        bad = ~np.isfinite(values)
        if bad.any():
            first = seqs[int(np.argmax(bad))]
            if self.policy.on_failure == "error":
                raise RewardFailure(
                    f"reward {self.name!r} returned {int(bad.sum())} non-finite value(s), e.g. for "
                    f"{first[:60]!r}; set reward.on_failure=penalty to replace them")
            log.warning("reward %r: %d non-finite values replaced by penalty %s", self.name, int(bad.sum()),
                        self.policy.penalty)
            self.failures += int(bad.sum())
            values = np.where(bad, self.policy.penalty, values)
        return values

    def state_dict(self) -> dict:
        return {"cache": dict(self.cache), "calls": self.calls, "monitor_calls": self.monitor_calls,
                "failures": self.failures, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.cache = dict(state["cache"])
        self.calls, self.failures, self.seconds = state["calls"], state["failures"], state["seconds"]
        self.monitor_calls = state["monitor_calls"]
