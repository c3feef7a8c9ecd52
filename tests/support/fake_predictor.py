"""A stand-in for an AlphaFold2-multimer set-up behind `vidd.rewards.binder.StructurePredictor`, with outputs
known in closed form: ipTM = the binder's fraction of W, pLDDT = its fraction of L, and its Cα atoms on a
straight line 3.8 Angstrom apart (radius of gyration 3.8 sqrt((n^2 - 1) / 12) for n residues)."""

from __future__ import annotations

import numpy as np

from vidd.rewards.binder import BinderTarget, ComplexPrediction

CA_SPACING = 3.8


class FakePredictor:
    def __init__(self):
        self.calls: list[tuple[list[str], str]] = []  # (binders, target sequence) of every call

    def predict(self, binders: list[str], target: BinderTarget) -> list[ComplexPrediction]:
        self.calls.append((list(binders), target.sequence))
        return [ComplexPrediction(s.count("W") / len(s), s.count("L") / len(s),
                                  np.arange(len(s))[:, None] * np.array([CA_SPACING, 0.0, 0.0]))
                for s in binders]
