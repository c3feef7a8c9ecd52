"""k-th order Markov chain over DNA (ACGT): a likelihood baseline for sequence models.

`MarkovChain(order).fit(seqs, pseudocount)` counts (j+1)-mers for every j = 0..order on the same
data, giving a chain of each order j with P_j(next | previous j bases) = (count + pc) /
(context count + 4 pc). The model of a sequence is

    P(x) = prod_{t < order} P_t(x_t | x_0..x_{t-1}) * prod_{t >= order} P_order(x_t | x_{t-order}..x_{t-1}),

i.e. the first `order` bases are scored by the lower-order chains, so every base is scored and
`log_loss_bits` is the exact mean -log2 P per base of that normalised model.
`sample` draws from exactly the same model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from vidd.core.alphabets import DNA, SequenceError, dna_codes


def _encode_groups(seqs: Sequence[str], what: str) -> list[np.ndarray]:
    """Group sequences by length -> list of (n, L) int8 arrays of 0..3."""
    seqs = list(seqs)
    if not seqs:
        raise ValueError(f"{what}: needs at least one sequence")
    by_len: dict[int, list[str]] = {}
    for s in seqs:
        by_len.setdefault(len(s), []).append(s)
    out = []
    for length, group in by_len.items():
        if length == 0:
            continue
        x = dna_codes(group)
        if x is None:
            for i, s in enumerate(seqs):
                DNA.validate(s, where=f"{what}: sequence {i + 1}")
        out.append(x.reshape(len(group), length))
    if not out:
        raise SequenceError(f"{what}: all sequences are empty")
    return out


def _windows(x: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (base-4 index of the j previous bases) and next bases for positions t >= j."""
    n, length = x.shape
    w = length - j
    ctx = np.zeros((n, max(w, 0)), dtype=np.int64)
    for i in range(j):
        ctx = ctx * 4 + x[:, i:i + w]
    return ctx, x[:, j:]


class MarkovChain:
    def __init__(self, order: int):
        if int(order) != order or order < 0:
            raise ValueError(f"order must be a non-negative integer, got {order}")
        self.order = int(order)
        self.log2p: list[np.ndarray] | None = None  # per order j: (4**j, 4) log2 probabilities

    def fit(self, seqs: Sequence[str], pseudocount: float = 0.01) -> "MarkovChain":
        if pseudocount < 0:
            raise ValueError(f"pseudocount must be >= 0, got {pseudocount}")
        groups = _encode_groups(seqs, "MarkovChain.fit")
        self.pseudocount = float(pseudocount)
        self.log2p = []
        for j in range(self.order + 1):
            counts = np.zeros(4 ** j * 4, dtype=np.float64)
            for x in groups:
                ctx, nxt = _windows(x, j)
                if nxt.size:
                    counts += np.bincount((ctx * 4 + nxt).ravel(), minlength=4 ** j * 4)
            counts = counts.reshape(4 ** j, 4) + pseudocount
            totals = counts.sum(axis=1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                # a context never seen with pseudocount 0: fall back to uniform
                probs = np.where(totals > 0, counts / np.where(totals > 0, totals, 1), 0.25)
                self.log2p.append(np.log2(probs))
        return self

    def _check_fitted(self):
        if self.log2p is None:
            raise RuntimeError("MarkovChain: call fit() first")

    def log_likelihood_bits(self, seqs: Sequence[str]) -> tuple[float, int]:
        """(total log2-likelihood, number of bases) of the sequences under the model."""
        self._check_fitted()
        total, nbases = 0.0, 0
        for x in _encode_groups(seqs, "MarkovChain.log_loss_bits"):
            n, length = x.shape
            nbases += n * length
            k = self.order
            if length > k:
                ctx, nxt = _windows(x, k)
                total += float(self.log2p[k][ctx, nxt].sum())
            for t in range(min(k, length)):  # first bases: chain of order t on the t bases before
                ctx = np.zeros(n, dtype=np.int64)
                for i in range(t):
                    ctx = ctx * 4 + x[:, i]
                total += float(self.log2p[t][ctx, x[:, t]].sum())
        return total, nbases

    def log_loss_bits(self, seqs: Sequence[str]) -> float:
        """Exact mean negative log2-likelihood per base (every base scored)."""
        total, nbases = self.log_likelihood_bits(seqs)
        return -total / nbases

    def sample(self, n: int, length: int, rng: np.random.Generator | int | None = None) -> list[str]:
        """n sequences of the given length from the fitted model (vectorised over n)."""
        self._check_fitted()
        rng = np.random.default_rng(rng)
        x = np.zeros((n, length), dtype=np.int64)
        probs = [np.exp2(lp) for lp in self.log2p]
        cdfs = [np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1) for p in probs]
        for t in range(length):
            j = min(t, self.order)
            ctx = np.zeros(n, dtype=np.int64)
            for i in range(t - j, t):
                ctx = ctx * 4 + x[:, i]
            u = rng.random(n)[:, None]
            x[:, t] = np.minimum((u >= cdfs[j][ctx]).sum(axis=1), 3)
        letters = np.frombuffer(DNA.letters.encode("ascii"), dtype=np.uint8)
        return [row.tobytes().decode("ascii") for row in letters[x]]
