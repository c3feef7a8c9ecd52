"""Molecular properties from RDKit: QED, synthetic accessibility (SA), weight, logP, fingerprints."""

from __future__ import annotations

import os
import sys
from functools import lru_cache

import numpy as np

from vidd.chem.molecules import require


@lru_cache(maxsize=1)
def _sascorer():
    """Ertl & Schuffenhauer's SA score, shipped in RDKit's Contrib folder (not an importable module)."""
    require("rdkit")
    from rdkit.Chem import RDConfig

    folder = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if not os.path.isfile(os.path.join(folder, "sascorer.py")):
        raise ImportError(f"RDKit's SA_Score contribution is missing from {folder}")
    if folder not in sys.path:
        sys.path.append(folder)
    import sascorer

    return sascorer


def qed(mol) -> float:
    from rdkit.Chem import QED

    return float(QED.qed(mol))


def sa_score(mol) -> float:
    """1 (easy to make) .. 10 (hard)."""
    return float(_sascorer().calculateScore(mol))


def molecular_weight(mol) -> float:
    from rdkit.Chem import Descriptors

    return float(Descriptors.MolWt(mol))


def logp(mol) -> float:
    from rdkit.Chem import Crippen

    return float(Crippen.MolLogP(mol))


#: properties compared between generated and reference molecules (docs/metrics.md)
PROPERTIES = {"QED": qed, "SA": sa_score, "MW": molecular_weight, "logP": logp}


def property_table(mols) -> dict[str, np.ndarray]:
    return {name: np.array([f(m) for m in mols], dtype=np.float64) for name, f in PROPERTIES.items()}


def fingerprints(mols, radius: int = 2, bits: int = 1024):
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    return [gen.GetFingerprint(m) for m in mols]


def internal_diversity(mols) -> float:
    """1 - mean Tanimoto similarity of Morgan fingerprints (radius 2, 1024 bits) over the m(m-1)
    ordered pairs of distinct molecules (MOSES' IntDiv1 without the self-pairs)."""
    from rdkit import DataStructs

    fps = fingerprints(mols)
    m = len(fps)
    if m < 2:
        return float("nan")
    total = sum(sum(DataStructs.BulkTanimotoSimilarity(fps[i], fps[i + 1:])) for i in range(m - 1))
    return float(1.0 - 2.0 * total / (m * (m - 1)))
