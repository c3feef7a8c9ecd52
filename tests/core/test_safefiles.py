"""Files read without running code in them: model folders and state files carry their own hash, a pickle
that would run code is refused, a vidd 0.1 pickle loads only when trusted."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from support.toy import toy_model

from vidd.core import safefiles
from vidd.core.safefiles import (
    CheckpointError, content_digest, load_state, read_folder, save_state, weights_sha256, write_folder,
)


class RunsCode:
    """Unpickling this runs a shell command (what a crafted checkpoint does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def flip(path, offset: int, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_state_round_trip_and_content_hash(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "iteration": 3, "cache": {"AC": 0.5},
             "buffer": [torch.ones(2, dtype=torch.long)], "note": None}
    save_state(state, tmp_path / "s.pt")
    loaded = load_state(tmp_path / "s.pt")
    assert content_digest(loaded) == content_digest(state) and loaded["iteration"] == 3
    assert content_digest({**state, "iteration": 4}) != content_digest(state)
    assert content_digest({"a": torch.zeros(2)}) != content_digest({"a": torch.zeros(2, dtype=torch.float64)})
    with pytest.raises(TypeError, match="plain values and tensors"):
        content_digest({"a": object()})


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b""), "empty \\(0 bytes\\)"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated or corrupted"),
    (lambda p: flip(p, p.read_bytes().index(b"\x00\x00\x80\x3f")), "corrupted: its content does not match"),
    (lambda p: p.write_text("hello"), "truncated or corrupted"),
])
def test_damaged_state_files_are_refused(tmp_path, damage, message):
    path = tmp_path / "s.pt"
    save_state({"w": torch.ones(4096), "n": 1}, path)  # 1.0 is 00 00 80 3f in float32
    damage(path)
    with pytest.raises(CheckpointError, match=message):
        load_state(path)


def test_a_pickle_that_runs_code_is_refused_unless_trusted(tmp_path):
    marker = tmp_path / "PWNED"
    torch.save({"format": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="safe load refuses.*posix.system.*--trust-checkpoint"):
        load_state(tmp_path / "evil.pt")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="outside what a vidd 0.1 checkpoint holds"):
        load_state(tmp_path / "evil.pt", trust=True)  # trusted or not, no pickled call runs
    assert not marker.exists()


def test_a_state_without_hash_loads_only_when_trusted(tmp_path):
    torch.save({"iteration": 2}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="no content hash"):
        load_state(tmp_path / "old.pt")
    assert load_state(tmp_path / "old.pt", trust=True) == {"iteration": 2}


@pytest.mark.parametrize("legacy_format", [False, True])
def test_a_trusted_vidd_01_file_with_numpy_values_loads(legacy_format, tmp_path):
    """What vidd 0.1 files held beyond tensors: numpy arrays and scalars (the reward cache), numpy random states
    and generators, paths; in torch's zip format and in its pre-zip format."""
    state = {"cache": {"AC": np.float64(0.5), "GT": np.arange(3)}, "counts": np.int64(3), "flag": np.bool_(True),
             "floats": np.zeros(2, np.float32), "random_state": np.random.RandomState(1),
             "generator": np.random.default_rng(2), "legacy_state": np.random.get_state(), "out": Path("/runs/a"),
             "order": OrderedDict(a=1), "w": torch.ones(2)}
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=not legacy_format)
    loaded = load_state(tmp_path / "old.pt", trust=True)
    assert loaded["cache"]["AC"] == 0.5 and loaded["cache"]["GT"].tolist() == [0, 1, 2] and loaded["counts"] == 3
    assert loaded["random_state"].randint(1000) == np.random.RandomState(1).randint(1000)
    assert loaded["generator"].integers(1000) == np.random.default_rng(2).integers(1000)
    assert loaded["out"] == Path("/runs/a") and torch.equal(loaded["w"], torch.ones(2))


def test_model_folder_weights_are_checked_against_their_hash(tmp_path):
    model = toy_model()
    write_folder(tmp_path / "m", {"format": "x"}, model.state_dict())
    config, tensors = read_folder(tmp_path / "m")
    assert config["weights"]["sha256"] == weights_sha256(model.state_dict())
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())
    weights = tmp_path / "m" / "model.safetensors"
    flip(weights, weights.stat().st_size - 200)
    with pytest.raises(CheckpointError, match="model.safetensors: corrupted"):
        read_folder(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(CheckpointError, match="not a UTF-8 text file"):
        read_folder(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(CheckpointError, match="no `weights` entry"):
        read_folder(tmp_path / "m")


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path, monkeypatch):
    model = toy_model()
    write_folder(tmp_path / "m", {"n": 1}, model.state_dict())
    def disk_full(*args):
        raise OSError("disk full")

    monkeypatch.setattr(safefiles, "_replace_folder", disk_full)
    with pytest.raises(OSError, match="disk full"):
        write_folder(tmp_path / "m", {"n": 2}, model.state_dict())
    monkeypatch.undo()
    assert read_folder(tmp_path / "m")[0]["n"] == 1 and sorted(os.listdir(tmp_path)) == ["m"]
    with pytest.raises(CheckpointError, match="not a folder"):
        write_folder(tmp_path / "m" / "model.safetensors", {}, model.state_dict())
