"""CLI smoke tests on a toy task registered here (no downloads), and the CLI's error paths."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.toy_task import ToyGC
from typer.testing import CliRunner

import vidd
from vidd.cli import _preset_help, app, config_markdown, method_markdown
from vidd.tasks.base import PRESETS_DIR
from vidd.training.objectives import Method

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_finetune_sample_evaluate_round_trip(tmp_path):
    run = tmp_path / "run"
    r = invoke("finetune", ToyGC.name, "--preset", "quick", "--out", run)
    assert r.exit_code == 0, r.output
    assert "reward calls per iteration" in r.output
    for name in ("config.yaml", "metrics.jsonl", "metrics.csv", "final_eval.json",
                 "checkpoints/student/config.json", "checkpoints/student/model.safetensors", "curves.png",
                 "report.html"):
        assert (run / name).is_file(), name
    page = (run / "report.html").read_text()
    assert "Final evaluation" in page and "reward_median" in page and "curves.png" in page
    executor = yaml.safe_load((run / "config.yaml").read_text())["reward"]["executor"]
    assert (executor["kind"], executor["batch_size"]) == ("serial", 3)  # task defaults < preset
    samples = tmp_path / "s.fasta"
    r = invoke("sample", ToyGC.name, "--checkpoint", run, "--n", 6, "--steps", 4, "--seed", 3, "--out", samples)
    assert r.exit_code == 0, r.output
    assert samples.read_text().count(">") == 6
    again = tmp_path / "again.fasta"
    invoke("sample", ToyGC.name, "--checkpoint", run, "--n", 6, "--steps", 4, "--seed", 3, "--out", again)
    assert again.read_text() == samples.read_text()  # seeded
    out = tmp_path / "eval.json"
    r = invoke("evaluate", "--task", ToyGC.name, "--samples", samples, "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["n"] == 6
    # resume of a finished run extends it when iterations grow
    r = invoke("finetune", ToyGC.name, "--resume", run, "--set", "iterations=3")
    assert r.exit_code == 0, r.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("args, message", [
    (["finetune", "test-toy-gc", "--preset", "huge", "--out", "{tmp}/x"], "no preset 'huge'"),
    (["finetune", "test-toy-gc", "--set", "method.alpha=-1", "--out", "{tmp}/x"], "method.alpha: must be > 0"),
    (["finetune", "test-toy-gc", "--set", "method=nope", "--out", "{tmp}/x"], "unknown method 'nope'"),
    (["finetune", "test-toy-gc", "--set", "lr=fast", "--out", "{tmp}/x"], "config.lr: expected a number"),
    (["finetune", "no-such-task", "--out", "{tmp}/x"], "unknown task"),
    (["finetune", "test-toy-gc"], "give --out"),
    (["finetune", "test-toy-gc", "--resume", "{tmp}/missing"], "config file not found"),
    (["sample", "test-toy-gc", "--checkpoint", "{tmp}/none.pt", "--out", "{tmp}/s.fasta"], "not found"),
    (["evaluate", "--task", "test-toy-gc", "--samples", "{tmp}/bad.fasta"], "record 2"),
    (["evaluate", "--task", "test-toy-gc", "--samples", "{tmp}/short.fasta"], "length 5, expected 12"),
    (["evaluate", "--task", "test-toy-gc", "--samples", "{tmp}/plain.txt"], "not FASTA"),
    (["report", "{tmp}"], "no metrics.jsonl"),
    (["model-report", "--task", "dhs-hepg2", "--checkpoint", "{tmp}/none.pt"], "not found"),
])
def test_errors_are_clear(tmp_path, args, message):
    (tmp_path / "bad.fasta").write_text(">a\nACGTACGTACGT\n>b\nACGTACGTACGX\n")
    (tmp_path / "short.fasta").write_text(">a\nACGTA\n")
    (tmp_path / "plain.txt").write_text("ACGTACGTACGT\n")
    r = invoke(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output


def test_finetune_reward_on_a_process_pool(tmp_path):
    """Spawned workers build the task's reward from a picklable factory (they import this module first)."""
    run = tmp_path / "run"
    r = invoke("finetune", ToyGC.name, "--preset", "quick", "--out", run, "--set", "iterations=1",
               "--set", "reward.executor.kind=process", "--set", "reward.executor.workers=1")
    assert r.exit_code == 0, r.output
    executor = yaml.safe_load((run / "config.yaml").read_text())["reward"]["executor"]
    assert (executor["kind"], executor["workers"], executor["batch_size"]) == ("process", 1, 3)
    assert json.loads((run / "final_eval.json").read_text())["n"] == 6


