"""Tables a task adds to a run's report from the run's final samples (`Task.report_tables`), e.g. the most
common designs with their counts, so that a collapse onto a few designs shows at once. They are stored in
the run folder (report_tables.json) and drawn by `vidd.eval.report`."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

#: rows of a most-common-designs table
TOP_DESIGNS = 10


@dataclass
class ReportTable:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DesignCounts:
    """The distinct samples of a set, most common first (ties in order of first appearance)."""

    seqs: list[str]
    counts: list[tuple[str, int]] = field(init=False)

    def __post_init__(self):
        self.counts = Counter(self.seqs).most_common()

    def table(self, columns: dict[str, Callable[[str], Any]] | None = None, n: int = TOP_DESIGNS,
              title: str = "Most common final samples", note: str = "") -> ReportTable:
        """The `n` most common samples: rank, `columns` (name -> value of a sample; default: the sample
        itself), count and share of the set."""
        columns = columns or {"sequence": lambda s: s}
        rows = [[rank, *(f(s) for f in columns.values()), count, f"{count / len(self.seqs):.1%}"]
                for rank, (s, count) in enumerate(self.counts[:n], start=1)]
        note = note or (f"{len(self.counts)} distinct of {len(self.seqs)} samples"
                        + (f"; the {n} most common shown" if len(self.counts) > n else ""))
        return ReportTable(title, ["rank", *columns, "count", "share"], rows, note)
