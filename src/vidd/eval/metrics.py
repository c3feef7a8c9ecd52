"""Sequence-set metrics (numpy/scipy) over lists of equal-length strings.

diversity   mean pairwise normalised Hamming distance over the m(m-1) ordered pairs i != j.
uniqueness  fraction of distinct sequences.
kmer_corr   Pearson correlation of k-mer count vectors (DRAKES / VIDD "3-mer Corr").
motif_corr  Pearson correlation of per-motif mean hit frequencies (DRAKES / VIDD "JASPAR Corr").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vidd.core.alphabets import DNA, SequenceError, dna_codes

__all__ = ["diversity", "uniqueness", "kmer_counts", "kmer_count_vectors", "kmer_corr", "motif_corr", "pearson"]


def _check(seqs: Sequence[str], what: str, min_n: int = 1) -> list[str]:
    seqs = list(seqs)
    if len(seqs) < min_n:
        need = "at least one sequence" if min_n == 1 else f"at least {min_n} sequences"
        raise ValueError(f"{what}: needs {need}, got {len(seqs)}")
    return seqs


def _encode_bytes(seqs: list[str], what: str) -> np.ndarray:
    """(m, L) uint8 codes of equal-length strings (any alphabet)."""
    length = len(seqs[0])
    for i, s in enumerate(seqs):
        if len(s) != length:
            raise SequenceError(f"{what}: sequence {i + 1} has length {len(s)}, expected {length} (sequences must be equal length)")
    if length == 0:
        raise SequenceError(f"{what}: sequences are empty strings")
    try:
        raw = "".join(seqs).encode("ascii")
    except UnicodeEncodeError:  # fall back to code points
        return np.array([[ord(c) for c in s] for s in seqs], dtype=np.int64)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(seqs), length)


def finite_median(values) -> float:
    """Median of the finite values (NaN marks a sample a reward could not score); NaN if there are none."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else float("nan")


def diversity(seqs: Sequence[str]) -> float:
    """Mean normalised Hamming distance over the m(m-1) ordered pairs i != j (not divided by m^2).

    Exact for any m and O(m L): at each position with letter counts c_a, the number of ordered
    pairs that differ is m^2 - sum_a c_a^2 (pairs i == j never differ), so no pair sampling is
    needed even for very large sets. Needs at least 2 equal-length sequences.
    """
    seqs = _check(seqs, "diversity", min_n=2)
    x = _encode_bytes(seqs, "diversity")
    m, length = x.shape
    same = 0
    for col in x.T:  # L columns, each a bincount of m codes
        c = np.bincount(col).astype(np.float64)
        same += float((c * c).sum())
    differing = m * m * length - same
    return float(differing / (m * (m - 1) * length))


def uniqueness(seqs: Sequence[str]) -> float:
    """Fraction of distinct sequences (1.0 when all differ)."""
    seqs = _check(seqs, "uniqueness")
    return len(set(seqs)) / len(seqs)


def kmer_counts(seqs: Sequence[str], k: int) -> np.ndarray:
    """(4**k,) int64 counts of overlapping DNA k-mers over all sequences.

    Index of a k-mer = its base-4 number with A=0 C=1 G=2 T=3, first letter most significant
    (so for k=2: AA, AC, AG, AT, CA, ...). Sequences may differ in length; shorter than k adds nothing.
    """
    seqs = _check(seqs, "kmer_counts")
    if int(k) != k or k < 1:
        raise ValueError(f"kmer_counts: k must be a positive integer, got {k}")
    k = int(k)
    out = np.zeros(4 ** k, dtype=np.int64)
    by_len: dict[int, list[str]] = {}
    for s in seqs:
        by_len.setdefault(len(s), []).append(s)
    for length, group in by_len.items():
        if length < k:
            continue
        x = dna_codes(group)
        if x is None:
            for s in group:
                DNA.validate(s, where="kmer_counts: sequence")
        x = x.reshape(len(group), length)
        w = length - k + 1
        idx = np.zeros((len(group), w), dtype=np.int64)
        for j in range(k):
            idx = idx * 4 + x[:, j:j + w]
        out += np.bincount(idx.ravel(), minlength=4 ** k)
    return out


def kmer_count_vectors(generated: Sequence[str], reference: Sequence[str], k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(generated counts, reference counts * n_gen / n_ref), both float64 (4**k,).

    The rescaling (as in DRAKES' `compare_kmer`) puts both on the scale of the generated set;
    it does not change the Pearson correlation."""
    generated = _check(generated, "kmer_corr (generated)")
    reference = _check(reference, "kmer_corr (reference)")
    g = kmer_counts(generated, k).astype(np.float64)
    r = kmer_counts(reference, k).astype(np.float64) * (len(generated) / len(reference))
    return g, r


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two 1-D arrays; NaN when either is constant (correlation undefined)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pearson: shapes differ {a.shape} vs {b.shape}")
    if a.size < 2:
        raise ValueError("pearson: needs at least 2 points")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0:
        return float("nan")
    return float(np.clip((a * b).sum() / den, -1.0, 1.0))


def kmer_corr(generated: Sequence[str], reference: Sequence[str], k: int = 3) -> float:
    """Pearson correlation of k-mer count vectors, over the k-mers present in either set
    (as DRAKES, which correlates over the union of observed k-mers; for k=3 on real data that is
    all 64)."""
    g, r = kmer_count_vectors(generated, reference, k)
    keep = (g > 0) | (r > 0)
    return pearson(g[keep], r[keep])


def motif_corr(generated_counts: np.ndarray, reference_counts: np.ndarray) -> float:
    """Pearson correlation of per-motif mean hit frequencies.

    Both are (n, n_motifs) hit-count arrays (e.g. `MotifScanner.counts`) over the same motifs;
    the numbers of sequences may differ. NaN when a mean profile is constant."""
    g = np.asarray(generated_counts, dtype=np.float64)
    r = np.asarray(reference_counts, dtype=np.float64)
    for what, a in (("generated_counts", g), ("reference_counts", r)):
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"motif_corr: {what} must be a non-empty (n, n_motifs) array, got shape {a.shape}")
    if g.shape[1] != r.shape[1]:
        raise ValueError(f"motif_corr: different numbers of motifs ({g.shape[1]} vs {r.shape[1]})")
    return pearson(g.mean(axis=0), r.mean(axis=0))
