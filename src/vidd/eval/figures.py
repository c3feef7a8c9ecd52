"""Figures a task adds to a run's report (`Task.report_figures`, e.g. the best molecules and the property
distributions of pretrained and fine-tuned samples): image files in the run's figures/ folder, listed with a
title and a note in report_figures.json and shown by `vidd.eval.report`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from vidd.core.atomic import atomic_open


@dataclass
class ReportFigure:
    title: str
    #: the image file, relative to the run folder (e.g. figures/top_designs.png)
    image: str
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def save_png(fig: Figure, path: Path) -> None:
    """Write a matplotlib figure as a PNG, atomically."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


def plot_distributions(panels: list[tuple[str, dict[str, np.ndarray]]], path: Path, bins: int = 20) -> None:
    """One panel per quantity (title, {set name: values}): a density histogram of each set on bins shared by the
    panel, with the set's size and mean in the legend (non-finite values left out); written to `path` (PNG)."""
    fig = Figure(figsize=(4.6 * len(panels), 3.4))
    for ax, (title, sets) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        arrays = {name: np.asarray(v, dtype=float) for name, v in sets.items()}
        finite = {name: v[np.isfinite(v)] for name, v in arrays.items()}
        pooled = np.concatenate([np.zeros(0), *finite.values()])
        edges = np.histogram_bin_edges(pooled, bins) if len(pooled) else bins
        for name, values in finite.items():
            if len(values):
                ax.hist(values, edges, density=True, alpha=0.5,
                        label=f"{name} (n={len(values)}, mean {values.mean():.3g})")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("density")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
