"""Secondary structure (DSSP by pydssp, P-SEA by biotite) and radius of gyration, checked on a real structure:
ubiquitin, PDB 1UBI (tests/fixtures/structures/README.md), against the depositors' HELIX and SHEET records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydssp", reason="DSSP needs the [structure] extra: pip install 'vidd[structure]'")
pytest.importorskip("biotite", reason="P-SEA needs the [structure] extra: pip install 'vidd[structure]'")

from vidd.core.errors import UserError  # noqa: E402
from vidd.rewards.structure import (  # noqa: E402
    radius_of_gyration, read_backbone, secondary_structure, structure_fraction,
)

UBIQUITIN_PDB = Path(__file__).parents[1] / "fixtures" / "structures" / "1ubi.pdb"
UBIQUITIN = "MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLVLRLRGG"


def deposited(record: str, length: int) -> np.ndarray:
    """Residues inside the file's HELIX or SHEET records (their fixed PDB columns), as a boolean mask."""
    columns = {"HELIX": (slice(21, 25), slice(33, 37)), "SHEET": (slice(22, 26), slice(33, 37))}[record]
    mask = np.zeros(length, dtype=bool)
    for line in UBIQUITIN_PDB.read_text().splitlines():
        if line.startswith(record):
            mask[int(line[columns[0]]) - 1:int(line[columns[1]])] = True
    return mask


@pytest.fixture(scope="module")
def ubiquitin():
    return read_backbone(UBIQUITIN_PDB, "A")


def test_read_backbone_gives_the_chain_and_its_n_ca_c_o_atoms(ubiquitin):
    sequence, backbone = ubiquitin
    assert sequence == UBIQUITIN and backbone.shape == (76, 4, 3)
    bond = np.linalg.norm(backbone[:, 1] - backbone[:, 0], axis=-1)  # N-CA
    assert np.allclose(bond, 1.46, atol=0.1)
    with pytest.raises(UserError, match=r"chain 'B'; chains: \['A'\]"):
        read_backbone(UBIQUITIN_PDB, "B")


@pytest.mark.parametrize("assigner", ["dssp", "psea"])
def test_both_assigners_agree_with_the_deposited_secondary_structure(ubiquitin, assigner):
    """The depositors' records: strands 1-7, 10-17, 40-45, 48-50, 64-72 (33 of 76 residues, records generous
    at strand ends), helices 23-34 and (3-10) 56-59. Either assigner agrees on >= 84% of the residues."""
    sequence, backbone = ubiquitin
    ss = secondary_structure(backbone, sequence, assigner)
    assert len(ss) == 76 and set(ss) <= set("HE-")
    strand, helix = np.array([c == "E" for c in ss]), np.array([c == "H" for c in ss])
    assert (strand == deposited("SHEET", 76)).mean() >= 0.84
    assert (helix == deposited("HELIX", 76)).mean() >= 0.9
    assert 0.3 <= structure_fraction(ss, "strand") <= 0.45
    assert 0.12 <= structure_fraction(ss, "helix") <= 0.25
    assert all(c == "H" for c in ss[24:33])  # the alpha helix, 23-34, without its ends


def test_dssp_and_psea_agree_with_each_other(ubiquitin):
    sequence, backbone = ubiquitin
    dssp, psea = (secondary_structure(backbone, sequence, a) for a in ("dssp", "psea"))
    assert np.mean([(a == "E") == (b == "E") for a, b in zip(dssp, psea)]) >= 0.85
    with pytest.raises(ValueError, match="assigner"):
        secondary_structure(backbone, sequence, "stride")


def test_radius_of_gyration_of_ubiquitin_and_of_a_known_shape(ubiquitin):
    ca = ubiquitin[1][:, 1]
    # a compact 76-residue globule: near the folded-protein scaling 2.2 N^0.38 = 11.4 A
    assert 11.0 <= radius_of_gyration(ca) <= 12.5
    square = np.array([[1.0, 1, 0], [1, -1, 0], [-1, 1, 0], [-1, -1, 0]]) + 5.0  # every point sqrt(2) from the centre
    assert radius_of_gyration(square) == pytest.approx(np.sqrt(2))
