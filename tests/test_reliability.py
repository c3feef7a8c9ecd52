"""The reliability suite (docs/reliability.md): the CLI driven through a table of bad inputs and through
faults (kills at random points, torn writes, concurrent writers, corrupted and hostile files).

Every bad input must end with exit code 2 and a message naming the problem, leave an existing run folder
byte for byte unchanged and make no new run folder. A run interrupted by faults must end identical to an
uninterrupted one. Runs use the registered toy task `test-toy-gc`; kills and concurrent writers are real
processes (subprocess, SIGKILL)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support.toy_task import ToyGC
from typer.testing import CliRunner

from vidd.cli import app
from vidd.core.runfolder import RunFolder
from vidd.core.safefiles import load_state
from vidd.tasks import assets_dir

TASK = ToyGC.name
TESTS = Path(__file__).parent
#: `vidd` in a fresh process, with the toy task registered
RUNNER = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import support.toy_task; "
          f"from vidd.cli import app; app(prog_name='vidd')")
#: a toy run long enough to be killed midway (one checkpoint per iteration, so kills hit checkpoint writes)
LONG = ["--preset", "quick", "--set", "iterations=10", "--set", "checkpoint_every=1", "--set", "threads=1"]
TIMING = ("seconds", "wall_seconds", "iteration_seconds", "train_seconds")


class ToyFailing(ToyGC):
    """The toy task with a reward that fails on every call."""

    name = "test-toy-failing"

    def training_reward(self):
        def down(seqs):
            raise RuntimeError("oracle server down")

        return down


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def spawn(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with its content's sha256."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def numbers(run: Path) -> dict:
    """A run's metrics and final evaluation without timings, and its student's weights."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keep = lambda d: {k: v for k, v in d.items() if not k.startswith(TIMING)}  # noqa: E731
    final = json.loads((run / "final_eval.json").read_text())
    weights = (run / "checkpoints" / "student" / "model.safetensors").read_bytes()
    return {"metrics": [keep(r) for r in rows], "final": keep(final), "student": hashlib.sha256(weights).hexdigest()}


