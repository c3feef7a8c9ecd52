"""Motif scanning (JASPAR via pyjaspar's bundled DB), set metrics, and the Markov baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidd.core.alphabets import SequenceError
from vidd.eval.markov import MarkovChain
from vidd.eval.metrics import diversity, kmer_corr, kmer_count_vectors, kmer_counts, motif_corr, uniqueness
from vidd.rewards.motifs import HEPG2_TFS, MotifReward, MotifScanner, load_jaspar_motifs, score_tail


# ---------------------------------------------------------------- metrics

def test_diversity_hand_computed():
    # d(AAAA,AAAT)=1/4, d(AAAA,TTTT)=1, d(AAAT,TTTT)=3/4; mean over 6 ordered pairs = 2*(2)/6
    assert diversity(["AAAA", "AAAT", "TTTT"]) == pytest.approx(2.0 / 3.0)
    assert diversity(["ACGT", "ACGT"]) == 0.0
    assert diversity(["AC", "GT"]) == 1.0


def test_diversity_matches_bruteforce():
    rng = np.random.default_rng(1)
    seqs = ["".join(rng.choice(list("ACGT"), 12)) for _ in range(30)]
    seqs += seqs[:5]  # duplicates
    m = len(seqs)
    brute = sum(sum(a != b for a, b in zip(seqs[i], seqs[j])) / 12 for i in range(m) for j in range(m) if i != j)
    assert diversity(seqs) == pytest.approx(brute / (m * (m - 1)))


def test_metric_errors():
    with pytest.raises(ValueError, match="diversity"):
        diversity([])
    with pytest.raises(ValueError, match="at least 2"):
        diversity(["ACGT"])
    with pytest.raises(SequenceError, match="length"):
        diversity(["ACGT", "ACG"])
    with pytest.raises(ValueError):
        uniqueness([])
    with pytest.raises(ValueError):
        kmer_counts([], 3)
    with pytest.raises(ValueError):
        kmer_corr([], ["ACGT"])
    with pytest.raises(SequenceError, match="'N'"):
        kmer_counts(["ACGN"], 2)
    with pytest.raises(ValueError):
        motif_corr(np.zeros((0, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="motifs"):
        motif_corr(np.ones((2, 3)), np.ones((2, 4)))


def test_uniqueness():
    assert uniqueness(["AC", "AC", "GT", "TT"]) == 0.75
    assert uniqueness(["A"]) == 1.0


def test_kmer_counts_tiny():
    c = kmer_counts(["AACG"], 2)  # AA, AC, CG
    assert c.shape == (16,) and c.sum() == 3
    assert c[0] == 1 and c[1] == 1 and c[1 * 4 + 2] == 1
    c1 = kmer_counts(["ACGT", "AAAA"], 1)
    assert c1.tolist() == [5, 1, 1, 1]
    assert kmer_counts(["TTT"], 3)[63] == 1


def test_kmer_corr_identical_and_scaling():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 50, p=[0.4, 0.1, 0.2, 0.3])) for _ in range(40)]
    assert kmer_corr(seqs, seqs) == pytest.approx(1.0)
    assert kmer_corr(seqs, seqs + seqs) == pytest.approx(1.0)  # reference rescaled by n_gen/n_ref
    g, r = kmer_count_vectors(seqs, seqs + seqs, 3)
    np.testing.assert_allclose(g, r)


def test_motif_corr():
    a = np.array([[1, 0, 2], [3, 0, 0]])
    assert motif_corr(a, a) == pytest.approx(1.0)
    assert motif_corr(a, 2 * a[:1].repeat(5, 0)) < 1.0


# ---------------------------------------------------------------- Markov

def test_markov_order0_is_entropy():
    mc = MarkovChain(0).fit(["AACG"], pseudocount=0.0)
    # p = (1/2, 1/4, 1/4, 0): held-out "AACG" costs the entropy 1.5 bits/base
    assert mc.log_loss_bits(["AACG"]) == pytest.approx(1.5)
    assert mc.log_loss_bits(["ACGA", "GACA"]) == pytest.approx(1.5)


def test_markov_order1_hand_computed():
    # order 1 on "AACA": first base by order 0 (A 3/4, C 1/4); transitions A->A, A->C, C->A
    mc = MarkovChain(1).fit(["AACA"], pseudocount=0.0)
    expected = -(math.log2(3 / 4) + math.log2(1 / 2) + math.log2(1 / 2) + math.log2(1.0)) / 4
    assert mc.log_loss_bits(["AACA"]) == pytest.approx(expected)


def test_markov_recovers_order1_structure():
    rng = np.random.default_rng(0)
    trans = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])
    true = MarkovChain(1)
    true.log2p = [np.log2(np.full((1, 4), 0.25)), np.log2(trans)]
    train = true.sample(300, 100, rng)
    test = true.sample(100, 100, rng)
    losses = {k: MarkovChain(k).fit(train, pseudocount=0.1).log_loss_bits(test) for k in (0, 1, 2)}
    h1 = -(trans[0] * np.log2(trans[0])).sum()  # 1.357 bits: the true entropy rate
    assert losses[0] == pytest.approx(2.0, abs=0.02)
    assert losses[1] < losses[0] - 0.5
    assert losses[1] == pytest.approx(h1, abs=0.03)
    assert losses[2] >= losses[1] - 0.01  # no further gain from extra order
    samples = MarkovChain(2).fit(train).sample(5, 30, rng=1)
    assert len(samples) == 5 and all(len(s) == 30 and set(s) <= set("ACGT") for s in samples)


def test_markov_errors():
    with pytest.raises(RuntimeError):
        MarkovChain(2).log_loss_bits(["ACGT"])
    with pytest.raises(SequenceError):
        MarkovChain(1).fit(["ACGX"])
    with pytest.raises(ValueError):
        MarkovChain(-1)


# ---------------------------------------------------------------- motifs

@pytest.fixture(scope="module")
def scanner():
    return MotifScanner()


def test_jaspar_hepg2_motifs_load(scanner):
    motifs = load_jaspar_motifs(HEPG2_TFS)
    assert len(motifs) >= 12
    assert {"HNF4A", "FOXA2", "CEBPB"} <= set(scanner.tfs)
    assert all(m.threshold < m.max_score for m in scanner.motifs)


def test_fpr_threshold_distribution():
    # 2-column toy PSSM: exact background tail at each grid point
    lo = np.array([[1.0, -1.0, -1.0, -1.0], [2.0, 0.0, 0.0, -2.0]])
    scores, tail = score_tail(lo, np.full(4, 0.25))
    assert tail[0] == pytest.approx(1.0)
    assert tail[np.argmin(abs(scores - 3.0))] == pytest.approx(1 / 16)  # only "AA" reaches 3


def _planted(scanner, k, rng):
    motif = scanner.motifs[k]
    consensus = "".join("ACGT"[i] for i in motif.logodds.argmax(axis=1))
    seqs = []
    for _ in range(6):
        s = list(rng.choice(list("ACGT"), 120))
        pos = rng.integers(0, 120 - motif.length)
        s[pos:pos + motif.length] = consensus
        seqs.append("".join(s))
    return seqs


@pytest.mark.parametrize("k", [0, 6, 10])
def test_counts_match_biopython_search(scanner, k):
    rng = np.random.default_rng(k)
    motif = scanner.motifs[k]
    jm = [m for m in load_jaspar_motifs([motif.tf]) if m.matrix_id == motif.matrix_id][0]
    pssm = jm.counts.normalize(pseudocounts=0.5).log_odds({c: 0.25 for c in "ACGT"})
    seqs = _planted(scanner, k, rng)
    ours = scanner.counts(seqs)[:, k]
    assert (ours >= 1).all()  # the planted consensus is found
    fwd, rev = scanner.scores(seqs, k)
    for i, s in enumerate(seqs):
        bio = list(pssm.search(s, threshold=motif.threshold, both=True))
        ref_scores = np.sort([sc for _, sc in bio])
        assert ours[i] == len(bio)
        all_scores = np.concatenate([fwd[i], rev[i]])
        np.testing.assert_allclose(np.sort(all_scores[all_scores >= motif.threshold]), ref_scores, atol=1e-4)
        # and the window scores themselves agree with Biopython's calculate
        np.testing.assert_allclose(fwd[i], pssm.calculate(s), atol=1e-4)
        np.testing.assert_allclose(rev[i], pssm.reverse_complement().calculate(s), atol=1e-4)


def test_threshold_rules():
    s_patser = MotifScanner(["FOXA2"], threshold="patser")
    s_rel = MotifScanner(["FOXA2"], threshold=0.8)
    m = s_rel.motifs[0]
    lo, hi = m.logodds.min(axis=1).sum(), m.logodds.max(axis=1).sum()
    assert m.threshold == pytest.approx(lo + 0.8 * (hi - lo))
    assert s_patser.motifs[0].threshold < s_patser.motifs[0].max_score
    with pytest.raises(ValueError):
        MotifScanner(["FOXA2"], threshold="bogus")


def test_motif_reward(scanner):
    reward = MotifReward(scanner=scanner)
    assert reward.name == "jaspar:HepG2-motifs" and not reward.differentiable
    rng = np.random.default_rng(3)
    seqs = _planted(scanner, 0, rng) + ["A" * 200, "ACGT" * 50]
    values = reward(seqs)
    assert values.shape == (len(seqs),) and values.dtype == np.float64
    np.testing.assert_array_equal(values, scanner.counts(seqs).sum(axis=1))
    weighted = MotifReward(scanner=scanner, weights={"HNF4A": 2.0}, default_weight=0.0)
    hnf4a = [j for j, tf in enumerate(scanner.tfs) if tf == "HNF4A"]
    np.testing.assert_array_equal(weighted(seqs), 2.0 * scanner.counts(seqs)[:, hnf4a].sum(axis=1))
    with pytest.raises(SequenceError, match="'N'"):
        reward(["ACGTN" * 40])
    with pytest.raises(KeyError):
        MotifReward(scanner=scanner, weights={"SOX2": 1.0})
    assert reward([]).shape == (0,)


def test_markov_is_normalised_and_matches_bruteforce():
    import itertools

    rng = np.random.default_rng(5)
    train = ["".join(rng.choice(list("ACGT"), 40, p=[0.4, 0.1, 0.2, 0.3])) for _ in range(20)]
    mc = MarkovChain(2).fit(train, pseudocount=0.5)
    every = ["".join(p) for p in itertools.product("ACGT", repeat=4)]
    total = sum(2.0 ** mc.log_likelihood_bits([s])[0] for s in every)
    assert total == pytest.approx(1.0)
    # brute force from the counts, not the model's table: P_j(next | j previous bases) = (n(context + next) + pc) /
    # (sum_c n(context + c) + 4 pc) over the training (j+1)-mers; base t is scored by the chain of order min(t, 2)
    from collections import Counter

    grams = [Counter(s[i:i + j + 1] for s in train for i in range(len(s) - j)) for j in range(3)]

    def log2p(context: str, nxt: str) -> float:
        n = grams[len(context)]
        return math.log2((n[context + nxt] + 0.5) / (sum(n[context + c] for c in "ACGT") + 4 * 0.5))

    for s in (train[0], "GATTACAGATTACA", "TTTT"):
        ll = sum(log2p(s[max(0, t - 2):t], s[t]) for t in range(len(s)))
        assert mc.log_loss_bits([s]) == pytest.approx(-ll / len(s))


def test_finite_median_skips_unscorable_samples():
    from vidd.eval.metrics import finite_median

    assert finite_median([1.0, float("nan"), 3.0, float("inf"), 2.0]) == 2.0
    assert np.isnan(finite_median([float("nan")])) and np.isnan(finite_median([]))
