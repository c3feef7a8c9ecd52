"""What a fine-tuning method sees: the three models, the counted reward, randomness and timers."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from vidd.diffusion.masked import MaskedDiffusion
from vidd.rewards.counted import CountedReward


@dataclass
class Context:
    student: MaskedDiffusion  # p^theta, trained
    rollout: MaskedDiffusion  # p^out, the lazily updated copy of the student
    pretrained: MaskedDiffusion  # p^pre, frozen
    reward: CountedReward
    generator: torch.Generator  # all randomness of `collect`: the trainer gives each chunk its own
    steps: int  # denoising steps T of roll-ins
    iteration: int = 0
    chunk: int = 0  # index of the accumulation chunk being collected (0 .. accumulation - 1)
    total_iterations: int = 1
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def model(self, which: str) -> MaskedDiffusion:
        """'student' | 'rollout' | 'pretrained'."""
        return {"student": self.student, "rollout": self.rollout, "pretrained": self.pretrained}[which]

    @contextmanager
    def timed(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start

    def rewards(self, tokens: torch.Tensor) -> np.ndarray:
        """Training reward of clean token sequences (B, L), through the counted interface."""
        seqs = self.student.alphabet.decode(tokens.cpu())
        before = self.reward.seconds
        values = self.reward(seqs)
        self.seconds["reward"] += self.reward.seconds - before
        return values
