"""Pretraining data from the files people have (`vidd pretrain --data`, docs/data.md): FASTA of any lengths, a
named column of a CSV/TSV table, or SMILES (converted to SELFIES).

Sequences of varying length are padded at the end to the longest with the alphabet's padding token (`[pad]`
for letter alphabets, SELFIES' `[nop]`), which the model learns like any token, so it generates the pads that
end a shorter sequence and decoding drops them (`vidd.core.alphabets.Alphabet.padded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vidd.chem.molecules import read_smi_selfies, selfies_alphabet
from vidd.core.alphabets import LETTER_ALPHABETS, Alphabet, named
from vidd.core.errors import UserError
from vidd.core.seqio import read_column, read_fasta

TABLE_SUFFIXES = (".csv", ".tsv", ".tab")
SMILES_SUFFIXES = (".smi", ".smiles")
#: share of --data held out for validation when no --valid file is given (the first sequences)
VALID_SHARE = 20


@dataclass
class Corpus:
    alphabet: Alphabet
    train: list[str]
    valid: list[str]
    #: the model's positions: the longest sequence, in tokens
    length: int


def read_corpus(path: str | Path, column: str | None = None) -> list[str]:
    """The sequences of a file, by its suffix: the `column` of a table (.csv, .tsv, .tab), SMILES as SELFIES (.smi,
    .smiles: its SELFIES column if it has one, as vidd writes them) or FASTA (any other suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        if column is None:
            raise UserError(f"{path}: a table needs --column NAME, the column that holds the sequences")
        return read_column(path, column)
    if suffix in SMILES_SUFFIXES:
        return read_smi_selfies(path)
    return [s for _, s in read_fasta(path)]


def corpus_alphabet(spec: str, seqs: list[str], smiles: bool = False) -> Alphabet:
    """The alphabet `spec` names (DNA, RNA, protein, SELFIES or custom:LETTERS), with a padding token when the
    sequences' lengths differ; a SELFIES alphabet is made of the corpus' tokens (and always pads)."""
    if spec.lower() == "selfies":
        return selfies_alphabet(seqs)
    if smiles:
        raise UserError(f"--alphabet {spec}: SMILES files are read as SELFIES (--alphabet SELFIES, the default)")
    alphabet = named(spec)
    return alphabet.padded() if len({len(alphabet.split(s)) for s in seqs}) > 1 else alphabet


def load_corpus(data: str | Path, valid: str | Path | None = None, alphabet: str | None = None,
                column: str | None = None) -> Corpus:
    """Training and validation sequences (`valid`, else the first 1/VALID_SHARE of `data`) and their alphabet
    (`corpus_alphabet`; default: SELFIES for SMILES files, else DNA); DNA, RNA and protein are upper-cased."""
    files = [Path(data)] + ([Path(valid)] if valid else [])
    smiles = any(f.suffix.lower() in SMILES_SUFFIXES for f in files)
    spec = alphabet or ("SELFIES" if smiles else "DNA")
    if column is not None and not any(f.suffix.lower() in TABLE_SUFFIXES for f in files):
        raise UserError(f"--column {column}: applies to tables ({', '.join(TABLE_SUFFIXES)}), and neither --data "
                        f"nor --valid is one")
    sets = [read_corpus(f, column) for f in files]
    if spec.lower() in {name.lower() for name in LETTER_ALPHABETS}:
        sets = [[s.upper() for s in seqs] for seqs in sets]
    alpha = corpus_alphabet(spec, [s for seqs in sets for s in seqs], smiles)
    length = 0
    for path, seqs in zip(files, sets):
        for i, s in enumerate(seqs, start=1):
            length = max(length, len(alpha.validate(s, where=f"{path}: sequence {i}")))
    train = sets[0]
    if valid:
        held = sets[1]
    else:
        cut = max(1, len(train) // VALID_SHARE)
        train, held = train[cut:], train[:cut]
    return Corpus(alpha, train, held, length)
