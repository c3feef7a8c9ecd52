"""Equal-budget benchmark: every method gets the same number of training-reward calls.

Fine-tuning methods stop when their counted reward calls reach the budget; inference-time methods
spend theirs while sampling (Best-of-N: N = budget / samples candidates per output; SVDD:
M = budget / (samples x steps) candidates per step); `pretrained` spends none. Every final model
is evaluated by the task on the same number of samples with the held-out evaluation oracle.
Each (method, seed) lives in its own folder: finished ones are skipped on a rerun, interrupted
fine-tuning runs resume, and a failure is recorded in the results instead of stopping the rest.
"""

from __future__ import annotations

import csv
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidd.core import config as cfg
from vidd.core.atomic import atomic_open
from vidd.core.runfolder import RunFolder
from vidd.guidance import Guidance
from vidd.rewards.counted import CountedReward
from vidd.rewards.executors import served_reward
from vidd.run import build_run, finetune_config
from vidd.tasks import Task
from vidd.training import FinetuneConfig
from vidd.training.objectives import Method

@dataclass
class BenchPlan:
    task: str
    methods: list[str]
    budget: int
    seeds: int
    samples: int
    preset: str
    overrides: dict


def method_kind(name: str) -> str:
    if name == "pretrained":
        return "pretrained"
    if name in Guidance.registry:
        return "guidance"
    Method.lookup(name)  # raises a ConfigError naming the known methods
    return "finetune"


def _config(plan: BenchPlan, task: Task, run: dict | None = None) -> FinetuneConfig:
    """The task's defaults < the plan's preset (and its settings of the method) < this run's settings < the
    plan's overrides."""
    return finetune_config(task, plan.preset, run or {}, plan.overrides)


def _run_finetune(plan: BenchPlan, task: Task, method: str, seed: int, folder: RunFolder) -> dict:
    """Fine-tune under the budget (resuming an interrupted run); the run's final evaluation."""
    config = _config(plan, task, {"method": method, "seed": seed, "iterations": 100_000,
                                  "final_samples": plan.samples, "reward": {"budget": plan.budget}})
    resume = folder.last_checkpoint.is_file()
    if not resume and folder.path.exists():  # started but never checkpointed: start again
        for p in sorted(folder.path.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    build_run(task, config, folder.path, resume=resume, log=lambda *a: None).execute()
    return folder.read_final_eval()


def _run_sampler(plan: BenchPlan, task: Task, method: str, seed: int) -> tuple[list[str], dict]:
    model = task.pretrained_model().eval()
    gen = torch.Generator().manual_seed(seed)
    config = _config(plan, task)
    steps = config.steps
    if method == "pretrained":
        tokens = model.sample(plan.samples, steps, gen, batch_size=256)
        return model.alphabet.decode(tokens.cpu()), {"reward_calls": 0}
    cls = Guidance.lookup(method)
    per_call = cls.calls_per_candidate(plan.samples, steps)
    per_output = plan.budget // per_call
    if per_output < 1:
        raise ValueError(f"a budget of {plan.budget} calls is too small for {method}: one candidate per "
                         f"output already costs {per_call} calls ({plan.samples} samples, {steps} steps)")
    guide = cls(cfg.build(cls.Config, {"n_candidates": per_output}))
    executor = config.reward.executor
    factory = task.training_reward if executor.kind == "inline" else task.training_reward_factory()
    with served_reward(factory, executor) as inner:
        reward = CountedReward(inner)
        tokens = guide.generate(model, reward, plan.samples, steps, gen)
    return model.alphabet.decode(tokens.cpu()), {"reward_calls": reward.calls}


def run_bench(plan: BenchPlan, out: Path, log=print) -> list[dict]:
    task = Task.get(plan.task)
    shared = _config(plan, task)
    task = task.configured(shared.reward.terms, shared.task)  # the samplers' reward and every evaluation
    kinds = {m: method_kind(m) for m in plan.methods}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "plan.json") as f:
        json.dump(plan.__dict__, f, indent=2)
    rows = []
    for method in plan.methods:
        for seed in range(plan.seeds):
            folder = RunFolder(out / "runs" / method / f"seed{seed}")
            done = folder.path / "result.json"
            if done.is_file():
                rows.append(json.loads(done.read_text()))
                log(f"{method} seed {seed}: done before, skipped")
                continue
            log(f"{method} seed {seed}: running")
            start = time.perf_counter()
            row = {"method": method, "seed": seed}
            try:
                if kinds[method] == "finetune":
                    evaluation = _run_finetune(plan, task, method, seed, folder)
                else:
                    seqs, info = _run_sampler(plan, task, method, seed)
                    task.write_samples(folder.path / f"samples{task.sample_suffix}", seqs)
                    evaluation = {**task.evaluate(seqs), **info}
                row.update(evaluation, status="ok")
            except Exception as e:  # a failed method is reported, not lost
                row.update(status="failed", error=f"{type(e).__name__}: {e}",
                           traceback=traceback.format_exc(limit=5))
                log(f"{method} seed {seed}: FAILED {type(e).__name__}: {e}")
            row["wall_seconds"] = time.perf_counter() - start
            folder.path.mkdir(parents=True, exist_ok=True)
            with atomic_open(done) as f:
                json.dump(row, f, indent=2)
            rows.append(row)
    write_outputs(rows, out, plan)
    return rows


