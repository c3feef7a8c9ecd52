"""The lever table of scripts/molecule_prior_levers.sh: one row per variant and number of sampling steps, from
OUT/NAME/report-<S>steps.json (`vidd model-report --task moses-qed`), OUT/NAME/settings.txt, OUT/NAME/log.jsonl
and OUT/NAME/train_seconds; also OUT/learning_curves.png (validation bits per token against training steps).

    python scripts/molecule_lever_table.py OUT [NAME ...]      # markdown on stdout
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: (report key, column title, format)
COLUMNS = (("FCD", "FCD ↓", "{:.2f}"), ("QED", "QED ↑", "{:.3f}"), ("SA", "SA ↓", "{:.2f}"),
           ("validity", "validity", "{:.3f}"), ("uniqueness", "uniqueness", "{:.3f}"), ("novelty", "novelty", "{:.3f}"),
           ("int_div", "int. div.", "{:.3f}"), ("valid_nelbo_bits_per_token", "val. bits/token", "{:.3f}"))
#: the issue's target on 10,000 samples
TARGET = "target (issue 16): FCD ≤ 2 and mean QED ≥ 0.75 on 10,000 samples, validity, uniqueness and novelty kept"


def log_rows(folder: Path) -> list[dict]:
    path = folder / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def cell(report: dict, key: str, fmt: str) -> str:
    value = report.get(key)
    return "-" if value is None or value != value else fmt.format(value)


def table(out: Path, names: list[str]) -> str:
    lines = [f"Variants of a moses-qed prior recipe (scripts/molecule_prior_levers.sh), one lever each ({TARGET}).",
             "",
             "| variant | settings | steps trained | training minutes | samples | sampling steps | "
             + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---" * (6 + len(COLUMNS)) + "|"]
    for name in names:
        folder = out / name
        settings = (folder / "settings.txt").read_text().strip() if (folder / "settings.txt").is_file() else "?"
        log = log_rows(folder)
        seconds = folder / "train_seconds"
        minutes = f"{sum(int(x) for x in seconds.read_text().split()) / 60:.0f}" if seconds.is_file() else "-"
        reports = sorted(folder.glob("report-*steps.json"), key=lambda p: int(re.findall(r"\d+", p.name)[-1]))
        for path in reports or [None]:
            report = json.loads(path.read_text()) if path else {}
            trained = log[-1]["step"] if log else report.get("provenance", {}).get("step", "-")
            lines.append(f"| {name} | `{settings}` | {trained} | {minutes} | {report.get('samples', '-')} | "
                         f"{report.get('steps', '-')} | "
                         + " | ".join(cell(report, key, fmt) for key, _, fmt in COLUMNS) + " |")
    lines += ["", "FCD and the property means against 10,000 MOSES test molecules (seed 0); val. bits/token: the "
                  "validation NELBO of the same 2,000 held-out MOSES training molecules for every variant; "
                  "learning curves: learning_curves.png."]
    return "\n".join(lines) + "\n"


def plot_curves(out: Path, names: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        log = log_rows(out / name)
        if log:
            ax.plot([r["step"] for r in log], [r["val_bits_per_token"] for r in log], marker="o", ms=2, label=name)
    ax.set_xlabel("training steps")
    ax.set_ylabel("validation NELBO, bits per token")
    ax.set_title("moses-qed prior variants")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    variants = sys.argv[2:] or sorted(p.name for p in folder.iterdir() if (p / "settings.txt").is_file())
    plot_curves(folder, variants)
    sys.stdout.write(table(folder, variants))
