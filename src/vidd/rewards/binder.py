"""Binder design against a fixed target (the paper's PD-L1 task): a reward on a structure predictor's view of
the binder-target complex, with the predictor plugged in by the user.

The paper scores a binder of length L with ColabDesign's AlphaFold2-multimer `binder` protocol as

    reward = 1.0 * ipTM + 0.1 * pLDDT - 0.02 * ELU(Rg - Rg_th),    Rg_th = 2.38 * L^0.365

(ipTM and pLDDT in [0, 1]; Rg the radius of gyration of the binder's Cα atoms, Angstrom; ColabDesign's
`rg` loss). AlphaFold2, ColabDesign and their parameters cannot be installed or downloaded here, so vidd
defines what a predictor must give (`StructurePredictor.predict` -> `ComplexPrediction`s) and computes the
reward from it (`BinderReward`); docs/tasks/protein.md shows how a ColabDesign set-up plugs in.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from vidd.core.errors import UserError
from vidd.rewards.base import BatchCache, Reward
from vidd.rewards.structure import radius_of_gyration, read_backbone


@dataclass(frozen=True)
class BinderTarget:
    """The protein to bind: one chain of a PDB file (e.g. PD-L1 residues 18-132, chain A), read at once so that
    a wrong file or chain fails before any work."""

    pdb: str
    chain: str = "A"
    sequence: str = field(init=False)  # the chain's amino acids that have a full backbone

    def __post_init__(self):
        object.__setattr__(self, "sequence", read_backbone(Path(self.pdb), self.chain)[0])


@dataclass(frozen=True)
class ComplexPrediction:
    """What the reward needs of one predicted binder-target complex."""

    iptm: float  # interface pTM of the complex, [0, 1]
    plddt: float  # mean pLDDT of the binder's residues, [0, 1]
    binder_ca: np.ndarray  # (L, 3) Cα coordinates of the binder, Angstrom


@runtime_checkable
class StructurePredictor(Protocol):
    """A structure predictor of binder-target complexes, e.g. AlphaFold2-multimer through ColabDesign."""

    def predict(self, binders: list[str], target: BinderTarget) -> list[ComplexPrediction]:
        """One prediction per binder sequence, in order, each of the binder in complex with `target`."""


#: the reward's terms and the paper's weights (`--reward_weight 1,0.1,0.02`)
BINDER_WEIGHTS = {"iptm": 1.0, "plddt": 0.1, "compactness": 0.02}


def rg_threshold(length: int) -> float:
    """The radius of gyration (Angstrom) above which a binder of `length` residues is penalised: 2.38 L^0.365."""
    return 2.38 * length ** 0.365


def rg_penalty(ca: np.ndarray) -> float:
    """ELU(Rg - Rg_th) of Cα coordinates (L, 3): about -1 for a compact binder, growing linearly once its
    radius of gyration exceeds the threshold."""
    excess = radius_of_gyration(ca) - rg_threshold(len(ca))
    return excess if excess > 0 else math.expm1(excess)


def binder_terms(prediction: ComplexPrediction) -> dict[str, float]:
    """The reward's terms of one prediction (higher is better): ipTM, pLDDT, compactness = -ELU(Rg - Rg_th)."""
    return {"iptm": float(prediction.iptm), "plddt": float(prediction.plddt),
            "compactness": -rg_penalty(prediction.binder_ca)}


def load_predictor(spec: str) -> StructurePredictor:
    """A predictor from an import path 'package.module:factory', `factory` a class or zero-argument function."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise UserError(f"predictor: expected 'package.module:factory', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise UserError(f"predictor {spec!r} cannot be imported: {type(e).__name__}: {e}") from e
    predictor = factory()
    if not isinstance(predictor, StructurePredictor):
        raise UserError(f"predictor {spec!r} built a {type(predictor).__name__}, which has no "
                        f"predict(binders, target) method")
    return predictor


class BinderReward(Reward):
    """w_iptm * ipTM + w_plddt * pLDDT - w_compactness * ELU(Rg - Rg_th) of each binder in complex with `target`
    (`weights`: of the terms of `binder_terms`, default the paper's; a term missing from them weighs 0).

    `predictor`: a `StructurePredictor`, or its import path ('package.module:factory', built at the first
    call: in the worker that scores, once, and the reward stays picklable). Predictions are cached per
    sequence, so `components` and the reward of one sequence share one prediction."""

    name = "binder"

    def __init__(self, predictor: StructurePredictor | str, target: BinderTarget,
                 weights: dict[str, float] | None = None, batch_size: int = 8):
        weights = dict(BINDER_WEIGHTS if weights is None else weights)
        unknown = sorted(set(weights) - set(BINDER_WEIGHTS))
        if unknown:
            raise ValueError(f"weights: unknown term(s) {unknown}; terms: {sorted(BINDER_WEIGHTS)}")
        self.predictor_spec = predictor
        self.target, self.weights, self.batch_size = target, weights, batch_size

    @cached_property
    def predictions(self) -> BatchCache:
        spec = self.predictor_spec
        predictor = load_predictor(spec) if isinstance(spec, str) else spec
        return BatchCache(lambda batch: self._checked(predictor.predict(batch, self.target), batch),
                          self.batch_size)

    @staticmethod
    def _checked(predictions: list, batch: list[str]) -> list[ComplexPrediction]:
        if len(predictions) != len(batch):
            raise ValueError(f"the predictor returned {len(predictions)} predictions for {len(batch)} binders")
        for p, s in zip(predictions, batch):
            if np.shape(p.binder_ca) != (len(s), 3):
                raise ValueError(f"the predictor returned binder_ca of shape {np.shape(p.binder_ca)} for a binder "
                                 f"of {len(s)} residues (expected ({len(s)}, 3))")
        return predictions

    def components(self, seqs: list[str]) -> dict[str, np.ndarray]:
        """ipTM, pLDDT and compactness of each binder."""
        terms = [binder_terms(p) for p in self.predictions(list(seqs))]
        return {k: np.array([t[k] for t in terms]) for k in BINDER_WEIGHTS}

    def combine(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        return sum(self.weights.get(k, 0.0) * v for k, v in parts.items())

    def score(self, seqs):
        return self.combine(self.components(seqs))
