"""Hooks into a fine-tuning run: experiment trackers, and anything else that watches a run.

The trainer calls every callback on the main process only (data-parallel runs call them once), in
order: `on_iteration_end` after each iteration's metrics row is complete (evaluation included),
`on_evaluation` after an evaluation of the student, `on_checkpoint` after a checkpoint is written,
`on_run_end` when training is over (final evaluation written).
"""

from __future__ import annotations

from pathlib import Path


class Callback:
    def on_iteration_end(self, trainer, row: dict) -> None:
        pass

    def on_evaluation(self, trainer, row: dict) -> None:
        pass

    def on_checkpoint(self, trainer, path: Path) -> None:
        pass

    def on_run_end(self, trainer, result) -> None:
        pass
