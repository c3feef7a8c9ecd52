"""Quality of generated molecules against MOSES: validity, uniqueness, novelty, internal diversity,
property-distribution distances and (optionally) the Frechet ChemNet Distance."""

from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
from scipy import linalg
from scipy.stats import wasserstein_distance

from vidd.chem.molecules import mol_from_smiles, selfies_to_smiles
from vidd.chem.properties import internal_diversity, property_table
from vidd.data.fetch import cache_dir
from vidd.data.moses import load_moses


def decode_all(selfies: list[str]) -> list[str | None]:
    """Canonical SMILES per SELFIES string (None where there is no valid, non-empty molecule)."""
    return [selfies_to_smiles(s) for s in selfies]


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    return float(wasserstein_distance(a, b)) if len(a) and len(b) else float("nan")


@lru_cache(maxsize=1)
def moses_training_set() -> frozenset[str]:
    """Canonical SMILES of all 1.58M MOSES training molecules, for novelty (MOSES' own file is
    canonical RDKit SMILES; we re-canonicalise only the generated side)."""
    return frozenset(load_moses("train"))


@lru_cache(maxsize=4)
def reference_properties(size: int = 10_000, seed: int = 0) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """A seeded subset of the MOSES test set and its properties (cached to disk: ~15 s to compute)."""
    test = load_moses("test")
    smiles = tuple(random.Random(seed).sample(test, min(size, len(test))))
    path = cache_dir() / f"moses-test-properties-{len(smiles)}-seed{seed}.npz"
    if path.is_file():
        saved = np.load(path)
        return smiles, {k: saved[k] for k in saved.files}
    table = property_table([mol_from_smiles(s) for s in smiles])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **table)
    return smiles, table


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the rows of `a` and of `b`:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():  # a near-singular product: regularise as the FCD/FID references do
        offset = np.eye(len(s_a)) * 1e-6
        covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean.real))


def fcd(smiles: list[str], reference: list[str]) -> float:
    """Frechet ChemNet Distance: the Frechet distance of ChemNet's penultimate activations (package
    `fcd`, which ships ChemNet's weights; the distance is computed here, as the package's own helper
    breaks on current NumPy/SciPy). NaN without the package."""
    try:
        import fcd as fcd_package
    except ImportError:
        return float("nan")
    if not hasattr(np, "row_stack"):  # fcd 1.2.2's get_predictions calls numpy.row_stack (gone in NumPy 2.5)
        np.row_stack = np.vstack
    model = fcd_package.load_ref_model()
    return frechet_distance(fcd_package.get_predictions(model, list(smiles)),
                            fcd_package.get_predictions(model, list(reference)))


def molecule_metrics(selfies: list[str], reference: tuple[tuple[str, ...], dict] | None = None,
                     training: frozenset[str] | None = None, with_fcd: bool = False) -> dict:
    """MOSES-style metrics of generated SELFIES strings (see docs/metrics.md).

    `reference`: (SMILES, property table) to compare distributions with (no distances if None);
    `training`: SMILES of the training set for novelty (no novelty if None)."""
    smiles = decode_all(selfies)
    valid = [s for s in smiles if s is not None]
    unique = sorted(set(valid))
    out = {
        "n": len(selfies),
        "validity": len(valid) / max(1, len(selfies)),
        "uniqueness": len(unique) / max(1, len(valid)),
    }
    if training is not None:
        out["novelty"] = sum(s not in training for s in unique) / max(1, len(unique))
    mols = [mol_from_smiles(s) for s in valid]
    out["int_div"] = internal_diversity(mols)
    props = property_table(mols)
    for name, values in props.items():
        out[name] = float(values.mean()) if len(values) else float("nan")
    if reference is not None:
        ref_smiles, ref = reference
        for name, values in props.items():
            out[f"W1_{name}"] = wasserstein(values, ref[name])
        if with_fcd:
            out["FCD"] = fcd(valid, list(ref_smiles))
    return out
