"""Reading and writing sequence files (FASTA) with errors that name the file, record and problem."""

from __future__ import annotations

import io
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


def write_fasta(path: str | Path, seqs: list[str], headers: list[str] | None = None) -> None:
    """Write atomically (temporary file + rename)."""
    headers = headers or [f"sample_{i}" for i in range(len(seqs))]
    with atomic_open(path) as f:
        for h, s in zip(headers, seqs):
            f.write(f">{h}\n{s}\n")
