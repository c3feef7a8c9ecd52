"""Assay oracles trained on synthetic labelled sequences with a planted rule, which they must recover: a
position rule (logistic, one-hot), a motif count in variable-length DNA (ridge, k-mers), a motif anywhere
(CNN); the held-out report, ensembles and the pessimistic reward, the pickle-free files, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidd.core.alphabets import SequenceError
from vidd.core.config import ConfigError, build
from vidd.core.errors import UserError
from vidd.data.assays import LabelledSequences
from vidd.rewards.assay_oracle import (
    SPEC_FILE, WEIGHTS_FILE, AssayOracle, AssayOracleConfig, AssayOracleError, AssayOracleReward, calibration,
    data_alphabet, score_table, train_assay_oracle,
)
from vidd.rewards.oracle import auroc

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def labelled(seqs, labels, column="y") -> LabelledSequences:
    return LabelledSequences(list(seqs), np.asarray(labels, dtype=float), list(range(2, len(seqs) + 2)),
                             {"file": "test.csv", "label_column": column})


def position_rule_data(n=600, seed=0):
    """Protein 8-mers; label 1 iff position 3 holds W or Y (half of the sequences are made to)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        s = list(rng.choice(list(AMINO), 8))
        s[3] = str(rng.choice(["W", "Y"])) if rng.random() < 0.5 else str(rng.choice(list(AMINO.replace("W", "").replace("Y", ""))))
        seqs.append("".join(s))
    return seqs, [int(s[3] in "WY") for s in seqs]


