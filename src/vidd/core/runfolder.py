"""The layout of a fine-tuning run folder, in one place: every reader and writer of a run goes through
`RunFolder` (the trainer, `vidd finetune / sample / report / bench`, the report).

    RUN/config.yaml             the run's settings (as they are now; changes on resume: config_history.jsonl)
    RUN/config_history.jsonl    one JSON row per resume that changed a setting, with the iteration it took effect
    RUN/metrics.jsonl           one JSON row per iteration (metrics.csv: the same as a table)
    RUN/samples/                iter_XXXXX<suffix> evaluation samples, final<suffix> (with their scores)
    RUN/samples/final.tsv       one row per final sample: sequence, rewards, log-likelihood (docs/metrics.md)
    RUN/samples/pretrained.tsv  samples of the pretrained model a task draws for its report's comparisons (molecules)
    RUN/checkpoints/last.pt     the resumable state (atomic, safe to load, carries its content hash)
    RUN/checkpoints/student/    the fine-tuned model (a model folder), written when the run ends
    RUN/final_eval.json         the final evaluation
    RUN/report_tables.json      the task's tables of the final samples (e.g. the most common designs)
    RUN/figures/                the task's figures of the final samples (molecules: the best designs, distributions),
                                listed with their titles in RUN/report_figures.json
    RUN/curves.png, RUN/report.html
    RUN/tensorboard/, RUN/wandb/  experiment trackers' files (config `report_to`)
    RUN/IN_PROGRESS             present while the run is being trained or after it was interrupted
    RUN/.lock                   locked (flock) by the process writing the run; holds its pid
"""

from __future__ import annotations

import csv
import datetime
import errno
import fcntl
import json
import logging
import os
import shutil
from pathlib import Path

import yaml

from vidd.core.atomic import atomic_open
from vidd.core.config import load_yaml
from vidd.core.seqio import write_table
from vidd.core.errors import UserError, read_text
from vidd.core.safefiles import CheckpointError, load_state, save_state

log = logging.getLogger(__name__)

#: `format` of a run checkpoint (checkpoints/last.pt)
TRAINER_STATE_FORMAT = "vidd-trainer-state-2"
IN_PROGRESS_NOTE = ("This run is being trained, or was interrupted (resume it with `vidd finetune TASK --resume "
                    "RUN`).\ncheckpoints/student/ and final_eval.json are written when it ends.\n")


class RunLockedError(UserError):
    """The run folder is being written by another process."""


