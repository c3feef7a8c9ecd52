"""`vidd bench` on the toy task: variants, evaluation at call thresholds, curves and their statistics, the
learning-rate sweep (chosen by the training reward), several processes on one folder, resumed work."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest
import yaml
from support.toy_task import ToyGC, gc

from vidd.bench import BenchPlan, _claim, _release, load_variants, lr_sweep, run_bench
from vidd.core.errors import UserError
from vidd.core.seqio import read_fasta, read_score_journal
from vidd.eval.benchstats import bootstrap_interval, comparison_range, log_area, paired_difference
from vidd.rewards.base import CachedReward, FunctionReward

VARIANTS = {
    "vidd-a": {"method": {"name": "vidd", "timesteps": 2}},
    "vidd-b": {"extends": "vidd-a", "method": {"alpha": 0.5}, "seeds": 1},
}


def plan(**over) -> BenchPlan:
    base = dict(task=ToyGC.name, methods=["vidd-a", "vidd-b", "ddpo", "best-of-n"], budget=60, seeds=2, samples=4,
                preset="quick", overrides={"threads": 1}, eval_at_calls=[20, 40], variants=VARIANTS,
                compare=[["vidd-a", "ddpo"]])
    return BenchPlan(**{**base, **over})


def curves(out):
    with open(out / "curves.csv") as f:
        return list(csv.DictReader(f))


def test_variants_curves_and_paired_statistics(tmp_path):
    out = tmp_path / "b"
    the_plan = plan()
    rows = run_bench(the_plan, out, log=lambda *a: None)
    assert {(r["method"], r["seed"]) for r in rows} == {
        ("vidd-a", 0), ("vidd-a", 1), ("vidd-b", 0), ("ddpo", 0), ("ddpo", 1), ("best-of-n", 0), ("best-of-n", 1)}
    assert all(r["status"] == "ok" and r["reward_calls"] <= 60 for r in rows)
    # a sampling cell's samples carry each one's held-out score (for intervals over the samples)
    records = read_fasta(out / "runs" / "best-of-n" / "seed0" / "samples.fasta")
    assert len(records) == 4
    for header, seq in records:
        assert header.split()[1] == f"eval_reward={gc([seq])[0]:.6g}"
    config = yaml.safe_load((out / "runs" / "vidd-b" / "seed0" / "config.yaml").read_text())
    assert config["method"]["alpha"] == 0.5 and config["method"]["timesteps"] == 2  # extends vidd-a
    assert config["eval_at_calls"] == [20, 40] and config["eval_samples"] == 4
    points = curves(out)
    for label, seed in the_plan.cells():
        mine = [p for p in points if p["method"] == label and int(p["seed"]) == seed]
        if label == "best-of-n":
            assert not mine
            continue
        calls = [int(p["calls"]) for p in mine]
        assert calls == sorted(calls) and calls[-1] <= 60
        assert any(c >= 20 for c in calls) and all(p["train_seconds"] and p["updates"] for p in mine)
    stats = json.loads((out / "stats.json").read_text())
    by_hand = {}
    for label in ("vidd-a", "ddpo"):
        for seed in (0, 1):
            mine = [p for p in points if p["method"] == label and int(p["seed"]) == seed]
            by_hand[label, seed] = log_area([float(p["calls"]) for p in mine], [float(p["reward"]) for p in mine],
                                            20, 60)
            assert stats["auc_calls"][label][str(seed)] == pytest.approx(by_hand[label, seed])
    (comparison,) = stats["comparisons"]
    diffs = [by_hand["vidd-a", s] - by_hand["ddpo", s] for s in (0, 1)]
    assert comparison["calls"]["seeds"] == [0, 1]
    assert (comparison["calls"]["mean"], comparison["calls"]["low"], comparison["calls"]["high"]) == \
        pytest.approx(bootstrap_interval(diffs))
    # against training seconds the values depend on wall-clock timing (the range is empty, and the areas NaN,
    # when one run's first evaluation comes after every other's last on a loaded machine): recomputed by hand
    # from the logged points, whatever they are
    pair = [([float(p["train_seconds"]) for p in points if p["method"] == label and int(p["seed"]) == seed],
             [float(p["reward"]) for p in points if p["method"] == label and int(p["seed"]) == seed])
            for label in ("vidd-a", "ddpo") for seed in (0, 1)]
    s_low, s_high = comparison_range(pair)
    assert comparison["seconds"]["range"] == pytest.approx([s_low, s_high], nan_ok=True)
    areas = {(label, seed): log_area(*pair[2 * i + seed], s_low, s_high) for i, label in enumerate(("vidd-a", "ddpo"))
             for seed in (0, 1)}
    expected = paired_difference({s: areas["vidd-a", s] for s in (0, 1)}, {s: areas["ddpo", s] for s in (0, 1)})
    assert comparison["seconds"]["seeds"] == expected["seeds"]
    assert comparison["seconds"]["mean"] == pytest.approx(expected["mean"], nan_ok=True)
    table = (out / "table.md").read_text()
    assert "Paired difference vidd-a − ddpo" in table and "| method | runs | minutes | share |" in table
    for name in ("results.csv", "curves.png", "tradeoff.png"):
        assert (out / name).is_file()
    log = []
    again = run_bench(the_plan, out, log=log.append)  # a rerun skips finished work
    assert len(again) == len(rows) and all("done before, skipped" in line for line in log)
    with pytest.raises(UserError, match="budget"):
        run_bench(plan(budget=80), out, log=lambda *a: None)


def test_the_learning_rate_is_chosen_by_the_training_reward(tmp_path):
    out = tmp_path / "sweep"
    sweep = plan(methods=["vidd-a", "ddpo", "best-of-n"], seeds=1, first_seed=100, compare=[])
    choice = lr_sweep(sweep, [1e-4, 3e-2], out, {"best-vidd": ["vidd-a", "ddpo"]}, log=lambda *a: None)
    assert set(choice) == {"vidd-a", "ddpo", "best-vidd"}  # Best-of-N has no learning rate
    points, areas = curves(out), {}
    for label, lr in ((label, c["lr"]) for label, c in choice.items() if "lr" in c):
        def training_area(rate):
            mine = [p for p in points if p["method"] == f"{label}@lr={rate:g}"]
            return log_area([float(p["calls"]) for p in mine], [float(p["train_reward"]) for p in mine], 20, 60)

        assert training_area(lr) == max(training_area(r) for r in (1e-4, 3e-2))
        areas[label] = training_area(lr)
    assert choice["best-vidd"] == {"extends": max(areas, key=areas.get)}
    assert yaml.safe_load((out / "choice.yaml").read_text()) == choice
    assert "**" in (out / "lr_sweep.md").read_text()
    config = yaml.safe_load((out / "runs" / "ddpo@lr=0.03" / "seed100" / "config.yaml").read_text())
    assert config["lr"] == 0.03 and config["seed"] == 100
    variants = tmp_path / "variants.yaml"
    variants.write_text(yaml.safe_dump(VARIANTS))
    main = plan(methods=["best-vidd", "ddpo"], seeds=1, variants=load_variants(variants, out / "choice.yaml"),
                compare=[])
    run_bench(main, tmp_path / "main", log=lambda *a: None)
    for label in ("best-vidd", "ddpo"):
        config = yaml.safe_load((tmp_path / "main" / "runs" / label / "seed0" / "config.yaml").read_text())
        assert config["lr"] == choice[choice["best-vidd"]["extends"] if label == "best-vidd" else label]["lr"]


def test_the_sweep_chooses_only_among_finished_runs(tmp_path, monkeypatch):
    """A failed run's curve counts for nothing: with every run of a label failed the sweep chooses nothing (a clear
    error, no choice.yaml); a rate whose runs failed is marked in lr_sweep.md; --rerun-failed runs them again."""
    def gc_failing_on_a(seqs):
        return [float("nan") if s.startswith("A") else v for s, v in zip(seqs, gc(seqs))]

    monkeypatch.setattr(ToyGC, "training_reward", lambda self: gc_failing_on_a)
    out, sweep, quiet = tmp_path / "sweep", plan(methods=["ddpo"], seeds=1, compare=[]), (lambda *a: None)
    with pytest.raises(UserError, match=r"no learning rate of ddpo can be chosen: 2 of its runs failed, e\.g\. "
                                        r"RewardFailure.*--rerun-failed"):
        lr_sweep(sweep, [1e-4, 3e-2], out, log=quiet)
    assert not (out / "choice.yaml").exists()
    monkeypatch.setattr(ToyGC, "training_reward", lambda self: gc)  # the cause fixed
    (out / "runs" / "ddpo@lr=0.03" / "seed0" / "result.json").unlink()  # that rate runs again, the other stays failed
    assert lr_sweep(sweep, [1e-4, 3e-2], out, log=quiet) == {"ddpo": {"lr": 0.03}}
    assert "| ddpo | - (failed 1/1) | **" in (out / "lr_sweep.md").read_text()
    log = []
    choice = lr_sweep(sweep, [1e-4, 3e-2], out, log=log.append, rerun_failed=True)
    assert any(line.startswith("ddpo@lr=0.0001 seed 0: failed before (RewardFailure") for line in log)
    assert "failed" not in (out / "lr_sweep.md").read_text() and set(choice) == {"ddpo"}


def test_two_processes_share_one_benchmark_folder(tmp_path):
    """Two workers (here: threads of one process, each claiming cells) run every cell exactly once; the one
    that finishes last writes the summary."""
    out = tmp_path / "b"
    the_plan = plan(methods=["vidd-a", "ddpo"], seeds=1, compare=[])
    started: list[str] = []
    lock = threading.Lock()

    def log(line):
        with lock:
            started.append(line)

    workers = [threading.Thread(target=run_bench, args=(the_plan, out, log)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    runs = [line for line in started if line.endswith(": running")]
    assert sorted(runs) == sorted(f"{label} seed {seed}: running" for label, seed in the_plan.cells())
    assert (out / "table.md").is_file() and not list(out.rglob("*.claim"))


def test_a_dead_process_claim_is_taken_over(tmp_path):
    claim = tmp_path / "seed0.claim"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim.write_text(f"{socket.gethostname()} {dead.pid}")
    assert _claim(claim) and claim.read_text() == f"{socket.gethostname()} {os.getpid()}"
    assert not _claim(claim)  # held by a live process (this one)
    _release(claim)
    claim.write_text(f"another-machine {dead.pid}")
    assert not _claim(claim)  # a claim from another machine is never taken over


def test_an_interrupted_sampling_cell_resumes_from_its_journaled_scores(tmp_path, monkeypatch):
    """Best-of-N's 60 candidates are scored in journaled batches of 32; a process killed in the second batch leaves
    the first 32 scores, which the rerun answers from the journal (counted, not scored again): the same samples and
    calls as a run never interrupted."""
    scored, interrupt = [], {"at": 32}

    def counting_gc(seqs):  # called by the executor 3 sequences at a time
        if len(scored) >= interrupt["at"]:
            raise KeyboardInterrupt  # not an Exception: the cell gets no result, as when the process is killed
        scored.extend(seqs)
        return gc(seqs)

    monkeypatch.setattr(ToyGC, "training_reward", lambda self: counting_gc)
    monkeypatch.setattr(ToyGC, "evaluation_reward", CachedReward(FunctionReward(gc)))  # a costly oracle's shape
    the_plan = plan(methods=["best-of-n"], seeds=1, eval_at_calls=[], compare=[])
    with pytest.raises(KeyboardInterrupt):
        run_bench(the_plan, tmp_path / "cut", log=lambda *a: None)
    cell = tmp_path / "cut" / "runs" / "best-of-n" / "seed0"
    first = list(scored)
    assert len(first) == 32 and len((cell / "reward_scores.tsv").read_text().splitlines()) == 32
    assert not (cell / "result.json").exists()
    scored.clear()
    interrupt["at"] = 1000
    log = []
    (resumed,) = run_bench(the_plan, tmp_path / "cut", log=log.append)
    assert "best-of-n seed 0: running (resumed: the scores of reward_scores.tsv)" in log
    assert not set(scored) & set(first)  # nothing scored twice
    scored.clear()
    (whole,) = run_bench(the_plan, tmp_path / "whole", log=lambda *a: None)
    assert resumed["reward_calls"] == whole["reward_calls"] == len(set(scored)) and resumed["status"] == "ok"
    assert (cell / "samples.fasta").read_text() == (tmp_path / "whole" / "runs" / "best-of-n" / "seed0" /
                                                    "samples.fasta").read_text()
    # the cached evaluation reward journals its scores in the cell's folder too
    assert set(read_score_journal(cell / "eval_scores.tsv")) == {seq for _, seq in read_fasta(cell / "samples.fasta")}


def test_a_finetuning_cell_started_again_keeps_its_journaled_evaluation_scores(tmp_path, monkeypatch):
    """A fine-tuning cell killed before its first checkpoint starts again from scratch, but the held-out scores it
    journaled stay: the rerun draws the same samples and does not score them again."""
    scored = []

    def counting_gc(seqs):
        scored.extend(seqs)
        return gc(seqs)

    monkeypatch.setattr(ToyGC, "evaluation_reward", CachedReward(FunctionReward(counting_gc)))
    the_plan = plan(methods=["ddpo"], seeds=1, eval_at_calls=[], compare=[])
    (first,) = run_bench(the_plan, tmp_path / "b", log=lambda *a: None)
    cell = tmp_path / "b" / "runs" / "ddpo" / "seed0"
    journal = read_score_journal(cell / "eval_scores.tsv")
    assert first["status"] == "ok" and set(journal) == set(scored)
    (cell / "result.json").unlink()  # as if killed before its first checkpoint
    shutil.rmtree(cell / "checkpoints")
    scored.clear()
    log = []
    (again,) = run_bench(the_plan, tmp_path / "b", log=log.append)
    assert "ddpo seed 0: running (resumed: the scores of eval_scores.tsv)" in log
    assert scored == [] and read_score_journal(cell / "eval_scores.tsv") == journal
    assert {k: v for k, v in again.items() if "seconds" not in k} == {k: v for k, v in first.items()
                                                                      if "seconds" not in k}


def test_a_sampling_cell_follows_the_configured_failure_policy(tmp_path, monkeypatch):
    """A reward that fails on some candidates: Best-of-N stops with the default policy (`error`) and keeps going with
    `reward.on_failure: penalty`, as a fine-tuning run of the same config would."""
    def gc_failing_on_a(seqs):
        return [float("nan") if s.startswith("A") else v for s, v in zip(seqs, gc(seqs))]

    monkeypatch.setattr(ToyGC, "training_reward", lambda self: gc_failing_on_a)
    strict = plan(methods=["best-of-n"], seeds=1, eval_at_calls=[], compare=[])
    (row,) = run_bench(strict, tmp_path / "strict", log=lambda *a: None)
    assert row["status"] == "failed" and "RewardFailure" in row["error"]
    monkeypatch.setattr(ToyGC, "training_reward", lambda self: gc)  # the cause fixed
    (row,) = run_bench(strict, tmp_path / "strict", log=lambda *a: None)
    assert row["status"] == "failed"  # a failed cell counts as finished
    (row,) = run_bench(strict, tmp_path / "strict", log=lambda *a: None, rerun_failed=True)
    assert row["status"] == "ok" and row["reward_calls"] == 60
    monkeypatch.setattr(ToyGC, "training_reward", lambda self: gc_failing_on_a)
    lenient = plan(methods=["best-of-n"], seeds=1, eval_at_calls=[], compare=[],
                   overrides={"threads": 1, "reward": {"on_failure": "penalty", "penalty": 0.0}})
    (row,) = run_bench(lenient, tmp_path / "lenient", log=lambda *a: None)
    assert row["status"] == "ok" and 0 < row["reward_calls"] <= 60
    samples = [seq for _, seq in read_fasta(tmp_path / "lenient" / "runs" / "best-of-n" / "seed0" / "samples.fasta")]
    assert len(samples) == 4
