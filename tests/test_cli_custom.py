"""From the command line: train an assay oracle on synthetic labelled sequences with a planted rule and
fine-tune a tiny model file against it (`--reward oracle:PATH`), a reward from a Python file
(`--reward file.py:function`) alone or over a base task, resuming such runs (task `custom`), picking
designs with `vidd oracle-predict`, and the errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.toy import toy_model
from support.toy_task import ToyGC
from typer.testing import CliRunner

from vidd.cli import app
from vidd.core.config import describe
from vidd.rewards.assay_oracle import AssayOracle, AssayOracleReward
from vidd.tasks import Task

runner = CliRunner()
TINY = ["--set", "iterations=2", "--set", "steps=4", "--set", "batch_size=4", "--set", "accumulation=1",
        "--set", "eval_every=1", "--set", "eval_samples=4", "--set", "final_samples=6",
        "--set", "likelihood_samples=2", "--set", "method.timesteps=2"]
REWARDS = "def at_content(seqs):\n    return [(s.count('A') + s.count('T')) / len(s) for s in seqs]\n"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def tiny_model(tmp_path):
    path = tmp_path / "model"
    toy_model(length=12).save_pretrained(path)
    return path


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "rewards.py"
    path.write_text(REWARDS)
    return path


def planted_csv(path, n=400, seed=0):
    """DNA 12-mers, `active` = 1 iff G at position 4 and C at position 9 (half of them are made so)."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        f.write("# synthetic test data\nid,seq,active\n")
        for i in range(n):
            s = list(rng.choice(list("ACGT"), 12))
            if i % 2:
                s[3], s[8] = "G", "C"
            s = "".join(s)
            f.write(f"v{i},{s},{int(s[3] == 'G' and s[8] == 'C')}\n")


def test_train_an_oracle_and_finetune_a_tiny_model_against_it(tmp_path, tiny_model):
    data, oracle, run = tmp_path / "assay.csv", tmp_path / "oracle", tmp_path / "run"
    planted_csv(data)
    r = invoke("train-oracle", "--data", data, "--sequence-column", "seq", "--label-column", "active",
               "--alphabet", "DNA", "--model", "logistic", "--ensemble", 2, "--out", oracle)
    assert r.exit_code == 0, r.output
    spec = json.loads((oracle / "oracle.json").read_text())
    assert spec["report"]["n_test"] == 80 and spec["members"] == 2 and spec["report"]["held_out"]["auroc"] > 0.97
    scores = AssayOracle.load(oracle).predict(["AAAGAAAACAAA", "AAAGAAAAAAAA", "AAAAAAAACAAA"]).mean(0)
    assert scores[0] > 2 and scores[1] < 0 and scores[2] < 0  # the rule needs both letters

    r = invoke("finetune", "--model", tiny_model, "--reward", f"oracle:{oracle}", "--set", "task.pessimism=0.5",
               "--out", run, *TINY)
    assert r.exit_code == 0, r.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["task"] == {"model": str(tiny_model), "reward": f"oracle:{oracle}", "pessimism": 0.5}
    # the training reward is the pessimistic oracle: the monitored reward of the first evaluation's samples
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    samples = [line for line in (run / "samples" / "iter_00001.fasta").read_text().splitlines()
               if not line.startswith(">")]
    expected = AssayOracleReward(oracle, pessimism=0.5)(samples)
    assert first["eval_train_reward_median"] == pytest.approx(float(np.median(expected)))
    assert "Most common final samples" in (run / "report.html").read_text()
    assert sum(row[2] for row in json.loads((run / "report_tables.json").read_text())[0]["rows"]) <= 6

    r = invoke("finetune", "custom", "--resume", run, "--set", "iterations=3")  # the config holds model and reward
    assert r.exit_code == 0, r.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3

    r = invoke("oracle-predict", oracle, "--run", run, "--task", "custom", "--out", tmp_path / "picked.csv")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "picked.csv")))
    assert sum(int(row["count"]) for row in rows) == 6
    assert [float(row["score"]) for row in rows] == sorted((float(row["score"]) for row in rows), reverse=True)


