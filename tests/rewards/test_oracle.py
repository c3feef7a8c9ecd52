"""Cell-type oracles: training, AUROC, checkpoints, the differentiable reward, the CLI (toy data only)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from vidd.core.alphabets import SequenceError
from vidd.data.dhs import CELL_TYPES, DHSSplit
from vidd.rewards.oracle import (
    CellTypeClassifier,
    CellTypeOracleReward,
    OracleConfig,
    OracleError,
    auroc,
    half_indices,
    load_classifier,
    one_hot,
    oracle_report,
    train_oracle,
)

LENGTH = 40
MOTIFS = ("GGGGCCCC", "ATATATAT", "CAGCAGCA", "TTTTAAAA")  # one planted motif per cell type


def toy(n: int, seed: int, length: int = LENGTH):
    """Random DNA with the label's motif planted at a random place: separable by a small CNN."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    seqs = []
    for y in labels:
        s = list(rng.choice(list("ACGT"), length))
        pos = rng.integers(0, length - 8)
        s[pos:pos + 8] = MOTIFS[y]
        seqs.append("".join(s))
    return seqs, labels


TINY = dict(width=16, kernel=9, kernel2=3, layers=2, pool=2, dropout=0.0, epochs=6, patience=0,
            batch_size=32, lr=1e-2, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    train = toy(600, 0)
    valid = toy(200, 1)
    test = toy(200, 2)
    path = tmp_path_factory.mktemp("oracle") / "oracle"
    model = train_oracle(OracleConfig(**TINY), *train, *valid, path, log=lambda m: None, test=test)
    return model, path, test


def test_training_on_separable_toy_reaches_high_auroc(trained):
    model, path, (seqs, labels) = trained
    m = model.metrics
    assert m["test_auroc_HepG2"] > 0.95
    assert m["test_accuracy"] > 0.8
    assert 1 <= m["best_epoch"] <= m["epochs_run"] <= TINY["epochs"]
    reward = CellTypeOracleReward(model)
    s = reward(seqs)
    assert auroc(s, labels == CELL_TYPES.index("HepG2")) > 0.95
    assert reward.name == "oracle:HepG2-log-odds"
    p = reward.probabilities(seqs)
    assert p.shape == (len(seqs), 4)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    # log-odds is log p - log(1 - p)
    ph = p[:, 3]
    np.testing.assert_allclose(s, np.log(ph) - np.log1p(-ph), rtol=1e-3, atol=1e-3)


def test_auroc_hand_computed():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # ties between a positive and a negative count one half: (1 + 0.5 + 1 + 1) / 4
    assert auroc([1, 2, 2, 3], [False, True, False, True]) == pytest.approx(0.875)
    assert auroc([3, 2, 1], [1, 0, 0]) == 1.0
    assert np.isnan(auroc([1, 2], [1, 1]))


def test_half_partition_is_fixed_and_disjoint():
    a, b = half_indices(101, 0), half_indices(101, 1)
    assert len(a) + len(b) == 101 and not set(a) & set(b)
    np.testing.assert_array_equal(a, half_indices(101, 0))
    assert len(half_indices(101, -1)) == 101


def test_save_load_round_trip_gives_identical_scores(trained):
    model, path, (seqs, _) = trained
    loaded = load_classifier(path)
    np.testing.assert_array_equal(CellTypeOracleReward(model)(seqs), CellTypeOracleReward(path)(seqs))
    assert loaded.metrics["best_epoch"] == model.metrics["best_epoch"]
    assert loaded.length == LENGTH


def test_wrong_format_or_missing_file_gives_clear_error(tmp_path, trained):
    model, path, _ = trained
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "format": "something-else"}))
    with pytest.raises(OracleError, match="not a cell-type oracle"):
        load_classifier(bad)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(OracleError, match="an oracle is a folder.*convert-checkpoint"):
        load_classifier(junk)
    with pytest.raises(OracleError, match="not found"):
        load_classifier(tmp_path / "missing")


def test_score_onehot_matches_score_and_has_gradients(trained):
    model, _, (seqs, _) = trained
    reward = CellTypeOracleReward(model)
    x = one_hot(seqs[:16]).requires_grad_(True)
    s = reward.score_onehot(x)
    np.testing.assert_allclose(s.detach().numpy(), reward(seqs[:16]), rtol=1e-5, atol=1e-5)
    s.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # relaxed (soft) input works too, and a 5th (mask) column is dropped
    soft = torch.softmax(torch.randn(4, LENGTH, 5), dim=-1).requires_grad_(True)
    out = reward.score_onehot(soft)
    assert out.shape == (4,) and torch.isfinite(out).all()
    out.sum().backward()
    assert soft.grad[..., :4].abs().sum() > 0
    # the oracle's weights stay frozen and in eval mode
    assert all(p.grad is None for p in reward.parameters())
    reward.train()
    assert not reward.classifier.training


