"""Peak memory, seconds per iteration, checkpoint size and final quality of full fine-tuning against LoRA.

Every variant is a real run (`build_run`, as `vidd finetune` does) in a fresh subprocess, so that its peak
resident memory (VmHWM) is its own (VmHWM); on a CUDA device the peak of `torch.cuda.max_memory_allocated`
is reported too. The `floor` process loads what every variant loads before training (the task's pretrained
model, training and evaluation rewards) and stops: peak minus floor is what fine-tuning itself adds (the model
copies, gradients, Adam's moments, activations). The peak of the training iterations alone (no evaluation in them;
Linux's VmHWM, reset at every iteration) is reported beside the whole process's. Each process runs with glibc's
MALLOC_MMAP_THRESHOLD_ at 64 KiB (--mmap-threshold): otherwise the heap keeps what a backward pass freed and the
resident memory shows the allocator's history rather than what the run needs. The final evaluation skips the antibody task's IgFold
structure metrics (minutes of folding, not part of the reward). Prints a table and writes JSON.

    python bench/memory.py                                   # antibody-cdrh3 quick preset (40 iterations)
    python bench/memory.py --set iterations=10               # shortened runs, same settings otherwise
    python bench/memory.py --set device=cuda --variants full lora lora-bf16
    python bench/memory.py --lr full=1e-4 --lr lora=3e-3     # each variant's learning rate (bench/lora_vs_full.sh)
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from vidd.core import config as cfg
from vidd.run import build_run, finetune_config
from vidd.training.callbacks import Callback
from vidd.tasks import Task

#: the settings of each variant, on top of the preset and --set
VARIANTS = {
    "full": [],
    "lora": ["model.finetune=lora", "lr=1e-3"],  # the rate bench/lora_vs_full.sh chose
    "lora-bf16": ["model.finetune=lora", "lr=1e-3", "model.precision=bf16", "model.frozen_precision=bf16"],
    "lora-checkpointing": ["model.finetune=lora", "lr=1e-3", "model.gradient_checkpointing=true"],
}
MB = 2 ** 20


def size_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 if absent)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def resident_peak_bytes() -> int:
    """This process's peak resident memory since the last `reset_resident_peak` (Linux VmHWM)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def reset_resident_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: VmHWM := the current resident memory


class IterationPeaks(Callback):
    """Peak resident memory of each iteration: training alone, or training plus an evaluation, which needs the same
    memory whatever the fine-tuning, so the training iterations show what full fine-tuning and LoRA each hold."""

    def __init__(self):
        self.training, self.evaluating, self.loading = [], [], 0

    def on_run_start(self, trainer):
        self.loading = resident_peak_bytes()
        reset_resident_peak()

    def on_iteration_end(self, trainer, row):
        (self.evaluating if "eval_reward_median" in row else self.training).append(resident_peak_bytes())
        reset_resident_peak()


class ParameterCount(Callback):
    def on_run_end(self, trainer, result):
        self.trainable = sum(p.numel() for p in trainer.copies.trainable_parameters())
        self.total = sum(p.numel() for p in result.model.parameters())


def child(args) -> dict:
    """One measured process: the floor (load, no training) or one variant's run."""
    task = Task.get(args.task)
    config = finetune_config(task, args.preset, cfg.parse_overrides(variant_settings(args.child, args)))
    cuda = config.device.startswith("cuda")
    run = build_run(task, config, args.out, log=lambda *a: None, callbacks=[probe := ParameterCount(),
                                                                                 peaks := IterationPeaks()])
    if "structure_samples" in inspect.signature(run.task.evaluate).parameters:
        run.task.evaluate = functools.partial(run.task.evaluate, structure_samples=0)
    if args.child == "floor":
        model = run.task.pretrained_model().to(config.device)
        seqs = model.alphabet.decode(model.sample(2, config.steps).cpu())
        run.task.training_reward()(seqs)
        run.task.evaluate(seqs)
        return {"peak_rss_bytes": resident_peak_bytes(),
                "peak_cuda_bytes": torch.cuda.max_memory_allocated() if cuda else None}
    folder = run.folder
    start = time.perf_counter()
    run.execute()
    seconds = time.perf_counter() - start
    if not peaks.training:
        raise SystemExit("every iteration evaluated the student: set eval_every above 1 to measure training alone")
    rows = folder.read_metrics()
    final = folder.read_final_eval() or {}
    return {  # the resets leave the process's peak to be put together from its parts
        "peak_rss_bytes": max(peaks.loading, *peaks.training, *peaks.evaluating, resident_peak_bytes()),
        "peak_cuda_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "peak_rss_training_iterations_bytes": max(peaks.training, default=None),
        "peak_rss_evaluation_iterations_bytes": max(peaks.evaluating, default=None),
        "seconds_per_iteration_median": statistics.median(r["iteration_seconds"] - r["seconds_eval"] for r in rows),
        "seconds_per_iteration": [r["iteration_seconds"] - r["seconds_eval"] for r in rows],
        "run_seconds": seconds,
        "iterations": len(rows),
        "training_checkpoint_bytes": size_bytes(folder.last_checkpoint),
        "final_model_bytes": size_bytes(folder.student_checkpoint),
        "checkpoints_folder_bytes": size_bytes(folder.path / "checkpoints"),
        "checkpoint_files": {str(p.relative_to(folder.path)): p.stat().st_size
                             for p in sorted((folder.path / "checkpoints").rglob("*")) if p.is_file()},
        "final_eval": final,
        "eval_reward_median_last": next((r["eval_reward_median"] for r in reversed(rows)
                                         if r.get("eval_reward_median") is not None), None),
        "trainable_parameters": probe.trainable,
        "model_parameters": probe.total,
    }


