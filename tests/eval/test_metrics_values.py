"""Sequence-set metrics on different sets against values computed by hand (the identical-set tests
elsewhere cannot tell a correct correlation from one that always returns 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vidd.core.alphabets import SequenceError
from vidd.eval.metrics import (
    diversity, finite_median, kmer_corr, kmer_count_vectors, kmer_counts, motif_corr, pearson, uniqueness,
)


def test_kmer_corr_of_different_sets_by_hand():
    """k = 2. generated AAC, ACG: AA 1, AC 2, CG 1. reference CCC, ACG, GGG: CC 2, AC 1, CG 1, GG 2, rescaled by
    2/3. Over the union {AA, AC, CC, CG, GG}: g = (1, 2, 0, 1, 0), r ~ (0, 1, 2, 1, 2); centred
    g = (.2, 1.2, -.8, .2, -.8), r = (-1.2, -.2, .8, -.2, .8): r = -1.8 / sqrt(2.8 * 2.8) = -9/14.

    Kills: a correlation over all 16 k-mers or over the intersection, a constant 1, sign errors."""
    assert kmer_corr(["AAC", "ACG"], ["CCC", "ACG", "GGG"], k=2) == pytest.approx(-9 / 14)
    # over all 16 2-mers (no union restriction) the value would differ
    g, r = kmer_count_vectors(["AAC", "ACG"], ["CCC", "ACG", "GGG"], 2)
    assert pearson(g, r) != pytest.approx(-9 / 14)


def test_kmer_corr_uncorrelated_and_anticorrelated_sets():
    """k = 1. generated AC: (A, C, G, T) = (1, 1, 0, 0); reference GT, AA: (2, 0, 1, 1) / 2. Centred:
    (.5, .5, -.5, -.5) . (.5, -.5, 0, 0) = 0, so r = 0 exactly. AACC vs GGTT share no letter: r = -1."""
    assert kmer_corr(["AC"], ["GT", "AA"], k=1) == pytest.approx(0.0, abs=1e-12)
    assert kmer_corr(["AACC"], ["GGTT"], k=1) == pytest.approx(-1.0)


def test_kmer_count_vectors_rescale_the_reference_to_the_generated_set():
    g, r = kmer_count_vectors(["AC", "AC", "AA"], ["CC"], k=1)  # n_gen / n_ref = 3
    np.testing.assert_array_equal(g, [4.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(r, [0.0, 6.0, 0.0, 0.0])
    g, r = kmer_count_vectors(["GT"], ["AA", "TT", "GG", "CC"], k=1)  # 1 / 4
    np.testing.assert_array_equal(r, [0.5, 0.5, 0.5, 0.5])


def test_kmer_counts_of_mixed_lengths_by_hand():
    """Sequences of several lengths are counted group by group; shorter than k adds nothing."""
    c = kmer_counts(["ACG", "TT", "A", "GTAC"], 2)
    expected = np.zeros(16, dtype=int)
    for kmer in ("AC", "CG", "TT", "GT", "TA", "AC"):
        expected["ACGT".index(kmer[0]) * 4 + "ACGT".index(kmer[1])] += 1
    np.testing.assert_array_equal(c, expected)
    assert kmer_counts(["A", "C"], 2).sum() == 0
    assert kmer_counts(["GATTACA"], 7)[int("2033010", 4)] == 1  # G A T T A C A in base 4, first letter high
    with pytest.raises(SequenceError):
        kmer_counts(["ACGU"], 1)
    with pytest.raises(ValueError, match="positive integer"):
        kmer_counts(["ACGT"], 0)
    with pytest.raises(ValueError, match="positive integer"):
        kmer_counts(["ACGT"], 1.5)


def test_motif_corr_of_different_sets_by_hand():
    """Per-motif means: generated (2, 0, 1), reference (0, 2, 2); centred (1, -1, 0) and (-4/3, 2/3, 2/3):
    r = -2 / sqrt(2 * 8/3) = -sqrt(3) / 2."""
    g = np.array([[1, 0, 2], [3, 0, 0]])
    r = np.array([[0, 1, 1], [0, 3, 1], [0, 2, 4]])
    assert motif_corr(g, r) == pytest.approx(-math.sqrt(3) / 2)
    assert motif_corr(g, np.array([[4, 0, 2]])) == pytest.approx(1.0)  # proportional profiles
    assert np.isnan(motif_corr(g, np.ones((2, 3))))  # a constant profile: correlation undefined
    with pytest.raises(ValueError, match="n_motifs"):
        motif_corr(np.ones(3), np.ones((2, 3)))


def test_pearson_by_hand():
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])
    # centred (-1, 0, 1) . (1, -2, 1) = 0
    assert pearson([1, 2, 3], [1, -1, 1]) == pytest.approx(0.0, abs=1e-12)
    assert pearson([1, 2], [2, 1]) == -1.0
    assert np.isnan(pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="shapes"):
        pearson([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="2 points"):
        pearson([1], [2])


def test_diversity_and_uniqueness_by_hand():
    """Ordered pairs of AC, AC, GT: distances 0, 1, 0, 1, 1, 1 -> 4/6. Non-ASCII letters take the code-point
    path: two of three positions differ between the two sequences."""
    assert diversity(["AC", "AC", "GT"]) == pytest.approx(2 / 3)
    assert diversity(["AAAA", "AAAA"]) == 0.0
    assert diversity(["αβγ", "αδε"]) == pytest.approx(2 / 3)
    assert diversity(["AAAA", "CCCC", "GGGG", "TTTT"]) == 1.0
    assert uniqueness(["AC", "AC", "GT"]) == pytest.approx(2 / 3)
    with pytest.raises(SequenceError, match="empty"):
        diversity(["", ""])


def test_finite_median_by_hand():
    assert finite_median([3.0, float("nan"), 1.0, 2.0, 10.0]) == 2.5
    assert finite_median([float("-inf"), 4.0]) == 4.0


def test_pearson_stays_within_minus_one_and_one():
    """Perfectly (anti-)correlated vectors whose float arithmetic lands one ulp beyond +-1 come back as exactly
    +-1; den = 1 exactly is a valid correlation (only den = 0 is undefined)."""
    a = np.array([0.22, -1.01, -0.21, -0.16, 0.54])
    assert pearson(a, a * 0.1) == 1.0
    b = np.array([-0.54, 0.58, 0.36, 0.29, 0.03, 0.55])
    assert pearson(b, b * -7.0) == -1.0
    assert pearson([0.0, 1.0], [0.0, 2.0]) == pytest.approx(1.0)  # centred sums of squares 1/2 and 2: den = 1


def test_kmer_corr_defaults_to_3_mers():
    gen, ref = ["ACGTTGCAAC", "GGGTTTACGA"], ["TTTTGGGGCA", "ACACACGTGT"]
    assert kmer_corr(gen, ref) == kmer_corr(gen, ref, k=3) != pytest.approx(kmer_corr(gen, ref, k=4))
    assert np.array_equal(kmer_count_vectors(gen, ref)[0], kmer_count_vectors(gen, ref, 3)[0])


def test_metric_messages_name_the_problem():
    with pytest.raises(ValueError, match="needs at least one sequence, got 0"):
        uniqueness([])
    with pytest.raises(ValueError, match="needs at least 2 sequences, got 1"):
        diversity(["ACGT"])
    with pytest.raises(SequenceError, match="sequence 2 has length 3, expected 4"):
        diversity(["ACGT", "ACG"])
    assert diversity(["A", "C", "C"]) == pytest.approx(4 / 6)  # length 1 is fine, only empty strings fail
    with pytest.raises(SequenceError):
        kmer_counts(["ACGα"], 1)  # non-ASCII: validated through the DNA alphabet
    with pytest.raises(ValueError, match="2 points"):  # one motif: a correlation needs two
        motif_corr(np.ones((2, 1)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="non-empty"):
        motif_corr(np.ones((2, 0)), np.ones((2, 0)))