def test_bad_sequences_raise_sequence_error(trained):
    model, _, (seqs, _) = trained
    reward = CellTypeOracleReward(model)
    with pytest.raises(SequenceError, match="not in the DNA alphabet"):
        reward(["ACGN" * (LENGTH // 4)])
    with pytest.raises(SequenceError, match="length"):
        reward([seqs[0][:-1]])
    with pytest.raises(OracleError, match="unknown cell type"):
        CellTypeOracleReward(model, target="liver")


def test_oracle_report(trained):
    model, path, (seqs, labels) = trained
    other = CellTypeClassifier(OracleConfig(width=8, layers=1), length=LENGTH).eval()
    rep = oracle_report(model, load_classifier(path), seqs, labels)
    assert rep["agreement"]["pearson_log_odds"] == pytest.approx(1.0)
    assert rep["agreement"]["same_call_HepG2"] == 1.0
    assert rep["oracle_a"]["auroc_HepG2"] == rep["oracle_b"]["auroc_HepG2"] > 0.95
    rep2 = oracle_report(model, other, seqs, labels)
    assert set(rep2["oracle_b"]) == {"auroc_HepG2", "accuracy", "fraction_called_HepG2"}
    # independently: probabilities by softmax, calls p(HepG2) > 1/2, AUROC over all (positive, negative) pairs
    t = CELL_TYPES.index("HepG2")
    with torch.no_grad():
        probs = [torch.softmax(clf.eval()(one_hot(seqs)), -1).double().numpy() for clf in (model, other)]
    calls = [p[:, t] > 0.5 for p in probs]
    log_odds = [np.log(p[:, t]) - np.log1p(-p[:, t]) for p in probs]
    agreement = rep2["agreement"]
    assert agreement["same_call_HepG2"] == pytest.approx(float(np.mean(calls[0] == calls[1])))
    assert agreement["both_call_HepG2"] == pytest.approx(float(np.mean(calls[0] & calls[1])))
    assert agreement["pearson_log_odds"] == pytest.approx(np.corrcoef(*log_odds)[0, 1], abs=1e-4)
    pos, neg = log_odds[1][labels == t], log_odds[1][labels != t]
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    assert rep2["oracle_b"]["auroc_HepG2"] == pytest.approx(float(pairs.mean()), abs=1e-4)
    assert rep2["oracle_b"]["accuracy"] == pytest.approx(float(np.mean(probs[1].argmax(1) == labels)))
    assert rep2["oracle_b"]["fraction_called_HepG2"] == pytest.approx(float(calls[1].mean()))


def test_config_rejects_bad_half():
    from vidd.core import config as cfg

    with pytest.raises(cfg.ConfigError, match="half"):
        cfg.build(OracleConfig, {"half": 2})


def test_cli_train_and_report_on_toy_data(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vidd import cli
    from vidd.data import dhs

    def fake_load_dhs(path=None):
        out = {}
        for i, (split, n) in enumerate((("train", 240), ("valid", 80), ("test", 80))):
            seqs, labels = toy(n, 10 + i)
            out[split] = DHSSplit(seqs, labels, ["chrT"] * n)
        return out

    monkeypatch.setattr(dhs, "load_dhs", fake_load_dhs)
    runner = CliRunner()
    a, b = tmp_path / "a", tmp_path / "b"
    sets = [x for k, v in {**TINY, "epochs": 2}.items() for x in ("--set", f"{k}={v}")]
    for out, half, seed in ((a, 0, 1), (b, 1, 2)):
        r = runner.invoke(cli.app, ["train-oracle", "--task", "dhs-hepg2", "--out", str(out), *sets,
                                    "--set", f"half={half}", "--set", f"seed={seed}"])
        assert r.exit_code == 0, r.output
        assert "test HepG2-vs-rest AUROC" in r.output and (out / "model.safetensors").is_file()
        assert "120 training sequences (half=" in r.output
    js = tmp_path / "report.json"
    r = runner.invoke(cli.app, ["oracle-report", "--task", "dhs-hepg2", str(a), str(b), "--json", str(js)])
    assert r.exit_code == 0, r.output
    rep = json.loads(js.read_text())
    assert {"oracle_a", "oracle_b", "agreement"} <= set(rep)
    r = runner.invoke(cli.app, ["oracle-report", str(a), str(tmp_path / "missing")])
    assert r.exit_code == 2 and "not found" in r.output
    r = runner.invoke(cli.app, ["train-oracle", "--out", str(a), "--set", "half=3"])
    assert r.exit_code == 2 and "half" in r.output