def flip(path: Path, count: int = 64) -> None:
    """Flip `count` bytes in the middle of the file."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    r = invoke("finetune", TASK, "--preset", "quick", "--out", run, "--set", "threads=1")
    assert r.exit_code == 0, r.output
    return run


# ------------------------------------------------------------------ the table of bad inputs
def _write(name: str, data: bytes | str):
    def setup(tmp: Path, run: Path) -> None:
        path = tmp / name
        path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return setup


def _last(change):
    def setup(tmp: Path, run: Path) -> None:
        change(run / "checkpoints" / "last.pt", tmp)
    return setup


def _legacy_model(tmp: Path, run: Path) -> None:
    state = load_state(run / "checkpoints" / "last.pt")
    torch.save({**state["model"], "format": "vidd-masked-diffusion-1"}, tmp / "old.pt")


def _evil(tmp: Path, run: Path) -> None:
    torch.save({"format": RunsCode(tmp / "PWNED")}, tmp / "evil.pt")


def _flipped_model(tmp: Path, run: Path) -> None:
    shutil.copytree(run / "checkpoints" / "student", tmp / "model")
    flip(tmp / "model" / "model.safetensors")


def _flipped_assets(tmp: Path, run: Path) -> None:
    (tmp / "assets").mkdir()
    shutil.copytree(assets_dir() / "dhs-hepg2", tmp / "assets" / "dhs-hepg2")
    shutil.copy(assets_dir() / "MANIFEST.json", tmp / "assets")
    flip(tmp / "assets" / "dhs-hepg2" / "pretrained" / "model.safetensors")


def _readonly(tmp: Path, run: Path) -> None:
    (tmp / "ro").mkdir(mode=0o500)


ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available here")
NEW = ["finetune", TASK, "--preset", "quick", "--out", "{new}"]
SAMPLE = ["sample", TASK, "--n", "4", "--steps", "4", "--out", "{tmp}/s.fasta"]
EVALUATE = ["evaluate", "--task", TASK, "--samples"]
RESUME = ["finetune", TASK, "--resume", "{run}"]
FASTA = ">a\nACGTACGTACGT\n>b\nGGGGCCCCAAAA\n"

# (id, arguments, expected message, setup(tmp, run) or None, environment or None)
CASES = [
    # files: binary or non-UTF-8, too few sequences, outputs that are folders or cannot be written
    ("binary-samples", [*EVALUATE, "{tmp}/bin.fasta"], "not a UTF-8 text file",
     _write("bin.fasta", b"\x89PNG\xff\xfe\x00"), None),
    ("binary-config", [*NEW, "--config", "{tmp}/bin.yaml"], "not a UTF-8 text file",
     _write("bin.yaml", b"a: \xff\xfe"), None),
    ("one-sequence", [*EVALUATE, "{tmp}/one.fasta"], "holds 1 sequence; the metrics need at least 2",
     _write("one.fasta", ">a\nACGTACGTACGT\n"), None),
    ("empty-samples", [*EVALUATE, "{tmp}/empty.fasta"], "the file is empty", _write("empty.fasta", ""), None),
    ("evaluate-json-folder", [*EVALUATE, "{tmp}/ok.fasta", "--json", "{tmp}"], "is a folder",
     _write("ok.fasta", FASTA), None),
    ("sample-out-folder", [*SAMPLE[:-1], "{tmp}"], "is a folder", None, None),
    ("sample-out-exists", SAMPLE, "exists; pass --force to overwrite it", _write("s.fasta", FASTA), None),
    ("sample-out-under-a-file", [*SAMPLE[:-1], "{tmp}/afile/s.fasta"], "cannot be written", _write("afile", "x"),
     None),
    ("finetune-out-a-file", [*NEW[:-1], "{tmp}/afile"], "exists and is not a folder", _write("afile", "x"), None),
    ("finetune-out-under-a-file", [*NEW[:-1], "{tmp}/afile/run"], "cannot be made", _write("afile", "x"), None),
    pytest.param(("finetune-out-read-only", [*NEW[:-1], "{tmp}/ro/run"], "not writable", _readonly, None),
                 marks=ROOT, id="finetune-out-read-only"),
    # checkpoints: cut off, corrupted, hostile, of vidd 0.1, missing
    ("resume-zero-byte-checkpoint", RESUME, "the file is empty (0 bytes)", _last(lambda p, t: p.write_bytes(b"")),
     None),
    ("resume-truncated-checkpoint", RESUME, "truncated or corrupted",
     _last(lambda p, t: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])), None),
    ("resume-flipped-checkpoint", RESUME, "corrupted: its content does not match the hash",
     _last(lambda p, t: flip(p)), None),
    ("resume-checkpoint-running-code", RESUME, "holds Python objects that a safe load refuses",
     _last(lambda p, t: torch.save({"format": RunsCode(t / "PWNED")}, p)), None),
    ("resume-checkpoint-without-hash", RESUME, "carries no content hash",
     _last(lambda p, t: torch.save(load_state(p), p)), None),
    ("resume-without-checkpoint", RESUME, "no checkpoint at", _last(lambda p, t: p.unlink()), None),
    ("resume-missing-folder", ["finetune", TASK, "--resume", "{tmp}/nothing"], "config file not found", None, None),
    ("sample-checkpoint-running-code", [*SAMPLE, "--checkpoint", "{tmp}/evil.pt"], "safe load refuses", _evil, None),
    ("sample-flipped-weights", [*SAMPLE, "--checkpoint", "{tmp}/model"], "model.safetensors: corrupted", _flipped_model,
     None),
    ("sample-vidd-0.1-pt", [*SAMPLE, "--checkpoint", "{tmp}/old.pt"], "--trust-checkpoint", _legacy_model, None),
    ("sample-not-a-checkpoint", [*SAMPLE, "--checkpoint", "{tmp}/text.pt"], "truncated or corrupted",
     _write("text.pt", "hello"), None),
    ("convert-untrusted", ["convert-checkpoint", "{tmp}/old.pt", "{new}"], "pass --trust-checkpoint", _legacy_model,
     None),
    ("convert-onto-a-folder", ["convert-checkpoint", "{tmp}/old.pt", "{run}", "--trust-checkpoint"], "exists",
     _legacy_model, None),
    ("corrupted-asset", ["sample", "dhs-hepg2", "--n", "2", "--steps", "2", "--out", "{tmp}/s.fasta"],
     "does not match", _flipped_assets, {"VIDD_ASSETS": "{tmp}/assets"}),
    # settings: tracebacks, hangs and silent acceptance before
    ("lr-negative", [*NEW, "--set", "lr=-1"], "lr: must be a finite number > 0, got -1.0", None, None),
    ("lr-not-a-number", [*NEW, "--set", "lr=fast"], "config.lr: expected a number", None, None),
    ("threads-negative", [*NEW, "--set", "threads=-1"], "threads: must be >= 0", None, None),
    ("device-unknown", [*NEW, "--set", "device=tpu"], "'tpu' is not a torch device vidd runs on", None, None),
    pytest.param(("device-absent", [*NEW, "--set", "device=cuda"], "'cuda' is not available here", None, None),
                 marks=NO_CUDA, id="device-absent"),
    ("checkpoint-every-zero", [*NEW, "--set", "checkpoint_every=0"], "checkpoint_every: must be >= 1", None, None),
    ("likelihood-samples-zero", [*NEW, "--set", "likelihood_samples=0"], "likelihood_samples: must be >= 1", None,
     None),
    ("eval-samples-one", [*NEW, "--set", "eval_samples=1"], "eval_samples: must be >= 2", None, None),
    ("final-samples-one", [*NEW, "--set", "final_samples=1"], "final_samples: must be >= 2", None, None),
    ("alpha-nan", [*NEW, "--set", "method.alpha=nan"], "config.method.alpha: expected a number, got nan", None, None),
    ("eval-every-negative", [*NEW, "--set", "eval_every=-1"], "eval_every: must be >= 0", None, None),
    ("budget-negative", [*NEW, "--set", "reward.budget=-5"], "reward.budget: must be >= 0", None, None),
    ("failure-fraction-zero", [*NEW, "--set", "reward.max_failure_fraction=0"], "must lie in (0, 1]", None, None),
    ("batch-size-zero", [*NEW, "--set", "batch_size=0"], "batch_size: must be >= 1", None, None),
    ("iterations-infinite", [*NEW, "--set", "iterations=.inf"], "expected an integer", None, None),
    ("unknown-field", [*NEW, "--set", "learning_rate=1"], "unknown field(s) ['learning_rate']", None, None),
    ("drakes-non-differentiable", [*NEW, "--set", "method=drakes"], "needs a differentiable reward", None, None),
    ("sample-batch-size-zero", [*SAMPLE, "--batch-size", "0"], "--batch-size: must be >= 1, got 0", None, None),
    ("sample-n-zero", [*SAMPLE, "--n", "0"], "--n: must be >= 1, got 0", None, None),
    ("likelihood-samples-negative", [*EVALUATE, "{tmp}/ok.fasta", "--likelihood-samples", "-3"], "must be >= 0",
     _write("ok.fasta", FASTA), None),
    ("likelihood-samples-huge", [*EVALUATE, "{tmp}/ok.fasta", "--likelihood-samples", "100000"],
     "between 1 and the chain's 16 steps", _write("ok.fasta", FASTA), None),
    ("model-report-one-sample", ["model-report", "--task", TASK, "--samples", "1"], "--samples: must be >= 2", None,
     None),
    # runs: what a resumed run may change, runs of other tasks, folders that hold a run
    ("resume-other-method", [*RESUME, "--set", "method=ddpo"],
     "method.name: 'vidd' -> 'ddpo' would make it another run", None, None),
    ("resume-other-seed", [*RESUME, "--set", "seed=5"], "seed: 0 -> 5 would make it another run", None, None),
    ("resume-other-batch", [*RESUME, "--set", "batch_size=8"], "batch_size: 4 -> 8", None, None),
    ("resume-other-lr", [*RESUME, "--set", "lr=0.5"], "lr: 0.0001 -> 0.5", None, None),
    ("resume-with-out", [*RESUME, "--out", "{new}"], "--resume takes the run folder", None, None),
    ("new-run-on-a-run", [*NEW[:-1], "{run}"], "already holds a run; pass --resume", None, None),
    ("resume-as-another-task", ["finetune", "dhs-hepg2", "--resume", "{run}"], "does not fit task 'dhs-hepg2'", None,
     None),
    ("sample-run-of-another-task", ["sample", "dhs-hepg2", "--checkpoint", "{run}", "--out", "{tmp}/s.fasta"],
     "does not fit task 'dhs-hepg2'", None, None),
    ("sample-dna-model-for-toy", [*SAMPLE, "--checkpoint", "{assets}/dhs-hepg2/pretrained"],
     "the model is DNA (4 letters), length 200", None, None),
    ("sample-molecule-model-for-dna", ["sample", "dhs-hepg2", "--checkpoint", "{assets}/moses/pretrained", "--out",
                                       "{tmp}/s.fasta"], "does not fit task 'dhs-hepg2'", None, None),
    ("sample-dna-model-for-molecules", ["sample", "moses-qed", "--checkpoint", "{assets}/dhs-hepg2/pretrained", "--out",
                                        "{tmp}/s.smi"], "does not fit task 'moses-qed'", None, None),
]


def test_the_table_holds_at_least_40_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0] if isinstance(c, tuple) else None)
def test_bad_input_is_a_clear_error_that_changes_nothing(case, finished, tmp_path):
    name, args, message, setup, env = case
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    if setup:
        setup(tmp_path, run)
    before = snapshot(run)
    fill = {"tmp": str(tmp_path), "run": str(run), "new": str(tmp_path / "new"), "assets": str(assets_dir())}
    env = {k: v.format(**fill) for k, v in env.items()} if env else None
    r = invoke(*[a.format(**fill) for a in args], env=env)
    assert r.exit_code == 2, r.output
    assert message in r.output, r.output
    assert r.output.startswith("error: ") and r.output.count("\n") == 1, r.output  # one line, no traceback
    assert snapshot(run) == before  # nothing in the existing run folder changed
    assert not (tmp_path / "new").exists()  # and no half-made run folder
    assert not (tmp_path / "PWNED").exists()  # no code from a checkpoint ran


# ------------------------------------------------------------------ faults
def kill_after(args: list, rows: int, delay: float) -> None:
    """Start `vidd finetune` in a fresh process and SIGKILL it once metrics.jsonl holds `rows` rows, `delay`
    seconds later."""
    out = Path(args[args.index("--out") + 1] if "--out" in args else args[args.index("--resume") + 1])
    proc = spawn(*args)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) >= rows:
            break
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()  # killed midway, not finished


def test_kill_and_resume_at_random_points_ends_identical(tmp_path, caplog):
    """A run SIGKILLed at three random points (with a torn metrics line and a stale checkpoint temporary
    added, as a kill during a write leaves them) and resumed each time ends bit-identical to a run never
    interrupted."""
    reference = tmp_path / "reference"
    assert invoke("finetune", TASK, *LONG, "--out", reference).exit_code == 0
    cut = tmp_path / "cut"
    rng = random.Random(14)
    # row 2 follows the checkpoint of iteration 1, so there is one to resume from; at most 8 of the 10 rows
    kill_after(["finetune", TASK, *LONG, "--out", cut], rows=rng.randint(2, 4), delay=rng.uniform(0, 0.05))
    for _ in range(2):
        rows = len((cut / "metrics.jsonl").read_text().splitlines())
        kill_after(["finetune", TASK, "--resume", cut], rows=rows + rng.randint(1, 2), delay=rng.uniform(0, 0.05))
    with open(cut / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 99, "lo')  # an append cut off
    (cut / "checkpoints" / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    r = invoke("finetune", TASK, "--resume", cut)
    assert r.exit_code == 0, r.output
    assert "cut off while it was written" in caplog.text and "temporary file(s)" in caplog.text
    assert "a stale lock" in caplog.text  # the killed process's lock was taken over
    assert numbers(cut) == numbers(reference)
    assert not list((cut / "checkpoints").glob(".*.tmp")) and not RunFolder(cut).in_progress()


def test_a_killed_resume_of_a_finished_run_serves_no_stale_model(finished, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    kill_after(["finetune", TASK, "--resume", run, "--set", "iterations=40"], rows=3, delay=0)
    assert not (run / "final_eval.json").exists() and not (run / "checkpoints" / "student").exists()
    iteration = load_state(run / "checkpoints" / "last.pt")["iteration"]
    r = invoke("sample", TASK, "--checkpoint", run, "--n", 3, "--steps", 4, "--out", tmp_path / "s.fasta")
    assert r.exit_code == 0, r.output
    assert f"in progress or was interrupted: using its latest checkpoint (iteration {iteration})" in r.output
    history = RunFolder(run).read_history()
    assert history[0]["iteration"] == 2 and history[0]["changes"] == {"iterations": [2, 40]}
    r = invoke("finetune", TASK, "--resume", run, "--set", "iterations=4")  # shorter again: ends at 4 or where it is
    assert r.exit_code == 0, r.output
    assert json.loads((run / "final_eval.json").read_text())["iterations"] == max(4, iteration)
    assert "Settings changed on resume" in (run / "report.html").read_text()


def test_two_writers_on_one_folder_one_wins_the_other_gets_a_clear_error(tmp_path):
    out = tmp_path / "conc"
    procs = [spawn("finetune", TASK, *LONG, "--out", out, "--set", f"seed={seed}") for seed in (1, 2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outputs
    loser = outputs[[p.returncode for p in procs].index(2)]
    assert "in use by another vidd process (pid" in loser or "already holds a run" in loser, loser
    winner_seed = 1 + [p.returncode for p in procs].index(0)
    iterations = [json.loads(line)["iteration"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert iterations == list(range(1, 11))  # every iteration once
    assert f"seed: {winner_seed}\n" in (out / "config.yaml").read_text()


def test_a_run_held_by_another_process_is_refused_and_left_alone(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    hold = ("import sys, time; from vidd.core.runfolder import RunFolder\n"
            "with RunFolder(sys.argv[1]).lock():\n    print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", hold, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        before = snapshot(run)
        r = invoke("finetune", TASK, "--resume", run, "--set", "iterations=3")
        assert r.exit_code == 2 and f"in use by another vidd process (pid {proc.pid})" in r.output, r.output
        assert snapshot(run) == before
    finally:
        proc.kill()
        proc.wait()


def test_a_reward_that_fails_everywhere_ends_the_run_with_an_error(tmp_path):
    r = invoke("finetune", ToyFailing.name, "--preset", "quick", "--out", tmp_path / "run", "--set",
               "reward.on_failure=penalty")
    assert r.exit_code == 2 and "failed on" in r.output and "reward.max_failure_fraction = 0.5" in r.output
    assert RunFolder(tmp_path / "run").in_progress()  # no final model presented as done


def test_trusted_vidd_01_files_still_load_and_convert(finished, tmp_path):
    _legacy_model(tmp_path, finished)
    sample = [a.format(tmp=tmp_path) for a in SAMPLE]
    r = invoke(*sample, "--checkpoint", tmp_path / "old.pt", "--trust-checkpoint")
    assert r.exit_code == 0, r.output
    r = invoke("convert-checkpoint", tmp_path / "old.pt", tmp_path / "new", "--trust-checkpoint")
    assert r.exit_code == 0, r.output
    r = invoke(*sample, "--checkpoint", tmp_path / "new", "--force")
    assert r.exit_code == 0, r.output
    seqs = (tmp_path / "s.fasta").read_text().split()[1::2]
    assert len(seqs) == 4 and np.all([len(s) == 12 for s in seqs])
    run = tmp_path / "run"  # a run whose checkpoint has no hash, as vidd 0.1 wrote them
    shutil.copytree(finished, run)
    torch.save(load_state(run / "checkpoints" / "last.pt"), run / "checkpoints" / "last.pt")
    r = invoke("finetune", TASK, "--resume", run, "--set", "iterations=3", "--trust-checkpoint")
    assert r.exit_code == 0, r.output
    assert "sha256" in torch.load(run / "checkpoints" / "last.pt", weights_only=True)  # written anew, with its hash
