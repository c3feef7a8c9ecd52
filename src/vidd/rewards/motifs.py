"""Transcription-factor motif hits from JASPAR 2024 (via pyjaspar), counted fast with numpy.

`MotifScanner` turns JASPAR CORE vertebrate count matrices into log-odds PSSMs (Biopython,
pseudocount 0.5 per cell, uniform background unless told otherwise) and counts, for every
sequence, the windows on both strands whose log-odds score (bits) reaches a per-motif score
threshold.

Threshold (default ``threshold="fpr"``, ``fpr=1e-4``): the smallest score ``t`` such that a
window drawn from the background has ``P(score >= t) <= fpr`` -- the same rule as FIMO's default
``p < 1e-4``. It is computed from the background score distribution, which is built by dynamic
programming over the PSSM columns on a grid of 1e-3 bits (numpy; exact up to that rounding,
at most ``length * 5e-4`` bits). A 200-bp random sequence then has about
``2 * 193 * 1e-4 ~= 0.04`` expected false hits per motif. Alternatives: ``"patser"`` (Hertz &
Stormo: ``fpr = 2 ** -IC``, as Biopython's ``threshold_patser``) or a float in (0, 1), a fraction
of the score range (``min + f * (max - min)``, as TFBSTools' ``min.score="80%"``).

Counting: a window counts once per strand, so a palindromic site that passes on both strands
counts twice, exactly like ``Bio.motifs`` ``pssm.search(seq, threshold, both=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np
from pyjaspar import jaspardb

from vidd.core.alphabets import DNA, SequenceError, dna_codes
from vidd.rewards.base import Reward

HEPG2_TFS: tuple[str, ...] = (
    "HNF4A", "HNF4G", "HNF1A", "HNF1B", "FOXA1", "FOXA2", "FOXA3",
    "CEBPA", "CEBPB", "ONECUT1", "NR2F2", "PPARA",
)
JASPAR_RELEASE = "JASPAR2024"
_GRID = 1e-3  # bits per grid step of the background score distribution


def encode_dna(seqs: Sequence[str], where: str = "sequence") -> np.ndarray:
    """Equal-length ACGT strings -> (n, L) int8 array of 0..3; SequenceError names the first bad one."""
    seqs = list(seqs)
    if not seqs:
        return np.zeros((0, 0), dtype=np.int8)
    length = len(seqs[0])
    for i, s in enumerate(seqs):
        if len(s) != length:
            raise SequenceError(f"{where} {i + 1}: length {len(s)}, expected {length} (all sequences must be equal length)")
    codes = dna_codes(seqs)
    if codes is not None:
        return codes.reshape(len(seqs), length)
    for i, s in enumerate(seqs):  # find and explain the bad sequence
        DNA.validate(s, where=f"{where} {i + 1}")
    raise AssertionError("unreachable")  # pragma: no cover


@lru_cache(maxsize=1)
def _jaspar(release: str):
    return jaspardb(release=release)


@lru_cache(maxsize=64)
def _fetch_tf(name: str, release: str) -> tuple:
    """Latest-version CORE vertebrate matrices whose name equals `name` (case-insensitive)."""
    found = _jaspar(release).fetch_motifs(collection="CORE", tax_group="vertebrates", tf_name=name)
    return tuple(m for m in found if m.name.upper() == name.upper())


def load_jaspar_motifs(tf_names: Sequence[str] = HEPG2_TFS, release: str = JASPAR_RELEASE,
                       strict: bool = False) -> list:
    """Bio.motifs.jaspar.Motif objects for the named TFs (all latest-version CORE vertebrate matrices
    of each name; cached in-process). Names absent from the release are skipped unless `strict`."""
    motifs, missing = [], []
    for name in tf_names:
        got = _fetch_tf(str(name), release)
        if not got:
            missing.append(name)
        motifs.extend(got)
    if missing and strict:
        raise KeyError(f"not in {release} CORE vertebrates: {', '.join(missing)}")
    if not motifs:
        raise KeyError(f"none of {list(tf_names)} is in {release} CORE vertebrates")
    return motifs


def _background(background) -> dict[str, float]:
    if background is None or background == "uniform":
        return {c: 0.25 for c in DNA.letters}
    if isinstance(background, Mapping):
        bg = {c: float(background[c]) for c in DNA.letters}
    else:
        vals = [float(v) for v in background]
        if len(vals) != 4:
            raise ValueError("background must be 'uniform', a dict over ACGT, or 4 numbers (A, C, G, T)")
        bg = dict(zip(DNA.letters, vals))
    total = sum(bg.values())
    if total <= 0 or min(bg.values()) <= 0:
        raise ValueError(f"background probabilities must be positive: {bg}")
    return {c: v / total for c, v in bg.items()}


def score_tail(logodds: np.ndarray, background: np.ndarray, grid: float = _GRID) -> tuple[np.ndarray, np.ndarray]:
    """Background distribution of a PSSM's window score on a grid: (scores, P(score >= scores)).

    `logodds` is (length, 4); `background` the 4 letter probabilities."""
    ints = np.rint(logodds / grid).astype(np.int64)  # (m, 4)
    lo = int(ints.min(axis=1).sum())
    hi = int(ints.max(axis=1).sum())
    dist = np.zeros(hi - lo + 1)
    dist[0] = 1.0
    offset = 0  # grid index of dist[0], relative to 0
    width = 1
    for col in ints:
        cmin = int(col.min())
        new_width = width + int(col.max()) - cmin
        new = np.zeros(new_width)
        for a in range(4):
            s = int(col[a]) - cmin
            new[s:s + width] += dist[:width] * background[a]
        dist[:new_width] = new
        width = new_width
        offset += cmin
    dist = dist[:width]
    tail = np.cumsum(dist[::-1])[::-1]
    return (offset + np.arange(width)) * grid, tail


@dataclass(frozen=True)
class ScanMotif:
    tf: str            # TF name as requested (upper case), the key for per-TF weights
    matrix_id: str     # e.g. "MA0114.5" (or the motif's name for custom motifs)
    name: str          # JASPAR's name (e.g. "Hnf1A")
    logodds: np.ndarray  # (length, 4) bits, columns A C G T
    threshold: float   # score threshold (bits); a hit is score >= threshold

    @property
    def length(self) -> int:
        return self.logodds.shape[0]

    @property
    def max_score(self) -> float:
        return float(self.logodds.max(axis=1).sum())

    @property
    def label(self) -> str:
        return f"{self.name} ({self.matrix_id})"


class MotifScanner:
    """Count motif hits (both strands) per sequence for a set of JASPAR motifs.

    tf_names: TFs to fetch by name from JASPAR (default `HEPG2_TFS`); ignored when `motifs`
        (Bio.motifs Motif objects with counts) is given.
    threshold: "fpr" (default; background P(score >= t) <= `fpr`), "patser", or a float in (0, 1)
        (fraction of the score range).
    """

    def __init__(self, tf_names: Sequence[str] | None = None, threshold: str | float = "fpr",
                 fpr: float = 1e-4, pseudocount: float = 0.5, background=None,
                 release: str = JASPAR_RELEASE, motifs: Sequence | None = None, chunk: int = 2048):
        self.background = _background(background)
        self.pseudocount = float(pseudocount)
        self.fpr = float(fpr)
        self.threshold_rule = threshold
        self.chunk = int(chunk)
        if isinstance(threshold, str):
            if threshold not in ("fpr", "patser"):
                raise ValueError(f"threshold must be 'fpr', 'patser' or a fraction in (0, 1), not {threshold!r}")
            if threshold == "fpr" and not 0 < self.fpr < 1:
                raise ValueError(f"fpr must be in (0, 1), not {fpr}")
        elif not 0 < float(threshold) < 1:
            raise ValueError(f"a numeric threshold is a fraction of the score range, in (0, 1); got {threshold}")
        if motifs is None:
            names = [n.upper() for n in (HEPG2_TFS if tf_names is None else tf_names)]
            load_jaspar_motifs(names, release=release)  # raises KeyError when none exists
            raw = [(n, m) for n in names for m in _fetch_tf(n, release)]
            self.missing = [n for n in names if not _fetch_tf(n, release)]  # names absent from the release
        else:
            raw = [(str(getattr(m, "name", None) or f"motif{i + 1}").upper(), m) for i, m in enumerate(motifs)]
            self.missing = []
        self.motifs: list[ScanMotif] = [self._prepare(tf, m) for tf, m in raw]
        self._rc = [m.logodds[::-1, ::-1].copy() for m in self.motifs]  # reverse complement (ACGT -> TGCA)

    def _prepare(self, tf: str, motif) -> ScanMotif:
        pssm = motif.counts.normalize(pseudocounts=self.pseudocount).log_odds(self.background)
        logodds = np.array([[pssm[c][j] for c in DNA.letters] for j in range(pssm.length)], dtype=np.float64)
        rule = self.threshold_rule
        if isinstance(rule, str):
            bg = np.array([self.background[c] for c in DNA.letters])
            if rule == "fpr":
                fpr = self.fpr
            else:  # patser: log2(fpr) = -IC, IC = expected score under the motif (as Biopython's pssm.mean)
                fpr = 2.0 ** -float(pssm.mean(self.background))
            scores, tail = score_tail(logodds, bg)
            ok = np.nonzero(tail <= fpr)[0]
            threshold = float(scores[ok[0]]) if ok.size else float("inf")
        else:
            lo, hi = logodds.min(axis=1).sum(), logodds.max(axis=1).sum()
            threshold = float(lo + float(rule) * (hi - lo))
        matrix_id = getattr(motif, "matrix_id", None) or getattr(motif, "name", None) or tf
        name = getattr(motif, "name", None) or tf
        return ScanMotif(tf=tf, matrix_id=str(matrix_id), name=str(name), logodds=logodds, threshold=threshold)

    @property
    def motif_labels(self) -> list[str]:
        return [m.label for m in self.motifs]

    @property
    def tfs(self) -> list[str]:
        return [m.tf for m in self.motifs]

    def scores(self, seqs: Sequence[str], index: int) -> tuple[np.ndarray, np.ndarray]:
        """Window scores of motif `index`: (forward, reverse) each (n, L - length + 1), float64."""
        x = encode_dna(seqs)
        return self._window_scores(x, self.motifs[index].logodds), self._window_scores(x, self._rc[index])

    @staticmethod
    def _window_scores(x: np.ndarray, logodds: np.ndarray) -> np.ndarray:
        n, length = x.shape
        m = logodds.shape[0]
        w = length - m + 1
        if w <= 0:
            return np.zeros((n, 0))
        out = logodds[0][x[:, 0:w]]
        for j in range(1, m):
            out += logodds[j][x[:, j:j + w]]
        return out

    def counts(self, seqs: Sequence[str]) -> np.ndarray:
        """(n, n_motifs) int64 hit counts (both strands). Sequences of different lengths are fine."""
        seqs = list(seqs)
        out = np.zeros((len(seqs), len(self.motifs)), dtype=np.int64)
        if not seqs:
            return out
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(i)
        for idx in by_len.values():
            for start in range(0, len(idx), self.chunk):
                part = idx[start:start + self.chunk]
                x = encode_dna([seqs[i] for i in part])
                for k, motif in enumerate(self.motifs):
                    t = motif.threshold
                    fwd = self._window_scores(x, motif.logodds)
                    rev = self._window_scores(x, self._rc[k])
                    out[part, k] = (fwd >= t).sum(axis=1) + (rev >= t).sum(axis=1)
        return out

    def __repr__(self) -> str:
        return f"MotifScanner({len(self.motifs)} motifs: {', '.join(self.motif_labels)}; threshold={self.threshold_rule!r})"


class MotifReward(Reward):
    """Total (optionally per-TF weighted) HepG2 TF motif hits per sequence. Non-differentiable.

    weights: {TF name: weight}; TFs not named get `default_weight`. A TF with several JASPAR
    matrices (e.g. HNF4A: MA1494.2 and MA0114.5) contributes the hits of each of them.
    """

    name = "jaspar:HepG2-motifs"
    higher_is_better = True
    differentiable = False
    cost_hint = 2e-4

    def __init__(self, tf_names: Sequence[str] | None = None, weights: Mapping[str, float] | None = None,
                 default_weight: float = 1.0, scanner: MotifScanner | None = None, **scanner_kwargs):
        self.scanner = scanner or MotifScanner(tf_names=tf_names, **scanner_kwargs)
        weights = {k.upper(): float(v) for k, v in (weights or {}).items()}
        unknown = set(weights) - set(self.scanner.tfs)
        if unknown:
            raise KeyError(f"weights name TFs that are not scanned: {sorted(unknown)} (scanned: {sorted(set(self.scanner.tfs))})")
        self.weights = np.array([weights.get(tf, default_weight) for tf in self.scanner.tfs], dtype=np.float64)

    def score(self, seqs: list[str]) -> np.ndarray:
        return self.scanner.counts(seqs).astype(np.float64) @ self.weights
