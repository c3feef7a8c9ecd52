"""SMILES <-> SELFIES, the SELFIES alphabet, and `.smi` files.

Molecules are generated as SELFIES token strings: every string of SELFIES tokens decodes to a
valid molecule, so the diffusion model never has to learn SMILES syntax. The padding token is
SELFIES' own no-operation token `[nop]`, which the decoder skips; trailing pads set the length.
"""

from __future__ import annotations

from pathlib import Path

from vidd.core.alphabets import Alphabet, SequenceError
from vidd.core.atomic import atomic_open
from vidd.core import extras
from vidd.core.errors import read_text

PAD = "[nop]"


class MoleculeError(SequenceError):
    """A SMILES string RDKit cannot parse, or a molecule SELFIES cannot encode."""


def require(module: str):
    """Import an optional chemistry dependency, or say which extra installs it."""
    return extras.require(module, "chem", "small molecules")


def _quiet_rdkit():
    require("rdkit")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def mol_from_smiles(smiles: str):
    """An RDKit molecule, or None when the SMILES does not parse (RDKit's warnings silenced)."""
    _quiet_rdkit()
    from rdkit import Chem

    return Chem.MolFromSmiles(smiles) if smiles else None


def canonical_smiles(smiles: str, where: str = "SMILES") -> str:
    mol = mol_from_smiles(smiles)
    if mol is None:
        raise MoleculeError(f"{where}: RDKit cannot parse the SMILES {smiles!r}")
    from rdkit import Chem

    return Chem.MolToSmiles(mol)


def smiles_to_selfies(smiles: str, where: str = "SMILES") -> str:
    sf = require("selfies")
    canonical = canonical_smiles(smiles, where)
    try:
        return sf.encoder(canonical, strict=True)
    except sf.EncoderError as e:
        raise MoleculeError(f"{where}: SELFIES cannot encode {smiles!r} ({e})") from e


def selfies_to_smiles(selfies: str) -> str | None:
    """Canonical SMILES of a SELFIES string; None for the empty molecule or one RDKit rejects."""
    sf = require("selfies")
    try:
        smiles = sf.decoder(selfies)
    except sf.DecoderError:
        return None
    mol = mol_from_smiles(smiles) if smiles else None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    from rdkit import Chem

    return Chem.MolToSmiles(mol)


def selfies_alphabet(corpus: list[str], name: str = "SELFIES") -> Alphabet:
    """The sorted tokens of a SELFIES corpus plus the padding token."""
    sf = require("selfies")
    tokens = sorted(sf.get_alphabet_from_selfies(corpus) - {PAD})
    return Alphabet(name, tuple(tokens) + (PAD,), pad=PAD)


def _smi_rows(path: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """(header or None, [(line number, fields)]) of a `.smi` file; tab- or space-separated."""
    if not path.is_file():
        raise MoleculeError(f"{path}: file not found")
    header, rows = None, []
    for n, line in enumerate(read_text(path, "a .smi file of SMILES", MoleculeError).splitlines(), start=1):
        fields = line.split("\t") if "\t" in line else line.split()
        if not fields or not fields[0].strip() or fields[0].startswith("#"):
            continue
        if header is None and not rows and fields[0].strip().upper() == "SMILES":
            header = [f.strip() for f in fields]
            continue
        rows.append((n, [f.strip() for f in fields]))
    if not rows:
        raise MoleculeError(f"{path}: no molecules")
    return header, rows


def read_smi(path: str | Path) -> list[str]:
    """SMILES of a `.smi` file: one molecule per line, the SMILES first (an optional header line
    starting with 'SMILES' and further columns allowed); every SMILES must parse."""
    path = Path(path)
    _, rows = _smi_rows(path)
    for n, fields in rows:
        canonical_smiles(fields[0], where=f"{path}: line {n}")
    return [fields[0] for _, fields in rows]


def read_smi_selfies(path: str | Path) -> list[str]:
    """SELFIES of a `.smi` file: its SELFIES column when it has one (the exact generated strings,
    as vidd writes them), else the SMILES encoded."""
    path = Path(path)
    header, rows = _smi_rows(path)
    if header and "SELFIES" in header:
        col = header.index("SELFIES")
        missing = next((n for n, f in rows if len(f) <= col), None)
        if missing is not None:
            raise MoleculeError(f"{path}: line {missing} has no SELFIES column")
        return [f[col] for _, f in rows]
    return [smiles_to_selfies(f[0], where=f"{path}: line {n}") for n, f in rows]


def write_smi(path: str | Path, smiles: list[str | None], columns: dict[str, list] | None = None) -> None:
    """Write atomically: a header line, then SMILES (`*` for no valid molecule) and further columns,
    tab-separated."""
    columns = columns or {}
    with atomic_open(path) as f:
        f.write("\t".join(["SMILES", *columns]) + "\n")
        for i, s in enumerate(smiles):
            values = [_format(columns[c][i]) for c in columns]
            f.write("\t".join([s or "*", *values]) + "\n")


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
