"""Compare the metrics of two sets of run folders, ignoring timings: did a change alter any number?

    python scripts/compare_runs.py BEFORE AFTER [--ignore KEY,KEY]

BEFORE and AFTER each hold one run folder per name (e.g. made by scripts/method_smoke_runs.sh with the
same seed on two versions of vidd). Every metric BEFORE has must be equal in AFTER (NaN equals NaN);
metrics only AFTER has are listed as new, keys given to --ignore are skipped. Prints one line per run
(and the first differences) and exits 1 if any metric differs.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

TIMING = ("seconds", "wall_seconds", "iteration_seconds", "train_seconds")


def numbers(run: Path) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return rows, json.loads((run / "final_eval.json").read_text())


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def differences(a: dict, b: dict, where, ignore: set[str]) -> list[tuple]:
    return [(where, k, v, b.get(k, "missing")) for k, v in a.items()
            if k not in ignore and not any(k.startswith(t) for t in TIMING) and not same(v, b.get(k, "missing"))]


def main(before: Path, after: Path, ignore: set[str]) -> int:
    differ = 0
    for run in sorted(p for p in before.iterdir() if (p / "final_eval.json").is_file()):
        (rows_a, final_a), (rows_b, final_b) = numbers(run), numbers(after / run.name)
        found = [d for i, (a, b) in enumerate(zip(rows_a, rows_b)) for d in differences(a, b, i + 1, ignore)]
        found += differences(final_a, final_b, "final", ignore)
        if len(rows_a) != len(rows_b):
            found.append(("rows", "count", len(rows_a), len(rows_b)))
        new = sorted({k for b in rows_b for k in b} - {k for a in rows_a for k in a})
        differ += bool(found)
        print(f"{run.name}: {'DIFFERENT' if found else 'identical'} ({len(rows_a)} iterations, {len(final_a)} final "
              f"metrics){'; new: ' + ', '.join(new) if new else ''}")
        for where, key, a, b in found[:5]:
            print(f"    {where} {key}: {a!r} -> {b!r}")
    return 1 if differ else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--ignore", default="", help="comma-separated metric keys not compared")
    args = ap.parse_args()
    raise SystemExit(main(args.before, args.after, {k for k in args.ignore.split(",") if k}))
