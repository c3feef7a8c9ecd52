"""Labelled sequences from a lab's assay (a CSV/TSV table), and vidd's synthetic example of such data.

A table has a header row and one sequence per row: a sequence column and a numeric label column (0/1 for
a sorted or thresholded screen, real values for a measurement). Lines starting with `#` are comments.
As every table vidd reads (`vidd.core.seqio.read_column`), a `.csv` file is comma-separated and any other
tab-separated.

`synthetic_h3_library` makes the example data set of docs/oracles.md: variants of trastuzumab's CDR-H3
labelled by a planted rule (`synthetic_binding_score`), clearly synthetic, never a measurement.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidd.core.alphabets import PROTEIN
from vidd.core.atomic import atomic_open
from vidd.core.errors import UserError


class AssayDataError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class Table:
    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]  # (line number in the file, fields)

    def column(self, name: str, what: str) -> list[tuple[int, str]]:
        """(line, value) of every row in column `name` (`what`: the option that named it, for errors)."""
        if name not in self.header:
            raise AssayDataError(f"{self.path}: no {what} {name!r}; columns: {', '.join(self.header)}")
        index = self.header.index(name)
        out = []
        for line, fields in self.rows:
            value = fields[index].strip() if index < len(fields) else ""
            if not value:
                raise AssayDataError(f"{self.path}: line {line} has no value in column {name!r}")
            out.append((line, value))
        return out


def read_table(path: str | Path) -> Table:
    """The header and rows of a CSV/TSV file (comment lines and blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise AssayDataError(f"{path}: file not found")
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise AssayDataError(f"{path}: no header row")
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"
    parsed = [(n, next(csv.reader(io.StringIO(line), delimiter=delimiter))) for n, line in lines]
    header = [h.strip() for h in parsed[0][1]]
    if not parsed[1:]:
        raise AssayDataError(f"{path}: a header but no data rows")
    return Table(path, header, parsed[1:])


@dataclass(frozen=True)
class LabelledSequences:
    sequences: list[str]
    labels: np.ndarray  # float64
    lines: list[int]  # line of each row in the file (for messages)
    source: dict  # file, sha256, columns, rows: recorded in the oracle trained on them


def read_labelled(path: str | Path, sequence_column: str, label_column: str) -> LabelledSequences:
    """The sequences and numeric labels of a table (docstring of this module)."""
    table = read_table(path)
    seqs = table.column(sequence_column, "sequence column")
    labels = []
    for line, value in table.column(label_column, "label column"):
        try:
            labels.append(float(value))
        except ValueError:
            raise AssayDataError(f"{table.path}: line {line}: label {value!r} in column {label_column!r} is not a "
                                 f"number (use 0/1 for binary labels)") from None
    labels = np.array(labels, dtype=np.float64)
    if not np.isfinite(labels).all():
        line = seqs[int(np.argmax(~np.isfinite(labels)))][0]
        raise AssayDataError(f"{table.path}: line {line}: the label is not finite")
    source = {"file": str(table.path), "sha256": hashlib.sha256(table.path.read_bytes()).hexdigest(),
              "sequence_column": sequence_column, "label_column": label_column, "rows": len(seqs)}
    return LabelledSequences([s for _, s in seqs], labels, [n for n, _ in seqs], source)


# ------------------------------------------------------------------ the synthetic example
TRASTUZUMAB_H3 = "SRWGGDGFYAMDY"  # IMGT 105-117
#: loop positions (0-based) the example library varies: IMGT 107-116, the residues inside the S R ... Y frame
LIBRARY_POSITIONS = range(2, 12)
#: threshold of the `binder` label on the log-enrichment
BINDER_THRESHOLD = 3.0
SYNTHETIC_NOTE = ("SYNTHETIC data, not a measurement: made by `vidd synthetic-assay` from a planted rule "
                  "(docs/oracles.md, vidd.data.assays.synthetic_binding_score)")


def synthetic_binding_score(loop: str) -> float:
    """The planted rule of the example data (an invented stand-in for HER2 binding of a trastuzumab CDR-H3
    variant, 13 residues): +2 for W at IMGT 107, +1.5 for Y at IMGT 113, +1 for D or E at IMGT 110,
    and -0.75 for every G or S beyond three among IMGT 107-116 (floppy Gly/Ser-rich loops lose binding).
    The native loop scores 4.5."""
    core = loop[2:12]
    extra_flexible = max(0, sum(c in "GS" for c in core) - 3)
    return 2.0 * (loop[2] == "W") + 1.5 * (loop[8] == "Y") + 1.0 * (loop[5] in "DE") - 0.75 * extra_flexible


def synthetic_h3_library(n: int = 2000, seed: int = 0) -> list[dict]:
    """`n` CDR-H3 variants of trastuzumab with their labels (planted rule + noise; module docstring).

    70% of the variants carry 1-6 random substitutions at IMGT 107-116 of the native loop, 30% are random
    at all ten; the S R ... Y frame is kept. log_enrichment = score + N(0, 0.5^2); binder = log_enrichment
    > 3. Columns: cdr_h3, binder, log_enrichment."""
    if n < 1:
        raise AssayDataError(f"n: must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    letters = np.array(list(PROTEIN.letters))
    rows = []
    for _ in range(n):
        loop = list(TRASTUZUMAB_H3)
        if rng.random() < 0.3:
            changed = list(LIBRARY_POSITIONS)
        else:
            changed = rng.choice(LIBRARY_POSITIONS, size=int(rng.integers(1, 7)), replace=False)
        for p in changed:
            loop[p] = str(rng.choice(letters))
        loop = "".join(loop)
        enrichment = synthetic_binding_score(loop) + rng.normal(0.0, 0.5)
        rows.append({"cdr_h3": loop, "binder": int(enrichment > BINDER_THRESHOLD),
                     "log_enrichment": round(float(enrichment), 4)})
    return rows


def write_synthetic_h3_library(path: str | Path, n: int = 2000, seed: int = 0) -> None:
    """The example library as a CSV whose first line says it is synthetic and how it was made."""
    rows = synthetic_h3_library(n, seed)
    with atomic_open(path) as f:
        f.write(f"# {SYNTHETIC_NOTE}; n={n}, seed={seed}\n")
        writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
