"""Small-molecule rewards on SELFIES strings: QED, SA, their combination, and AutoDock Vina docking.

A molecule a reward cannot score (the empty molecule, a failed embedding or docking) gets NaN,
never a made-up number: `CountedReward` then applies the run's failure policy (`reward.on_failure`)
and counts it, and the molecule tasks set that policy to a logged penalty.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from importlib.resources import files
from pathlib import Path

import numpy as np

from vidd.chem.molecules import mol_from_smiles, require, selfies_to_smiles
from vidd.chem.properties import qed, sa_score
from vidd.core.config import ConfigError, option
from vidd.rewards.base import Reward

log = logging.getLogger(__name__)


class MoleculeReward(Reward):
    """Decodes each SELFIES string and scores the RDKit molecule with `score_mol` (NaN if invalid)."""

    def score_mol(self, mol) -> float:
        raise NotImplementedError

    def score(self, seqs):
        values = []
        for s in seqs:
            smiles = selfies_to_smiles(s)
            values.append(self.score_mol(mol_from_smiles(smiles)) if smiles else float("nan"))
        return np.array(values, dtype=np.float64)


class QEDReward(MoleculeReward):
    """Quantitative estimate of drug-likeness (Bickerton et al. 2012), 0..1."""

    name = "QED"
    cost_hint = 1e-3

    def score_mol(self, mol):
        return qed(mol)


class SAReward(MoleculeReward):
    """Synthetic accessibility rescaled to 0 (hard, SA 10) .. 1 (easy, SA 1), so higher is better."""

    name = "SA"
    cost_hint = 5e-4

    def score_mol(self, mol):
        return (10.0 - sa_score(mol)) / 9.0


class DrugLikenessReward(MoleculeReward):
    """qed_weight * QED + sa_weight * (10 - SA) / 9."""

    name = "QED+SA"
    cost_hint = 1.5e-3

    def __init__(self, qed_weight: float = 1.0, sa_weight: float = 0.5):
        self.qed_weight, self.sa_weight = qed_weight, sa_weight

    def score_mol(self, mol):
        return self.qed_weight * qed(mol) + self.sa_weight * (10.0 - sa_score(mol)) / 9.0


# ------------------------------------------------------------------------------------------ docking

@dataclass
class DockingConfig:
    target: str = option("PARP1", "dockstring target (one of its 58 prepared receptors, e.g. PARP1, DRD2)")
    exhaustiveness: int = option(8, "Vina search exhaustiveness (1 is ~4x faster and noisier)")
    poses: int = option(1, "poses Vina refines; the best score is used")
    seed: int = option(0, "seed of the ligand embedding and of Vina's search")
    max_heavy_atoms: int = option(60, "molecules larger than this are not docked (NaN)")


def dockstring_targets() -> dict[str, tuple[Path, Path]]:
    """Target name -> (receptor PDBQT, box configuration) shipped in the `dockstring` package."""
    require("dockstring")
    root = Path(str(files("dockstring") / "resources" / "targets"))
    return {p.name[: -len("_target.pdbqt")]: (p, root / p.name.replace("_target.pdbqt", "_conf.txt"))
            for p in sorted(root.glob("*_target.pdbqt"))}


def read_box(conf: Path) -> tuple[list[float], list[float]]:
    values = {}
    for line in conf.read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = float(value)
    return ([values[f"center_{a}"] for a in "xyz"], [values[f"size_{a}"] for a in "xyz"])


class DockingReward(MoleculeReward):
    """Negative AutoDock Vina score (kcal/mol; higher is better, as in the paper's Table 1).

    Ligands are prepared from RDKit (hydrogens, ETKDG embedding, MMFF relaxation) by Meeko; the
    receptor's affinity maps are computed once per reward object, i.e. once per executor worker.
    Seconds per molecule: give it to a parallel executor (`reward.executor`)."""

    name = "docking"
    cost_hint = 10.0

    def __init__(self, config: DockingConfig | None = None):
        self.config = config or DockingConfig()
        targets = dockstring_targets()
        if self.config.target not in targets:
            raise ConfigError(f"docking.target: unknown target {self.config.target!r}; dockstring has "
                              f"{', '.join(targets)}")
        self.receptor, self.box_file = targets[self.config.target]
        self.failures = 0

    @cached_property
    def vina(self):
        vina = require("vina")
        v = vina.Vina(sf_name="vina", cpu=1, seed=self.config.seed, verbosity=0)
        v.set_receptor(str(self.receptor))
        center, size = read_box(self.box_file)
        v.compute_vina_maps(center=center, box_size=size)
        return v

    def ligand_pdbqt(self, mol) -> str:
        require("meeko")
        from meeko import MoleculePreparation, PDBQTWriterLegacy
        from rdkit import Chem
        from rdkit.Chem import AllChem

        mol = Chem.AddHs(mol)
        if AllChem.EmbedMolecule(mol, randomSeed=self.config.seed) != 0:
            raise ValueError("RDKit could not embed the molecule in 3D")
        AllChem.MMFFOptimizeMolecule(mol)
        setups = MoleculePreparation().prepare(mol)
        pdbqt, ok, error = PDBQTWriterLegacy.write_string(setups[0])
        if not ok:
            raise ValueError(f"Meeko could not write the ligand: {error}")
        return pdbqt

    def dock(self, mol) -> float:
        """The best Vina energy (kcal/mol, lower is better) of one molecule."""
        self.vina.set_ligand_from_string(self.ligand_pdbqt(mol))
        self.vina.dock(exhaustiveness=self.config.exhaustiveness, n_poses=self.config.poses)
        return float(self.vina.energies(n_poses=1)[0][0])

    def score_mol(self, mol):
        if mol.GetNumHeavyAtoms() > self.config.max_heavy_atoms:
            return float("nan")
        try:
            return -self.dock(mol)
        except Exception as e:  # a molecule that cannot be prepared or docked: NaN -> failure policy
            self.failures += 1
            log.warning("docking failed for %s: %s: %s", self._smiles(mol), type(e).__name__, e)
            return float("nan")

    @staticmethod
    def _smiles(mol) -> str:
        from rdkit import Chem

        return Chem.MolToSmiles(mol)
