"""Token vocabularies: letters plus one absorbing mask token (always the last index)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidd.errors import UserError


class SequenceError(UserError, ValueError):
    """A sequence that does not fit an alphabet or a length; the message names where it came from."""


@dataclass(frozen=True)
class Alphabet:
    name: str
    letters: str

    @property
    def size(self) -> int:
        """Number of real letters (the mask token is excluded)."""
        return len(self.letters)

    @property
    def mask_index(self) -> int:
        return len(self.letters)

    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.letters)}

    def validate(self, seq: str, length: int | None = None, where: str = "sequence") -> None:
        bad = sorted({c for c in seq if c not in self.letters})
        if bad:
            pos = next(i for i, c in enumerate(seq) if c in bad)
            raise SequenceError(
                f"{where}: character {seq[pos]!r} at position {pos + 1} is not in the "
                f"{self.name} alphabet {self.letters!r} (bad characters: {''.join(bad)!r})"
            )
        if length is not None and len(seq) != length:
            raise SequenceError(f"{where}: length {len(seq)}, expected {length}")

    def encode(self, seqs: list[str], length: int | None = None) -> torch.Tensor:
        """Encode equal-length strings to a (N, L) long tensor, with clear errors on bad input."""
        if not seqs:
            return torch.empty(0, length or 0, dtype=torch.long)
        length = length if length is not None else len(seqs[0])
        index = self._index()
        for i, s in enumerate(seqs):
            self.validate(s, length, where=f"sequence {i + 1}")
        return torch.tensor([[index[c] for c in s] for s in seqs], dtype=torch.long)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Decode a (N, L) tensor of letter indices; a mask token left in is an error."""
        if (tokens >= self.size).any():
            raise SequenceError("cannot decode: the tokens still contain masked positions")
        table = self.letters
        return ["".join(table[i] for i in row) for row in tokens.tolist()]


DNA = Alphabet("DNA", "ACGT")
PROTEIN = Alphabet("protein", "ACDEFGHIKLMNPQRSTVWY")
