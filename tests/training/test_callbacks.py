"""The trainer calls its callbacks at the documented points, in order, with the rows it logs."""

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


def test_callbacks_see_every_iteration_evaluation_checkpoint_and_the_end(tmp_path):
    config = cfg.build(FinetuneConfig, {"iterations": 4, "steps": 4, "batch_size": 4, "accumulation": 1,
                                        "eval_every": 2, "eval_samples": 4, "final_samples": 4,
                                        "likelihood_samples": 2, "checkpoint_every": 3,
                                        "method": {"name": "vidd", "timesteps": 2}})
    recorder = Recorder(tmp_path / "run")
    task = CustomTask(toy_model(), lambda seqs: [s.count("G") for s in seqs])
    result = build_run(task, config, tmp_path / "run", log=lambda *a: None, callbacks=[recorder]).execute()
    kinds = [e[:2] for e in recorder.events]
    # the run folder writer comes before the given callbacks: iteration 3's checkpoint is written (and announced)
    # before their on_iteration_end; the last iteration's checkpoint is written when the run ends
    assert kinds == [("start", 0), ("iteration", 1), ("evaluation", 2), ("iteration", 2), ("checkpoint", 3),
                     ("iteration", 3), ("evaluation", 4), ("iteration", 4), ("checkpoint", 4), ("end", 4)]
    evaluated = {e[1]: e[2] for e in recorder.events if e[0] == "evaluation"}
    assert evaluated == {r["iteration"]: r["eval_diversity"] for r in result.metrics if "eval_diversity" in r}
    assert {e[3] for e in recorder.events if e[0] == "evaluation"} == {4}  # eval_samples sequences each
    assert recorder.events[-1] == ("end", 4, True)  # the run folder's final results come first
