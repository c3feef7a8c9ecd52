"""One row per design: `Task.per_sequence`, a run's samples/final.tsv and scored sample headers, and
`vidd evaluate --per-sequence`."""

import json

import numpy as np
import pytest
from support.toy_task import ToyGC, gc
from typer.testing import CliRunner

from vidd.cli import app
from vidd.core.seqio import read_fasta
from vidd.rewards.base import FunctionReward, WeightedSum
from vidd.rewards.counted import CountedReward
from vidd.run import build_run, finetune_config


def a_share(seqs):
    return np.array([s.count("A") / len(s) for s in seqs])


class ToyTerms(ToyGC):
    """The toy task with a training reward of two named terms."""

    name = "test-toy-terms"
    reward_terms = {"gc": 1.0, "a": 0.5}

    def training_reward(self):
        return WeightedSum({k: (w, FunctionReward({"gc": gc, "a": a_share}[k])) for k, w in self.reward_weights.items()})


def read_table(path):
    header, *rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [dict(zip(header, row)) for row in rows], header


def test_a_run_writes_one_row_per_final_sample_and_scores_in_the_sample_headers(tmp_path):
    task = ToyGC()
    build_run(task, finetune_config(task, "quick"), tmp_path / "run", log=lambda *a: None).execute()
    rows, header = read_table(tmp_path / "run" / "samples" / "final.tsv")
    assert header == ["sequence", "reward", "eval_reward", "log_likelihood"]
    seqs = [r["sequence"] for r in rows]
    assert len(seqs) == 6 and [float(r["reward"]) for r in rows] == pytest.approx(gc(seqs), abs=1e-6)
    loglik = task.log_likelihood(seqs, 32, 16)
    assert [float(r["log_likelihood"]) for r in rows] == pytest.approx(loglik, rel=1e-5)
    records = read_fasta(tmp_path / "run" / "samples" / "final.fasta")
    assert [s for _, s in records] == seqs == task.read_samples(tmp_path / "run" / "samples" / "final.fasta")
    assert records[0][0] == (f"sample_0 reward={rows[0]['reward']} eval_reward={rows[0]['eval_reward']} "
                             f"log_likelihood={rows[0]['log_likelihood']}")
    final = json.loads((tmp_path / "run" / "final_eval.json").read_text())
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert final["monitor_reward_calls"] == metrics[-1]["monitor_reward_calls"]  # the evaluations' calls
    assert 0 < final["final_table_reward_calls"] <= len(set(seqs))  # the table's: not against the budget
    assert final["reward_calls"] == metrics[-1]["reward_calls"]


def test_reward_terms_are_columns_and_their_calls_count_as_monitor_calls():
    task = ToyTerms()
    seqs = ["GGCC" * 3, "AAAT" * 3, "GGCC" * 3, "ACGT" * 3]
    counted = CountedReward(task.training_reward())
    counted(seqs[:1])  # cached totals do not give the terms: every distinct sequence is scored again
    columns = task.per_sequence(seqs, counted, likelihood_samples=2)
    assert list(columns) == ["sequence", "reward", "reward_gc", "reward_a", "eval_reward", "log_likelihood"]
    assert columns["reward_gc"] == pytest.approx(gc(seqs)) and columns["reward_a"] == pytest.approx(a_share(seqs))
    assert columns["reward"] == pytest.approx(gc(seqs) + 0.5 * a_share(seqs))
    assert (counted.calls, counted.monitor_calls) == (1, 3)


def test_the_default_reward_shows_a_failing_sequence_as_nan():
    class Failing(ToyGC):
        name = "test-toy-failing-table"

        def training_reward(self):
            return lambda seqs: [np.nan if s.startswith("A") else 1.0 for s in seqs]

    columns = Failing().per_sequence(["A" * 12, "C" * 12], likelihood_samples=2)
    assert np.isnan(columns["reward"][0]) and columns["reward"][1] == 1.0


def test_evaluate_writes_the_per_sequence_table(tmp_path):
    samples, table = tmp_path / "s.fasta", tmp_path / "rows.tsv"
    seqs = ["ACGTACGTACGT", "GGGGCCCCAAAA", "ATATATATATAT"]
    samples.write_text("".join(f">d{i} note\n{s}\n" for i, s in enumerate(seqs)))
    r = CliRunner().invoke(app, ["evaluate", "--task", ToyGC.name, "--samples", str(samples), "--likelihood-samples",
                                 "2", "--per-sequence", str(table)])
    assert r.exit_code == 0, r.output
    rows, header = read_table(table)
    assert header == ["sequence", "reward", "eval_reward", "log_likelihood"]
    assert [r["sequence"] for r in rows] == seqs
    assert [float(r["eval_reward"]) for r in rows] == pytest.approx(gc(seqs), abs=1e-6)
