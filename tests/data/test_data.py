"""Data fetcher (with a local wheel index: no network), DHS table parsing, FASTA input errors."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from vidd.core.alphabets import DNA, SequenceError
from vidd.data.dhs import read_dhs_table
from vidd.data import fetch
from vidd.data.fetch import FetchError, WheelFile, fetch_wheel_file, fetch_wheel_files
from vidd.core.seqio import read_sequences, write_fasta

PAYLOAD = b"dhs_id\tsequence\n"


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """A folder with one wheel; pip is told to use it instead of any index."""
    links = tmp_path / "links"
    links.mkdir()
    with zipfile.ZipFile(links / "toydata-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("toydata/data/table.txt", PAYLOAD)
        zf.writestr("toydata-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: toydata\nVersion: 1.0\n")
        zf.writestr("toydata-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr("toydata-1.0.dist-info/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    return links


def spec(sha=hashlib.sha256(PAYLOAD).hexdigest(), member="toydata/data/table.txt"):
    return WheelFile("toydata==1.0", member, sha, "table.txt")


def test_fetch_extracts_and_verifies(local_index, tmp_path):
    cache = tmp_path / "cache"
    path = fetch_wheel_file(spec(), cache)
    assert path.read_bytes() == PAYLOAD
    assert fetch_wheel_file(spec(), cache) == path  # second call: from the cache
    assert [p.name for p in cache.iterdir()] == ["table.txt"]  # no temporary leftovers


def test_fetch_several_files_of_one_wheel_downloads_it_once_into_subfolders(local_index, tmp_path, monkeypatch):
    downloads = []
    real = fetch._download_wheel
    monkeypatch.setattr(fetch, "_download_wheel", lambda package, dest: downloads.append(package) or real(package, dest))
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    specs = [WheelFile("toydata==1.0", "toydata/data/table.txt", sha, "toy/a.txt"),
             WheelFile("toydata==1.0", "toydata/data/table.txt", sha, "toy/b.txt")]
    cache = tmp_path / "cache"
    paths = fetch_wheel_files(specs, cache)
    assert [p.relative_to(cache).as_posix() for p in paths] == ["toy/a.txt", "toy/b.txt"]
    assert all(p.read_bytes() == PAYLOAD for p in paths) and downloads == ["toydata==1.0"]
    assert fetch_wheel_files(specs, cache) == paths and downloads == ["toydata==1.0"]  # from the cache


def test_fetch_rejects_checksum_mismatch(local_index, tmp_path):
    with pytest.raises(FetchError, match="expected"):
        fetch_wheel_file(spec(sha="0" * 64), tmp_path / "cache")
    assert not (tmp_path / "cache" / "table.txt").exists()


def test_fetch_detects_corrupt_cached_file(local_index, tmp_path):
    cache = tmp_path / "cache"
    fetch_wheel_file(spec(), cache)
    (cache / "table.txt").write_bytes(b"garbage")
    with pytest.raises(FetchError, match="corrupt"):
        fetch_wheel_file(spec(), cache)


def test_fetch_missing_member(local_index, tmp_path):
    with pytest.raises(FetchError, match="has no file"):
        fetch_wheel_file(spec(member="toydata/none.txt"), tmp_path / "cache")


def test_fetch_offline_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))  # an empty folder: nothing can be found
    with pytest.raises(FetchError, match="could not download"):
        fetch_wheel_file(spec(), tmp_path / "cache")


def test_dhs_table_parsing_and_errors(tmp_path):
    cols = ["chr", "sequence", "GM12878_ENCLB441ZZZ", "hESCT0_ENCLB449ZZZ", "K562_ENCLB843GMH",
            "HepG2_ENCLB029COU", "data_label"]
    rows = [["chr3", "acgt", "0", "0", "0", "1", "training"], ["chr1", "ACGA", "1", "0", "0", "0", "test"]]
    good = tmp_path / "t.tsv"
    good.write_text("\n".join("\t".join(r) for r in [cols, *rows]) + "\n")
    splits = read_dhs_table(good)
    assert splits["train"].sequences == ["ACGT"] and splits["train"].of_cell_type("HepG2") == ["ACGT"]
    assert splits["test"].labels.tolist() == [0] and splits["valid"].sequences == []
    bad = tmp_path / "bad.tsv"
    bad.write_text("chr\tsequence\nchr1\tACGT\n")
    with pytest.raises(FetchError, match="missing columns"):
        read_dhs_table(bad)


def test_fasta_round_trip_and_errors(tmp_path):
    path = tmp_path / "a.fasta"
    write_fasta(path, ["ACGT", "TTTT"])
    assert read_sequences(path, DNA) == ["ACGT", "TTTT"]
    (tmp_path / "empty.fasta").write_text("")
    with pytest.raises(SequenceError, match="empty"):
        read_sequences(tmp_path / "empty.fasta", DNA)
    (tmp_path / "blank.fasta").write_text(">a\n\n>b\nACGT\n")
    with pytest.raises(SequenceError, match="record 1 .* empty sequence"):
        read_sequences(tmp_path / "blank.fasta", DNA)
    (tmp_path / "n.fasta").write_text(">a\nACGT\n>b\nACNT\n")
    with pytest.raises(SequenceError, match=r"n.fasta: record 2 \('b'\): character 'N' at position 3"):
        read_sequences(tmp_path / "n.fasta", DNA)
    with pytest.raises(SequenceError, match="file not found"):
        read_sequences(tmp_path / "missing.fasta", DNA)
