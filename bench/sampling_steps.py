"""Sample quality of a molecule task's pretrained model against the number of denoising steps.

Draws the same seeded number of samples at each step count and scores them with the MOSES metrics
against 10,000 MOSES test molecules (FCD included). Prints a table and writes JSON.

    python bench/sampling_steps.py --device cuda        # 2,000 samples at 32, 64, 128, 256 steps
    python bench/sampling_steps.py --samples 200 --steps 16,32   # a CPU-sized run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from vidd.chem.metrics import molecule_metrics
from vidd.tasks import Task

COLUMNS = ("validity", "uniqueness", "novelty", "int_div", "QED", "SA", "W1_QED", "W1_SA", "W1_MW", "W1_logP", "FCD")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", default="moses-qed")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--steps", default="32,64,128,256", help="comma-separated step counts")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/sampling_steps.json")
    args = ap.parse_args()

    task = Task.get(args.task)
    model = task.pretrained_model().eval().to(args.device)
    rows = {}
    for steps in map(int, args.steps.split(",")):
        tokens = model.sample(args.samples, steps, torch.Generator().manual_seed(args.seed), batch_size=1000)
        rows[steps] = molecule_metrics(task.alphabet.decode(tokens.cpu()), task.reference, task.training_set,
                                       with_fcd=True)
    table = Table(title=f"{args.task}: {args.samples} samples of the pretrained model (seed {args.seed})")
    table.add_column("steps", justify="right")
    for col in COLUMNS:
        table.add_column(col, justify="right")
    for steps, r in rows.items():
        table.add_row(str(steps), *(f"{r[c]:.3f}" for c in COLUMNS))
    Console().print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"task": args.task, "samples": args.samples, "seed": args.seed,
                                          "device": args.device, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
