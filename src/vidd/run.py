"""One way to build a fine-tuning run, shared by `vidd finetune`, `vidd bench` and the Python API.

`finetune_config` layers a run's settings (task defaults < preset < the preset's settings of the chosen
method < the user's layers); `build_run` binds a task, a config and a run folder into a `Run`, whose
`execute` serves the task's training reward on its executor, trains, evaluates and writes the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vidd.core import config as cfg
from vidd.core.config import ConfigError
from vidd.core.runfolder import RunFolder
from vidd.eval.report import write_report
from vidd.rewards.executors import served_reward
from vidd.tasks.base import Task
from vidd.tasks.custom import CustomTask
from vidd.training import FinetuneConfig, FinetuneResult, Trainer
from vidd.training.callbacks import Callback
from vidd.training.trackers import trackers
from vidd.training.objectives import Method


def finetune_config(task: Task, preset: str | None = None, *layers: dict) -> FinetuneConfig:
    """The task's defaults < the preset < the preset's `method_settings` of the run's method < `layers`."""
    preset_layer = dict(task.preset(preset)) if preset else {}
    per_method = preset_layer.pop("method_settings", {}) or {}
    for name in per_method:
        Method.lookup(name)  # a preset naming an unknown method is an error, not silently unused
    stack = [task.defaults, preset_layer]
    merged: dict = {}
    for layer in (*stack, *layers):
        merged = cfg.merge(merged, layer, FinetuneConfig)
    method = cfg.merge({"method": {"name": FinetuneConfig().method.name}}, merged, FinetuneConfig)["method"]
    name = method["name"] if isinstance(method, dict) else method
    return cfg.build(FinetuneConfig, *stack, {"method": {"name": name, **per_method.get(name, {})}}, *layers)


def upgrade_config(data: dict) -> dict:
    """A run config of vidd 0.1 (`method: NAME` beside one section per method, e.g. `vidd: {...}`) in
    today's form (`method: {name: NAME, ...}`), so that old run folders resume."""
    if not isinstance(data.get("method"), str):
        return data
    name = data["method"]
    sections = {m.replace("-", "_") for m in Method.registry}
    out = {k: v for k, v in data.items() if k not in sections}
    out["method"] = {"name": name, **(data.get(name.replace("-", "_")) or {})}
    return out


@dataclass
class Run:
    task: Task
    config: FinetuneConfig
    folder: RunFolder | None = None
    resume: bool = False
    log: Callable = print
    callbacks: list[Callback] = field(default_factory=list)
    #: False on the other processes of a data-parallel run, once executed
    main: bool = True

    def execute(self) -> FinetuneResult:
        """Train, evaluate and (with a folder, on the main process) write the report."""
        task = self.task
        executor = self.config.reward.executor
        factory = task.training_reward if executor.kind == "inline" else task.training_reward_factory()
        with served_reward(factory, executor) as reward:
            trainer = Trainer(self.config, task.pretrained_model(), reward, task.evaluation_reward, self.folder,
                              final_evaluator=task.evaluate, log=self.log, samples=task, callbacks=self.callbacks,
                              final_table=task.per_sequence)
            result = trainer.run(resume=self.resume)
        self.main = trainer.group.main
        if self.folder and self.main:
            write_report(self.folder)
        return result


def build_run(task: Task, config: FinetuneConfig, out: str | Path | None = None, resume: bool = False,
              log: Callable = print, callbacks: list[Callback] = ()) -> Run:
    """A run of `config` on `task`, written to the run folder `out` (None: nothing written); the trackers of
    `config.report_to` and `callbacks` watch it (vidd.training.callbacks)."""
    if resume and out is None:
        raise ConfigError("resume: needs the run folder")
    task = task.configured(config.reward.terms, config.task)
    folder = RunFolder(out) if out is not None else None
    tracking = trackers(config.report_to, {"task": task.name, **cfg.to_dict(config)}, folder,
                        folder.path.name if folder else task.name)
    return Run(task, config, folder, resume, log, [*tracking, *callbacks])


def resume_config(folder: RunFolder, *layers: dict) -> FinetuneConfig:
    """The config of the run in `folder`, with `layers` (e.g. `--set iterations=400`) on top."""
    return cfg.build(FinetuneConfig, upgrade_config(folder.read_config()), *layers)


def finetune(model, reward, config: FinetuneConfig | None = None, *, eval_reward=None,
             out: str | Path | None = None, resume: bool = False, log: Callable = print) -> FinetuneResult:
    """Fine-tune any masked diffusion model against any reward (a Reward or a plain callable
    `list[str] -> floats`). Returns the fine-tuned student and the per-iteration metrics. Under torchrun
    (WORLD_SIZE > 1) the run is data-parallel (docs/scaling.md) and every process returns the same result."""
    task = CustomTask(model, reward, eval_reward)
    return build_run(task, config or FinetuneConfig(), out, resume, log).execute()
