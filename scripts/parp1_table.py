"""The Table 1 layout of scripts/parp1_table.sh: one row per method (pretrained, VIDD, DDPO and Best-of-N at
VIDD's docking calls, Best-of-32) from the runs' final evaluations, and a grid image of each method's 12 best
designs by training reward (OUT/grids/). The fine-tuning runs' per-molecule scores are their samples/final.tsv;
the sampling rows' samples are scored once here with the training reward (for parp1-docking: docked at
exhaustiveness 1; cached in the cell's scores.tsv), except those the cell's journal of training-reward scores
(reward_scores.tsv: Best-of-N's candidates) already holds. Where the per-molecule held-out scores exist (`eval_reward`;
the samples files of bench cells carry them), the last three columns are their median and its difference from the
pretrained row's and from VIDD's, each with a 95% bootstrap interval over the molecules.

    python scripts/parp1_table.py OUT [--task parp1-docking]     # markdown on stdout
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vidd.core.runfolder import RunFolder
from vidd.core.seqio import read_score_journal, read_table, write_table
from vidd.eval.benchstats import bootstrap_interval, difference_interval
from vidd.tasks import Task

#: (row, its grid's file name, folder under OUT, the bench folder whose budget sets Best-of-N's N)
ROWS = (("pretrained", "pretrained", "equal-calls/runs/pretrained/seed0", None),
        ("VIDD (the quick preset)", "vidd", "vidd", None),
        ("DDPO, VIDD's calls", "ddpo", "equal-calls/runs/ddpo/seed0", None),
        ("Best-of-N, VIDD's calls", "best-of-n", "equal-calls/runs/best-of-n/seed0", "equal-calls"),
        ("Best-of-32", "best-of-32", "best-of-32/runs/best-of-n/seed0", "best-of-32"))
#: the rows whose docking medians the others are compared with ("vs" columns), in the columns' order
BASELINES = ("pretrained", "vidd")
HEADINGS = {"docking_median": "docking median (exh. 8) ↑", "docking_top10": "docking top 10% (exh. 8) ↑",
            "docking_failures": "not docked (exh. 8)", "nll_median": "NLL ↓", "int_div": "int. div.",
            "reward_calls": "training-reward calls"}


def evaluation(folder: Path) -> dict | None:
    for name in ("final_eval.json", "result.json"):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    return None


def scores(task, folder: Path) -> dict | None:
    """Per-molecule scores: a fine-tuning run's samples/final.tsv, else the cell's samples scored (scores.tsv)
    with the held-out scores its samples file carries (`eval_reward`)."""
    final = folder / "samples" / "final.tsv"
    if final.is_file():
        return read_table(final)
    cached, samples = folder / "scores.tsv", folder / f"samples{task.sample_suffix}"
    if not samples.is_file():
        return None
    if not cached.is_file():  # a sampling row's journal already holds its candidates' training scores
        journal = read_score_journal(RunFolder(folder).reward_scores_file)
        write_table(cached, task.score_table(task.read_samples(samples), known=journal))
    held_out = {k: v for k, v in read_table(samples).items() if k.startswith("eval_reward")}
    return {**read_table(cached), **held_out}


def held_out(per_molecule: dict | None) -> np.ndarray | None:
    """The row's per-molecule held-out scores, failures left out (None: the row has none)."""
    if not per_molecule or "eval_reward" not in per_molecule:
        return None
    values = np.array(per_molecule["eval_reward"], dtype=float)
    return values[np.isfinite(values)]


def interval(estimate: float, low: float, high: float) -> str:
    return f"{estimate:.3g} [{low:.3g}, {high:.3g}]"


def label(name: str, plan_folder: Path | None) -> str:
    if plan_folder is None or not (plan_folder / "plan.json").is_file():
        return name
    plan = json.loads((plan_folder / "plan.json").read_text())
    return f"{name} (N = {plan['budget'] // plan['samples']})"


def table(out: Path, task) -> str:
    keys = [*task.table_metrics, "reward_calls"]
    lines = [f"Task `{task.name}`; each row's final molecules (`n`), metrics of docs/tasks/molecules.md. Last three "
             f"columns, from each molecule's held-out score (failures left out): its median over the row's molecules, "
             f"and the difference of that median from the pretrained row's and from VIDD's, each with a 95% bootstrap "
             f"interval over the molecules (one run per method, so no interval over seeds; `-`: no per-molecule "
             f"scores).", "",
             "| method | n | " + " | ".join(HEADINGS.get(k, k) for k in keys) +
             " | median [95%] | vs pretrained [95%] | vs VIDD [95%] |", "|---" * (len(keys) + 5) + "|"]
    grids, baselines = [], {}
    (out / "grids").mkdir(exist_ok=True)
    for name, slug, where, plan in ROWS:
        row = label(name, out / plan if plan else None)
        result = evaluation(out / where)
        if result is None or result.get("status", "ok") != "ok":
            lines.append(f"| {row} | " + " | ".join(["not run yet" if result is None else "failed"] +
                                                   ["-"] * (len(keys) + 3)) + " |")
            continue
        per_molecule = scores(task, out / where)
        mine = held_out(per_molecule)
        cells = [f"{result[k]:.3g}" if isinstance(result.get(k), float) else str(result.get(k, "-")) for k in keys]
        cells.append("-" if mine is None else interval(*bootstrap_interval(mine, statistic=np.median)))
        for baseline in BASELINES:
            theirs = baselines.get(baseline)
            cells.append("-" if mine is None or theirs is None else interval(*difference_interval(mine, theirs)))
        if slug in BASELINES and mine is not None:
            baselines[slug] = mine
        lines.append(f"| {row} | {result.get('n', '-')} | " + " | ".join(cells) + " |")
        image = out / "grids" / f"{slug}.png"
        if per_molecule and task.draw_top_designs(per_molecule, image):
            grids.append(f"**{row}**\n\n![{row}](grids/{image.name})")
    return "\n".join(lines + ["", "## The 12 best designs of each method (by training reward)", "",
                              "\n\n".join(grids)]) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--task", default="parp1-docking")
    args = parser.parse_args()
    print(table(args.out, Task.get(args.task)), end="")
