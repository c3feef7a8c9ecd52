"""Antibody rewards on heavy-chain variable domains (VH strings of one fixed length).

The antibody task redesigns CDR-H3 at its native length inside a fixed framework, so every sequence it
produces has the native's CDR boundaries: the rewards take the CDRs as index ranges [start, end) into the
sequence (from the native's IMGT numbering, `vidd.data.antibodies`) instead of numbering every sample.

- `DevelopabilityReward`: Biopython ProtParam on the heavy-chain CDRs (H1 + H2 + H3 concatenated), a hinge
  penalty outside documented target ranges (higher is better, 0 = inside every range).
- `NaturalnessReward`: AntiBERTy log-likelihood of the designed residues (given as sequence indices), in
  nats per residue, either the masked marginal (all of them masked at once, one forward per sequence: the
  training reward) or the pseudo-log-likelihood (each masked alone, one forward per position: the
  evaluation).
- `BindingReward`: a user's assay oracle (`vidd.rewards.assay_oracle`) on each VH's CDR-H3 loop or on the
  whole VH.
- `IgFoldReward` (extra `[antibody]`; IgFold is licensed for academic, non-commercial use only): folds the
  VH with a fixed VL and scores either minus the mean predicted error (pRMSD, Angstrom) of the CDR-H3
  residues, or minus |beta-strand fraction of CDR-H3 (pydssp DSSP on the predicted backbone) - target|.

Scores are NaN for sequences that cannot be scored (a letter outside the 20 amino acids, the wrong length);
the counted interface's failure policy decides what NaN becomes.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from Bio.SeqUtils.ProtParam import ProteinAnalysis

from vidd.core.alphabets import PROTEIN
from vidd.core.extras import require
from vidd.diffusion.loaders import ANTIBERTY_VOCAB, antiberty_weights_dir, load_antiberty_lm
from vidd.rewards.assay_oracle import AssayOracleReward
from vidd.rewards.base import Reward

Region = tuple[int, int]  # [start, end) indices in the VH sequence


@dataclass(frozen=True)
class TargetRange:
    low: float = -np.inf
    high: float = np.inf
    scale: float = 1.0  # the penalty is (distance outside the range) / scale

    def penalty(self, value: float) -> float:
        return max(0.0, self.low - value, value - self.high) / self.scale


#: target ranges of the developability score (docs/tasks/antibody.md): hydrophobic CDRs (GRAVY, Kyte-Doolittle)
#: go with aggregation and poly-specificity; strongly charged CDRs with poly-specificity and fast clearance
#: (TAP, Raybould et al. 2019, flags charge extremes); an instability index above 40 predicts an unstable
#: protein (Guruprasad et al. 1990)
DEVELOPABILITY_TARGETS: dict[str, TargetRange] = {
    "gravy": TargetRange(high=-0.5, scale=0.5),
    "charge": TargetRange(low=-2.0, high=2.0, scale=1.0),
    "pi": TargetRange(low=5.0, high=9.0, scale=1.0),
    "instability": TargetRange(high=40.0, scale=10.0),
}
PH = 7.4


class SequenceReward(Reward):
    """A reward over VH strings of one length: unscorable strings (bad letters, other lengths) get NaN."""

    length: int | None = None

    def scorable(self, seqs: list[str]) -> list[bool]:
        letters = set(PROTEIN.letters)
        return [(self.length is None or len(s) == self.length) and set(s) <= letters for s in seqs]

    def score(self, seqs):
        ok = self.scorable(seqs)
        out = np.full(len(seqs), np.nan)
        good = [s for s, k in zip(seqs, ok) if k]
        if good:
            out[np.flatnonzero(ok)] = self.score_valid(good)
        return out

    def score_valid(self, seqs: list[str]) -> np.ndarray:
        raise NotImplementedError


def cdr_properties(cdrs: str) -> dict[str, float]:
    """ProtParam properties of a CDR string: GRAVY, net charge at pH 7.4, pI, instability index."""
    p = ProteinAnalysis(cdrs)
    return {"gravy": p.gravy(), "charge": p.charge_at_pH(PH), "pi": p.isoelectric_point(),
            "instability": p.instability_index()}


def developability_score(properties: dict[str, float], targets: dict[str, TargetRange] = DEVELOPABILITY_TARGETS) -> float:
    """-(sum of the range penalties): 0 inside every target range, lower the further outside."""
    return -sum(t.penalty(properties[k]) for k, t in targets.items())


class DevelopabilityReward(SequenceReward):
    name = "developability"
    cost_hint = 1e-4

    def __init__(self, cdrs: list[Region], length: int | None = None,
                 targets: dict[str, TargetRange] = DEVELOPABILITY_TARGETS):
        self.cdrs, self.length, self.targets = list(cdrs), length, targets

    def cdr_string(self, seq: str) -> str:
        return "".join(seq[a:b] for a, b in self.cdrs)

    def score_valid(self, seqs):
        return np.array([developability_score(cdr_properties(self.cdr_string(s)), self.targets) for s in seqs])


@functools.lru_cache(maxsize=2)
def _antiberty(weights_dir: str | None):
    return load_antiberty_lm(weights_dir)


class NaturalnessReward(SequenceReward):
    """AntiBERTy log-likelihood of the residues at `positions` (sequence indices; nats per residue, higher =
    more natural).

    masked-marginal: mask every one of `positions` at once ([CLS] VH [SEP], nothing else masked) and average
    log p(true residue) over them; pseudo: mask one position at a time (the rest of the VH visible) and
    average. Probabilities are over the 20 amino acids (special tokens excluded)."""

    name = "naturalness"

    def __init__(self, positions: Sequence[int], length: int | None = None, mode: str = "masked-marginal",
                 weights_dir: str | None = None, batch_size: int = 64):
        if mode not in ("masked-marginal", "pseudo"):
            raise ValueError(f"mode: 'masked-marginal' or 'pseudo', got {mode!r}")
        self.positions, self.length, self.mode = sorted(positions), length, mode
        if not self.positions:
            raise ValueError("positions: give at least one")
        self.weights_dir, self.batch_size = weights_dir, batch_size
        self.cost_hint = 0.05 if mode == "masked-marginal" else 0.05 * len(self.positions)

    def scorable(self, seqs):
        return [ok and len(s) > self.positions[-1] for ok, s in zip(super().scorable(seqs), seqs)]

    def score_valid(self, seqs):
        out = np.empty(len(seqs))
        for length in set(map(len, seqs)):  # one batch shape per length
            index = [i for i, s in enumerate(seqs) if len(s) == length]
            out[index] = self._score_same_length([seqs[i] for i in index])
        return out

    @torch.no_grad()
    def _score_same_length(self, seqs: list[str]) -> np.ndarray:
        lm = _antiberty(self.weights_dir)
        vocab = {t: i for i, t in enumerate(ANTIBERTY_VOCAB)}
        letters = torch.tensor([vocab[c] for c in PROTEIN.letters])
        tokens = torch.tensor([[vocab["[CLS]"], *(vocab[c] for c in s), vocab["[SEP]"]] for s in seqs])
        labels = torch.tensor([[0, *(PROTEIN.letters.index(c) for c in s), 0] for s in seqs])  # letter indices
        positions = [p + 1 for p in self.positions]  # +1: [CLS]
        # rows: (sequence index, positions masked together)
        rows = ([(i, positions) for i in range(len(seqs))] if self.mode == "masked-marginal"
                else [(i, [p]) for i in range(len(seqs)) for p in positions])
        total = torch.zeros(len(seqs), dtype=torch.float64)
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            index = torch.tensor([i for i, _ in chunk])
            x = tokens[index].clone()
            masked = torch.zeros_like(x, dtype=torch.bool)
            for r, (_, ps) in enumerate(chunk):
                masked[r, ps] = True
            x[masked] = vocab["[MASK]"]
            # log-probabilities over the 20 amino acids (special tokens excluded, as antiberty's own scorer does)
            log_p = torch.log_softmax(lm(input_ids=x).prediction_logits[..., letters].double(), -1)
            true_lp = log_p.gather(-1, labels[index].unsqueeze(-1)).squeeze(-1)
            total.index_add_(0, index, torch.where(masked, true_lp, torch.zeros_like(true_lp)).sum(-1))
        return (total / len(positions)).numpy()


class BindingReward(SequenceReward):
    """A user's assay oracle (`vidd train-oracle --data`) on each VH's `region` (the CDR-H3 loop), or on the
    whole VH when `region` is None: the `binding` term of the antibody tasks."""

    name = "binding"

    def __init__(self, oracle: AssayOracleReward, region: Region | None, length: int | None = None):
        self.oracle, self.region, self.length = oracle, region, length
        self.cost_hint = oracle.cost_hint

    def score_valid(self, seqs):
        return self.oracle([s[slice(*self.region)] for s in seqs] if self.region else seqs)


# ---------------------------------------------------------------- IgFold (extra [antibody])
IGFOLD_LICENCE = ("IgFold is distributed under the JHU academic software licence: academic, non-commercial "
                  "use only (https://github.com/Graylab/IgFold/blob/main/LICENSE.md)")


@functools.lru_cache(maxsize=1)
def _igfold_runner(num_models: int):
    igfold = require("igfold", "antibody", f"the IgFold structure rewards ({IGFOLD_LICENCE})")
    os.environ.setdefault("ANTIBERTY_WEIGHTS_DIR", str(antiberty_weights_dir()))  # IgFold embeds with AntiBERTy
    with contextlib.redirect_stdout(io.StringIO()):
        return igfold.IgFoldRunner(num_models=num_models)


@dataclass(frozen=True)
class Fold:
    """What the rewards need of one IgFold prediction of a VH + VL pair (heavy chain first)."""

    prmsd: np.ndarray  # (L_H + L_L,) mean predicted error per residue (Angstrom) over its 4 backbone atoms
    dssp: str  # pydssp 3-state assignment per residue: H (helix), E (strand), - (loop)


@functools.lru_cache(maxsize=4096)
def fold_antibody(heavy: str, light: str, num_models: int = 1) -> Fold:
    """IgFold (no refinement, no renumbering) then pydssp on its N, CA, C, O coordinates; cached per pair, so
    the two structure rewards of one sequence share one prediction."""
    pydssp = require("pydssp", "antibody", "the beta-strand reward")
    runner = _igfold_runner(num_models)
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        out = runner.fold(None, sequences={"H": heavy, "L": light}, skip_pdb=True, do_refine=False, do_renum=False)
    coords = out.coords[0].detach().cpu().numpy()  # (L, 5, 3): N, CA, C, CB, O
    dssp = "".join(pydssp.assign(coords[:, [0, 1, 2, 4]], out_type="c3"))
    return Fold(out.prmsd[0].detach().cpu().double().mean(-1).numpy(), dssp)


class IgFoldReward(SequenceReward):
    """Structure reward of a VH (with a fixed VL) from one IgFold prediction; folds are cached per sequence.

    kind "h3_error": -(mean predicted error of the `region` residues), Angstrom (lower error is better);
    kind "beta_match": -|fraction of `region` residues in a beta strand (DSSP E) - target|.
    """

    cost_hint = 4.0  # seconds per VH on 2 CPU cores (one model)

    def __init__(self, light: str, region: Region, kind: str = "h3_error", length: int | None = None,
                 beta_target: float = 0.5, num_models: int = 1):
        if kind not in ("h3_error", "beta_match"):
            raise ValueError(f"kind: 'h3_error' or 'beta_match', got {kind!r}")
        self.light, self.region, self.kind, self.length = light, region, kind, length
        self.beta_target, self.num_models = beta_target, num_models
        self.name = f"igfold_{kind}"

    def fold(self, seq: str) -> Fold:
        return fold_antibody(seq, self.light, self.num_models)

    def h3_error(self, seq: str) -> float:
        a, b = self.region
        return float(self.fold(seq).prmsd[a:b].mean())

    def beta_fraction(self, seq: str) -> float:
        a, b = self.region
        return self.fold(seq).dssp[a:b].count("E") / (b - a)

    def score_valid(self, seqs):
        if self.kind == "h3_error":
            return np.array([-self.h3_error(s) for s in seqs])
        return np.array([-abs(self.beta_fraction(s) - self.beta_target) for s in seqs])
