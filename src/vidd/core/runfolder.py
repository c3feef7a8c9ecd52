"""The layout of a fine-tuning run folder, in one place: every reader and writer of a run goes through
`RunFolder` (the trainer, `vidd finetune / sample / report / bench`, the report).

    RUN/config.yaml          the run's settings
    RUN/metrics.jsonl        one JSON row per iteration (metrics.csv: the same as a table)
    RUN/samples/             iter_XXXXX<suffix> evaluation samples, final<suffix> (with their scores)
    RUN/samples/final.tsv    one row per final sample: sequence, rewards, log-likelihood (docs/metrics.md)
    RUN/checkpoints/last.pt  the resumable state (atomic)
    RUN/checkpoints/student.pt  the fine-tuned model, written when the run ends
    RUN/final_eval.json      the final evaluation
    RUN/curves.png, RUN/report.html
    RUN/tensorboard/, RUN/wandb/  experiment trackers' files (config `report_to`)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
import yaml

from vidd.core.atomic import atomic_open, atomic_torch_save
from vidd.core.config import load_yaml
from vidd.core.errors import UserError
from vidd.core.seqio import write_table


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------- paths
    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def metrics_table(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def student_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "student.pt"

    @property
    def final_eval_file(self) -> Path:
        return self.path / "final_eval.json"

    @property
    def report_file(self) -> Path:
        return self.path / "report.html"

    @property
    def curves_file(self) -> Path:
        return self.path / "curves.png"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def final_table_file(self) -> Path:
        return self.samples_dir / "final.tsv"

    def samples_file(self, stem: str, suffix: str) -> Path:
        return self.samples_dir / f"{stem}{suffix}"

    # ------------------------------------------------------------- state
    def holds_run(self) -> bool:
        return self.metrics_file.exists() or self.last_checkpoint.exists()

    def model_checkpoint(self) -> Path:
        """The model a finished run serves (student.pt), else its latest resumable checkpoint."""
        for candidate in (self.student_checkpoint, self.last_checkpoint):
            if candidate.is_file():
                return candidate
        raise UserError(f"{self.path} is a folder but holds no {self.student_checkpoint.relative_to(self.path)} "
                        f"or {self.last_checkpoint.relative_to(self.path)}")

    def create(self, config: dict) -> None:
        """Start a new run here: refuse a folder that already holds one."""
        if self.holds_run():
            raise FileExistsError(f"{self.path} already holds a run; pass --resume to continue it or choose "
                                  f"another --out")
        self.last_checkpoint.parent.mkdir(parents=True, exist_ok=True)
        self.samples_dir.mkdir(exist_ok=True)
        with atomic_open(self.config_file) as f:
            yaml.safe_dump(config, f, sort_keys=False)

    def check_resumable(self) -> None:
        if not self.last_checkpoint.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.last_checkpoint}")

    def read_config(self) -> dict:
        return load_yaml(self.config_file)

    # ----------------------------------------------------------- metrics
    def read_metrics(self) -> list[dict]:
        if not self.metrics_file.is_file():
            raise UserError(f"{self.path}: no metrics.jsonl (not a vidd fine-tuning run folder, or no iteration "
                            f"finished yet)")
        rows = []
        for n, line in enumerate(self.metrics_file.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"{self.metrics_file}: line {n} is not JSON ({e.msg})") from e
        return rows

    def append_metrics(self, row: dict, rows: list[dict]) -> None:
        """Append `row` to metrics.jsonl and rewrite metrics.csv from all `rows` (row included)."""
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._write_table(rows)

    def rewrite_metrics(self, rows: list[dict]) -> None:
        with atomic_open(self.metrics_file) as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        self._write_table(rows)

    def _write_table(self, rows: list[dict]) -> None:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_open(self.metrics_table) as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(rows)

    # ------------------------------------------------------- checkpoints
    def save_checkpoint(self, state: dict) -> None:
        atomic_torch_save(state, self.last_checkpoint)

    def load_checkpoint(self, map_location) -> dict:
        return torch.load(self.last_checkpoint, map_location=map_location, weights_only=False)

    # ------------------------------------------------------ final results
    def write_final_eval(self, report: dict) -> None:
        with atomic_open(self.final_eval_file) as f:
            json.dump(report, f, indent=2)

    def write_final_table(self, columns: dict[str, list]) -> None:
        write_table(self.final_table_file, columns)

    def read_final_eval(self) -> dict | None:
        return json.loads(self.final_eval_file.read_text()) if self.final_eval_file.is_file() else None
