"""One way to build a fine-tuning run, shared by `vidd finetune`, `vidd bench` and the Python API.

`finetune_config` layers a run's settings (task defaults < preset < the preset's settings of the chosen
method < the user's layers); `build_run` binds a task, a config and a run folder into a `Run`, whose
`execute` serves the task's training reward on its executor, trains, evaluates and writes the report
(with the task's tables of the final samples).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vidd.core import config as cfg
from vidd.core.config import ConfigError, to_dict
from vidd.core.devices import check_available
from vidd.core.runfolder import RunFolder
from vidd.diffusion.masked import MaskedDiffusion
from vidd.eval.report import write_report
from vidd.rewards.base import CachedReward, as_reward
from vidd.rewards.executors import served_reward
from vidd.tasks.base import Task
from vidd.tasks.custom import CustomTask
from vidd.training import FinetuneConfig, FinetuneResult, Trainer
from vidd.training.callbacks import Callback, ProgressBar, RunFolderWriter
from vidd.training.copies import check_model_settings
from vidd.training.distributed import process_rank, world_size
from vidd.training.objectives import Method
from vidd.training.objectives.drakes import differentiable_reward
from vidd.training.trackers import trackers


def finetune_config(task: Task | None, preset: str | None = None, *layers: dict) -> FinetuneConfig:
    """The task's defaults < the preset < the preset's `method_settings` of the run's method < `layers` (no
    task: a custom task without a base task, which has no presets)."""
    if task is None and preset:
        raise ConfigError(f"--preset {preset}: presets belong to a task; name one (vidd finetune TASK --reward ...)")
    preset_layer = dict(task.preset(preset)) if preset else {}
    per_method = preset_layer.pop("method_settings", {}) or {}
    for name in per_method:
        Method.lookup(name)  # a preset naming an unknown method is an error, not silently unused
    stack = [task.defaults if task is not None else {}, preset_layer]
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
    #: the model fine-tuned (the task's pretrained model, loaded once by `build_run`)
    model: MaskedDiffusion
    folder: RunFolder | None = None
    resume: bool = False
    log: Callable = print
    #: on resume: the checkpoint's iteration and the settings changed ({field: [old, new]})
    start_iteration: int = 0
    changes: dict = field(default_factory=dict)
    callbacks: list[Callback] = field(default_factory=list)
    #: False on the other processes of a data-parallel run, once executed
    main: bool = True

    def execute(self) -> FinetuneResult:
        """Train and evaluate; with a folder, the main process holds the run folder's lock throughout and its
        callbacks write the run folder and then the report."""
        task = self.task
        writes = self.folder is not None and process_rank() == 0
        with ExitStack() as folder_held:
            if writes:
                folder_held.enter_context(self.folder.lock())
                self._open_folder()
                folder_held.enter_context(keep_evaluation_scores(task, self.folder))
            folder_callbacks = [RunFolderWriter(self.folder), ReportWriter(task, self.folder)] if writes else []
            executor = self.config.reward.executor
            factory = task.training_reward if executor.kind == "inline" else task.training_reward_factory()
            with served_reward(factory, executor) as reward:
                trainer = Trainer(self.config, self.model, reward, task.evaluation_reward,
                                  final_evaluator=task.evaluate, log=self.log, samples=task, task=task.name,
                                  callbacks=[ProgressBar(), *folder_callbacks, *self.callbacks],
                                  final_table=task.per_sequence)
                result = trainer.run(resume_from=self.folder if self.resume else None)
            self.main = trainer.group.main
        result.out = self.folder.path if self.folder else None
        return result

    def _open_folder(self) -> None:
        config = to_dict(self.config)
        if self.resume:
            self.folder.reopen(config, self.changes, self.start_iteration)
            if self.changes:
                self.log("resume: changed " + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in
                                                         self.changes.items()) +
                         f" from iteration {self.start_iteration} (recorded in {self.folder.history_file.name})")
        else:
            self.folder.create(config)


@contextmanager
def keep_evaluation_scores(task: Task, folder: RunFolder):
    """Within the block, a task whose evaluation reward is cached (a costly deterministic one, such as re-docking)
    journals its scores in the folder, so that an interrupted evaluation resumes where it stopped."""
    cached = task.evaluation_reward
    if not isinstance(cached, CachedReward):
        yield
        return
    cached.keep_in(folder.eval_scores_file)
    try:
        yield
    finally:
        cached.keep_in(None)


def run_task(name: str, config: FinetuneConfig) -> Task:
    """The task `name` with a run config's reward weights (`reward.terms`) and settings (`task:`)."""
    return Task.get(name, config.reward.terms, config.task)


class ReportWriter(Callback):
    """When a run ends: the task's tables and figures of its final samples (`Task.report_tables`,
    `Task.report_figures`), then the HTML report and the curves of the run folder (vidd.eval.report)."""

    def __init__(self, task: Task, folder: RunFolder):
        self.task, self.folder = task, folder

    def on_run_end(self, trainer, result) -> None:
        """The run is complete before this (the folder writer came first), so a report that fails is a warning."""
        try:
            write_task_report(self.task, self.folder, trainer.config.steps)
            write_report(self.folder)
        except Exception as error:  # noqa: BLE001 - drawing, plotting, the task's scoring
            trainer.log(f"warning: the run finished, but its report failed ({type(error).__name__}: {error}); "
                        f"write it again with `vidd report {self.folder.path} --task {self.task.name}`")


