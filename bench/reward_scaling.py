"""Docking throughput (ligands per minute) on reward executors with 1 and 2 workers.

Docks the same seeded MOSES test molecules against PARP1 (AutoDock Vina, exhaustiveness 1 by
default) serially in this process, on the local process pool and on Ray actors, and reports
ligands per minute and the parallel efficiency against the serial rate:
efficiency = rate / (workers x serial rate). Every executor first docks one warm-up ligand per
worker, so each worker has built its receptor maps before the clock starts (the map time is
reported apart). Prints a table and writes JSON.

    python bench/reward_scaling.py                          # 16 ligands, 3 repeats
    python bench/reward_scaling.py --ligands 4 --repeats 1  # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vidd.chem.molecules import smiles_to_selfies
from vidd.data.moses import load_moses
from vidd.rewards.chem import DockingConfig, DockingReward
from vidd.rewards.executors import ExecutorConfig, parallel_reward


def ligands(n: int, seed: int, offset: int = 0) -> list[str]:
    test = load_moses("test")
    picked = random.Random(seed).sample(test, n + offset)[offset:]
    return [smiles_to_selfies(s) for s in picked]


def measure(kind: str, workers: int, factory, warmup: list[str], batch: list[str], repeats: int) -> dict:
    reward = parallel_reward(factory, ExecutorConfig(kind=kind, workers=workers, batch_size=1, retries=0))
    try:
        start = time.perf_counter()
        reward(warmup[:workers])  # every worker builds its receptor maps
        setup = time.perf_counter() - start
        times, failures = [], 0
        for _ in range(repeats):
            start = time.perf_counter()
            values = reward(batch)
            times.append(time.perf_counter() - start)
            failures += int(sum(v != v for v in values))
    finally:
        close = getattr(reward, "close", None)
        if close:
            close()
    seconds = statistics.median(times)
    return {"executor": kind, "workers": workers, "setup_seconds": setup, "seconds": times,
            "median_seconds": seconds, "ligands_per_minute": 60 * len(batch) / seconds, "failures": failures}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ligands", type=int, default=16, help="molecules docked per timed call")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per executor (the median is reported)")
    ap.add_argument("--exhaustiveness", type=int, default=1)
    ap.add_argument("--target", default="PARP1")
    ap.add_argument("--executors", default="serial:1,process:1,process:2,ray:1,ray:2",
                    help="comma-separated kind:workers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/reward_scaling.json")
    args = ap.parse_args()

    factory = partial(DockingReward, DockingConfig(target=args.target, exhaustiveness=args.exhaustiveness))
    warmup, batch = ligands(2, args.seed), ligands(args.ligands, args.seed, offset=2)
    rows = []
    for spec in args.executors.split(","):
        kind, workers = spec.split(":")
        Console().print(f"{kind} x {workers} ...")
        rows.append(measure(kind, int(workers), factory, warmup, batch, args.repeats))
    serial = next((r["ligands_per_minute"] for r in rows if r["workers"] == 1 and r["executor"] == "serial"),
                  rows[0]["ligands_per_minute"])
    table = Table(title=f"docking to {args.target}, exhaustiveness {args.exhaustiveness}: {args.ligands} ligands, "
                        f"median of {args.repeats}")
    for col in ("executor", "workers", "maps + warm-up s", "median s", "ligands / min", "efficiency", "failures"):
        table.add_column(col, justify="left" if col == "executor" else "right")
    for r in rows:
        r["efficiency"] = r["ligands_per_minute"] / (r["workers"] * serial)
        table.add_row(r["executor"], str(r["workers"]), f"{r['setup_seconds']:.1f}", f"{r['median_seconds']:.1f}",
                      f"{r['ligands_per_minute']:.1f}", f"{r['efficiency']:.2f}", str(r["failures"]))
    Console().print(table)
    result = {"target": args.target, "exhaustiveness": args.exhaustiveness, "ligands": args.ligands,
              "repeats": args.repeats, "seed": args.seed, "serial_ligands_per_minute": serial, "rows": rows,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
