"""The trainer calls its callbacks at the documented points, in order, with the rows it logs."""

import pytest
from support.toy import toy_model

from vidd import build_run
from vidd.core import config as cfg
from vidd.tasks.custom import CustomTask
from vidd.training import FinetuneConfig
from vidd.training.callbacks import Callback


class Recorder(Callback):
    def __init__(self, run_dir):
        self.events, self.run_dir = [], run_dir

    def on_iteration_end(self, trainer, row):
        self.events.append(("iteration", row["iteration"], "eval_diversity" in row))

    def on_run_start(self, trainer):
        self.events.append(("start", trainer.ctx.iteration, None))

    def on_evaluation(self, trainer, row, samples):
        self.events.append(("evaluation", row["iteration"], row["eval_diversity"], len(samples)))

    def on_checkpoint(self, trainer, path):
        self.events.append(("checkpoint", trainer.ctx.iteration, path.name))

    def on_run_end(self, trainer, result):
        self.events.append(("end", len(result.metrics), (self.run_dir / "final_eval.json").is_file()))


def small_config(**over) -> FinetuneConfig:
    return cfg.build(FinetuneConfig, {"iterations": 4, "steps": 4, "batch_size": 4, "accumulation": 1,
                                      "eval_every": 2, "eval_samples": 4, "final_samples": 4,
                                      "likelihood_samples": 2, "checkpoint_every": 3,
                                      "method": {"name": "vidd", "timesteps": 2}, **over})


def test_callbacks_see_every_iteration_evaluation_checkpoint_and_the_end(tmp_path):
    config = small_config()
    recorder = Recorder(tmp_path / "run")
    task = CustomTask(toy_model(), lambda seqs: [s.count("G") for s in seqs])
    result = build_run(task, config, tmp_path / "run", log=lambda *a: None, callbacks=[recorder]).execute()
    kinds = [e[:2] for e in recorder.events]
    # the run folder writer comes before the given callbacks: iteration 3's checkpoint (checkpoint_every) and the
    # last iteration's are written (and announced) before their on_iteration_end
    assert kinds == [("start", 0), ("iteration", 1), ("evaluation", 2), ("iteration", 2), ("checkpoint", 3),
                     ("iteration", 3), ("evaluation", 4), ("checkpoint", 4), ("iteration", 4), ("end", 4)]
    evaluated = {e[1]: e[2] for e in recorder.events if e[0] == "evaluation"}
    assert evaluated == {r["iteration"]: r["eval_diversity"] for r in result.metrics if "eval_diversity" in r}
    assert {e[3] for e in recorder.events if e[0] == "evaluation"} == {4}  # eval_samples sequences each
    assert recorder.events[-1] == ("end", 4, True)  # the run folder's final results come first


class FailsAtTheEnd(Callback):
    def on_run_end(self, trainer, result):
        raise RuntimeError("a tracker's server is down")


def test_a_failing_callback_keeps_the_event_from_no_other_and_its_error_is_raised(tmp_path):
    recorder = Recorder(tmp_path / "run")
    task = CustomTask(toy_model(), lambda seqs: [s.count("G") for s in seqs])
    said = []
    run = build_run(task, small_config(iterations=2), tmp_path / "run", log=said.append,
                    callbacks=[FailsAtTheEnd(), recorder, FailsAtTheEnd()])
    with pytest.raises(RuntimeError, match="server is down"):
        run.execute()
    assert recorder.events[-1] == ("end", 2, True)  # called after the failing callback, with the run complete
    assert any("another callback also failed in on_run_end" in line for line in said)  # the second is not lost


def test_a_report_that_fails_is_a_warning_and_the_run_is_complete(tmp_path, monkeypatch):
    def broken(folder):
        raise ValueError("no fonts")

    monkeypatch.setattr("vidd.run.write_report", broken)
    said = []
    task = CustomTask(toy_model(), lambda seqs: [s.count("G") for s in seqs])
    build_run(task, small_config(iterations=2), tmp_path / "run", log=said.append).execute()
    assert (tmp_path / "run" / "final_eval.json").is_file()
    assert any("its report failed (ValueError: no fonts)" in line and "vidd report" in line for line in said)
