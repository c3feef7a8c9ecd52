"""Reading and writing sequence files (FASTA, a column of a CSV/TSV table) and per-sequence tables, with errors
that name the file, record and problem."""

from __future__ import annotations

import csv
import io
import numbers
import os
from pathlib import Path

from Bio.SeqIO.FastaIO import SimpleFastaParser

from vidd.core.alphabets import Alphabet, SequenceError
from vidd.core.atomic import atomic_open
from vidd.core.errors import read_text


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """(header, sequence) records; sequences upper-cased with line breaks removed."""
    path = Path(path)
    if not path.is_file():
        raise SequenceError(f"{path}: file not found")
    text = read_text(path, "FASTA", SequenceError)
    first = next((line for line in text.splitlines() if line.strip()), None)
    if first is None:
        raise SequenceError(f"{path}: the file is empty")
    if not first.startswith(">"):
        raise SequenceError(f"{path}: not FASTA (the first line must start with '>', got {first[:40]!r})")
    records = [(h, s.replace(" ", "").upper()) for h, s in SimpleFastaParser(io.StringIO(text))]
    for i, (header, seq) in enumerate(records, start=1):
        if not seq:
            raise SequenceError(f"{path}: record {i} ({header!r}) has an empty sequence")
    return records


def read_sequences(path: str | Path, alphabet: Alphabet, length: int | None = None) -> list[str]:
    """Sequences of a FASTA file, all checked against the alphabet and one common length."""
    records = read_fasta(path)
    length = length if length is not None else len(records[0][1])
    for i, (header, seq) in enumerate(records, start=1):
        alphabet.validate(seq, length, where=f"{path}: record {i} ({header!r})")
    return [s for _, s in records]


def read_column(path: str | Path, column: str) -> list[str]:
    """The non-empty cells of the named column of a CSV (`.csv`) or tab-separated (any other suffix) table
    with a header line, stripped of spaces."""
    path = Path(path)
    if not path.is_file():
        raise SequenceError(f"{path}: file not found")
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="," if path.suffix.lower() == ".csv" else "\t")
        if not reader.fieldnames:
            raise SequenceError(f"{path}: the file is empty")
        if column not in reader.fieldnames:
            raise SequenceError(f"{path}: no column {column!r}; columns: {', '.join(reader.fieldnames)}")
        values = [(n, (row[column] or "").strip()) for n, row in enumerate(reader, start=2)]
    empty = next((n for n, v in values if not v), None)
    if empty is not None:
        raise SequenceError(f"{path}: line {empty} has an empty {column!r}")
    if not values:
        raise SequenceError(f"{path}: no rows below the header")
    return [v for _, v in values]


def read_table(path: str | Path) -> dict[str, list[str]]:
    """The columns of a tab-separated table with a header line, as `write_table` writes them (cells as text)."""
    path = Path(path)
    if not path.is_file():
        raise SequenceError(f"{path}: file not found")
    lines = [line.split("\t") for line in read_text(path, "a tab-separated table", SequenceError).splitlines() if line]
    if not lines:
        raise SequenceError(f"{path}: the file is empty")
    header, *rows = lines
    short = next((n for n, row in enumerate(rows, start=2) if len(row) != len(header)), None)
    if short is not None:
        raise SequenceError(f"{path}: line {short} has {len(rows[short - 2])} cells, the header {len(header)}")
    return {name: [row[i] for row in rows] for i, name in enumerate(header)}


def format_value(value) -> str:
    """A table cell or FASTA header value: numbers to 6 significant digits, anything else as text."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return f"{float(value):.6g}"
    return str(value)


def write_fasta(path: str | Path, seqs: list[str], fields: dict[str, list] | None = None) -> None:
    """Write atomically (temporary file + rename); record i is headed `sample_i`, then `key=value` for each of
    `fields` (values per sequence), e.g. `>sample_0 reward=1.23 log_likelihood=-250.1`."""
    fields = fields or {}
    with atomic_open(path) as f:
        for i, s in enumerate(seqs):
            header = " ".join([f"sample_{i}", *(f"{k}={format_value(v[i])}" for k, v in fields.items())])
            f.write(f">{header}\n{s}\n")


def write_table(path: str | Path, columns: dict[str, list]) -> None:
    """Write equal-length columns as a tab-separated table with a header line, atomically."""
    rows = zip(*columns.values())
    with atomic_open(path) as f:
        f.write("\t".join(columns) + "\n")
        f.writelines("\t".join(format_value(v) for v in row) + "\n" for row in rows)


def read_score_journal(path: str | Path) -> dict[str, float]:
    """The `sequence TAB value` lines of a score journal (`append_scores`), as a dict; none if the file is missing.
    A last line without its newline (a write cut short) is left out; any other malformed line stops with an error
    that names it."""
    path = Path(path)
    if not path.is_file():
        return {}
    lines = read_text(path, "a score journal", SequenceError).split("\n")
    scores = {}
    for n, line in enumerate(lines[:-1], start=1):  # the last piece is '' or a cut-short line
        fields = line.split("\t")
        try:
            if len(fields) != 2:  # the sequence may be empty (e.g. the empty molecule)
                raise ValueError
            scores[fields[0]] = float(fields[1])
        except ValueError:
            raise SequenceError(f"{path}: line {n} is not 'sequence<TAB>value': {line[:60]!r}") from None
    return scores


def append_scores(path: str | Path, seqs: list[str], values) -> None:
    """Append `sequence TAB value` lines to a score journal and flush them to disk."""
    unfit = next((s for s in seqs if "\t" in s or "\n" in s), None)
    if unfit is not None:
        raise ValueError(f"{path}: a score journal cannot hold the sequence {unfit!r} (a tab or newline)")
    with open(path, "a") as f:
        f.writelines(f"{s}\t{float(v)!r}\n" for s, v in zip(seqs, values))
        f.flush()
        os.fsync(f.fileno())
