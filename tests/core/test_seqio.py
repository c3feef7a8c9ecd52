"""Score journals of vidd.core.seqio: appended as scores come, read back after an interruption."""

from __future__ import annotations

import math

import pytest

from vidd.core.alphabets import SequenceError
from vidd.core.seqio import append_scores, read_score_journal


def test_a_journal_reads_back_what_was_appended_and_drops_a_cut_short_last_line(tmp_path):
    path = tmp_path / "scores.tsv"
    assert read_score_journal(path) == {}
    append_scores(path, ["ACGT", "[C][O]", ""], [1.5, float("nan"), 0.0])
    append_scores(path, ["TTTT"], [-0.1])
    with open(path, "a") as f:
        f.write("GGGG\t2.")  # a write cut short by a killed process
    scores = read_score_journal(path)
    assert list(scores) == ["ACGT", "[C][O]", "", "TTTT"] and scores[""] == 0.0
    assert scores["ACGT"] == 1.5 and math.isnan(scores["[C][O]"]) and scores["TTTT"] == -0.1


@pytest.mark.parametrize("line", ["ACGT 1.5", "ACGT\tone", "ACGT\t", "ACGT\t1.5\textra"])
def test_a_malformed_journal_line_is_named(tmp_path, line):
    path = tmp_path / "scores.tsv"
    path.write_text(f"TTTT\t0.5\n{line}\n")
    with pytest.raises(SequenceError, match=r"scores.tsv: line 2 is not 'sequence<TAB>value'"):
        read_score_journal(path)


@pytest.mark.parametrize("seq", ["AC\tGT", "AC\nGT"])
def test_a_sequence_a_journal_cannot_hold_is_refused_before_writing(tmp_path, seq):
    path = tmp_path / "scores.tsv"
    with pytest.raises(ValueError, match="a score journal cannot hold the sequence"):
        append_scores(path, ["ACGT", seq], [1.0, 2.0])
    assert not path.exists()
