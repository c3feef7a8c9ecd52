"""Labelled assay tables (CSV/TSV, comments, errors naming the line) and the synthetic example library: its
planted rule, its labels, and the committed copy in docs/examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidd.data.assays import (
    BINDER_THRESHOLD, TRASTUZUMAB_H3, AssayDataError, read_labelled, read_table, synthetic_binding_score,
    synthetic_h3_library, write_synthetic_h3_library,
)

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "trastuzumab-h3-binding-synthetic.csv"


def test_csv_and_tsv_with_comments(tmp_path):
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("# a comment\nname,seq,y\nx,acgt,1\n\n# another\ny,GGCC,0.5\n")
    data = read_labelled(csv_file, "seq", "y")
    assert data.sequences == ["acgt", "GGCC"] and list(data.labels) == [1.0, 0.5] and data.lines == [3, 6]
    assert data.source["rows"] == 2 and len(data.source["sha256"]) == 64
    tsv = tmp_path / "a.txt"  # any suffix but .csv: tab-separated
    tsv.write_text("seq\ty\nAC,GT\t3\n")
    assert read_labelled(tsv, "seq", "y").sequences == ["AC,GT"]


@pytest.mark.parametrize("text, message", [
    ("seq,y\nACGT,high\n", "line 2: label 'high' in column 'y' is not a number"),
    ("seq,y\nACGT,nan\n", "line 2: the label is not finite"),
    ("seq,y\nACGT,1\n,0\n", "line 3 has no value in column 'seq'"),
    ("sequence,y\nACGT,1\n", "no sequence column 'seq'; columns: sequence, y"),
    ("seq,y\n", "a header but no data rows"),
    ("# only a comment\n", "no header row"),
])
def test_table_errors_name_the_line_or_column(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(AssayDataError, match=message):
        read_labelled(path, "seq", "y")


def test_the_planted_rule_and_the_labels():
    assert synthetic_binding_score(TRASTUZUMAB_H3) == 4.5
    assert synthetic_binding_score("ARGGGSGSYYFDY") == -0.75  # the collapsed germline-like loop: a non-binder
    rows = synthetic_h3_library(500, seed=3)
    assert all(r["cdr_h3"][:2] == "SR" and r["cdr_h3"][-1] == "Y" and len(r["cdr_h3"]) == 13 for r in rows)
    assert all(r["binder"] == int(r["log_enrichment"] > BINDER_THRESHOLD) for r in rows)
    score = np.array([synthetic_binding_score(r["cdr_h3"]) for r in rows])
    noise = np.array([r["log_enrichment"] for r in rows]) - score
    assert abs(noise.mean()) < 0.1 and 0.4 < noise.std() < 0.6  # N(0, 0.5^2)
    assert 0.2 < np.mean([r["binder"] for r in rows]) < 0.6
    assert synthetic_h3_library(500, seed=3) == rows


def test_the_committed_example_is_what_vidd_makes(tmp_path):
    write_synthetic_h3_library(tmp_path / "x.csv", n=2000, seed=0)
    assert (tmp_path / "x.csv").read_text() == EXAMPLE.read_text()
    assert EXAMPLE.read_text().startswith("# SYNTHETIC data, not a measurement")
    assert read_table(EXAMPLE).header == ["cdr_h3", "binder", "log_enrichment"]
