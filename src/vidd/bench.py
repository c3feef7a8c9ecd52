"""Equal-budget benchmark: every method gets the same number of training-reward calls.

Fine-tuning methods train until their distinct reward calls would exceed the budget (never past it), and
are evaluated on the way when the calls cross each of `eval_at_calls` (held-out reward, training reward,
KL to the pretrained model, the task's cheap naturalness metrics, with the training seconds and updates
so far); inference-time methods spend the budget while sampling (Best-of-N: N = budget / samples candidates
per output; SVDD: M = budget / (samples x steps) candidates per step); `pretrained` spends none. Every final
model is evaluated by the task on the same number of samples with the held-out evaluation oracle.

A benchmark entry is a *label*: a method name, or a variant from the plan's `variants` (a config layer,
optionally `extends: LABEL` and its own `seeds`), e.g. two VIDD settings side by side. Each (label, seed)
lives in its own folder: finished ones are skipped on a rerun, interrupted fine-tuning runs resume, and a
failure is recorded in the results instead of stopping the rest. Several processes may work on one
benchmark folder at once: each claims the cell it runs (`seedN.claim` beside the cell's folder, taken over
when its process on this machine has died), and whichever finishes the last cell writes the summary:
results.json/csv, curves.csv, table.md (mean of per-seed medians with 95% bootstrap intervals, areas under
the learning curves, paired differences, cost), stats.json, curves.png and tradeoff.png.

A learning-rate sweep (`lr_sweep`) runs every fine-tuning label at several learning rates on its own seeds
and picks, for each label, the one with the largest area under the *training* reward against log(calls)
(and, for a group of candidate labels, the best of them); it writes the choice as variants (`choice.yaml`,
label -> {lr}) that the benchmark proper reads after its own.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import yaml

from vidd.core import config as cfg
from vidd.core.atomic import atomic_open
from vidd.core.config import ConfigError
from vidd.core.errors import UserError
from vidd.core.runfolder import RunFolder
from vidd.eval.benchstats import bootstrap_interval, comparison_range, log_area, paired_difference
from vidd.eval.figures import save_png
from vidd.guidance import Guidance
from vidd.rewards.base import CachedReward, as_reward
from vidd.rewards.counted import CountedReward
from vidd.rewards.executors import served_reward
from vidd.run import build_run, finetune_config, keep_evaluation_scores
from vidd.tasks import Task
from vidd.training import FinetuneConfig
from vidd.training.objectives import Method

#: per-evaluation record of a fine-tuning run: curves.csv column -> metrics.jsonl key
CURVE_KEYS = {"calls": "reward_calls", "train_seconds": "train_seconds", "updates": "updates",
              "reward": "eval_reward_median", "train_reward": "eval_train_reward_median",
              "kl": "eval_kl_to_pretrained", "kmer3_corr": "eval_kmer3_corr", "diversity": "eval_diversity"}


@dataclass
class BenchPlan:
    task: str
    methods: list[str]  # labels: method names or keys of `variants`
    budget: int
    seeds: int
    samples: int
    preset: str
    overrides: dict
    eval_at_calls: list[int] = field(default_factory=list)
    first_seed: int = 0
    variants: dict = field(default_factory=dict)  # label -> {extends?, seeds?, **config layer}
    compare: list = field(default_factory=list)  # [label a, label b]: paired differences a - b

    def validate(self) -> None:
        if self.budget < 1 or self.seeds < 1 or self.samples < 1:
            raise ConfigError("--budget, --seeds and --samples must be >= 1")
        if any(not 0 < c <= self.budget for c in self.eval_at_calls):
            raise ConfigError(f"--eval-at-calls: every threshold must lie in [1, budget = {self.budget}], got "
                              f"{self.eval_at_calls}")
        for label in self.methods:
            self.resolve(label)
        for pair in self.compare:
            missing = [x for x in pair if x not in self.methods]
            if len(pair) != 2 or missing:
                raise ConfigError(f"--compare: {':'.join(pair)} must name two of the benchmark's methods "
                                  f"{self.methods}")

    def resolve(self, label: str, seen: tuple = ()) -> tuple[str, dict, int]:
        """(method name, config layer, seeds) of a label."""
        if label in seen:
            raise ConfigError(f"variants: `extends` loops through {' -> '.join((*seen, label))}")
        entry = dict(self.variants.get(label) or {})
        parent, seeds = entry.pop("extends", None), entry.pop("seeds", None)
        if parent is not None:
            if parent not in self.variants and not _is_method(parent):
                raise ConfigError(f"variants: {label} extends {parent!r}, which is neither a variant nor a method")
            _, base, parent_seeds = self.resolve(parent, (*seen, label))
            entry, seeds = cfg.merge(base, entry, FinetuneConfig), seeds or parent_seeds
        named = entry.get("method", {})
        method = named if isinstance(named, str) else named.get("name", label)
        method_kind(method, label)
        return method, cfg.merge({"method": method}, entry, FinetuneConfig), int(seeds or self.seeds)

    def cells(self) -> list[tuple[str, int]]:
        return [(label, self.first_seed + i) for label in self.methods for i in range(self.resolve(label)[2])]


def _is_method(name: str) -> bool:
    return name == "pretrained" or name in Guidance.registry or name in Method.registry


def method_kind(name: str, label: str | None = None) -> str:
    if name == "pretrained":
        return "pretrained"
    if name in Guidance.registry:
        return "guidance"
    try:
        Method.lookup(name)
    except ConfigError as e:  # names the known methods
        raise ConfigError(f"{e}" if label in (None, name) else f"{label}: {e}") from None
    return "finetune"


def load_variants(*paths: Path) -> dict:
    """Variants from YAML files, later files merged into earlier ones label by label (e.g. a sweep's choice.yaml
    on top of the benchmark's variants)."""
    merged: dict = {}
    for path in paths:
        data = cfg.load_yaml(path)
        bad = [k for k, v in data.items() if not isinstance(v, dict)]
        if bad:
            raise ConfigError(f"{path}: each variant must be a mapping (a config layer), not {bad[0]}: "
                              f"{data[bad[0]]!r}")
        for label, entry in data.items():
            merged[label] = cfg.merge(merged.get(label, {}), entry, FinetuneConfig)
    return merged


#: a fine-tuning run that made no new reward call for this many iterations has collapsed onto sequences it has
#: scored before: it stops, as it would otherwise train for free until its iteration cap
IDLE_ITERATIONS = 25


def _config(plan: BenchPlan, task: Task, layer: dict, run: dict | None = None) -> FinetuneConfig:
    """The task's defaults < the plan's preset (and its settings of the method) < the label's layer < this
    run's settings < the plan's overrides."""
    return finetune_config(task, plan.preset, layer, run or {}, plan.overrides)


def _run_finetune(plan: BenchPlan, task: Task, layer: dict, seed: int, folder: RunFolder) -> dict:
    """Fine-tune under the budget (resuming an interrupted run); the run's final evaluation."""
    run = {"seed": seed, "iterations": 100_000, "final_samples": plan.samples, "reward": {"budget": plan.budget},
           "stop_after_idle": IDLE_ITERATIONS}
    if plan.eval_at_calls:
        run.update(eval_at_calls=plan.eval_at_calls, eval_every=0, eval_samples=plan.samples)
    config = _config(plan, task, layer, run)
    resume = folder.last_checkpoint.is_file()
    if not resume and folder.path.exists():  # started but never checkpointed: start again, keeping the scores
        journals = {folder.eval_scores_file, folder.reward_scores_file}  # valid whatever run asked for them
        for p in sorted(folder.path.rglob("*"), reverse=True):
            if p not in journals:
                p.unlink() if p.is_file() else p.rmdir()
    build_run(task, config, folder.path, resume=resume, log=lambda *a: None).execute()
    return folder.read_final_eval()


def _run_sampler(plan: BenchPlan, task: Task, method: str, layer: dict, seed: int,
                 folder: RunFolder) -> tuple[list[str], dict]:
    """The samples of an inference-time method (or the pretrained model) with its reward calls. Every training-reward
    score is journaled in the cell's folder as it comes, and a rerun of an interrupted cell draws the same candidates
    (the same seed), so they are answered from the journal: still counted against the budget, not scored again."""
    model = task.pretrained_model().eval()
    gen = torch.Generator().manual_seed(seed)
    config = _config(plan, task, {k: v for k, v in layer.items() if k != "method"})
    if config.threads:
        torch.set_num_threads(config.threads)
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
        policy = replace(config.reward, budget=plan.budget)  # the task's failure policy, the plan's budget
        reward = CountedReward(CachedReward(as_reward(inner)).keep_in(folder.reward_scores_file), policy)
        tokens = guide.generate(model, reward, plan.samples, steps, gen)
    return model.alphabet.decode(tokens.cpu()), {"reward_calls": reward.calls}


# ------------------------------------------------------------------------------------------ claims
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(path: Path) -> bool:
    """Take the cell whose claim file is `path` for this process: False while a live process holds it (a process
    on another machine always counts as live). A dead holder's claim is moved aside first (one process wins)."""
    me = f"{socket.gethostname()} {os.getpid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                host, pid = path.read_text().split()
            except (FileNotFoundError, ValueError):
                continue  # released or being written: try again
            if host != socket.gethostname() or _alive(int(pid)):
                return False
            try:
                os.replace(path, path.with_name(f"{path.name}.stale-{os.getpid()}"))
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return True
    return False


def _release(path: Path) -> None:
    path.unlink(missing_ok=True)
    for stale in path.parent.glob(f"{path.name}.stale-*"):
        stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------- running
#: the plan fields that say what a cell's run is: a folder keeps them (methods, seeds and variants may be added)
CELL_DEFINING = ("task", "budget", "samples", "preset", "overrides", "eval_at_calls")


def _check_plan_file(plan: BenchPlan, out: Path) -> None:
    """A results folder holds one benchmark: a rerun (or another process) may add methods, seeds or variants,
    but must run every cell as before."""
    path = out / "plan.json"
    mine = json.loads(json.dumps(asdict(plan)))
    if path.is_file():
        theirs = json.loads(path.read_text())
        changed = [k for k in CELL_DEFINING if k in theirs and theirs[k] != mine[k]]
        changed += [f"variant {k}" for k, v in theirs.get("variants", {}).items() if mine["variants"].get(k, v) != v]
        if changed:
            raise UserError(f"{out} holds another benchmark ({', '.join(changed)} differ from its plan.json); choose "
                            f"another --out")
    with atomic_open(path) as f:
        json.dump(mine, f, indent=2)


def cell_folder(out: Path, label: str, seed: int) -> RunFolder:
    return RunFolder(out / "runs" / label / f"seed{seed}")


def run_bench(plan: BenchPlan, out: Path, log=print, rerun_failed: bool = False) -> list[dict] | None:
    """Run every cell not finished yet (and not held by another process); write the summary when every cell is
    done. Returns the result rows then, else None. A failed cell counts as finished unless `rerun_failed`."""
    plan.validate()
    task = Task.get(plan.task)
    shared = _config(plan, task, {})
    task = task.configured(shared.reward.terms, shared.task)  # the samplers' reward and every evaluation
    out.mkdir(parents=True, exist_ok=True)
    _check_plan_file(plan, out)
    for label, seed in plan.cells():
        folder = cell_folder(out, label, seed)
        done = folder.path / "result.json"
        claim = folder.path.with_name(folder.path.name + ".claim")
        if _finished(done, rerun_failed):
            log(f"{label} seed {seed}: done before, skipped")
            continue
        if not _claim(claim):
            log(f"{label} seed {seed}: another process is running it, skipped")
            continue
        try:
            if _finished(done, rerun_failed):  # finished by another process between the two checks
                continue
            if done.is_file():
                log(f"{label} seed {seed}: failed before ({json.loads(done.read_text()).get('error')}), again")
            kept = [f.name for f in (folder.reward_scores_file, folder.eval_scores_file) if f.is_file()]
            log(f"{label} seed {seed}: running" + (f" (resumed: the scores of {' and '.join(kept)})" if kept else ""))
            _run_cell(plan, task, label, seed, folder, log)
        finally:
            _release(claim)
    rows = [json.loads(p.read_text()) for p in (cell_folder(out, *c).path / "result.json" for c in plan.cells())
            if p.is_file()]
    if len(rows) < len(plan.cells()):
        log(f"{len(plan.cells()) - len(rows)} cell(s) still running elsewhere: the last process writes the summary")
        return None
    write_outputs(rows, out, plan)
    return rows


def _finished(result: Path, rerun_failed: bool) -> bool:
    return result.is_file() and not (rerun_failed and json.loads(result.read_text()).get("status") == "failed")


def _run_cell(plan: BenchPlan, task: Task, label: str, seed: int, folder: RunFolder, log) -> None:
    method, layer, _ = plan.resolve(label)
    start = time.perf_counter()
    row = {"method": label, "base_method": method, "seed": seed}
    try:
        if method_kind(method) == "finetune":
            evaluation = _run_finetune(plan, task, layer, seed, folder)
        else:
            folder.path.mkdir(parents=True, exist_ok=True)
            seqs, info = _run_sampler(plan, task, method, layer, seed, folder)
            samples = folder.path / f"samples{task.sample_suffix}"
            task.write_samples(samples, seqs)  # kept even if the evaluation fails
            with keep_evaluation_scores(task, folder):
                evaluation = {**task.evaluate(seqs), **info}
                held_out = task.evaluation_scores(seqs)  # each sample's, for intervals over samples
            if held_out:
                task.write_samples(samples, seqs, held_out)
        row.update(evaluation, status="ok")
    except Exception as e:  # a failed method is reported, not lost
        row.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=5))
        log(f"{label} seed {seed}: FAILED {type(e).__name__}: {e}")
    row["wall_seconds"] = time.perf_counter() - start
    folder.path.mkdir(parents=True, exist_ok=True)
    with atomic_open(folder.path / "result.json") as f:
        json.dump(row, f, indent=2)


