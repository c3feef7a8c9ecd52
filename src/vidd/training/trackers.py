"""Experiment trackers as trainer callbacks: config `report_to: [tensorboard, mlflow, wandb]` (docs/tracking.md).

Every tracker logs each iteration's numeric metrics at step = iteration, the run's config as hyper-parameters
and, when the run ends, the final evaluation as `final/<key>`. Each library is an optional extra, imported when
the config is validated (a missing one fails before any work starts); a tracker opens its run at the first
event, so only the main process of a data-parallel run (the one the trainer calls back) opens one.
"""

from __future__ import annotations

import os
import time

from vidd.core.config import ConfigError
from vidd.core.extras import require
from vidd.core.runfolder import RunFolder
from vidd.training.callbacks import Callback


def numeric(row: dict) -> dict[str, float]:
    """The numbers of a metrics row (None, text and flags left out), `iteration` being the step."""
    return {k: float(v) for k, v in row.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "iteration"}


def flatten(config: dict, prefix: str = "") -> dict[str, str | int | float | bool]:
    """Nested config sections as dotted keys; values other than numbers, text and flags as text."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return out


class Tracker(Callback):
    """One run in an experiment tracker. Subclasses name the tracker (`name`, its key in `report_to`), the module
    it needs and the extra that installs it, and implement `start`, `log`, `log_final` and `close`."""

    name = ""
    module = ""
    registry: dict[str, type["Tracker"]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Tracker.registry[cls.name] = cls

    @staticmethod
    def lookup(name: str) -> type["Tracker"]:
        """The tracker class of a `report_to` name, its library imported (MissingExtra names the extra)."""
        if name not in Tracker.registry:
            raise ConfigError(f"report_to: unknown tracker {name!r}; one of {sorted(Tracker.registry)}")
        cls = Tracker.registry[name]
        require(cls.module, name, f"report_to: {name}")
        return cls

    def __init__(self, config: dict, folder: RunFolder | None, run_name: str):
        self.config, self.folder, self.run_name = config, folder, run_name
        self.started = False

    def _ensure_started(self) -> None:
        if not self.started:
            self.start()
            self.started = True

    def on_iteration_end(self, trainer, row: dict) -> None:
        self._ensure_started()
        self.log(numeric(row), row["iteration"])

    def on_run_end(self, trainer, result) -> None:
        self._ensure_started()
        final = self.folder.read_final_eval() if self.folder else None
        if final:
            self.log_final({f"final/{k}": v for k, v in numeric(final).items()}, trainer.ctx.iteration)
        self.close()

    def start(self) -> None:
        raise NotImplementedError

    def log(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_final(self, metrics: dict[str, float], step: int) -> None:
        self.log(metrics, step)

    def close(self) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """Event files in RUN/tensorboard (without a run folder: TensorBoard's default, ./runs/...); the config in the
    HParams dashboard."""

    name = "tensorboard"
    module = "torch.utils.tensorboard"

    def start(self) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(self.folder.tensorboard_dir) if self.folder else None)
        for summary in hparams(flatten(self.config), {}):
            self.writer.file_writer.add_summary(summary)

    def log(self, metrics, step):
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self):
        self.writer.close()


class MLflowTracker(Tracker):
    """A run (named after the run folder) in the experiment $MLFLOW_EXPERIMENT_NAME (default `vidd`) of the
    tracking server or store $MLFLOW_TRACKING_URI; the config as parameters."""

    name = "mlflow"
    module = "mlflow"

    def start(self) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "vidd")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        tags = {"vidd.run_folder": str(self.folder.path.resolve())} if self.folder else {}
        self.run_id = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags).info.run_id
        params = [Param(k, str(v)) for k, v in flatten(self.config).items()]
        self.client.log_batch(self.run_id, params=params)

    def log(self, metrics, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def close(self):
        self.client.set_terminated(self.run_id)


class WandbTracker(Tracker):
    """A W&B run (named after the run folder) in the project $WANDB_PROJECT (default `vidd`), its files in
    RUN/wandb; offline with WANDB_MODE=offline (`wandb sync` uploads it later). The config as the run's config,
    the final evaluation in its summary."""

    name = "wandb"
    module = "wandb"

    def start(self) -> None:
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "vidd"), name=self.run_name,
                              dir=str(self.folder.path) if self.folder else None, config=self.config)

    def log(self, metrics, step):
        self.run.log(metrics, step=step)

    def log_final(self, metrics, step):
        self.run.summary.update(metrics)

    def close(self):
        self.run.finish()


def trackers(names: list[str], config: dict, folder: RunFolder | None, run_name: str) -> list[Tracker]:
    """The callbacks of config `report_to`."""
    return [Tracker.lookup(name)(config, folder, run_name) for name in names]