def motif_count_data(n=500, seed=1):
    """DNA of length 20-40; label = the number of GATA occurrences (+ small noise)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        s = "".join(rng.choice(list("ACGT"), int(rng.integers(20, 41))))
        for _ in range(int(rng.integers(0, 4))):
            at = int(rng.integers(0, len(s) - 4))
            s = s[:at] + "GATA" + s[at + 4:]
        seqs.append(s)
    return seqs, [s.count("GATA") + rng.normal(0, 0.1) for s in seqs]


def oracle_config(**fields) -> AssayOracleConfig:
    return build(AssayOracleConfig, fields)


def test_logistic_on_one_hot_recovers_a_position_rule():
    seqs, labels = position_rule_data()
    oracle = train_assay_oracle(oracle_config(model="logistic"), labelled(seqs, labels), "protein", log=lambda s: None)
    report = oracle.report
    assert (report["n_train"], report["n_valid"], report["n_test"]) == (480, 0, 120)
    assert report["held_out"]["auroc"] > 0.97
    assert oracle.kind == "classifier" and oracle.spec["score"] == "log-odds of label 1"
    # the largest coefficients are W and Y at position 3 (one-hot index 3 * 20 + letter)
    weight = oracle.members[0].weight.detach().reshape(8, 20)
    top = {divmod(int(i), 20) for i in weight.flatten().argsort(descending=True)[:2]}
    assert top == {(3, AMINO.index("W")), (3, AMINO.index("Y"))}
    calib = report["held_out"]
    assert 0 <= calib["ece"] < 0.1 and calib["brier"] < 0.1
    assert sum(row["n"] for row in calib["reliability"]) == 120
    scores = oracle.predict(["AAAWAAAA", "AAAAAAAA"])[0]
    assert scores[0] > 2 > -2 > scores[1]


def test_ridge_on_kmers_recovers_a_motif_count_in_variable_length_dna():
    seqs, labels = motif_count_data()
    oracle = train_assay_oracle(oracle_config(model="ridge", features="kmer", k=4, l2=0.1), labelled(seqs, labels),
                                "DNA", log=lambda s: None)
    assert oracle.kind == "regressor" and not oracle.spec["fixed_length"] and oracle.length == 40
    assert oracle.report["held_out"]["spearman"] > 0.9
    assert "auroc" not in oracle.report["held_out"] and "ece" not in oracle.report["held_out"]
    probe = oracle.predict(["A" * 60, "GATA" * 5, "CCCCCCCCCC"])[0]  # k-mers read any length
    assert probe[1] > probe[0] + 2 and probe[1] > probe[2] + 2


def test_cnn_recovers_a_motif_anywhere_and_pads_short_sequences():
    rng = np.random.default_rng(2)
    seqs = ["".join(rng.choice(list("ACGT"), int(rng.integers(16, 25)))) for _ in range(500)]
    seqs = [s[:5] + "TTGACA" + s[11:] if i % 2 else s for i, s in enumerate(seqs)]
    labels = [int("TTGACA" in s) for s in seqs]
    config = oracle_config(model="cnn", width=16, kernel=7, layers=1, epochs=25, patience=5, batch_size=32, lr=1e-2)
    oracle = train_assay_oracle(config, labelled(seqs, labels), "DNA", log=lambda s: None)
    assert oracle.report["held_out"]["auroc"] > 0.95
    assert oracle.report["n_valid"] > 0 and oracle.report["members"][0]["best_epoch"] >= 1
    # the motif at another place of a shorter sequence (zero-padded at the end) is still found
    shifted = oracle.predict(["ACGTACGTAC" + "TTGACA", "ACGTACGTAC" + "CCGACA"])[0]
    assert shifted[0] > shifted[1]


def test_ensemble_files_round_trip_without_pickle_and_the_pessimistic_reward(tmp_path):
    seqs, labels = motif_count_data(n=200)
    data = labelled(seqs, labels, column="gata")
    oracle = train_assay_oracle(oracle_config(model="ridge", features="kmer", k=4, ensemble=3), data, "DNA",
                                log=lambda s: None)
    folder = oracle.save(tmp_path / "oracle")
    assert sorted(p.name for p in folder.iterdir()) == [SPEC_FILE, WEIGHTS_FILE]
    raw = (folder / WEIGHTS_FILE).read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # the safetensors layout: no pickle
    assert {k for k in header if k != "__metadata__"} == {f"member{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    spec = json.loads((folder / SPEC_FILE).read_text())
    assert spec["report"]["n_test"] == 40 and spec["source"]["label_column"] == "gata" and spec["members"] == 3
    loaded = AssayOracle.load(folder / SPEC_FILE)
    probe = seqs[:5] + ["GATAGATA", "ACGTN", ""]
    np.testing.assert_array_equal(loaded.predict(probe), oracle.predict(probe))
    members = loaded.predict(probe)
    assert np.isnan(members[:, -2:]).all() and np.isfinite(members[:, :-2]).all()  # unreadable: NaN
    assert not np.allclose(members[0], members[1], equal_nan=True)  # bootstrap resamples differ
    reward = AssayOracleReward(folder, pessimism=2.0)
    expected = members.mean(0) - 2.0 * members.std(0)
    np.testing.assert_allclose(reward(probe), expected)
    assert reward.name == "oracle:gata-2std"
    rows = score_table(loaded, ["GATAGATA", "AAAAAAAA", "GATAGATA", "ACGTN"], pessimism=2.0)
    assert [(r["rank"], r["sequence"], r["count"]) for r in rows] == [(1, "GATAGATA", 2), (2, "AAAAAAAA", 1),
                                                                     (3, "ACGTN", 1)]
    assert rows[0]["score"] == pytest.approx(rows[0]["mean"] - 2 * rows[0]["std"]) and np.isnan(rows[2]["score"])


def test_selfies_and_rna_alphabets():
    pytest.importorskip("selfies", reason="SELFIES needs the [chem] extra")
    rng = np.random.default_rng(3)
    tokens = ["[C]", "[O]", "[N]", "[=C]"]
    seqs = ["".join(rng.choice(tokens, int(rng.integers(3, 9)))) + "[nop]" * 2 for _ in range(300)]
    labels = [s.count("[O]") for s in seqs]
    oracle = train_assay_oracle(oracle_config(model="ridge"), labelled(seqs, labels), "selfies", log=lambda s: None)
    assert oracle.length == 8 and "[nop]" not in oracle.encoder.index  # pads are padding, not a letter
    assert oracle.report["held_out"]["spearman"] > 0.95
    assert np.isnan(oracle.predict(["[C][F]"])).all()  # a token the oracle never saw
    assert data_alphabet("RNA", []).letters == "ACGU" and data_alphabet("custom:AB", []).letters == "AB"
    with pytest.raises(SequenceError, match="line 3: character 'T'"):
        train_assay_oracle(oracle_config(model="ridge"), labelled(["ACGU", "ACGT"], [0.0, 1.0]), "RNA")


def test_calibration_by_hand():
    p = np.array([0.05, 0.15, 0.95, 0.95])
    y = np.array([0.0, 1.0, 1.0, 1.0])
    out = calibration(p, y)
    assert out["brier"] == pytest.approx(np.mean((p - y) ** 2))
    # bins [0, .1): 0.05 vs 0; [.1, .2): 0.15 vs 1; [.9, 1]: 0.95 vs 1
    assert out["ece"] == pytest.approx(0.25 * 0.05 + 0.25 * 0.85 + 0.5 * 0.05)
    assert [r["bin"] for r in out["reliability"]] == ["[0.0, 0.1)", "[0.1, 0.2)", "[0.9, 1.0]"]
    assert auroc(p, y == 1) == 1.0


@pytest.mark.parametrize("fields, alphabet, seqs, labels, message", [
    ({"model": "logistic"}, "DNA", ["ACGT"] * 10, [0.5] * 10, "needs binary"),
    ({"labels": "binary"}, "DNA", ["ACGT"] * 10, [2.0] * 10, "must be 0 or 1, found 2"),
    ({"model": "ridge"}, "klingon", ["ACGT"] * 10, [0.0] * 10, "unknown alphabet 'klingon'; one of DNA, RNA"),
    ({"model": "ridge"}, "DNA", ["ACGT", "ACXT"] * 5, [0.0, 1.0] * 5, "line 3: character 'X'"),
    ({"model": "ridge", "features": "kmer", "k": 4}, "protein", ["ACDE"] * 10, [0.0] * 10, "160000 features"),
    ({"model": "logistic"}, "DNA", ["ACGT"] * 10, [0.0] * 9 + [1.0], "1 with label 1 \\(need at least 2\\)"),
])
def test_training_errors_name_the_problem(fields, alphabet, seqs, labels, message):
    with pytest.raises((AssayOracleError, SequenceError, UserError), match=message):
        train_assay_oracle(oracle_config(**fields), labelled(seqs, labels), alphabet, log=lambda s: None)


def test_config_and_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="features: the CNN reads one-hot"):
        oracle_config(model="cnn", features="kmer")
    with pytest.raises(AssayOracleError, match="not an assay oracle"):
        AssayOracle.load(tmp_path)
    (tmp_path / SPEC_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(AssayOracleError, match="format 'something-else'"):
        AssayOracle.load(tmp_path)
    seqs, labels = position_rule_data(n=60)
    single = train_assay_oracle(oracle_config(model="ridge"), labelled(seqs, labels), "protein", log=lambda s: None)
    with pytest.raises(ConfigError, match="needs an oracle ensemble"):
        AssayOracleReward(single, pessimism=1.0)
    with pytest.raises(ConfigError, match="must be >= 0"):
        AssayOracleReward(single, pessimism=-1.0)
    single.save(tmp_path / "o")
    (tmp_path / "o" / WEIGHTS_FILE).write_bytes(
        __import__("safetensors.torch", fromlist=["save"]).save({"member0.weight": torch.zeros(3, dtype=torch.float64),
                                                                 "member0.bias": torch.zeros((), dtype=torch.float64)}))
    with pytest.raises(AssayOracleError, match="weights of member 0 do not match"):
        AssayOracle.load(tmp_path / "o")
