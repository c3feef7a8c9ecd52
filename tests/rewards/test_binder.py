"""The binder reward (the paper's ipTM + 0.1 pLDDT - 0.02 ELU(Rg - Rg_th)) on a fake structure predictor with
outputs known in closed form (tests/support/fake_predictor.py); the target is a real PDB chain (ubiquitin,
tests/fixtures/structures) standing in for PD-L1, which vidd does not ship."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("biotite", reason="reading the target needs the [structure] extra: pip install 'vidd[structure]'")

from vidd.core.errors import UserError  # noqa: E402
from vidd.rewards.base import BatchCache  # noqa: E402
from vidd.rewards.binder import (  # noqa: E402
    BinderReward, BinderTarget, ComplexPrediction, StructurePredictor, load_predictor, rg_penalty, rg_threshold,
)
from support.fake_predictor import CA_SPACING, FakePredictor  # noqa: E402

TARGET_PDB = str(Path(__file__).parents[1] / "fixtures" / "structures" / "1ubi.pdb")


@pytest.fixture(scope="module")
def target():
    return BinderTarget(TARGET_PDB, "A")


def test_the_reward_is_the_papers_formula(target):
    predictor = FakePredictor()
    assert isinstance(predictor, StructurePredictor)
    binder = "WWLLAAAAAA"  # ipTM 0.2, pLDDT 0.2, 10 Calpha on a line
    rg = CA_SPACING * math.sqrt((10 ** 2 - 1) / 12)  # 10.9 A, above the threshold of 10 residues
    threshold = 2.38 * 10 ** 0.365  # 5.5 A
    expected = 1.0 * 0.2 + 0.1 * 0.2 - 0.02 * (rg - threshold)
    reward = BinderReward(predictor, target)
    assert reward([binder])[0] == pytest.approx(expected)
    parts = reward.components([binder])
    assert parts["iptm"][0] == pytest.approx(0.2) and parts["plddt"][0] == pytest.approx(0.2)
    assert parts["compactness"][0] == pytest.approx(threshold - rg)
    assert rg_threshold(10) == pytest.approx(threshold)
    # below the threshold the penalty is ELU's exp(x) - 1: a binder collapsed on one point scores about +0.02
    assert rg_penalty(np.zeros((10, 3))) == pytest.approx(math.exp(-threshold) - 1)
    assert BinderReward(predictor, target, {"iptm": 1.0})([binder])[0] == pytest.approx(0.2)  # the other terms weigh 0
    with pytest.raises(ValueError, match=r"unknown term\(s\) \['ptm'\]"):
        BinderReward(predictor, target, {"ptm": 1.0})


def test_the_predictor_sees_each_binder_once_with_the_target(target):
    predictor = FakePredictor()
    reward = BinderReward(predictor, target, batch_size=2)
    binders = ["WAAAA", "LLLLL", "WAAAA", "AAAAA"]
    first = reward(binders)
    assert first[0] == first[2]
    assert predictor.calls == [(["WAAAA", "LLLLL"], target.sequence), (["AAAAA"], target.sequence)]
    reward.components(binders)
    assert len(predictor.calls) == 2  # cached: components and the reward share one prediction
    assert target.sequence.startswith("MQIFVKTLTGK") and len(target.sequence) == 76


def test_a_predictor_from_an_import_path_is_built_where_it_scores(target):
    reward = BinderReward("support.fake_predictor:FakePredictor", target)
    copy = pickle.loads(pickle.dumps(reward))  # what a reward executor sends to its workers
    assert copy([("W" * 5)])[0] == pytest.approx(1.0 + 0.0 - 0.02 * rg_penalty(np.arange(5)[:, None] * [3.8, 0, 0]))
    with pytest.raises(UserError, match="expected 'package.module:factory'"):
        load_predictor("support.fake_predictor")
    with pytest.raises(UserError, match="cannot be imported: ModuleNotFoundError"):
        load_predictor("no_such_module_xyz:Predictor")
    with pytest.raises(UserError, match="has no predict"):
        load_predictor("builtins:dict")


def test_wrong_predictor_outputs_and_targets_are_reported(target):
    class Short:
        def predict(self, binders, target):
            return [ComplexPrediction(0.5, 0.5, np.zeros((3, 3))) for _ in binders]

    with pytest.raises(ValueError, match=r"binder_ca of shape \(3, 3\) for a binder of 5 residues"):
        BinderReward(Short(), target)(["AAAAA"])

    class Missing:
        def predict(self, binders, target):
            return []

    with pytest.raises(ValueError, match="returned 0 predictions for 1 binders"):
        BinderReward(Missing(), target)(["AAAAA"])
    with pytest.raises(UserError, match="no amino-acid residues in chain 'B'"):
        BinderTarget(TARGET_PDB, "B")
    with pytest.raises(UserError, match="PDB file not found"):
        BinderTarget("/nowhere/pdl1.pdb")


def test_batch_cache_computes_each_sequence_once_and_keeps_the_latest():
    seen = []
    cache = BatchCache(lambda batch: seen.extend(batch) or [len(s) for s in batch], batch_size=2, size=2)
    assert cache(["a", "bb", "a", "ccc"]) == [1, 2, 1, 3]
    assert seen == ["a", "bb", "ccc"]
    assert list(cache.results) == ["bb", "a", "ccc"]  # a call keeps all its own sequences
    cache(["dddd"])
    assert list(cache.results) == ["ccc", "dddd"]  # then the oldest go
