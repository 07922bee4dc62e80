"""The trial balance and general ledger as report Tables (SPEC 10's one shape: page, CSV, XLSX)."""

from __future__ import annotations

import datetime as dt

from carnet.reports.table import DATE, INT, MONEY, Column, Table

from .selectors import general_ledger, trial_balance


def _sides(signed: int) -> tuple[int, int]:
    return (signed, 0) if signed >= 0 else (0, -signed)


def trial_balance_table(*, start: dt.date, end: dt.date) -> Table:
    rows = []
    for r in trial_balance(start=start, end=end):
        opening_dr, opening_cr = _sides(r["opening"])
        closing_dr, closing_cr = _sides(r["closing"])
        rows.append(
            {
                "code": r["code"],
                "account": r["account"],
                "type": r["type"].title(),
                "opening_debit": opening_dr,
                "opening_credit": opening_cr,
                "debits": r["debits"],
                "credits": r["credits"],
                "closing_debit": closing_dr,
                "closing_credit": closing_cr,
            }
        )
    return Table(
        title="Trial balance",
        rows=rows,
        filters={"start": start, "end": end},
        columns=[
            Column("account", "Account"),
            Column("code", "Code"),
            Column("type", "Type"),
            Column("opening_debit", "Opening debit", MONEY, True),
            Column("opening_credit", "Opening credit", MONEY, True),
            Column("debits", "Debits", MONEY, True),
            Column("credits", "Credits", MONEY, True),
            Column("closing_debit", "Closing debit", MONEY, True),
            Column("closing_credit", "Closing credit", MONEY, True),
        ],
        notes=[
            "Days in the clinic's time zone. Debits and credits are every posting of the period, "
            "each patient's A/R and credit summed into their account; debit and credit columns "
            "each add up to the same total."
        ],
    )


def general_ledger_table(*, start: dt.date, end: dt.date, account: str | None = None) -> Table:
    rows = [
        {**r, "patient": r["patient"] or ""}
        for r in general_ledger(start=start, end=end, account=account)
    ]
    return Table(
        title="General ledger",
        rows=rows,
        filters={"start": start, "end": end, "account": account or ""},
        columns=[
            Column("account", "Account"),
            Column("date", "Date", DATE),
            Column("transaction", "Transaction", INT),
            Column("kind", "Kind"),
            Column("memo", "Memo"),
            Column("patient", "Patient #"),
            Column("debit", "Debit", MONEY, True),
            Column("credit", "Credit", MONEY, True),
            Column("balance", "Balance (debit +)", MONEY),
        ],
        notes=[
            "Each account from its opening balance, in time order; the balance is debits - credits."
        ],
    )
