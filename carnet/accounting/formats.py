"""The journal files each accounting product imports (SPEC 15), from balanced journals:

- QuickBooks Online, journal entries CSV: Journal No, Journal Date (MM/DD/YYYY), Account Name,
  Debits, Credits, Description, Name, Location; rows sharing a Journal No are one entry.
- Xero, manual journals CSV: Narration, Date (DD/MM/YYYY), Description, AccountCode, TaxRate,
  Amount (positive = debit, negative = credit); rows sharing Narration and Date are one journal; at
  most 300 lines per file, so longer exports are split between journals, each file balanced.
- QuickBooks Desktop IIF: tab-separated !TRNS/!SPL/!ENDTRNS headers, then per journal one TRNS
  line, SPL lines and ENDTRNS; AMOUNT positive = debit; TRNSTYPE GENERAL JOURNAL.

Text cells go through core.spreadsheet.formula_safe: these files are opened in spreadsheets.
"""

from __future__ import annotations

import csv
import io

from carnet.core.errors import ValidationFailed
from carnet.core.money import major  # a number, not text: formula_safe leaves negatives alone
from carnet.core.spreadsheet import row_safe

from .selectors import Journal

QBO_COLUMNS = [
    "Journal No",
    "Journal Date",
    "Account Name",
    "Debits",
    "Credits",
    "Description",
    "Name",
    "Location",
]
XERO_COLUMNS = ["Narration", "Date", "Description", "AccountCode", "TaxRate", "Amount"]
XERO_MAX_LINES = 300  # Xero's limit per imported file
IIF_HEADER = [
    ["!TRNS", "TRNSID", "TRNSTYPE", "DATE", "ACCNT", "NAME", "AMOUNT", "MEMO"],
    ["!SPL", "SPLID", "TRNSTYPE", "DATE", "ACCNT", "NAME", "AMOUNT", "MEMO"],
    ["!ENDTRNS"],
]
DEFAULT_XERO_TAX_RATE = "Tax Exempt"


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow(row_safe(row))
    return buffer.getvalue()


def qbo(
    journals: list[Journal], *, names: dict[str, str], places: int, stem: str
) -> list[tuple[str, str, int]]:
    rows = [QBO_COLUMNS]
    for j in journals:
        for code, amount in j.lines:
            rows.append(
                [
                    j.number,
                    f"{j.date:%m/%d/%Y}",
                    names[code],
                    major(amount, places) if amount > 0 else "",
                    major(-amount, places) if amount < 0 else "",
                    j.narration,
                    "",
                    "",
                ]
            )
    return [(f"{stem}.csv", _csv(rows), len(rows) - 1)]


def xero(
    journals: list[Journal],
    *,
    codes: dict[str, str],
    tax_rates: dict[str, str],
    places: int,
    stem: str,
) -> list[tuple[str, str, int]]:
    files, rows = [], []
    for j in journals:
        if len(j.lines) > XERO_MAX_LINES:
            raise ValidationFailed(
                f"Journal {j.number} has {len(j.lines)} lines, more than Xero takes in one file "
                f"({XERO_MAX_LINES}); export it summarised.",
                code="journal_too_long",
            )
        if len(rows) + len(j.lines) > XERO_MAX_LINES:  # a journal never straddles two files
            files.append(rows)
            rows = []
        rows += [
            [
                j.narration,
                f"{j.date:%d/%m/%Y}",
                j.narration,
                codes[code],
                tax_rates.get(code) or DEFAULT_XERO_TAX_RATE,
                major(amount, places),
            ]
            for code, amount in j.lines
        ]
    if rows:
        files.append(rows)
    many = len(files) > 1
    return [
        (f"{stem}{f'-part{n}' if many else ''}.csv", _csv([XERO_COLUMNS, *part]), len(part))
        for n, part in enumerate(files, start=1)
    ]


def _iif_text(value: str) -> str:
    # Tabs and line breaks would break the file's structure; quotes confuse its reader.
    return " ".join(str(value).replace('"', "'").split())


def iif(
    journals: list[Journal], *, names: dict[str, str], places: int, stem: str
) -> list[tuple[str, str, int]]:
    out = [*IIF_HEADER]
    count = 0
    for j in journals:
        for n, (code, amount) in enumerate(j.lines):
            out.append(
                row_safe(
                    [
                        "TRNS" if n == 0 else "SPL",
                        "",
                        "GENERAL JOURNAL",
                        f"{j.date:%m/%d/%Y}",
                        _iif_text(names[code]),
                        "",
                        major(amount, places),
                        _iif_text(j.narration),
                    ]
                )
            )
            count += 1
        out.append(["ENDTRNS"])
    return [(f"{stem}.iif", "".join("\t".join(str(v) for v in row) + "\r\n" for row in out), count)]
