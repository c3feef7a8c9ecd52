"""Public therapeutic antibodies (variable domains) and their IMGT numbering.

Sequences are the heavy (VH) and light (VL) variable domains of approved antibodies, as published in
DrugBank, the IMGT/mAb-DB and the PDB entries below (the same sequences appear in the WHO INN lists).
`numbering` numbers a heavy chain once with ANARCII (IMGT scheme; its weights ship in its wheel, so it
works offline) and caches the result under $VIDD_CACHE/antibodies/ as JSON. CDRs follow IMGT: H1 = 27-38,
H2 = 56-65, H3 = 105-117 (insertions included).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from dataclasses import dataclass
from functools import cached_property

from vidd.core.atomic import atomic_open
from vidd.core.errors import UserError
from vidd.core.extras import require
from vidd.data.fetch import cache_dir


@dataclass(frozen=True)
class Antibody:
    name: str
    heavy: str  # VH
    light: str  # VL
    target: str
    source: str  # where the sequences are published


ANTIBODIES: dict[str, Antibody] = {a.name: a for a in (
    Antibody(
        "trastuzumab",
        "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS",
        "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK",
        "HER2", "Herceptin; DrugBank DB00072; PDB 1N8Z (Fab with HER2)"),
    Antibody(
        "pembrolizumab",
        "QVQLVQSGVEVKKPGASVKVSCKASGYTFTNYYMYWVRQAPGQGLEWMGGINPSNGGTNFNEKFKNRVTLTTDSSTTTAYMELKSLQFDDTAVYYCARRDYRFDMGFDYWGQGTTVTVSS",
        "EIVLTQSPATLSLSPGERATLSCRASKGVSTSGYSYLHWYQQKPGQAPRLLIYLASYLESGVPARFSGSGSGTDFTLTISSLEPEDFAVYYCQHSRDLPLTFGGGTKVEIK",
        "PD-1", "Keytruda; DrugBank DB09037; PDB 5DK3 (full-length IgG4)"),
    Antibody(
        "adalimumab",
        "EVQLVESGGGLVQPGRSLRLSCAASGFTFDDYAMHWVRQAPGKGLEWVSAITWNSGHIDYADSVEGRFTISRDNAKNSLYLQMNSLRAEDTAVYYCAKVSYLSTASSLDYWGQGTLVTVSS",
        "DIQMTQSPSSLSASVGDRVTITCRASQGIRNYLAWYQQKPGKAPKLLIYAASTLQSGVPSRFSGSGSGTDFTLTISSLQPEDVATYYCQRYNRAPYTFGQGTKVEIK",
        "TNF-alpha", "Humira; DrugBank DB00051; PDB 3WD5 (Fab with TNF-alpha)"),
    Antibody(
        "nivolumab",
        "QVQLVESGGGVVQPGRSLRLDCKASGITFSNSGMHWVRQAPGKGLEWVAVIWYDGSKRYYADSVKGRFTISRDNSKNTLFLQMNSLRAEDTAVYYCATNDDYWGQGTLVTVSS",
        "EIVLTQSPATLSLSPGERATLSCRASQSVSSYLAWYQQKPGQAPRLLIYDASNRATGIPARFSGSGSGTDFTLTISSLEPEDFAVYYCQQSSNWPRTFGQGTKVEIK",
        "PD-1", "Opdivo; DrugBank DB09035; PDB 5WT9 (Fab with PD-1)"),
)}

#: IMGT CDR ranges (inclusive, insertion codes belong to their number)
IMGT_CDRS = {"H1": (27, 38), "H2": (56, 65), "H3": (105, 117)}
POSITION = re.compile(r"(\d+)([A-Za-z]?)")
POSITION_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)")


class NumberingError(UserError, ValueError):
    pass


def antibody(name: str) -> Antibody:
    if name not in ANTIBODIES:
        raise UserError(f"unknown antibody {name!r}; known: {', '.join(sorted(ANTIBODIES))}")
    return ANTIBODIES[name]


@dataclass(frozen=True)
class Numbering:
    """IMGT numbering of one heavy chain: one (number, insertion code) per residue of the chain, or None
    for residues ANARCII leaves unnumbered (outside the variable domain)."""

    sequence: str
    positions: tuple[tuple[int, str] | None, ...]

    def region(self, name: str) -> tuple[int, int]:
        """[start, end) indices in the sequence of an IMGT CDR ("H1", "H2", "H3")."""
        lo, hi = IMGT_CDRS[name]
        idx = [i for i, p in enumerate(self.positions) if p is not None and lo <= p[0] <= hi]
        if not idx or idx != list(range(idx[0], idx[-1] + 1)):
            raise NumberingError(f"CDR {name} of {self.sequence[:20]}... is not one contiguous stretch")
        return idx[0], idx[-1] + 1

    def label(self, index: int) -> str:
        """The IMGT number of a residue, with its insertion code (e.g. "111A")."""
        number, insertion = self.positions[index]
        return f"{number}{insertion}"

    def indices(self, positions) -> list[int]:
        """Sorted sequence indices of IMGT positions: an IMGT number with an optional insertion code (107,
        "111A"), an inclusive range of numbers ("107-116", insertions included) or a CDR ("H1", "H2", "H3");
        several as a list or a comma-separated string ("105-106,117")."""
        items = positions if isinstance(positions, (list, tuple)) else str(positions).split(",")
        chosen: set[int] = set()
        for item in (str(i).strip() for i in items):
            found = self._item_indices(item)
            if not found:
                raise NumberingError(f"task.positions: {item!r} names no residue of this VH (its CDR-H3 is IMGT "
                                     f"{', '.join(self.label(i) for i in range(*self.region('H3')))})")
            chosen.update(found)
        return sorted(chosen)

    def _item_indices(self, item: str) -> list[int]:
        numbered = [(i, p) for i, p in enumerate(self.positions) if p is not None]
        if item.upper() in IMGT_CDRS:
            return list(range(*self.region(item.upper())))
        if match := POSITION_RANGE.fullmatch(item):
            lo, hi = int(match[1]), int(match[2])
            return [i for i, (number, _) in numbered if lo <= number <= hi]
        if match := POSITION.fullmatch(item):
            return [i for i, (number, insertion) in numbered if (number, insertion) == (int(match[1]), match[2].upper())]
        raise NumberingError(f"task.positions: {item!r} is not an IMGT number (107, 111A), a range (107-116) or "
                             f"a CDR (H1, H2, H3)")

    def cdr(self, name: str) -> str:
        start, end = self.region(name)
        return self.sequence[start:end]

    @cached_property
    def cdrs(self) -> dict[str, str]:
        return {name: self.cdr(name) for name in IMGT_CDRS}


def _cache_path(sequence: str):
    digest = hashlib.sha256(sequence.encode()).hexdigest()[:16]
    return cache_dir() / "antibodies" / f"imgt-{digest}.json"


def number_heavy_chain(sequence: str, cache: bool = True) -> Numbering:
    """IMGT numbering of a heavy chain by ANARCII (extra `protein`), cached as JSON."""
    path = _cache_path(sequence)
    if cache and path.is_file():
        data = json.loads(path.read_text())
        if data["sequence"] == sequence:
            return Numbering(sequence, tuple(tuple(p) if p else None for p in data["positions"]))
    numbering = _anarcii_numbering(sequence)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as f:
            json.dump({"sequence": sequence, "scheme": "imgt", "numbered_by": "anarcii",
                       "positions": [list(p) if p else None for p in numbering.positions]}, f)
    return numbering


def _anarcii_numbering(sequence: str) -> Numbering:
    anarcii = require("anarcii", "protein", "antibody numbering")
    with contextlib.redirect_stdout(io.StringIO()):
        model = anarcii.Anarcii(seq_type="antibody", mode="accuracy", cpu=True, ncpu=1, verbose=False)
        result = next(iter(model.number([sequence]).values()))
    if result.get("error") or result.get("chain_type") != "H":
        raise NumberingError(f"ANARCII did not number {sequence[:20]}... as a heavy chain "
                             f"(chain type {result.get('chain_type')!r}, error {result.get('error')!r})")
    positions: list[tuple[int, str] | None] = [None] * len(sequence)
    i = result["query_start"]
    for (number, insertion), residue in result["numbering"]:
        if residue == "-":
            continue
        if sequence[i] != residue:
            raise NumberingError(f"ANARCII numbering does not follow the sequence at residue {i + 1}")
        positions[i] = (int(number), insertion.strip())
        i += 1
    return Numbering(sequence, tuple(positions))
