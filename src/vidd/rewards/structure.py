"""Geometry of protein structures: secondary structure by DSSP or P-SEA, radius of gyration, PDB backbones.

Two secondary-structure assigners (extra [structure]), both reduced to three states in DSSP's letters
(H helix, E strand, - coil):
- `dssp`: pydssp's DSSP (hydrogen bonds from the N, CA, C, O backbone; 3-state output of the algorithm
  of Kabsch & Sander, helices from i -> i+4 bonds only);
- `psea`: biotite's `annotate_sse`, the P-SEA algorithm (Cα distances and angles only), which the paper's
  code used for its secondary-structure reward ('a' -> H, 'b' -> E, 'c' -> -).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidd.core.errors import UserError
from vidd.core.extras import require

ASSIGNERS = ("dssp", "psea")
#: the structure kinds a reward can count, and their 3-state letter
STRUCTURE_CODES = {"helix": "H", "strand": "E"}
BACKBONE_ATOMS = ("N", "CA", "C", "O")
PSEA_TO_3STATE = {"a": "H", "b": "E", "c": "-"}


def _three_letter(sequence: str) -> list[str]:
    seq = require("biotite.sequence", "structure", "P-SEA secondary structure")
    return [seq.ProteinSequence.convert_letter_1to3(c) for c in sequence]


def assign_dssp(backbone: np.ndarray) -> str:
    """3-state DSSP string of a backbone (L, 4, 3): N, CA, C, O coordinates in Angstrom (pydssp)."""
    pydssp = require("pydssp", "structure", "DSSP secondary structure")
    return "".join(pydssp.assign(np.asarray(backbone, dtype=np.float64), out_type="c3"))


def assign_psea(ca: np.ndarray, sequence: str) -> str:
    """3-state string of a chain from its Cα coordinates (L, 3) by P-SEA (biotite `annotate_sse`)."""
    struc = require("biotite.structure", "structure", "P-SEA secondary structure")
    atoms = struc.AtomArray(len(sequence))
    atoms.coord = np.asarray(ca, dtype=np.float32)
    atoms.res_id = np.arange(1, len(sequence) + 1)
    atoms.res_name = _three_letter(sequence)
    atoms.atom_name = ["CA"] * len(sequence)
    atoms.element = ["C"] * len(sequence)
    atoms.chain_id = ["A"] * len(sequence)
    return "".join(PSEA_TO_3STATE[s] for s in struc.annotate_sse(atoms))


def secondary_structure(backbone: np.ndarray, sequence: str, assigner: str) -> str:
    """3-state string (H, E, -) of a backbone (L, 4, 3: N, CA, C, O) by `assigner` (dssp or psea)."""
    if assigner == "dssp":
        return assign_dssp(backbone)
    if assigner == "psea":
        return assign_psea(np.asarray(backbone)[:, 1], sequence)
    raise ValueError(f"assigner: one of {list(ASSIGNERS)}, got {assigner!r}")


def structure_fraction(ss: str, structure: str) -> float:
    """Fraction of residues of a 3-state string in `structure` (strand or helix)."""
    return ss.count(STRUCTURE_CODES[structure]) / len(ss)


def radius_of_gyration(ca: np.ndarray) -> float:
    """sqrt(mean squared distance of the Cα atoms (L, 3) from their centroid), Angstrom."""
    ca = np.asarray(ca, dtype=np.float64)
    return float(np.sqrt(((ca - ca.mean(0)) ** 2).sum(-1).mean()))


def read_backbone(path: str | Path, chain: str) -> tuple[str, np.ndarray]:
    """(sequence, backbone (L, 4, 3): N, CA, C, O) of the amino-acid residues of one chain of a PDB file (first
    model); residues lacking one of the four atoms are left out."""
    struc = require("biotite.structure", "structure", "reading PDB structures")
    pdb = require("biotite.structure.io.pdb", "structure", "reading PDB structures")
    seq = require("biotite.sequence", "structure", "reading PDB structures")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"PDB file not found: {path}")
    model = pdb.PDBFile.read(str(path)).get_structure(model=1)
    atoms = model[struc.filter_amino_acids(model) & (model.chain_id == chain)]
    if len(atoms) == 0:
        chains = sorted(map(str, set(model.chain_id)))
        raise UserError(f"{path}: no amino-acid residues in chain {chain!r}; chains: {chains}")
    letters, coords = [], []
    for residue in struc.residue_iter(atoms):
        found = {name: residue.coord[residue.atom_name == name] for name in BACKBONE_ATOMS}
        if all(len(c) for c in found.values()):
            coords.append([found[name][0] for name in BACKBONE_ATOMS])
            letters.append(seq.ProteinSequence.convert_letter_3to1(residue.res_name[0]))
    return "".join(letters), np.array(coords, dtype=np.float64)
