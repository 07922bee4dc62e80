"""Cells written into files a spreadsheet may open (CSV, XLSX): text that a spreadsheet would run as
a formula is neutralised (OWASP "CSV injection"), so a patient named "=HYPERLINK(…)" stays text.
One helper for every export, so the rule lives in one place."""

from __future__ import annotations

# What Excel, LibreOffice and Google Sheets start a formula (or a DDE call) with.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value):
    """`value` unchanged unless it is text starting like a formula; that gets a leading apostrophe,
    which spreadsheets show as plain text. Numbers (a negative amount) are left alone."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def row_safe(values) -> list:
    return [formula_safe(v) for v in values]