def write_task_report(task: Task, folder: RunFolder, steps: int) -> None:
    """The task's tables and figures of a run's final samples (`Task.report_tables`, `Task.report_figures`), for
    its report; none before the run has final samples. `steps`: the run's denoising steps."""
    final = folder.samples_file("final", task.sample_suffix)
    if final.is_file():
        folder.write_report_tables([t.to_dict() for t in task.report_tables(task.read_samples(final))])
        folder.write_report_figures([f.to_dict() for f in task.report_figures(folder, steps)])


def build_run(task: Task, config: FinetuneConfig, out: str | Path | None = None, resume: bool = False,
              log: Callable = print, trust_checkpoint: bool = False, callbacks: list[Callback] = ()) -> Run:
    """A run of `config` on `task`, written to the run folder `out` (None: nothing written), validated whole
    before it starts (`validate_run`); the trackers of `config.report_to` and `callbacks` watch it
    (vidd.training.callbacks). `trust_checkpoint`: resume from a vidd 0.1 checkpoint without a content hash
    (read by a restricted unpickler: tensors, containers and numpy values only)."""
    if resume and out is None:
        raise ConfigError("resume: needs the run folder")
    task = task.configured(config.reward.terms, config.task)
    folder = RunFolder(out, trust_checkpoint) if out is not None else None
    model, start, changes = validate_run(task, config, folder, resume)
    tracking = trackers(config.report_to, {**cfg.to_dict(config), "task_name": task.name}, folder,
                        folder.path.name if folder else task.name)
    return Run(task, config, model, folder, resume, log, start, changes, [*tracking, *callbacks])


def validate_run(task: Task, config: FinetuneConfig, folder: RunFolder | None = None,
                 resume: bool = False) -> tuple[MaskedDiffusion, int, dict]:
    """Everything a run needs, checked before any work starts and without writing anything: the device, the
    run folder, the task's model, the method against the model and the reward, and on resume the checkpoint
    (read safely, intact, of this task and this model) and the settings changed (only those a resumed run may
    change). Returns the model (loaded once), the iteration the run continues from and the changes."""
    check_available(config.device)
    config.check_world(world_size())
    if folder is not None:
        folder.check_writable()
        if not resume:
            folder.check_new()
    model = task.pretrained_model()
    task.check_model(model, "the model")
    check_model_settings(model, config.model)
    method = Method.lookup(config.method.name)
    if method.differentiates_samples:
        if not model.backbone.takes_relaxed_input:
            raise ConfigError(f"method {method.name} back-propagates through relaxed one-hot samples; the model's "
                              f"{model.backbone.kind!r} backbone takes token ids only")
        if config.reward.executor.kind != "inline":
            raise ConfigError(f"method {method.name} needs a differentiable reward called in this process: "
                              f"reward.executor.kind must be inline, got {config.reward.executor.kind!r}")
        differentiable_reward(as_reward(task.training_reward()))
    if folder is None or not resume:
        return model, 0, {}
    state = folder.load_checkpoint()
    where = str(folder.last_checkpoint)
    if "adapters" not in state:  # a LoRA checkpoint holds no model weights: its adapters go on this run's model
        task.check_model(MaskedDiffusion.from_state(state["model"], where=where), where)
    origin = state["model"].get("metadata", {})
    if origin.get("task") and origin["task"] != task.name:
        raise ConfigError(f"--resume: {folder.path} is a run of task {origin['task']!r}, not of {task.name!r}")
    base, this = origin.get("base_model", {}).get("sha256"), model.weights_sha256()
    if base and base != this:
        raise ConfigError(f"--resume: {folder.path} was started from another model (weights sha256 {base[:12]}...) "
                          f"than this run's ({this[:12]}...)")
    stored = cfg.build(FinetuneConfig, upgrade_config(folder.read_config()), where=str(folder.config_file))
    return model, state["iteration"], config.resume_changes(stored)


def resume_config(folder: RunFolder, *layers: dict) -> FinetuneConfig:
    """The config of the run in `folder`, with `layers` (e.g. `--set iterations=400`) on top."""
    return cfg.build(FinetuneConfig, upgrade_config(folder.read_config()), *layers)


def finetune(model, reward, config: FinetuneConfig | None = None, *, eval_reward=None,
             out: str | Path | None = None, resume: bool = False, log: Callable = print,
             callbacks: list[Callback] = ()) -> FinetuneResult:
    """Fine-tune any masked diffusion model against any reward (a Reward or a plain callable
    `list[str] -> floats`). Returns the fine-tuned student and the per-iteration metrics. Under torchrun
    (WORLD_SIZE > 1) the run is data-parallel (docs/scaling.md) and every process returns the same result.
    `resume=True` continues the run in `out` (with its own config unless `config` is given); `callbacks` watch
    the run (vidd.training.callbacks)."""
    task = CustomTask(model, reward, eval_reward)
    if config is None:
        config = resume_config(RunFolder(out)) if resume and out is not None else FinetuneConfig()
    return build_run(task, config, out, resume, log, callbacks=callbacks).execute()
