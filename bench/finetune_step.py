"""Seconds per fine-tuning iteration, split by phase, against the floor; and the reward calls and denoiser
forwards that each VIDD setting pays per update and per training example.

The floor is what the algorithm cannot avoid: the number of sequences that went through the
denoiser (without and with gradients) and through the reward in one iteration, times their unit
costs measured alone at the same batch size. Prints a table and writes JSON.

    python bench/finetune_step.py                 # dhs-hepg2 quick preset, real model and oracle
    python bench/finetune_step.py --quick         # tiny run
    python bench/finetune_step.py --vidd-settings # every setting of VIDD_SETTINGS -> finetune_step_vidd.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from vidd.core import config as cfg
from vidd.run import finetune_config
from vidd.training import Trainer
from vidd.training.trainer import PHASES
from vidd.tasks import Task


class ForwardCounter:
    """Counts sequences through the denoiser backbone, split by whether gradients were recorded."""

    def __init__(self, modules):
        self.no_grad = self.grad = 0
        for m in modules:
            m.register_forward_hook(self.hook)

    def hook(self, module, args, output):
        if torch.is_grad_enabled():
            self.grad += args[0].shape[0]
        else:
            self.no_grad += args[0].shape[0]


def unit_costs(model, reward, batch: int, repeats: int = 5) -> dict:
    clean = torch.randint(0, model.alphabet.size, (batch, model.length))
    x = torch.where(torch.rand(clean.shape) < 0.5, model.mask_index, clean)  # half masked, like mid-chain states
    t = torch.full((batch,), 0.5)
    seqs = model.alphabet.decode(clean)

    def median_time(fn):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times) / batch

    with torch.no_grad():
        fwd = median_time(lambda: model.denoise(x, t))

    def train_step():
        model.zero_grad()
        model.denoise(x, t).logsumexp(-1).sum().backward()

    return {"forward": fwd, "forward_backward": median_time(train_step), "reward": median_time(lambda: reward(seqs))}


#: VIDD settings compared by --vidd-settings (overrides of the preset)
EFFICIENT = ["method.baseline=none", "method.rollout=rollin", "method.timesteps=0"]
VIDD_SETTINGS = {
    "paper: fresh roll-out, student values": ["method.baseline=none", "method.value.denoiser=student"],
    "preset as is": [],
    "fresh roll-out, roll-out values": ["method.baseline=none", "method.value.denoiser=rollout"],
    "rollout: rollin, all steps, roll-out values": [*EFFICIENT, "method.value.denoiser=rollout"],
    "rollout: rollin, all steps, roll-out values, 4 inner steps": [*EFFICIENT, "method.value.denoiser=rollout",
                                                                   "method.inner_steps=4"],
    "rollout: rollin, all steps, learned value": [*EFFICIENT, "method.value.kind=learned"],
}


def measure(trainer, iterations: int) -> list[dict]:
    """Run `iterations` iterations; per iteration the seconds by phase, the sequences through the denoisers
    without and with gradients, the distinct reward calls, the training examples and the optimiser steps."""
    ctx = trainer.ctx
    counter = ForwardCounter([ctx.student.backbone, ctx.rollout.backbone, ctx.pretrained.backbone])
    examples, steps = [0], [0]
    collect, step = trainer.method.collect, trainer.optimizer.step

    def counted_collect(c, n):
        batch = collect(c, n)
        examples[0] += batch.size
        return batch

    def counted_step(*a, **k):
        steps[0] += 1
        return step(*a, **k)

    trainer.method.collect, trainer.optimizer.step = counted_collect, counted_step
    rows = []
    for _ in range(iterations):
        counter.no_grad = counter.grad = examples[0] = steps[0] = 0
        calls_before = ctx.reward.calls
        start = time.perf_counter()
        ctx.seconds.clear()
        trainer._iteration(trainer.config.batch_size)
        trainer.method.end_of_iteration(ctx)
        ctx.iteration += 1
        rows.append({"total": time.perf_counter() - start, **{p: ctx.seconds.get(p, 0.0) for p in PHASES},
                     "forward_seqs": counter.no_grad, "grad_seqs": counter.grad,
                     "reward_calls": ctx.reward.calls - calls_before, "examples": examples[0],
                     "optimiser_steps": steps[0]})
    return rows


def compare_vidd_settings(args, task) -> None:
    """Calls per update and forwards per training example of each VIDD setting (medians over the iterations
    after the first, which for the learned value only feeds the network)."""
    model, reward = task.pretrained_model(), task.training_reward()
    results = {}
    table = Table(title=f"{args.task} {args.preset}: VIDD settings (median of {args.iterations - 1} iterations)")
    for col in ("setting", "examples / iteration", "calls / iteration", "optimiser steps / iteration",
                "calls / update", "calls / example", "no-grad forwards / example", "s / iteration", "s / update"):
        table.add_column(col, justify="left" if col == "setting" else "right")
    for name, overrides in VIDD_SETTINGS.items():
        config = finetune_config(task, args.preset, cfg.parse_overrides(
            ["eval_every=0", "log_rollin_reward=false", "method=vidd", *overrides, *args.overrides]))
        trainer = Trainer(config, model, reward, log=lambda *a: None)
        rows = measure(trainer, args.iterations)[1:]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        per = {"calls_per_update": med["reward_calls"] / max(med["optimiser_steps"], 1),
               "calls_per_example": med["reward_calls"] / max(med["examples"], 1),
               "forwards_per_example": med["forward_seqs"] / max(med["examples"], 1),
               "seconds_per_update": med["total"] / max(med["optimiser_steps"], 1)}
        results[name] = {"overrides": overrides, "config": cfg.to_dict(config)["method"], "iterations": rows,
                         "median": med, **per}
        table.add_row(name, f"{med['examples']:.0f}", f"{med['reward_calls']:.0f}", f"{med['optimiser_steps']:.0f}",
                      f"{per['calls_per_update']:.1f}", f"{per['calls_per_example']:.2f}",
                      f"{per['forwards_per_example']:.2f}", f"{med['total']:.2f}", f"{per['seconds_per_update']:.2f}")
    Console().print(table)
    out = Path(args.out).with_name(Path(args.out).stem + "_vidd.json") if args.out == DEFAULT_OUT else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"task": args.task, "preset": args.preset, "settings": results,
                               "machine": machine()}, indent=2))
    print(f"wrote {out}")


def machine() -> dict:
    return {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "platform": platform.platform()}


DEFAULT_OUT = "bench/results/finetune_step.json"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", default="dhs-hepg2")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--quick", action="store_true", help="tiny run (3 iterations, batch 4, 8 steps)")
    ap.add_argument("--vidd-settings", action="store_true", help="compare the VIDD settings of VIDD_SETTINGS")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    task = Task.get(args.task)
    if args.quick:
        args.overrides += ["batch_size=4", "steps=8"]
        args.iterations = 3
    if args.vidd_settings:
        compare_vidd_settings(args, task)
        return
    over = ["iterations=%d" % args.iterations, "eval_every=0", *args.overrides]
    config = finetune_config(task, args.preset, cfg.parse_overrides(over))
    model, reward = task.pretrained_model(), task.training_reward()
    trainer = Trainer(config, model, reward, log=lambda *a: None)
    ctx = trainer.ctx
    rows = measure(trainer, config.iterations)
    units = unit_costs(ctx.student, ctx.reward.reward, batch=min(256, config.loss_chunk))
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    floor = {
        "denoiser forwards": med["forward_seqs"] * units["forward"],
        "forward+backward": med["grad_seqs"] * units["forward_backward"],
        "reward": med["reward_calls"] * units["reward"],
    }
    floor_total = sum(floor.values())
    table = Table(title=f"{args.task} {args.preset}: seconds per iteration (median of {len(rows)})")
    for col in ("phase", "measured s", "counted work", "floor s"):
        table.add_column(col, justify="right" if col != "phase" else "left")
    sampling = med["rollin"] + med["rollout"] + med["value"]
    table.add_row("  roll-in", f"{med['rollin']:.3f}", "", "")
    table.add_row("  roll-out", f"{med['rollout']:.3f}", "", "")
    table.add_row("  value (x0_hat)", f"{med['value']:.3f}", "", "")
    table.add_row("no-grad denoiser work", f"{sampling:.3f}", f"{med['forward_seqs']:.0f} seq forwards",
                  f"{floor['denoiser forwards']:.3f}")
    table.add_row("reward", f"{med['reward']:.3f}", f"{med['reward_calls']:.0f} calls", f"{floor['reward']:.3f}")
    table.add_row("backward", f"{med['backward']:.3f}", f"{med['grad_seqs']:.0f} seq fwd+bwd",
                  f"{floor['forward+backward']:.3f}")
    table.add_row("total", f"{med['total']:.3f}", "", f"{floor_total:.3f}")
    Console().print(table)
    Console().print(f"total / floor = {med['total'] / floor_total:.2f}")
    result = {
        "task": args.task, "preset": args.preset, "config": cfg.to_dict(config), "iterations": rows,
        "median": med, "unit_seconds_per_sequence": units, "floor": floor, "floor_total": floor_total,
        "ratio_total_to_floor": med["total"] / floor_total, "machine": machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
