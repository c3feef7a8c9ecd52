"""The lever table of scripts/molecule_prior_levers.sh: one row per variant and number of sampling steps, from
OUT/NAME/report-<S>steps.json (`vidd model-report --task moses-qed`), OUT/NAME/settings.txt, OUT/NAME/log.jsonl
and OUT/NAME/train_seconds; also OUT/learning_curves.png (validation bits per token against training steps).
A NAME may be a path below OUT, such as seed1/base (the script run with SEED=1 and OUT/seed1): rows of one variant
trained with several seeds are then also summarised over the seeds, against the base recipe's mean.

    python scripts/molecule_lever_table.py OUT [NAME ...]      # markdown on stdout
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from collections import defaultdict
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


def reports_of(folder: Path) -> list[Path]:
    """The variant's model reports, fewest sampling steps first."""
    return sorted(folder.glob("report-*steps.json"), key=lambda p: int(re.findall(r"\d+", p.name)[-1]))


def training_seed(report: dict) -> int | None:
    return report.get("provenance", {}).get("config", {}).get("seed")


def seed_text(report: dict) -> str:
    seed = training_seed(report)
    return "-" if seed is None else str(seed)


def table(out: Path, names: list[str]) -> str:
    lines = [f"Variants of a moses-qed prior recipe (scripts/molecule_prior_levers.sh), one lever each ({TARGET}).",
             "",
             "| variant | settings | seed | steps trained | training minutes | samples | sampling steps | "
             + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---" * (7 + len(COLUMNS)) + "|"]
    for name in names:
        folder = out / name
        if not folder.is_dir():
            sys.exit(f"no variant folder {folder}")
        settings = (folder / "settings.txt").read_text().strip() if (folder / "settings.txt").is_file() else "?"
        log = log_rows(folder)
        seconds = folder / "train_seconds"
        minutes = f"{sum(int(x) for x in seconds.read_text().split()) / 60:.0f}" if seconds.is_file() else "-"
        for path in reports_of(folder) or [None]:
            report = json.loads(path.read_text()) if path else {}
            trained = log[-1]["step"] if log else report.get("provenance", {}).get("step", "-")
            lines.append(f"| {name} | `{settings}` | {seed_text(report)} | {trained} | {minutes} | "
                         f"{report.get('samples', '-')} | {report.get('steps', '-')} | "
                         + " | ".join(cell(report, key, fmt) for key, _, fmt in COLUMNS) + " |")
    lines += ["", "FCD and the property means against 10,000 MOSES test molecules (seed 0); val. bits/token: the "
                  "validation NELBO of the same 2,000 held-out MOSES training molecules for every variant; "
                  "learning curves: learning_curves.png."]
    return "\n".join(lines + seed_summary(out, names)) + "\n"


#: the columns summarised over seeds: (report key, column title, format, title of the difference column)
SUMMARISED = (("FCD", "FCD ↓", "{:.2f}", "Δ FCD"), ("QED", "QED ↑", "{:.3f}", "Δ QED"),
              ("valid_nelbo_bits_per_token", "val. bits/token", "{:.3f}", "Δ bits/token"))


def seed_summary(out: Path, names: list[str]) -> list[str]:
    """Each variant over its seeds at its fewest sampling steps: every seed's value, the mean, and the mean's
    difference from the base recipe's mean; empty unless some variant was trained with more than one seed."""
    by_variant: dict[str, list[dict]] = defaultdict(list)
    for name in names:
        reports = reports_of(out / name)
        if reports:
            by_variant[Path(name).name].append(json.loads(reports[0].read_text()))
    if all(len(reports) < 2 for reports in by_variant.values()):
        return []
    means = {variant: {key: statistics.fmean(r.get(key, math.nan) for r in reports) for key, *_ in SUMMARISED}
             for variant, reports in by_variant.items()}
    lines = ["", "Over seeds: each seed's value (in seed order) and their mean; Δ: the mean minus the base recipe's mean.",
             "", "| variant | seeds | " + " | ".join(f"{title} | {delta}" for _, title, _, delta in SUMMARISED)
             + " |", "|---" * (2 + 2 * len(SUMMARISED)) + "|"]
    for variant, reports in by_variant.items():
        reports = sorted(reports, key=lambda r: (training_seed(r) is None, training_seed(r) or 0))
        cells = []
        for key, _, fmt, _ in SUMMARISED:
            each = " / ".join(cell(r, key, fmt) for r in reports)
            mean = f" (mean {fmt.format(means[variant][key])})" if len(reports) > 1 else ""
            delta = ("-" if "base" not in means or variant == "base"
                     else fmt.replace("{:", "{:+").format(means[variant][key] - means["base"][key]))
            cells += [each + mean, delta]
        lines.append(f"| {variant} | {', '.join(seed_text(r) for r in reports)} | " + " | ".join(cells) + " |")
    return lines


def plot_curves(out: Path, names: list[str]) -> None:
    """One colour per variant; a variant's other seeds (NAME a path such as seed1/base) dashed, without a label."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours: dict[str, str] = {}
    for name in names:
        log = log_rows(out / name)
        if log:
            variant = Path(name).name
            first = variant not in colours
            colours.setdefault(variant, f"C{len(colours) % 10}")
            ax.plot([r["step"] for r in log], [r["val_bits_per_token"] for r in log], marker="o", ms=2,
                    color=colours[variant], linestyle="-" if first else "--", label=variant if first else None)
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