def test_a_reward_file_alone_and_over_a_base_task(tmp_path, tiny_model, reward_file):
    run = tmp_path / "run"
    r = invoke("finetune", "--model", tiny_model, "--reward", f"{reward_file}:at_content",
               "--eval-reward", f"{reward_file}:at_content", "--out", run, *TINY)
    assert r.exit_code == 0, r.output
    final = json.loads((run / "final_eval.json").read_text())
    samples = [line for line in (run / "samples" / "final.fasta").read_text().splitlines() if line[0] != ">"]
    at = [(s.count("A") + s.count("T")) / 12 for s in samples]
    assert final["eval_reward_median"] == pytest.approx(float(np.median(at)))
    assert {"log_likelihood_median", "diversity", "uniqueness"} <= set(final)

    # over a base task: its preset and pretrained model, its evaluation reward, a reward from the file
    based = tmp_path / "based"
    r = invoke("finetune", ToyGC.name, "--preset", "quick", "--reward", f"{reward_file}:at_content", "--out", based)
    assert r.exit_code == 0, r.output
    config = yaml.safe_load((based / "config.yaml").read_text())
    assert config["task"] == {"reward": f"{reward_file}:at_content", "base": ToyGC.name}
    assert config["final_samples"] == 6
    assert config["reward"]["executor"]["batch_size"] == 3  # the base task's defaults and preset apply
    samples = [line for line in (based / "samples" / "final.fasta").read_text().splitlines() if line[0] != ">"]
    gc = [(s.count("G") + s.count("C")) / 12 for s in samples]
    assert json.loads((based / "final_eval.json").read_text())["eval_reward_median"] == pytest.approx(np.median(gc))
    r = invoke("finetune", "custom", "--resume", based, "--set", "iterations=3")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args, message", [
    (["finetune", "--out", "{tmp}/x"], "give a task (vidd finetune TASK), or a model and a reward"),
    (["finetune", "--out", "{tmp}/x", "--reward", "{tmp}/rewards.py:at_content"], "needs a model"),
    (["finetune", "--out", "{tmp}/x", "--model", "{tmp}/model"], "needs a training reward"),
    (["finetune", "--out", "{tmp}/x", "--model", "{tmp}/model", "--reward", "{tmp}/rewards.py:at_content",
      "--preset", "quick"], "presets belong to a task"),
    (["finetune", "--out", "{tmp}/x", "--model", "{tmp}/model", "--reward", "{tmp}/rewards.py:gc"],
     "defines no 'gc' (its callables: at_content)"),
    (["finetune", "--out", "{tmp}/x", "--model", "{tmp}/missing.pt", "--reward", "{tmp}/rewards.py:at_content"],
     "not found"),
    (["finetune", "test-toy-gc", "--out", "{tmp}/x", "--reward", "{tmp}/rewards.py:at_content",
      "--set", "reward.terms.gc=1"], "a custom task has one reward"),
    (["finetune", "--out", "{tmp}/x", "--model", "{tmp}/model", "--reward", "{tmp}/rewards.py:at_content",
      "--set", "task.pessimism=1"], "task.pessimism: applies to oracle:PATH rewards"),
    (["finetune", "--out", "{tmp}/x", "--model", "{tmp}/model", "--reward", "{tmp}/rewards.py:at_content",
      "--set", "task.positions=H3"], "task: unknown field(s) ['positions']"),
    (["finetune", "--out", "{tmp}/x", "--model", "{tmp}/model", "--reward", "{tmp}/rewards.py:at_content",
      "--set", "task.base_settings.positions=H3"], "task.base_settings: settings of a base task, but task.base"),
    (["finetune", "test-toy-gc", "--out", "{tmp}/x", "--set", "task.oracle={tmp}"],
     "task 'test-toy-gc' has no settings"),
    (["finetune", "--resume", "{tmp}/x", "--model", "{tmp}/model"], "--resume takes the run folder"),
    (["finetune", "--resume", "{tmp}/x"], "give the run's task: vidd finetune TASK --resume"),
    (["oracle-predict", "{tmp}/none", "--run", "{tmp}", "--out", "{tmp}/p.csv"], "--run and --task go together"),
    (["train-oracle", "--data", "{tmp}/a.csv", "--task", "dhs-hepg2", "--out", "{tmp}/o"], "not both"),
    (["train-oracle", "--data", "{tmp}/a.csv", "--out", "{tmp}/o"], "--data needs --alphabet"),
    (["train-oracle", "--model", "ridge", "--out", "{tmp}/o"], "apply to an assay oracle (--data)"),
    (["train-oracle", "--data", "{tmp}/a.csv", "--alphabet", "DNA", "--sequence-column", "seq", "--label-column",
      "y", "--out", "{tmp}/o"],
     "no label column 'y'; columns: id, seq, active"),
    (["oracle-predict", "{tmp}/none", "--samples", "{tmp}/a.csv", "--out", "{tmp}/p.csv"], "not an assay oracle"),
])
def test_errors_are_clear(tmp_path, tiny_model, reward_file, args, message):
    planted_csv(tmp_path / "a.csv", n=20)
    r = invoke(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output


def test_docs_list_every_setting_of_custom():
    doc = (Path(__file__).parents[1] / "docs" / "rewards.md").read_text()
    rows = describe(Task.registry["custom"].Settings, "task.")
    assert "\n".join(f"| `{field}` | `{default}` | {text} |" for field, default, text in rows) in doc


def test_resume_names_the_task(tmp_path, tiny_model, reward_file):
    run = tmp_path / "run"
    r = invoke("finetune", "--model", tiny_model, "--reward", f"{reward_file}:at_content", "--out", run,
               *TINY[:2])
    assert r.exit_code == 0, r.output
    r = invoke("finetune", ToyGC.name, "--resume", run)  # not the run's task: its settings do not fit
    assert r.exit_code == 2 and "task 'test-toy-gc' has no settings, got ['model', 'reward']" in r.output