def summarise(rows: list[dict], key: str) -> tuple[float, float, float] | None:
    vals = [r[key] for r in rows if r.get("status") == "ok" and r.get(key) is not None and np.isfinite(r[key])]
    return (float(np.median(vals)), float(np.min(vals)), float(np.max(vals))) if vals else None


def markdown_table(rows: list[dict], plan: BenchPlan) -> str:
    order = Task.get(plan.task).table_metrics
    keys = [k for k in order if any(k in r for r in rows)] + ["reward_calls", "wall_seconds"]
    lines = [f"Task `{plan.task}`, budget {plan.budget} training-reward calls, {plan.seeds} seed(s), "
             f"{plan.samples} samples per model. Cells: median across seeds [min, max].", "",
             "| method | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for method in plan.methods:
        mine = [r for r in rows if r["method"] == method]
        failed = [r for r in mine if r.get("status") != "ok"]
        cells = []
        for k in keys:
            s = summarise(mine, k)
            cells.append("-" if s is None else (f"{s[0]:.3g}" if s[1] == s[2] else f"{s[0]:.3g} [{s[1]:.3g}, {s[2]:.3g}]"))
        note = f" (failed {len(failed)}/{len(mine)}: {failed[0]['error'][:60]})" if failed else ""
        lines.append(f"| {method}{note} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict], out: Path, plan: BenchPlan) -> None:
    with atomic_open(out / "results.json") as f:
        json.dump([{k: v for k, v in r.items() if k != "traceback"} for r in rows], f, indent=2)
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "traceback"))
    with atomic_open(out / "results.csv") as f:
        writer = csv.DictWriter(f, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with atomic_open(out / "table.md") as f:
        f.write(markdown_table(rows, plan))
    plot(rows, out, plan)


def plot(rows: list[dict], out: Path, plan: BenchPlan) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in plan.methods:
        for seed in range(plan.seeds):
            run = RunFolder(out / "runs" / method / f"seed{seed}")
            if not run.metrics_file.is_file():
                continue
            pts = [(r["reward_calls"], r["eval_reward_median"]) for r in run.read_metrics()
                   if r.get("eval_reward_median") is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=method if seed == 0 else None,
                        color=f"C{plan.methods.index(method)}")
    ax.set_xlabel("training-reward calls")
    ax.set_ylabel("held-out oracle reward (median)")
    ax.set_title("sample efficiency")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sample_efficiency.png", dpi=120)
    plt.close(fig)

    ok = [r for r in rows if r.get("status") == "ok"]
    task = Task.get(plan.task)
    x_key = task.table_metrics[0] if task.table_metrics else None
    if not ok or x_key is None or not any(x_key in r for r in ok):
        return
    fig, axes = plt.subplots(1, len(task.tradeoff_metrics), figsize=(5 * len(task.tradeoff_metrics), 4), squeeze=False)
    for ax, y_key in zip(axes[0], task.tradeoff_metrics):
        for method in plan.methods:
            pts = [(r[x_key], r[y_key]) for r in ok if r["method"] == method and y_key in r]
            if pts:
                ax.scatter(*zip(*pts), label=method, color=f"C{plan.methods.index(method)}")
        ax.set_xlabel(x_key)
        ax.set_ylabel(y_key)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("reward against naturalness")
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=120)
    plt.close(fig)
