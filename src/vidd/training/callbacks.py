"""Hooks into a fine-tuning run: the run folder, the progress bar, the report, experiment trackers, and anything
else that watches a run.

The trainer calls every callback on the main process only (data-parallel runs call them once; an exception in
one is raised on every process), in the order they were given: `on_run_start` once the trainer is ready
(after a resume has loaded its checkpoint), `on_evaluation` after an evaluation of the student,
`on_iteration_end` after each iteration's metrics row is complete (evaluation included), `on_checkpoint` after a
checkpoint is written (the run folder's writer checkpoints in its own `on_iteration_end`, so callbacks after it
hear of an iteration's checkpoint before its `on_iteration_end`), `on_run_end` when training is over. A callback
that raises does not keep an event from the others; the first exception is raised after all were called.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from vidd.core.runfolder import RunFolder
from vidd.eval.samples import sample_scores


class Callback:
    def on_run_start(self, trainer) -> None:
        pass

    def on_iteration_end(self, trainer, row: dict) -> None:
        pass

    def on_evaluation(self, trainer, row: dict, samples: list[str]) -> None:
        pass

    def on_checkpoint(self, trainer, path: Path) -> None:
        pass

    def on_run_end(self, trainer, result) -> None:
        pass


class ProgressBar(Callback):
    """A tqdm bar over iterations (no total under a reward budget, which ends the run at an iteration nobody
    knows in advance), showing the latest training and evaluation reward, diversity, calls and s/it."""

    SHOWN = (("reward", "reward_median"), ("eval", "eval_reward_median"), ("div", "eval_diversity"),
             ("calls", "reward_calls"), ("s/it", "iteration_seconds"))

    def on_run_start(self, trainer) -> None:
        config = trainer.config
        self.bar = tqdm(total=None if config.reward.budget else config.iterations, initial=trainer.ctx.iteration,
                        desc=f"finetune {config.method.name}", mininterval=1.0)

    def on_iteration_end(self, trainer, row: dict) -> None:
        self.bar.update(1)
        self.bar.set_postfix({k: f"{row[v]:.3g}" for k, v in self.SHOWN if row.get(v) is not None})

    def on_run_end(self, trainer, result) -> None:
        self.bar.close()


class RunFolderWriter(Callback):
    """Writes a run into its folder (vidd.core.runfolder): every metrics row, each evaluation's samples, a
    checkpoint every `checkpoint_every` iterations and at the end, then the fine-tuned model, the final samples
    with their per-sequence table, and the final evaluation; last, it marks the run finished."""

    def __init__(self, folder: RunFolder):
        self.folder = folder
        self.saved_at: int | None = None  # the iteration of the latest checkpoint

    def on_run_start(self, trainer) -> None:
        self.saved_at = trainer.ctx.iteration
        if trainer.ctx.iteration:  # resumed: the rows after the checkpoint are gone from the run
            self.folder.rewrite_metrics(trainer.metrics)

    def on_evaluation(self, trainer, row: dict, samples: list[str]) -> None:
        self._write_samples(trainer, f"iter_{row['iteration']:05d}", samples)

    def on_iteration_end(self, trainer, row: dict) -> None:
        self.folder.append_metrics(row, trainer.metrics)
        if row["iteration"] % trainer.config.checkpoint_every == 0 or row["iteration"] == trainer.config.iterations:
            self._checkpoint(trainer)

    def on_run_end(self, trainer, result) -> None:
        if self.saved_at != trainer.ctx.iteration:
            self._checkpoint(trainer)
        result.model.save_pretrained(self.folder.student_checkpoint)
        final = trainer.final_evaluation()
        self._write_samples(trainer, "final", final.samples, sample_scores(final.table))
        if final.table:
            self.folder.write_final_table(final.table)
        self.folder.write_final_eval(final.report)
        self.folder.mark_finished()

    def _checkpoint(self, trainer) -> None:
        self.folder.save_checkpoint(trainer.state_dict())
        self.saved_at = trainer.ctx.iteration
        trainer.notify("on_checkpoint", self.folder.last_checkpoint)

    def _write_samples(self, trainer, stem: str, samples: list[str], scores: dict[str, list] | None = None) -> None:
        trainer.samples.write_samples(self.folder.samples_file(stem, trainer.samples.sample_suffix), samples, scores)
