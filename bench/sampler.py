"""Benchmark of the masked-diffusion ancestral sampler (sequences per second).

Measures `model.sample` (default: 128 steps, length 200, batch 64) with and without the
denoiser cache, against the floor of `steps` bare `model.denoise` forwards on one batch, and
counts how many denoiser calls the cached sampler really made. Each measurement is repeated
(`--repeats`) and the median is reported; a rich table is printed and JSON written (`--out`).

    python bench/sampler.py                 # defaults (DNA DilatedCNN, hidden 64, 2 stacks)
    python bench/sampler.py --quick         # a tiny smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from vidd.core.alphabets import DNA
from vidd.diffusion.masked import MaskedDiffusion
from vidd.diffusion.pretrain import ModelConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="src/vidd/assets/dhs-hepg2/pretrained",
                   help="model folder; a fresh DilatedCNN (hidden 64, 2 stacks) if it is absent")
    p.add_argument("--steps", type=int, default=128)
    p.add_argument("--length", type=int, default=200, help="sequence length of a fresh model")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/sampler.json")
    p.add_argument("--quick", action="store_true", help="tiny run: 16 steps, length 50, batch 8, 2 repeats, small model")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.length, args.batch, args.repeats = 16, 50, 8, 2
    return args


def build_model(args) -> tuple[MaskedDiffusion, str]:
    path = Path(args.checkpoint)
    if path.exists() and not args.quick:
        return MaskedDiffusion.load(path), str(path)
    torch.manual_seed(args.seed)
    config = ModelConfig(hidden=16, stacks=1) if args.quick else ModelConfig(hidden=64, stacks=2)
    return config.build(DNA, args.length), f"fresh DilatedCNN(hidden={config.hidden}, stacks={config.stacks})"


class CountingDenoise:
    """Wraps model.denoise (instance attribute) and counts its calls."""

    def __init__(self, model: MaskedDiffusion):
        self.model, self.inner, self.calls = model, model.denoise, 0

    def __enter__(self):
        self.model.denoise = self
        return self

    def __exit__(self, *exc):
        del self.model.denoise  # back to the class method

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def timed_rounds(fns: dict, repeats: int, on_round=None) -> dict[str, list[float]]:
    """Time each callable once per round, interleaved (so drifting background load hits all alike)."""
    times = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if on_round:
            on_round(r + 1, times)
    return times


def machine() -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, source = build_model(args)
    model.eval()
    n, steps, length = args.batch, args.steps, model.length

    counter = CountingDenoise(model)
    x_floor = torch.full((n, length), model.mask_index, dtype=torch.long)
    t_floor = torch.tensor(0.5)

    def sample(use_cache: bool):
        def run():
            with counter:
                model.sample(n, steps, generator=torch.Generator().manual_seed(args.seed), use_cache=use_cache)
        return run

    def floor():
        with torch.no_grad():
            for _ in range(steps):
                model.denoise(x_floor, t_floor)

    floor_name = f"floor: {steps} bare denoise"
    fns = {"sample (cache)": sample(True), "sample (no cache)": sample(False), floor_name: floor}
    calls = {}

    def count_calls(name):  # denoiser calls of one run (the sampler is seeded, so every run alike)
        counter.calls = 0
        out = fns[name]()
        calls[name] = counter.calls
        return out

    with torch.no_grad():  # warm-up (allocator, oneDNN primitives): a couple of forwards
        for _ in range(2):
            model.denoise(x_floor, t_floor)
    fns_counted = {name: (lambda name=name: count_calls(name)) for name in fns}
    fns_counted[floor_name] = floor
    calls[floor_name] = steps

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "sampler",
        "model": source,
        "parameters": sum(p.numel() for p in model.parameters()),
        "time_conditioned": model.backbone.time_conditioned,
        "steps": steps, "length": length, "batch": n, "repeats": args.repeats, "seed": args.seed,
        "quick": args.quick,
        "machine": machine(),
        "results": [],
    }

    def summarise(done: int, times: dict) -> None:
        floor_median = statistics.median(times[floor_name])
        report["repeats_done"] = done
        report["results"] = []
        for name, ts in times.items():
            med = statistics.median(ts)
            report["results"].append({
                "name": name,
                "median_s": med,
                "min_s": min(ts),
                "max_s": max(ts),
                "times_s": ts,
                "sequences_per_s": n / med,
                "denoiser_calls": calls[name],
                "ms_per_call": 1000 * med / calls[name],
                "vs_floor": med / floor_median,
            })
        report["machine"]["load_average_1m_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        out.write_text(json.dumps(report, indent=2) + "\n")  # after every round: partial results survive
        print(f"round {done}/{args.repeats} done", file=sys.stderr, flush=True)

    timed_rounds(fns_counted, args.repeats, summarise)
    print_table(report)
    print(f"wrote {out}")
    return report


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    m = report["machine"]
    table = Table(title=(
        f"sampler: {report['model']}, {report['steps']} steps, length {report['length']}, "
        f"batch {report['batch']}, median of {report['repeats']}\n"
        f"{m['cpu_count']} CPUs, torch {m['torch']}, {m['torch_threads']} threads, "
        f"load average {m['load_average_1m']:.2f} -> {m['load_average_1m_end']:.2f}"))
    for col in ("run", "median s", "min–max s", "seq/s", "denoiser calls", "ms/call", "× floor"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in report["results"]:
        table.add_row(r["name"], f"{r['median_s']:.3f}", f"{r['min_s']:.3f}–{r['max_s']:.3f}",
                      f"{r['sequences_per_s']:.1f}", str(r["denoiser_calls"]), f"{r['ms_per_call']:.1f}",
                      f"{r['vs_floor']:.2f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