def test_existing_run_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    assert invoke("finetune", ToyGC.name, "--preset", "quick", "--out", run).exit_code == 0
    before = (run / "metrics.jsonl").read_text()
    r = invoke("finetune", ToyGC.name, "--preset", "quick", "--out", run)
    assert r.exit_code == 2 and "already holds a run" in r.output
    assert (run / "metrics.jsonl").read_text() == before


def test_pretrain_on_fasta_and_resume(tmp_path):
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), 16)) for _ in range(64)]
    data = tmp_path / "train.fasta"
    data.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    out = tmp_path / "pt"
    common = ["--set", "model.hidden=8", "--set", "model.stacks=1", "--set", "batch_size=16", "--set",
              "eval_every=2", "--set", "warmup_steps=1", "--set", "eval_sequences=8"]
    r = invoke("pretrain", "--data", data, "--out", out, "--set", "epochs=1", *common)
    assert r.exit_code == 0, r.output
    assert (out / "model" / "model.safetensors").is_file()
    r = invoke("pretrain", "--data", data, "--out", out, "--set", "epochs=1", *common)
    assert r.exit_code == 2 and "--resume" in r.output
    r = invoke("pretrain", "--data", data, "--out", out, "--resume", "--set", "epochs=2", *common)
    assert r.exit_code == 0, r.output
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 6 and steps == sorted(steps)


def test_docs_config_tables_are_current():
    """docs/config.md holds every command's table and every built-in method's (methods that tests register
    are left out)."""
    doc = (Path(__file__).parents[1] / "docs" / "config.md").read_text()
    for command, method in (("finetune", "vidd"), ("pretrain", None), ("train-oracle", None), ("assay-oracle", None)):
        assert config_markdown(command, method) in doc, f"docs/config.md is stale: run `vidd config {command}`"
    for name, cls in Method.registry.items():
        if cls.__module__.startswith("vidd.") and name != "vidd":  # vidd's fields are in the finetune table
            assert method_markdown(name) in doc, "docs/config.md is stale: run `vidd config finetune`"


