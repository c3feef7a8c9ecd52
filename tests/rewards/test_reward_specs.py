"""Rewards named by spec strings: file.py:function, module:function, oracle:PATH, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from vidd.core.config import ConfigError, build
from vidd.core.errors import UserError
from vidd.data.assays import LabelledSequences
from vidd.rewards.assay_oracle import AssayOracleConfig, AssayOracleReward, train_assay_oracle
from vidd.rewards.base import FunctionReward, Reward
from vidd.rewards.specs import RewardSpecError, absolute_spec, load_reward

REWARD_FILE = '''
from vidd.rewards.base import Reward

def gc(seqs):
    return [(s.count("G") + s.count("C")) / len(s) for s in seqs]

class Length(Reward):
    name = "length"
    def score(self, seqs):
        return [len(s) for s in seqs]

threshold = 0.5
'''


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARD_FILE)
    return path


def test_a_function_of_a_python_file(reward_file):
    reward = load_reward(f"{reward_file}:gc")
    assert isinstance(reward, FunctionReward) and reward.name == "gc"
    np.testing.assert_allclose(reward(["GGCC", "GCAT", "ATAT"]), [1.0, 0.5, 0.0])
    assert load_reward(f"{reward_file}:gc").fn is reward.fn  # the file runs once per process
    length = load_reward(f" {reward_file}:Length ")  # a Reward class is instantiated
    assert isinstance(length, Reward) and list(length(["ACG"])) == [3.0]


def test_a_function_of_an_importable_module(reward_file, monkeypatch):
    monkeypatch.syspath_prepend(str(reward_file.parent))
    reward = load_reward("my_rewards:gc")
    np.testing.assert_allclose(reward(["GGAA"]), [0.5])


def test_an_oracle_with_pessimism(tmp_path):
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 10)) for _ in range(100)]
    data = LabelledSequences(seqs, np.array([s.count("A") for s in seqs], float), list(range(100)),
                             {"file": "x.csv", "label_column": "a"})
    oracle = train_assay_oracle(build(AssayOracleConfig, {"model": "ridge", "ensemble": 2}), data, "DNA",
                                log=lambda s: None)
    oracle.save(tmp_path / "oracle")
    reward = load_reward(f"oracle:{tmp_path / 'oracle'}", pessimism=1.0)
    assert isinstance(reward, AssayOracleReward) and reward.pessimism == 1.0
    members = oracle.predict(seqs[:3])
    np.testing.assert_allclose(reward(seqs[:3]), members.mean(0) - members.std(0))


def test_absolute_spec(reward_file, monkeypatch):
    monkeypatch.chdir(reward_file.parent)
    assert absolute_spec("my_rewards.py:gc") == f"{reward_file}:gc"
    assert absolute_spec("oracle:o") == f"oracle:{reward_file.parent / 'o'}"
    assert absolute_spec("package.module:fn") == "package.module:fn"


@pytest.mark.parametrize("spec, error, message", [
    ("{dir}/missing.py:gc", RewardSpecError, "reward file not found"),
    ("{dir}/my_rewards.py:nope", RewardSpecError, "defines no 'nope' \\(its callables: Length, Reward, gc\\)"),
    ("{dir}/my_rewards.py:threshold", RewardSpecError, "'threshold' is a float, not a callable"),
    ("no_such_module_here:gc", RewardSpecError, "cannot import module 'no_such_module_here'"),
    ("gc", UserError, "unknown reward 'gc'; rewards of installed plug-ins"),
    ("oracle:{dir}/none", Exception, "not an assay oracle"),
])
def test_spec_errors(reward_file, spec, error, message):
    with pytest.raises(error, match=message):
        load_reward(spec.replace("{dir}", str(reward_file.parent)))


def test_pessimism_applies_to_oracles_only(reward_file):
    with pytest.raises(ConfigError, match="task.pessimism: applies to oracle:PATH rewards"):
        load_reward(f"{reward_file}:gc", pessimism=1.0)
