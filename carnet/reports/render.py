"""Turn a Table into what the page template shows: formatted cells and the totals row."""

from __future__ import annotations

from carnet.clinic.selectors import clinic_get

from .table import DATE, INT, MONEY, Table


def _text(kind: str, value, clinic) -> str:
    if value is None:
        return ""
    if kind == MONEY:
        return str(clinic.money(value))
    if kind == DATE:
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return str(value)


def page_context(table: Table, *, links: dict | None = None) -> dict:
    """`links`: column key -> function(row) -> URL or None, for cells that link somewhere."""
    clinic, links = clinic_get(), links or {}
    rows = [
        [
            {
                "text": _text(c.kind, r.get(c.key), clinic),
                "num": c.kind in (MONEY, INT),
                "link": links[c.key](r) if c.key in links else None,
            }
            for c in table.columns
        ]
        for r in table.rows
    ]
    totals = table.totals
    totals_row = None
    if totals:
        totals_row = [
            {
                "text": _text(c.kind, totals[c.key], clinic)
                if c.key in totals
                else ("Total" if i == 0 else ""),
                "num": c.key in totals,
            }
            for i, c in enumerate(table.columns)
        ]
    return {"table": table, "rows": rows, "totals_row": totals_row}
