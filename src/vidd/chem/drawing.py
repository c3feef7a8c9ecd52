"""Pictures of molecules (RDKit)."""

from __future__ import annotations

from pathlib import Path

from vidd.chem.molecules import mol_from_smiles, require
from vidd.core.atomic import atomic_open


def molecule_grid(smiles: list[str], legends: list[str], path: Path, per_row: int = 4, size: int = 260) -> None:
    """A PNG grid of the molecules, each with its legend below (RDKit's `Draw.MolsToGridImage`)."""
    require("rdkit")
    from rdkit.Chem import Draw

    options = Draw.MolDrawOptions()
    options.legendFraction = 0.18  # room for two-line legends
    png = Draw.MolsToGridImage([mol_from_smiles(s) for s in smiles], molsPerRow=per_row, subImgSize=(size, size),
                               legends=legends, returnPNG=True, drawOptions=options)
    with atomic_open(path, "wb") as f:
        f.write(png)
