"""A fine-tuning run's report: `curves.png` (learning curves) and `report.html` (curves, final
evaluation, the task's tables of the final samples, configuration), made from the run folder's files
alone, so it can be remade at any time (`vidd report RUN`), also for an interrupted run."""

from __future__ import annotations

import html
from pathlib import Path

from matplotlib.figure import Figure

from vidd.core.atomic import atomic_open
from vidd.core.errors import UserError
from vidd.core.runfolder import RunFolder

#: panels of curves.png: (title, [(metrics.jsonl key, label)]); a panel whose keys no row has is left out
PANELS = (
    ("reward", [("reward_median", "roll-in (training reward)"),
                ("eval_train_reward_median", "student samples (training reward)"),
                ("eval_reward_median", "student samples (held-out reward)")]),
    ("diversity", [("eval_diversity", "student samples"), ("rollin_diversity", "roll-ins")]),
    ("naturalness", [("eval_loglik_median", "log-likelihood under the pretrained model (median)")]),
    ("KL to the pretrained model", [("eval_kl_to_pretrained", "KL(student || pretrained), nats")]),
    ("importance weights", [("ess", "effective sample size fraction")]),
    ("optimisation", [("loss", "loss"), ("grad_norm", "gradient norm")]),
)


def _series(rows: list[dict], key: str, x: str = "iteration") -> tuple[list, list]:
    points = [(r[x], r[key]) for r in rows if r.get(key) is not None and r.get(x) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(rows: list[dict], path: Path) -> None:
    """Write the learning curves to `path` (PNG)."""
    panels = [(title, [(k, label) for k, label in curves if _series(rows, k)[0]]) for title, curves in PANELS]
    panels = [p for p in panels if p[1]]
    held_out = bool(_series(rows, "eval_reward_median")[0])
    cols = 3
    n = len(panels) + 1  # + reward against reward calls
    rows_of_panels = (n + cols - 1) // cols
    fig = Figure(figsize=(5 * cols, 3.6 * rows_of_panels))
    axes = fig.subplots(rows_of_panels, cols, squeeze=False)
    flat = list(axes.flat)
    for ax, (title, curves) in zip(flat, panels):
        for key, label in curves:
            ax.plot(*_series(rows, key), marker="o" if key.startswith("eval_") else None, ms=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        if title == "optimisation":
            ax.set_yscale("symlog")  # the loss and the gradient norm differ by orders of magnitude
        ax.legend(fontsize=7)
    ax = flat[len(panels)]
    key = "eval_reward_median" if held_out else "eval_train_reward_median"
    ax.plot(*_series(rows, key, x="reward_calls"), marker="o", ms=3)
    ax.set_title("sample efficiency")
    ax.set_xlabel("training-reward calls")
    ax.set_ylabel(("held-out" if held_out else "training") + " reward of student samples (median)")
    for ax in flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


def _table(pairs) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in pairs)
    return f"<table>{cells}</table>"


def _grid(columns: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_report(folder: RunFolder) -> Path:
    """Write `curves.png` and `report.html` into the run folder; returns the HTML file's path."""
    rows = folder.read_metrics()
    if not rows:
        raise UserError(f"{folder.metrics_file}: no iteration recorded yet")
    plot_curves(rows, folder.curves_file)
    final = folder.read_final_eval()
    config = folder.config_file.read_text() if folder.config_file.is_file() else ""
    run = folder.path
    last = rows[-1]
    status = ("finished" if final is not None and not folder.in_progress() else
              f"in progress or interrupted after iteration {last['iteration']} (resume with --resume)")
    latest = [(k, last[k]) for k in ("iteration", "reward_calls", "reward_failures", "wall_seconds")
              if k in last]
    latest_eval = next((r for r in reversed(rows) if "eval_diversity" in r), {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>vidd run {html.escape(run.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:72em;margin:2em auto}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:2px 8px;text-align:left}pre{background:#f6f6f6;padding:1em}</style>",
        "</head><body>",
        f"<h1>vidd run {html.escape(run.name)}</h1><p>Status: {html.escape(status)}.</p>",
        "<h2>Learning curves</h2><img src='curves.png' alt='learning curves' style='max-width:100%'>",
    ]
    if final is not None:
        parts += ["<h2>Final evaluation (final_eval.json)</h2>", _table(final.items())]
    for table in folder.read_report_tables():
        parts += [f"<h2>{html.escape(table['title'])}</h2>", _grid(table["columns"], table["rows"])]
        if table.get("note"):
            parts.append(f"<p>{html.escape(table['note'])}</p>")
    parts += ["<h2>Last iteration</h2>", _table(latest)]
    if latest_eval:
        parts += [f"<h2>Last evaluation (iteration {latest_eval['iteration']})</h2>",
                  _table((k, v) for k, v in latest_eval.items() if k.startswith("eval_"))]
    parts += ["<h2>Configuration (config.yaml)</h2>", f"<pre>{html.escape(config)}</pre>"]
    history = [(f"from iteration {h['iteration']}",
                ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in h["changes"].items()))
               for h in folder.read_history()]
    if history:
        parts += ["<h2>Settings changed on resume (config_history.jsonl)</h2>", _table(history)]
    parts += ["<p>Every metric is defined in vidd's docs/metrics.md.</p></body></html>"]
    out = folder.report_file
    with atomic_open(out) as f:
        f.write("\n".join(parts))
    return out
