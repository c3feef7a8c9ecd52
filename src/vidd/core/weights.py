"""Model weights that vidd cannot download: where it looks for them and what to do when they are missing.

Large models (ESMFold, ESM-2, EvoDiff) are never fetched at run time. A `WeightsSource` names the weights,
the task setting and the environment variable that point vidd at a local copy, and the exact commands that
fetch them on a machine with internet access; `resolve` returns the local path or raises `WeightsMissing`
with all of that in the message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vidd.core.errors import UserError


class WeightsMissing(UserError, FileNotFoundError):
    """Model weights are not where vidd looks; the message says how to put them in place."""


@dataclass(frozen=True)
class WeightsSource:
    name: str  # what the weights are, e.g. "ESMFold v1"
    env: str  # the environment variable holding the local path
    setting: str  # the task setting holding it, e.g. "task.esmfold_path"
    fetch: str  # shell commands that download them on a machine with internet access
    kind: str = "folder"  # "folder" (a Hugging Face model folder: config.json + weights) or "file"

    def steps(self) -> str:
        return (f"on a machine with internet access run `{self.fetch}`, copy the {self.kind} here, then set "
                f"{self.env}=/path/to/it (or --set {self.setting}=/path/to/it)")

    def missing(self, why: str) -> WeightsMissing:
        return WeightsMissing(f"{self.name} weights {why}; vidd never downloads them: {self.steps()}")

    def resolve(self, path: str | Path | None = None) -> Path:
        """The local weights: `path` if given, else ${env}; checked to exist (a folder needs a config.json)."""
        given = str(path or os.environ.get(self.env, ""))
        if not given:
            raise self.missing(f"not configured (neither {self.setting} nor ${self.env} is set)")
        found = Path(given).expanduser()
        if self.kind == "file" and not found.is_file():
            raise self.missing(f"not found: no file {found}")
        if self.kind == "folder" and not (found / "config.json").is_file():
            raise self.missing(f"not found: {found} is not a model folder (no config.json)")
        return found
