"""Compare the metrics of two sets of run folders, ignoring timings: did a refactor change any number?

    python scripts/compare_runs.py BEFORE AFTER

BEFORE and AFTER each hold one run folder per name (e.g. made by scripts/method_smoke_runs.sh with the
same seed on two versions of vidd). Prints one line per run and exits 1 if any metric differs or is gone; final
metrics that only AFTER has (a new version's additions) are listed, not compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TIMING = ("seconds", "wall_seconds", "iteration_seconds")


def numbers(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    final = json.loads((run / "final_eval.json").read_text())
    keep = lambda d: {k: v for k, v in d.items() if not any(k.startswith(t) or k == t for t in TIMING)}  # noqa: E731
    return {"metrics": [keep(r) for r in rows], "final": keep(final)}


def main(before: Path, after: Path) -> int:
    differ = 0
    for run in sorted(p for p in before.iterdir() if (p / "final_eval.json").is_file()):
        a, b = numbers(run), numbers(after / run.name)
        new = sorted(set(b["final"]) - set(a["final"]))
        same = a["metrics"] == b["metrics"] and a["final"] == {k: v for k, v in b["final"].items() if k not in new}
        differ += not same
        print(f"{run.name}: {'identical' if same else 'DIFFERENT'} ({len(a['metrics'])} iterations, "
              f"{len(a['final'])} final metrics{'; new in AFTER: ' + ', '.join(new) if new else ''})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