def variant_settings(name: str, args) -> list[str]:
    """--set settings, then the variant's own, then its --lr: the settings of one measured process."""
    lr = [f"lr={value}" for label, value in args.lrs if label == name]
    return [*args.overrides, *VARIANTS.get(name, []), *lr]


def measure(name: str, args, work: Path) -> dict:
    command = [sys.executable, __file__, "--child", name, "--task", args.task, "--preset", args.preset,
               "--out", str(work / name), *(f"--set={s}" for s in args.overrides),
               *(f"--lr={label}={value}" for label, value in args.lrs)]
    env = dict(os.environ)
    if args.mmap_threshold:  # glibc returns a freed block of at least this size to the system at once
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def labelled_lr(text: str) -> tuple[str, float]:
    label, _, value = text.partition("=")
    if label not in VARIANTS:
        raise argparse.ArgumentTypeError(f"{label!r} is not a variant; variants: {', '.join(sorted(VARIANTS))}")
    try:
        return label, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected VARIANT=LR with a number, e.g. lora=1e-3") from None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="antibody-cdrh3")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="a setting of every variant")
    ap.add_argument("--variants", nargs="+", default=["full", "lora"], choices=sorted(VARIANTS))
    ap.add_argument("--lr", dest="lrs", action="append", default=[], type=labelled_lr, metavar="VARIANT=LR",
                    help="a variant's learning rate (after its own settings), e.g. lora=1e-3")
    ap.add_argument("--mmap-threshold", type=int, default=65536, metavar="BYTES",
                    help="glibc's MALLOC_MMAP_THRESHOLD_ in each measured process, so that a freed tensor leaves "
                         "the resident memory and peaks measure live memory, not what the heap keeps (0: glibc's "
                         "default, under which a run's resident memory stays near its highest point)")
    ap.add_argument("--out", default="bench/results/memory.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory(prefix="vidd-memory-") as tmp:
        results = {name: measure(name, args, Path(tmp)) for name in ("floor", *args.variants)}
    floor = results["floor"]["peak_rss_bytes"]
    table = Table(title=f"{args.task} --preset {args.preset} {' '.join('--set ' + s for s in args.overrides)}")
    for col in ("variant", "peak RSS MB", "above floor MB", "training peak MB", "above floor MB", "s / iteration", "training ckpt MB", "final model MB",
                "eval reward (final)"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    table.add_row("floor (load only)", f"{floor / MB:.0f}", "", "", "", "", "", "", "")
    for name in args.variants:
        r = results[name]
        r["peak_rss_above_floor_bytes"] = r["peak_rss_bytes"] - floor
        r["peak_rss_training_above_floor_bytes"] = r["peak_rss_training_iterations_bytes"] - floor
        reward = r["final_eval"].get("reward_median")
        table.add_row(name, f"{r['peak_rss_bytes'] / MB:.0f}", f"{r['peak_rss_above_floor_bytes'] / MB:.0f}",
                      f"{r['peak_rss_training_iterations_bytes'] / MB:.0f}",
                      f"{r['peak_rss_training_above_floor_bytes'] / MB:.0f}",
                      f"{r['seconds_per_iteration_median']:.1f}", f"{r['training_checkpoint_bytes'] / MB:.1f}",
                      f"{r['final_model_bytes'] / MB:.1f}", "" if reward is None else f"{reward:.3f}")
    Console().print(table)
    summary = {}  # full fine-tuning's size over each other variant's
    for name in (n for n in args.variants if n != "full" and "full" in results):
        full, other = results["full"], results[name]
        summary[name] = {
            "training_checkpoint_ratio": full["training_checkpoint_bytes"] / other["training_checkpoint_bytes"],
            "checkpoints_folder_ratio": full["checkpoints_folder_bytes"] / other["checkpoints_folder_bytes"],
            "peak_rss_ratio": full["peak_rss_bytes"] / other["peak_rss_bytes"],
            "peak_rss_above_floor_ratio": full["peak_rss_above_floor_bytes"] / other["peak_rss_above_floor_bytes"],
            "peak_rss_training_ratio": (full["peak_rss_training_iterations_bytes"]
                                        / other["peak_rss_training_iterations_bytes"]),
            "peak_rss_training_above_floor_ratio": (full["peak_rss_training_above_floor_bytes"]
                                                    / other["peak_rss_training_above_floor_bytes"]),
        }
        Console().print(f"full / {name}: " + ", ".join(f"{k} = {v:.2f}" for k, v in summary[name].items()))
    out = {
        "command": " ".join(["python", "bench/memory.py", *sys.argv[1:]]),
        "task": args.task, "preset": args.preset, "overrides": args.overrides,
        "malloc_mmap_threshold": args.mmap_threshold or None,
        "variant_settings": {name: variant_settings(name, args) for name in args.variants},
        "results": results, "full_over": summary,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "platform": platform.platform(),
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "load_average": os.getloadavg()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
