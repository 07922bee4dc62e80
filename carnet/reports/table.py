"""One shape for every report (SPEC 10): columns, rows and a totals row. The page, the CSV, the
XLSX and the API all render the same Table, so their totals cannot disagree."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

MONEY, INT, DATE, TEXT = "money", "int", "date", "text"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = TEXT  # money (minor units), int, date, text
    total: bool = False  # summed into the totals row


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[dict] = field(default_factory=list)
    filters: dict = field(
        default_factory=dict
    )  # what the rows were selected by, for the export header
    notes: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict:
        return {c.key: sum(r.get(c.key) or 0 for r in self.rows) for c in self.columns if c.total}

    def as_json(self) -> dict:
        def plain(value):
            return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value

        return {
            "title": self.title,
            "filters": {k: plain(v) for k, v in self.filters.items()},
            "columns": [{"key": c.key, "label": c.label, "kind": c.kind} for c in self.columns],
            "rows": [{c.key: plain(r.get(c.key)) for c in self.columns} for r in self.rows],
            "totals": self.totals,
            "notes": self.notes,
        }