def test_bench_equal_budget_and_failure_reporting(tmp_path, monkeypatch):
    monkeypatch.setattr(ToyGC, "table_metrics", ("reward_median",))  # a reward column: the trade-off plot is drawn
    out = tmp_path / "bench"
    args = ["bench", ToyGC.name, "--methods", "vidd,drakes,best-of-n,pretrained", "--budget", "60",
            "--samples", "4", "--out", out, "--set", "eval_every=1"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "results.json").read_text())
    by = {row["method"]: row for row in rows}
    assert by["vidd"]["status"] == "ok" and by["vidd"]["reward_calls"] <= 60
    assert by["pretrained"]["reward_calls"] == 0
    assert by["best-of-n"]["reward_calls"] <= 60
    assert by["drakes"]["status"] == "failed" and "differentiable" in by["drakes"]["error"]
    table = (out / "table.md").read_text()
    assert "drakes (failed 1/1" in table and "| vidd |" in table
    assert "| method | reward_median | reward_calls |" in table
    for name in ("curves.png", "tradeoff.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    with open(out / "results.csv") as f:
        assert {r["method"]: r["status"] for r in csv.DictReader(f)} == {m: by[m]["status"] for m in by}
    r = invoke(*args)  # a rerun skips finished work, failed cells included
    assert r.exit_code == 0 and "done before, skipped" in r.output and "drakes seed 0: done before" in r.output
    r = invoke(*args, "--rerun-failed")  # runs the failed cell again (here it fails again, for the same reason)
    assert r.exit_code == 0 and "drakes seed 0: failed before (ConfigError" in r.output, r.output
    assert "vidd seed 0: done before, skipped" in r.output


def test_a_sweep_whose_runs_all_failed_chooses_nothing(tmp_path):
    """DRAKES needs a differentiable reward, which the toy task has not: every run fails, and the sweep says so."""
    out = tmp_path / "sweep"
    r = invoke("bench", ToyGC.name, "--methods", "drakes", "--budget", "10", "--samples", "4", "--lrs", "1e-3",
               "--out", out)
    assert r.exit_code == 2 and "no learning rate of drakes can be chosen: 1 of its runs failed, e.g. " \
                                "ConfigError" in r.output, r.output
    assert "--rerun-failed" in r.output and not (out / "choice.yaml").exists()


def test_bench_rejects_unknown_method(tmp_path):
    r = invoke("bench", ToyGC.name, "--methods", "vidd,nope", "--budget", "10", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "unknown method 'nope'" in r.output


@pytest.mark.parametrize("args,message", [
    (["--eval-at-calls", "5,x"], "--eval-at-calls: expected comma-separated numbers"),
    (["--eval-at-calls", "5,20"], "every threshold must lie in [1, budget = 10]"),
    (["--compare", "vidd:ddpo"], "--compare: vidd:ddpo must name two of the benchmark's methods"),
    (["--lrs", "1e-3", "--pick", "best"], "--pick: expected NAME=A,B,..."),
    (["--lrs", "1e-3", "--pick", "best=vidd,nope"], "--pick: best=vidd,nope must name a new label"),
    (["--methods", "v2", "--variants", "VARIANTS"], "v2 extends 'v1', which is neither a variant nor a method"),
])
def test_bench_option_errors_stop_before_any_run(tmp_path, args, message):
    variants = tmp_path / "variants.yaml"
    variants.write_text("v2: {extends: v1}\n")
    args = [str(variants) if a == "VARIANTS" else a for a in args]
    if "--methods" not in args:
        args = ["--methods", "vidd", *args]
    r = invoke("bench", ToyGC.name, "--budget", "10", "--out", tmp_path / "b", *args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "b" / "runs").exists()


def test_sample_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_text("not a checkpoint")
    r = invoke("sample", ToyGC.name, "--checkpoint", bogus, "--out", tmp_path / "s.fasta")
    assert r.exit_code == 2 and "not a readable checkpoint" in r.output


def test_report_of_an_interrupted_run(tmp_path):
    """`vidd report` remakes the curves of a run that has no final evaluation (yet), from metrics.jsonl alone."""
    run = tmp_path / "run"
    assert invoke("finetune", ToyGC.name, "--preset", "quick", "--out", run).exit_code == 0
    for name in ("final_eval.json", "curves.png", "report.html"):
        (run / name).unlink()
    r = invoke("report", run)
    assert r.exit_code == 0, r.output
    page = (run / "report.html").read_text()
    assert "interrupted after iteration 2" in page and "Final evaluation" not in page
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")
    (run / "metrics.jsonl").write_text('{"iteration": 1}\nnot json\n')
    r = invoke("report", run)
    assert r.exit_code == 2 and "line 2 is not JSON" in r.output


def test_model_report_runs_on_the_given_device_and_writes_json(tmp_path):
    out = tmp_path / "report.json"
    r = invoke("model-report", "--task", ToyGC.name, "--samples", 5, "--device", "cpu", "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["device"] == "cpu" and json.loads(out.read_text())["samples"] == 5


def test_version_is_the_package_version():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output == f"vidd {vidd.__version__}\n"


def test_preset_help_lists_each_tasks_preset_files():
    text = _preset_help()
    for folder in PRESETS_DIR.iterdir():
        names = sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "defaults")
        assert f"{folder.name}: {' | '.join(names)}" in text


def test_model_report_shows_the_provenance(tmp_path):
    run = tmp_path / "run"
    assert invoke("finetune", ToyGC.name, "--preset", "quick", "--out", run).exit_code == 0
    r = invoke("model-report", "--task", ToyGC.name, "--checkpoint", run, "--samples", 4)
    assert r.exit_code == 0, r.output
    origin = json.loads(r.output)["provenance"]
    assert (origin["task"], origin["method"], origin["iteration"]) == (ToyGC.name, "vidd", 2)
    assert origin["base_model"]["sha256"] == ToyGC().pretrained_model().weights_sha256()
    assert origin["config"]["iterations"] == 2 and origin["reward_calls"] > 0 and origin["vidd_version"]
