"""The DHS data set: 47,872 real 200-bp DNase-hypersensitive sites of four cell types.

Shipped inside the `dnadiffusion` wheel (MIT; sites from the public ENCODE DHS index).
The file's own `data_label` column defines the chromosome split: training (all chromosomes
except chr1 and chr2), validation = chr2, test = chr1.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from vidd.data.fetch import FetchError, WheelFile, fetch_wheel_file

DHS_FILE = WheelFile(
    package="dnadiffusion==0.0.0.dev0",
    member="dnadiffusion/data/K562_hESCT0_HepG2_GM12878_12k_sequences_per_group.txt",
    sha256="ba1063a9a3d0054020ae2e9f8add974550ae91fe2d21989e790e5d6cb2cb4d58",
    filename="dhs_K562_hESCT0_HepG2_GM12878_12k.tsv",
)
CELL_TYPES = ("GM12878", "hESCT0", "K562", "HepG2")
_LABEL_COLUMNS = ("GM12878_ENCLB441ZZZ", "hESCT0_ENCLB449ZZZ", "K562_ENCLB843GMH", "HepG2_ENCLB029COU")
SPLITS = {"train": "training", "valid": "validation", "test": "test"}
SEQUENCE_LENGTH = 200


@dataclass(frozen=True)
class DHSSplit:
    sequences: list[str]
    labels: np.ndarray  # cell-type index into CELL_TYPES
    chromosomes: list[str]

    def of_cell_type(self, cell_type: str) -> list[str]:
        idx = CELL_TYPES.index(cell_type)
        return [s for s, y in zip(self.sequences, self.labels) if y == idx]


def read_dhs_table(path: Path) -> dict[str, DHSSplit]:
    rows: dict[str, tuple[list, list, list]] = {k: ([], [], []) for k in SPLITS}
    by_label = {v: k for k, v in SPLITS.items()}
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"sequence", "chr", "data_label", *_LABEL_COLUMNS} - set(reader.fieldnames or [])
        if missing:
            raise FetchError(f"{path}: not the DHS table (missing columns {sorted(missing)})")
        for line, row in enumerate(reader, start=2):
            split = by_label.get(row["data_label"])
            if split is None:
                raise FetchError(f"{path}:{line}: unknown data_label {row['data_label']!r}")
            onehot = [row[c] == "1" for c in _LABEL_COLUMNS]
            if sum(onehot) != 1:
                raise FetchError(f"{path}:{line}: expected exactly one cell-type label")
            seqs, labels, chroms = rows[split]
            seqs.append(row["sequence"].upper())
            labels.append(onehot.index(True))
            chroms.append(row["chr"])
    return {k: DHSSplit(s, np.asarray(y, dtype=np.int64), c) for k, (s, y, c) in rows.items()}


@lru_cache(maxsize=2)
def load_dhs(path: str | None = None) -> dict[str, DHSSplit]:
    """Splits 'train', 'valid' (chr2) and 'test' (chr1); fetches the wheel file on first use."""
    return read_dhs_table(Path(path) if path else fetch_wheel_file(DHS_FILE))