class RunFolder:
    def __init__(self, path: str | Path, trust_checkpoint: bool = False):
        self.path = Path(path)
        #: read a checkpoint without a content hash (vidd 0.1) by a restricted unpickler (the user's explicit choice)
        self.trust_checkpoint = trust_checkpoint

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------- paths
    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def history_file(self) -> Path:
        return self.path / "config_history.jsonl"

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
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / "last.pt"

    @property
    def student_checkpoint(self) -> Path:
        return self.checkpoints_dir / "student"

    @property
    def legacy_student_checkpoint(self) -> Path:
        """Where vidd 0.1 wrote the fine-tuned model (a pickled `.pt`)."""
        return self.checkpoints_dir / "student.pt"

    @property
    def final_eval_file(self) -> Path:
        return self.path / "final_eval.json"

    @property
    def report_tables_file(self) -> Path:
        return self.path / "report_tables.json"

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    @property
    def report_figures_file(self) -> Path:
        return self.path / "report_figures.json"

    @property
    def prior_table_file(self) -> Path:
        return self.samples_dir / "pretrained.tsv"

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

    @property
    def eval_scores_file(self) -> Path:
        """The journal of a cached evaluation reward's scores (`CachedReward.keep_in`)."""
        return self.path / "eval_scores.tsv"

    @property
    def reward_scores_file(self) -> Path:
        """The journal of a `vidd bench` sampling cell's training-reward scores."""
        return self.path / "reward_scores.tsv"

    @property
    def progress_marker(self) -> Path:
        return self.path / "IN_PROGRESS"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    def samples_file(self, stem: str, suffix: str) -> Path:
        return self.samples_dir / f"{stem}{suffix}"

    # ------------------------------------------------------------- state
    def holds_run(self) -> bool:
        return self.metrics_file.exists() or self.last_checkpoint.exists()

    def in_progress(self) -> bool:
        return self.progress_marker.exists()

    def model_checkpoint(self) -> tuple[Path, bool]:
        """(path, final): the fine-tuned model of a finished run, else (a run in progress or interrupted)
        its latest checkpoint, which is no final model."""
        if not self.in_progress():
            for candidate in (self.student_checkpoint, self.legacy_student_checkpoint):
                if candidate.exists():
                    return candidate, True
        if self.last_checkpoint.is_file():
            return self.last_checkpoint, False
        raise UserError(f"{self.path} is a folder but holds no fine-tuned model "
                        f"({self.student_checkpoint.relative_to(self.path)}) and no checkpoint "
                        f"({self.last_checkpoint.relative_to(self.path)})")

    def check_writable(self) -> None:
        """A run folder can be made (or written) here: the path is no file and its nearest existing folder
        lets this user write."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"run folder {self.path}: exists and is not a folder")
        existing = next(p for p in (self.path, *self.path.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise UserError(f"run folder {self.path}: cannot be made, {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"run folder {self.path}: not writable ({existing} does not let this user write)")

    def lock(self) -> "FolderLock":
        """An exclusive lock on this run folder (`with folder.lock(): ...`), made if missing."""
        return FolderLock(self)

    def check_new(self) -> None:
        """A new run may start here: the folder holds none."""
        if self.holds_run():
            raise FileExistsError(f"{self.path} already holds a run; pass --resume to continue it or choose "
                                  f"another --out")

    def create(self, config: dict) -> None:
        """Start a new run here (under `lock()`): refuse a folder that already holds one."""
        self.check_new()
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        self.samples_dir.mkdir(exist_ok=True)
        self._mark_in_progress()
        self._write_config(config)

    def reopen(self, config: dict, changes: dict, iteration: int) -> None:
        """Continue the run here (under `lock()`): mark it in progress, remove what a crash left half-written,
        set aside its final results (they describe an earlier end) and record the settings `changes`
        ({field: [old, new]}) as taking effect at checkpoint `iteration`."""
        self._mark_in_progress()
        self.clean_stale_temporaries()
        stale = [p for p in (self.final_eval_file, self.student_checkpoint, self.legacy_student_checkpoint,
                             self.report_tables_file, self.report_figures_file, self.figures_dir,
                             *self.samples_dir.glob("final.*")) if p.exists()]
        for p in stale:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        if stale:
            log.warning("resuming %s: removed the final results of its earlier end (%s); they are written "
                        "again when the run ends", self.path, ", ".join(str(p.relative_to(self.path)) for p in stale))
        if changes:
            record = {"iteration": iteration, "changes": changes,
                      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            with open(self.history_file, "a") as f:
                f.write(json.dumps(record) + "\n")
            self._write_config(config)

    def mark_finished(self) -> None:
        self.progress_marker.unlink(missing_ok=True)

    def _mark_in_progress(self) -> None:
        with atomic_open(self.progress_marker) as f:
            f.write(IN_PROGRESS_NOTE)

    def _write_config(self, config: dict) -> None:
        with atomic_open(self.config_file) as f:
            yaml.safe_dump(config, f, sort_keys=False)

    def clean_stale_temporaries(self) -> None:
        """Remove the temporary files and folders (`.NAME.*.tmp`) an atomic write killed midway left behind."""
        stale = [p for d in (self.path, self.checkpoints_dir, self.samples_dir) if d.is_dir()
                 for p in d.glob(".*.tmp")]
        for p in stale:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        if stale:
            log.warning("%s: removed %d temporary file(s) of an interrupted write: %s", self.path, len(stale),
                        ", ".join(p.name for p in stale))

    def check_resumable(self) -> None:
        if not self.last_checkpoint.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.last_checkpoint}")

    def read_config(self) -> dict:
        return load_yaml(self.config_file)

    def read_history(self) -> list[dict]:
        if not self.history_file.is_file():
            return []
        return [json.loads(line) for line in self.history_file.read_text().splitlines() if line.strip()]

    # ----------------------------------------------------------- metrics
    def read_metrics(self) -> list[dict]:
        """The rows of metrics.jsonl. A last line cut off by a kill during its append (no line end, not
        JSON) is dropped with a warning; any other line that is not JSON is an error."""
        if not self.metrics_file.is_file():
            raise UserError(f"{self.path}: no metrics.jsonl (not a vidd fine-tuning run folder, or no iteration "
                            f"finished yet)")
        lines = read_text(self.metrics_file, "JSON lines").split("\n")
        rows = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if n == len(lines):  # the last line has no line end: an append cut off
                    log.warning("%s: dropped its last line, cut off while it was written (%d characters)",
                                self.metrics_file, len(line))
                    break
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
        save_state({"format": TRAINER_STATE_FORMAT, **state}, self.last_checkpoint)

    def load_checkpoint(self, map_location="cpu") -> dict:
        """The state of checkpoints/last.pt, read safely and checked against its hash (a vidd 0.1 checkpoint
        only with `trust_checkpoint`)."""
        if not self.last_checkpoint.is_file():
            self.check_resumable()
        state = load_state(self.last_checkpoint, map_location, trust=self.trust_checkpoint)
        if state.get("format", TRAINER_STATE_FORMAT) != TRAINER_STATE_FORMAT or "model" not in state:
            raise CheckpointError(f"{self.last_checkpoint}: not a vidd run checkpoint (format "
                                  f"{state.get('format')!r})")
        return state

    # ------------------------------------------------------ final results
    def write_final_eval(self, report: dict) -> None:
        _write_json(self.final_eval_file, report)

    def write_final_table(self, columns: dict[str, list]) -> None:
        write_table(self.final_table_file, columns)

    def read_final_eval(self) -> dict | None:
        return _read_json(self.final_eval_file, None)

    def write_report_tables(self, tables: list[dict]) -> None:
        _write_json(self.report_tables_file, tables)

    def read_report_tables(self) -> list[dict]:
        return _read_json(self.report_tables_file, [])

    def write_report_figures(self, figures: list[dict]) -> None:
        _write_json(self.report_figures_file, figures)

    def read_report_figures(self) -> list[dict]:
        return _read_json(self.report_figures_file, [])


def _write_json(path: Path, data) -> None:
    with atomic_open(path) as f:
        json.dump(data, f, indent=2)


def _read_json(path: Path, missing):
    """The JSON in `path`, or `missing` when there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else missing


class FolderLock:
    """An exclusive `flock` on RUN/.lock, held while a process writes the run. The kernel releases it when
    the process dies, however it dies; the pid written in the file names the holder in the error a second
    writer gets, and a pid left there by a killed holder is reported when the lock is taken over."""

    def __init__(self, folder: RunFolder):
        self.folder = folder
        self.fd: int | None = None

    def __enter__(self) -> "FolderLock":
        path = self.folder.lock_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _pid_in(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RunLockedError(
                f"{self.folder.path} is in use by another vidd process (pid {holder or 'unknown'}); wait for it "
                f"to end, or stop it, before running on this folder") from None
        previous = _pid_in(fd)
        if previous and previous != os.getpid():
            log.warning("%s: took over the lock that pid %d left behind (%s)", self.folder.path, previous,
                        "a stale lock: that process no longer runs" if not _alive(previous) else
                        "it does not hold the lock")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        os.ftruncate(self.fd, 0)  # a released lock names no holder
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _pid_in(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
