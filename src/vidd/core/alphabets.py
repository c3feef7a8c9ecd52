"""Token vocabularies: tokens plus one absorbing mask token (always the last index).

Most alphabets are single letters (DNA, protein): a sequence is a plain string. Others, such as
SELFIES, have bracketed multi-character tokens ("[C]", "[=O]"); a sequence is then the
concatenation of its tokens and is split back by brackets. An alphabet with a `pad` token holds
variable-length sequences in a fixed number of positions: `encode` pads at the end, `decode`
drops every pad token, so the model decides the length. `Alphabet.padded()` adds the token `[pad]` to a
letter alphabet for variable-length data (docs/data.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from vidd.core.errors import UserError

_BRACKET_TOKEN = re.compile(r"\[[^\[\]]*\]|.")
#: the padding token `padded` adds (bracketed, so no letter or data character can be mistaken for it)
PAD = "[pad]"


class SequenceError(UserError, ValueError):
    """A sequence that does not fit an alphabet or a length; the message names where it came from."""


@dataclass(frozen=True)
class Alphabet:
    name: str
    letters: str | tuple[str, ...]  # a string of one-character tokens, or a tuple of tokens
    pad: str | None = None  # padding token (one of the letters), stripped by `decode`

    def __post_init__(self):
        if not isinstance(self.letters, str):
            object.__setattr__(self, "letters", tuple(self.letters))
        if len(set(self.letters)) != len(self.letters):
            raise ValueError(f"alphabet {self.name!r} repeats a token")
        if self.pad is not None and self.pad not in self.letters:
            raise ValueError(f"alphabet {self.name!r}: pad token {self.pad!r} is not one of its tokens")

    @property
    def size(self) -> int:
        """Number of real tokens (the mask token is excluded)."""
        return len(self.letters)

    @property
    def mask_index(self) -> int:
        return len(self.letters)

    @property
    def single_characters(self) -> bool:
        return all(len(t) == 1 for t in self.letters)

    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.letters)}

    def split(self, seq: str) -> list[str]:
        """The tokens of a sequence string (characters, or bracketed tokens for e.g. SELFIES)."""
        return list(seq) if self.single_characters else _BRACKET_TOKEN.findall(seq)

    def join(self, tokens) -> str:
        return "".join(t for t in tokens if t != self.pad)

    def validate(self, seq: str, length: int | None = None, where: str = "sequence") -> list[str]:
        """Check a sequence against the alphabet (and the length); returns its tokens."""
        tokens = self.split(seq)
        known = set(self.letters)
        bad = sorted({t for t in tokens if t not in known})
        if bad:
            pos = next(i for i, t in enumerate(tokens) if t in bad)
            what = "character" if self.single_characters else "token"
            shown = repr(self.letters) if self.single_characters else f"of {self.size} tokens"
            raise SequenceError(
                f"{where}: {what} {tokens[pos]!r} at position {pos + 1} is not in the "
                f"{self.name} alphabet {shown} (bad {what}s: {''.join(bad)!r})"
            )
        if length is not None:
            if self.pad is None and len(tokens) != length:
                raise SequenceError(f"{where}: length {len(tokens)}, expected {length}")
            if len(tokens) > length:
                raise SequenceError(f"{where}: {len(tokens)} tokens, more than the {length} the model holds")
        return tokens

    def encode(self, seqs: list[str], length: int | None = None) -> torch.Tensor:
        """Encode strings to a (N, L) long tensor (padded if the alphabet pads), with clear errors."""
        if not seqs:
            return torch.empty(0, length or 0, dtype=torch.long)
        rows = [self.validate(s, length, where=f"sequence {i + 1}") for i, s in enumerate(seqs)]
        if length is None:
            length = max(map(len, rows)) if self.pad is not None else len(rows[0])
            if self.pad is None:
                for i, r in enumerate(rows):
                    if len(r) != length:
                        raise SequenceError(f"sequence {i + 1}: length {len(r)}, expected {length}")
        index = self._index()
        pad = [self.pad] if self.pad is not None else []
        return torch.tensor([[index[t] for t in r + pad * (length - len(r))] for r in rows], dtype=torch.long)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Decode a (N, L) tensor of token indices; a mask token left in is an error."""
        if (tokens >= self.size).any():
            raise SequenceError("cannot decode: the tokens still contain masked positions")
        table = self.letters
        return [self.join(table[i] for i in row) for row in tokens.tolist()]

    def padded(self) -> "Alphabet":
        """This alphabet with a padding token (itself if it has one): sequences of any length up to the
        model's are padded at the end by `encode`, and `decode` drops the pads the model generates."""
        if self.pad is not None:
            return self
        return Alphabet(self.name, tuple(self.letters) + (PAD,), pad=PAD)

    def to_dict(self) -> dict:
        return {"name": self.name, "letters": self.letters if self.single_characters else list(self.letters),
                "pad": self.pad}


DNA = Alphabet("DNA", "ACGT")
RNA = Alphabet("RNA", "ACGU")
PROTEIN = Alphabet("protein", "ACDEFGHIKLMNPQRSTVWY")
#: the letter alphabets `named` knows (SELFIES is built from a corpus: vidd.chem.molecules.selfies_alphabet)
LETTER_ALPHABETS = {a.name: a for a in (DNA, RNA, PROTEIN)}


def named(spec: str) -> Alphabet:
    """A letter alphabet by name (DNA, RNA, protein; any case) or given as `custom:LETTERS` (one character
    per token, e.g. custom:ACDE)."""
    if spec.startswith("custom:"):
        letters = spec.removeprefix("custom:")
        bad = sorted(set(c for c in letters if c in "[]" or c.isspace()))
        if not letters or bad or len(set(letters)) != len(letters):
            raise UserError(f"alphabet {spec!r}: custom:LETTERS needs distinct characters, none of them a bracket "
                            f"or a space (e.g. custom:ACDE)")
        return Alphabet("custom", letters)
    found = {name.lower(): a for name, a in LETTER_ALPHABETS.items()}.get(spec.lower())
    if found is None:
        raise UserError(f"unknown alphabet {spec!r}; one of {', '.join(LETTER_ALPHABETS)}, SELFIES or custom:LETTERS")
    return found

_DNA_CODES = np.full(256, -1, dtype=np.int8)  # byte -> DNA letter index, -1 for any other byte
_DNA_CODES[np.frombuffer(DNA.letters.encode("ascii"), dtype=np.uint8)] = np.arange(DNA.size)


def dna_codes(seqs: Sequence[str]) -> np.ndarray | None:
    """The strings concatenated, as a flat int8 array of DNA letter indices (A=0 C=1 G=2 T=3) by one table
    lookup (fast on millions of bases); None if any character is not one of them (`DNA.validate` explains)."""
    try:
        raw = "".join(seqs).encode("ascii")
    except UnicodeEncodeError:
        return None
    codes = _DNA_CODES[np.frombuffer(raw, dtype=np.uint8)]
    return None if (codes < 0).any() else codes
