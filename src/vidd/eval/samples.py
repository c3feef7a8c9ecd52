"""How a domain's samples are stored and compared: the file format, the diversity measure and cheap
naturalness metrics.

The trainer and `vidd bench` only need these things from a task; the default suits
fixed-length sequences (FASTA, normalised Hamming diversity, no extra metrics). Molecules override
the first two (`.smi` files, Tanimoto internal diversity)."""

from __future__ import annotations

import numpy as np

from vidd.core.seqio import write_fasta
from vidd.eval.metrics import diversity


def sample_scores(table: dict[str, list]) -> dict[str, list]:
    """The numeric columns of a per-sequence table (`Task.per_sequence`): what a sample file carries."""
    return {k: v for k, v in table.items() if np.issubdtype(np.asarray(v).dtype, np.number)}


class SampleFormat:
    sample_suffix = ".fasta"

    def write_samples(self, path, seqs: list[str], scores: dict[str, list] | None = None) -> None:
        """`scores`: numbers per sequence carried with each sample (FASTA: `key=value` in its header)."""
        write_fasta(path, seqs, scores)

    def diversity(self, seqs: list[str]) -> float:
        return diversity(seqs)

    def sample_metrics(self, seqs: list[str]) -> dict[str, float]:
        """Metrics cheap enough for every evaluation during training (logged as `eval_<key>`)."""
        return {}
