"""The reward interface: a callable on a list of sequences returning one float per sequence."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vidd.core.seqio import append_scores, read_score_journal


class Reward:
    """Base class. Subclasses implement `score`; `__call__` checks the shape of what comes back.

    Attributes: `name`, `higher_is_better`, `differentiable` (True when `score_onehot` exists,
    i.e. the reward is a torch function of one-hot / relaxed sequences), `cost_hint`
    (rough seconds per sequence, used to plan batches and executors).
    """

    name: str = "reward"
    higher_is_better: bool = True
    differentiable: bool = False
    cost_hint: float = 0.0

    def score(self, seqs: list[str]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, seqs: list[str]) -> np.ndarray:
        values = np.asarray(self.score(list(seqs)), dtype=np.float64).reshape(-1)
        if values.shape[0] != len(seqs):
            raise ValueError(f"reward {self.name!r} returned {values.shape[0]} values for {len(seqs)} sequences")
        return values


class DifferentiableReward(Reward, torch.nn.Module):
    """A reward that is a torch function of (relaxed) one-hot sequences (B, L, V) -> (B,)."""

    differentiable = True

    def __init__(self):
        torch.nn.Module.__init__(self)

    def score_onehot(self, onehot: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class FunctionReward(Reward):
    """Wrap a plain callable `f(list[str]) -> sequence of floats` as a Reward."""

    def __init__(self, fn, name: str | None = None, higher_is_better: bool = True):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "reward")
        self.higher_is_better = higher_is_better

    def score(self, seqs):
        return self.fn(seqs)


class WeightedSum(Reward):
    """sum_i w_i r_i of rewards on the same sequences (NaN if any term is NaN)."""

    def __init__(self, terms: dict[str, tuple[float, Reward]], name: str = "weighted_sum"):
        self.terms, self.name = terms, name
        self.cost_hint = sum(r.cost_hint for _, r in terms.values())

    def components(self, seqs: list[str]) -> dict[str, np.ndarray]:
        return {k: r(seqs) for k, (_, r) in self.terms.items()}

    def combine(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        return sum(self.terms[k][0] * v for k, v in parts.items())

    def score(self, seqs):
        return self.combine(self.components(seqs))

    def columns(self, seqs: list[str], name: str) -> dict[str, np.ndarray]:
        """The sum as column `name`, then each term as `name_<term>` (every term scored once)."""
        parts = self.components(seqs)
        return {name: self.combine(parts), **{f"{name}_{k}": v for k, v in parts.items()}}


class BatchCache:
    """A batched function of sequences (e.g. a structure predictor), computed once per distinct sequence in
    batches of `batch_size`; the results of the last `size` sequences are kept."""

    def __init__(self, compute: Callable[[list[str]], list], batch_size: int = 8, size: int = 4096):
        self.compute, self.batch_size, self.size = compute, batch_size, size
        self.results: OrderedDict[str, object] = OrderedDict()

    def __call__(self, seqs: list[str]) -> list:
        todo = list(dict.fromkeys(s for s in seqs if s not in self.results))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            self.results.update(zip(batch, self.compute(batch)))
        for s in seqs:
            self.results.move_to_end(s)
        while len(self.results) > max(self.size, len(seqs)):
            self.results.popitem(last=False)
        return [self.results[s] for s in seqs]


class CachedReward(Reward):
    """A deterministic reward (e.g. docking with a fixed seed) that scores each distinct sequence once: the
    per-sequence table and the metrics of one evaluation then share one scoring. The last `size` sequences'
    values are kept; all new sequences of a call go to `reward` in one batch (so a parallel reward spreads them),
    unless a journal is kept (`keep_in`)."""

    def __init__(self, reward: Reward, size: int = 100_000):
        self.reward, self.journal, self.journaled = reward, None, set()
        self.name, self.higher_is_better, self.cost_hint = reward.name, reward.higher_is_better, reward.cost_hint
        self.values = BatchCache(self._compute, batch_size=size, size=size)

    def keep_in(self, path, batch_size: int = 32) -> CachedReward:
        """Answer the sequences the score journal `path` holds, and append each new batch of `batch_size` values
        to it as soon as it is scored: a long scoring that is interrupted resumes where it stopped. A value
        answered from memory (scored before, e.g. for another journal) is appended too, so the journal holds
        every score asked for while it was kept. A value that is not finite (a failed scoring) stays in memory but
        is not journaled, so that a rerun tries it again. `path` None stops journaling."""
        if path is None:
            self.journal, self.journaled, self.values.batch_size = None, set(), self.values.size
            return self
        self.journal = Path(path)
        self.values.batch_size = batch_size
        kept = read_score_journal(self.journal)
        self.values.results.update(kept)
        self.journaled = set(kept)
        return self

    def _compute(self, batch: list[str]) -> list[float]:
        values = list(self.reward(batch))
        self._journal(batch, values)
        return values

    def _journal(self, seqs: list[str], values: list[float]) -> None:
        if self.journal is None:
            return
        new = {s: v for s, v in zip(seqs, values) if s not in self.journaled and math.isfinite(v)}
        if new:
            append_scores(self.journal, list(new), list(new.values()))
            self.journaled.update(new)

    def score(self, seqs):
        values = self.values(seqs)
        self._journal(seqs, values)  # the values answered from memory
        return np.array(values, dtype=np.float64)

    def __repr__(self) -> str:
        return f"CachedReward({self.reward!r})"


def as_reward(obj) -> Reward:
    return obj if isinstance(obj, Reward) else FunctionReward(obj)