# ----------------------------------------------------------------------------------- the sweep
def sweep_plan(plan: BenchPlan, lrs: list[float]) -> BenchPlan:
    """The plan that runs each fine-tuning label at each learning rate (labels `LABEL@lr=X`)."""
    plan.validate()
    variants, labels = dict(plan.variants), []
    for label in plan.methods:
        if method_kind(plan.resolve(label)[0]) != "finetune":
            continue
        for lr in lrs:
            swept = f"{label}@lr={lr:g}"
            variants[swept] = {"extends": label, "lr": lr}
            labels.append(swept)
    if not labels:
        raise ConfigError("--lrs: the benchmark has no fine-tuning method to sweep")
    return BenchPlan(**{**asdict(plan), "methods": labels, "variants": variants, "compare": []})


def lr_sweep(plan: BenchPlan, lrs: list[float], out: Path, picks: dict[str, list[str]] | None = None,
             log=print, rerun_failed: bool = False) -> dict | None:
    """Run the sweep (`rerun_failed` as for `run_bench`); once every cell is done choose, for each fine-tuning
    label, the learning rate with the largest mean over the sweep's seeds of the area under the training reward
    against log(calls), and for each pick (name -> candidate labels) the candidate with the largest such area at
    its chosen rate. Writes choice.yaml (variants: label -> {lr}, pick -> {extends: candidate}) and lr_sweep.md;
    returns the choice."""
    picks = picks or {}
    for name, candidates in picks.items():
        if name in plan.methods or not set(candidates) <= set(plan.methods) or not candidates:
            raise ConfigError(f"--pick: {name}={','.join(candidates)} must name a new label and some of the swept "
                              f"methods {plan.methods}")
    swept = sweep_plan(plan, lrs)
    rows = run_bench(swept, out, log, rerun_failed)
    if rows is None:
        return None
    low, high = _calls_range(plan)
    runs: dict[str, dict[float, list[dict]]] = {}
    for row in rows:
        variant = swept.variants[row["method"]]
        runs.setdefault(variant["extends"], {}).setdefault(variant["lr"], []).append(row)
    # a failed run's curve (cut short, or diverged) counts for nothing
    failed = {label: {lr: [r["error"] for r in mine if r["status"] != "ok"] for lr, mine in by_lr.items()}
              for label, by_lr in runs.items()}
    scores = {label: {lr: bootstrap_interval(_training_areas(out, mine, low, high)) for lr, mine in by_lr.items()}
              for label, by_lr in runs.items()}
    for label, by_lr in scores.items():
        if not any(np.isfinite(mean) for mean, _, _ in by_lr.values()):
            errors = [e for by_rate in failed[label].values() for e in by_rate]
            why = f"{len(errors)} of its runs failed, e.g. {errors[0]}" if errors else "no run reached an evaluation"
            raise UserError(f"--lrs: no learning rate of {label} can be chosen: {why}. Fix the cause and run the "
                            f"same command with --rerun-failed; no choice.yaml was written")
    best_lr = {label: max(by_lr, key=lambda lr: _finite(by_lr[lr][0])) for label, by_lr in scores.items()}
    choice: dict = {label: {"lr": lr} for label, lr in best_lr.items()}
    for name, candidates in picks.items():
        best = max(candidates, key=lambda c: _finite(scores[c][best_lr[c]][0]) if c in scores else -math.inf)
        choice[name] = {"extends": best}
    with atomic_open(out / "choice.yaml") as f:
        yaml.safe_dump(choice, f, sort_keys=False)
    lines = [f"Learning-rate sweep on `{plan.task}`: {plan.seeds} tuning seed(s) from {plan.first_seed}, budget "
             f"{plan.budget} calls. Cells: area under the **training** reward (median of {plan.samples} student "
             f"samples) against log(calls) over [{low:g}, {high:g}], mean over seeds [95% bootstrap interval]; "
             f"the chosen rate in bold.", "", "| method | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
             "|---" * (len(lrs) + 1) + "|"]
    for label, by_lr in scores.items():
        cells = [_cell(*by_lr[lr]) if lr != best_lr[label] else f"**{_cell(*by_lr[lr])}**" for lr in lrs]
        cells = [cell + (f" (failed {len(failed[label][lr])}/{len(runs[label][lr])})" if failed[label][lr] else "")
                 for cell, lr in zip(cells, lrs)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [""] + [f"{name}: **{choice[name]['extends']}** (of {', '.join(c)}), lr "
                     f"{best_lr[choice[name]['extends']]:g}." for name, c in picks.items()]
    with atomic_open(out / "lr_sweep.md") as f:
        f.write("\n".join(lines) + "\n")
    return choice


def _training_areas(out: Path, rows: list[dict], low: float, high: float) -> list[float]:
    """The finite areas under the training reward against log(calls) of the finished runs among `rows`."""
    areas = [log_area(*_xy(cell_curve(out, r["method"], r["seed"]), "calls", "train_reward"), low, high)
             for r in rows if r["status"] == "ok"]
    return [a for a in areas if np.isfinite(a)]


def _finite(x: float) -> float:
    return x if np.isfinite(x) else -math.inf


# --------------------------------------------------------------------------------------- summary
def cell_curve(out: Path, label: str, seed: int) -> list[dict]:
    """The evaluations of a fine-tuning cell as curves.csv rows (empty for other cells)."""
    folder = cell_folder(out, label, seed)
    if not folder.metrics_file.is_file():
        return []
    return [{k: r.get(key) for k, key in CURVE_KEYS.items()} for r in folder.read_metrics()
            if r.get("eval_train_reward_median") is not None]


def _xy(curve: list[dict], x: str, y: str) -> tuple[list, list]:
    pts = [(p[x], p[y]) for p in curve if p.get(x) is not None and p.get(y) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def _calls_range(plan: BenchPlan) -> tuple[float, float]:
    low = min(plan.eval_at_calls) if plan.eval_at_calls else plan.budget / 8
    return float(low), float(plan.budget)


def _cell(mean: float, low: float, high: float) -> str:
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.3g}" if not np.isfinite(low) else f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def curve_statistics(rows: list[dict], out: Path, plan: BenchPlan) -> dict:
    """Areas under the held-out reward against log(calls) and log(training seconds) per cell, and the paired
    differences of the plan's comparisons."""
    ok = [r for r in rows if r.get("status") == "ok" and method_kind(r.get("base_method", r["method"])) == "finetune"]
    curves = {(r["method"], r["seed"]): cell_curve(out, r["method"], r["seed"]) for r in ok}
    low, high = _calls_range(plan)
    calls = {key: log_area(*_xy(c, "calls", "reward"), low, high) for key, c in curves.items()}
    stats: dict = {"calls_range": [low, high], "auc_calls": {}, "auc_seconds": {}, "comparisons": []}
    for (label, seed), area in calls.items():
        stats["auc_calls"].setdefault(label, {})[seed] = area
    for a, b in plan.compare:
        pair = [c for key, c in curves.items() if key[0] in (a, b)]
        s_low, s_high = comparison_range([_xy(c, "train_seconds", "reward") for c in pair])
        seconds = {key: log_area(*_xy(c, "train_seconds", "reward"), s_low, s_high)
                   for key, c in curves.items() if key[0] in (a, b)}
        by = {lab: {seed: v for (x, seed), v in seconds.items() if x == lab} for lab in (a, b)}
        stats["auc_seconds"][f"{a} vs {b}"] = {"range": [s_low, s_high], **by}
        stats["comparisons"].append({
            "a": a, "b": b,
            "calls": paired_difference(stats["auc_calls"].get(a, {}), stats["auc_calls"].get(b, {})),
            "seconds": {**paired_difference(by[a], by[b]), "range": [s_low, s_high]}})
    return stats


def markdown_table(rows: list[dict], plan: BenchPlan, stats: dict | None = None) -> str:
    order = Task.get(plan.task).table_metrics
    keys = [k for k in order if any(k in r for r in rows)] + ["reward_calls", "wall_seconds"]
    seeds = sorted({plan.resolve(label)[2] for label in plan.methods})
    lines = [f"Task `{plan.task}`, budget {plan.budget} training-reward calls, {'/'.join(map(str, seeds))} seed(s) "
             f"from {plan.first_seed}, {plan.samples} samples per evaluation. Cells: mean over seeds of each seed's "
             f"median [95% bootstrap interval over seeds].", ""]
    auc = (stats or {}).get("auc_calls", {})
    low, high = _calls_range(plan)
    extra = [f"AUC log-calls [{low:g}, {high:g}]"] if auc else []
    lines += ["| method | " + " | ".join(keys + extra) + " |", "|---" * (len(keys) + len(extra) + 1) + "|"]
    for label in plan.methods:
        mine = [r for r in rows if r["method"] == label]
        ok = [r for r in mine if r.get("status") == "ok"]
        failed = [r for r in mine if r.get("status") != "ok"]
        cells = [_cell(*bootstrap_interval([r[k] for r in ok if r.get(k) is not None and np.isfinite(r[k])]))
                 for k in keys]
        if auc:
            cells.append(_cell(*bootstrap_interval([v for v in auc.get(label, {}).values() if np.isfinite(v)])))
        note = f" (failed {len(failed)}/{len(mine)}: {failed[0]['error'][:60]})" if failed else ""
        lines.append(f"| {label}{note} | " + " | ".join(cells) + " |")
    for c in (stats or {}).get("comparisons", []):
        lines += ["", f"Paired difference {c['a']} − {c['b']} (seeds {c['calls']['seeds']}) of the area under the "
                      f"held-out reward against log(calls) over [{low:g}, {high:g}]: **{_cell(c['calls']['mean'], c['calls']['low'], c['calls']['high'])}**; "
                      f"against log(training seconds) over [{c['seconds']['range'][0]:.3g}, "
                      f"{c['seconds']['range'][1]:.3g}] s: {_cell(c['seconds']['mean'], c['seconds']['low'], c['seconds']['high'])}."]
    total = sum(r.get("wall_seconds", 0.0) for r in rows)
    if total > 0:
        lines += ["", f"Cost: {total / 60:.1f} minutes of runs in all (one process each).", "",
                  "| method | runs | minutes | share |", "|---|---|---|---|"]
        for label in plan.methods:
            spent = sum(r.get("wall_seconds", 0.0) for r in rows if r["method"] == label)
            lines.append(f"| {label} | {sum(r['method'] == label for r in rows)} | {spent / 60:.1f} | "
                         f"{100 * spent / total:.0f}% |")
    return "\n".join(lines) + "\n"


def write_outputs(rows: list[dict], out: Path, plan: BenchPlan) -> None:
    stats = curve_statistics(rows, out, plan)
    with atomic_open(out / "results.json") as f:
        json.dump([{k: v for k, v in r.items() if k != "traceback"} for r in rows], f, indent=2)
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "traceback"))
    with atomic_open(out / "results.csv") as f:
        writer = csv.DictWriter(f, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with atomic_open(out / "curves.csv") as f:
        writer = csv.DictWriter(f, ["method", "seed", *CURVE_KEYS])
        writer.writeheader()
        for label, seed in plan.cells():
            writer.writerows({"method": label, "seed": seed, **p} for p in cell_curve(out, label, seed))
    with atomic_open(out / "stats.json") as f:
        json.dump(stats, f, indent=2, default=float)
    with atomic_open(out / "table.md") as f:
        f.write(markdown_table(rows, plan, stats))
    plot(rows, out, plan)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot(rows: list[dict], out: Path, plan: BenchPlan) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    palette = plt.get_cmap("tab10" if len(plan.methods) <= 10 else "tab20")
    color = {label: palette(i % palette.N) for i, label in enumerate(plan.methods)}
    ok = [r for r in rows if r.get("status") == "ok"]
    metrics = Task.get(plan.task).table_metrics
    held_out = metrics[0] if metrics else None  # the final evaluation's held-out reward
    sampled = [r for r in ok if method_kind(r.get("base_method", r["method"])) != "finetune"]
    panels = [("calls", "reward", "held-out reward against training-reward calls"),
              ("train_seconds", "reward", "held-out reward against training seconds"),
              ("updates", "reward", "held-out reward against optimiser steps"),
              ("calls", "train_reward", "training reward against calls"),
              ("calls", "kl", "KL(student || pretrained) against calls"),
              ("calls", "kmer3_corr", "3-mer correlation against calls")]
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    for ax, (x, y, title) in zip(axes.flat, panels):
        for label in plan.methods:
            for i, (lab, seed) in enumerate(c for c in plan.cells() if c[0] == label):
                xs, ys = _xy(cell_curve(out, lab, seed), x, y)
                if xs:
                    ax.plot(xs, ys, marker="o", ms=2.5, lw=1, alpha=0.8, color=color[label],
                            label=label if i == 0 else None)
            if x == "calls" and y == "reward":  # inference-time methods: one point, at the calls they spent
                pts = [(r["reward_calls"], r[held_out]) for r in sampled if r["method"] == label
                       and r.get(held_out) is not None and r.get("reward_calls", 0) > 0]
                if pts:
                    ax.scatter(*zip(*pts), marker="*", s=60, color=color[label], label=label)
        if x in ("calls", "train_seconds"):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log range overlap
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(x.replace("_", " "))
    _legend(axes.flat[0])
    fig.tight_layout()
    save_png(fig, out / "curves.png")  # atomically: two processes may write the summary at once
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, x in zip(axes, ("kmer3_corr", "kl")):
        for label in plan.methods:
            pts = [p for lab, seed in plan.cells() if lab == label for p in cell_curve(out, lab, seed)
                   if p.get(x) is not None and p.get("reward") is not None]
            if pts:
                ax.scatter([p[x] for p in pts], [p["reward"] for p in pts], s=10, color=color[label], label=label)
            finals = [(r[x], r[held_out]) for r in sampled if r["method"] == label and r.get(x) is not None
                      and r.get(held_out) is not None]
            if finals:  # inference-time methods and the pretrained model: their final samples
                ax.scatter(*zip(*finals), marker="*", s=60, color=color[label], label=label)
        ax.set_xlabel({"kmer3_corr": "3-mer correlation with real sequences", "kl": "KL(student || pretrained)"}[x])
        ax.set_ylabel("held-out reward (median)")
    _legend(axes[0])
    fig.suptitle("reward against naturalness (every evaluation of every run)")
    fig.tight_layout()
    save_png(fig, out / "tradeoff.png")
    plt.close(fig)
