"""The committed assets: the MANIFEST matches the files, and the default model and oracles work."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from typer.testing import CliRunner

from vidd.cli import app
from vidd.core.manifest import manifest_files
from vidd.rewards.oracle import CellTypeOracleReward
from vidd.core.seqio import read_sequences
from vidd.tasks import Task, assets_dir

ASSETS = assets_dir()


def test_manifest_lists_every_asset_with_its_checksum():
    manifest = json.loads((ASSETS / "MANIFEST.json").read_text())
    assert all(entry["commands"] for entry in manifest["files"])
    listed = manifest_files(ASSETS)
    on_disk = {p.relative_to(ASSETS).as_posix() for p in ASSETS.rglob("*") if p.is_file() and p.name != "MANIFEST.json"}
    assert set(listed) == on_disk
    for path, entry in listed.items():
        data = (ASSETS / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], path
        assert len(data) == entry["bytes"], path
    assert not list(ASSETS.rglob("*.pt"))  # no pickles: every model is a folder that loads without running code


def test_default_model_samples_valid_dna(tmp_path):
    task = Task.get("dhs-hepg2")
    model = task.pretrained_model()
    assert model.length == 200 and model.alphabet.letters == "ACGT"
    out = tmp_path / "s.fasta"
    result = CliRunner().invoke(app, ["sample", "dhs-hepg2", "--n", "3", "--steps", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(read_sequences(out, model.alphabet, 200)) == 3


def test_oracles_score_and_differentiate():
    folder = ASSETS / "dhs-hepg2"
    train, held_out = CellTypeOracleReward(folder / "oracle-train"), CellTypeOracleReward(folder / "oracle-eval")
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 200)) for _ in range(4)]
    a, b = train(seqs), held_out(seqs)
    assert a.shape == (4,) and np.isfinite(a).all() and not np.allclose(a, b)
    onehot = torch.nn.functional.one_hot(torch.tensor([["ACGT".index(c) for c in s] for s in seqs]), 4).float()
    onehot.requires_grad_(True)
    train.score_onehot(onehot).sum().backward()
    assert onehot.grad is not None and onehot.grad.abs().sum() > 0
