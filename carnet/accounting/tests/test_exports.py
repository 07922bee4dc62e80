"""Journal exports: three formats checked against their published column sets, every journal
balanced, totals tied to the trial balance, mapping required, overlap warned, changes listed."""

import csv
import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal

import pytest
from django.urls import reverse

from carnet.accounting import formats
from carnet.accounting.formats import QBO_COLUMNS, XERO_COLUMNS, XERO_MAX_LINES
from carnet.accounting.models import JournalExport
from carnet.accounting.selectors import (
    changed_since_export,
    general_ledger,
    period_journals,
    trial_balance,
)
from carnet.accounting.services import account_mapping_set, journal_export
from carnet.billing.payments import payment_receive
from carnet.billing.tests.factories import manual_invoice
from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import Conflict, NotAllowed, ValidationFailed
from carnet.core.permissions import AccessLevel
from carnet.ledger.models import Account
from carnet.ledger.services import Line, transaction_post
from carnet.passes.tests.factories import at
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db
MAY1, MAY31 = dt.date(2026, 5, 1), dt.date(2026, 5, 31)


@pytest.fixture
def books(db, catalog):
    """A month of activity: invoices, payments (one overpaid into credit), across several days."""
    clinic_set(time_zone="America/Toronto")
    admin = make_staff(AccessLevel.ADMIN_BILLING)
    for day in (2, 3, 3, 17):
        with clock.frozen(at(f"2026-05-{day:02d}", "10:00")):
            patient = make_patient(first_name='=HYPERLINK("http://x")')
            invoice = manual_invoice(
                admin, patient, 10000, 2550, category=catalog["income_category"]
            )
            payment_receive(
                actor=admin.user,
                patient=patient,
                method="cash",
                amount_minor=invoice.total_minor + 500,
                allocations=[(invoice, invoice.total_minor)],
            )
    return admin.user


def _map_all(user):
    for n, account in enumerate(Account.objects.order_by("code"), start=1):
        account_mapping_set(
            actor=user, account_code=account.code, name=f"Carnet {account.name}", code=str(200 + n)
        )


def _rows(text):
    return list(csv.reader(io.StringIO(text)))


def test_the_trial_balance_balances_and_its_movements_are_the_exports(books):
    rows = trial_balance(start=MAY1, end=MAY31)
    assert sum(r["debits"] for r in rows) == sum(r["credits"] for r in rows) > 0
    assert sum(r["closing"] for r in rows) == 0
    later = trial_balance(start=dt.date(2026, 6, 1), end=dt.date(2026, 6, 30))
    assert all(r["debits"] == r["credits"] == 0 and r["opening"] == r["closing"] for r in later)
    period = period_journals(start=MAY1, end=MAY31)
    net = period.net_by_account()
    assert {r["code"]: r["debits"] - r["credits"] for r in rows} == {
        c: net.get(c, 0) for c in (r["code"] for r in rows)
    }
    assert [j.date.day for j in period.journals] == [2, 3, 17]  # one per day by default
    assert all(sum(a for _, a in j.lines) == 0 for j in period.journals)
    detailed = period_journals(start=MAY1, end=MAY31, detailed=True)
    assert len(detailed.journals) == detailed.txn_count and detailed.net_by_account() == net


def test_the_general_ledger_runs_each_account_from_its_opening(books):
    rows = general_ledger(start=dt.date(2026, 5, 3), end=MAY31, account="accounts_receivable")
    opening = trial_balance(start=dt.date(2026, 5, 3), end=MAY31)
    ar = next(r for r in opening if r["code"] == "accounts_receivable")
    assert (
        rows[-1]["balance"] == ar["closing"]
        and rows[0]["balance"] == ar["opening"] + rows[0]["debit"] - rows[0]["credit"]
    )


def test_an_export_is_refused_until_every_account_with_postings_is_mapped(books):
    with pytest.raises(Conflict, match="Map every account"):
        journal_export(actor=books, fmt="qbo", start=MAY1, end=MAY31)
    _map_all(books)
    assert journal_export(actor=books, fmt="qbo", start=MAY1, end=MAY31).batch.journals == 3
    assert JournalExport.objects.count() == 1


def test_quickbooks_online_csv_has_its_columns_and_each_journal_balances(books):
    _map_all(books)
    export = journal_export(actor=books, fmt="qbo", start=MAY1, end=MAY31, detailed=True)
    ((name, text),) = export.files
    rows = _rows(text)
    assert name.endswith(".csv") and rows[0] == QBO_COLUMNS
    per_journal = defaultdict(Decimal)
    for r in rows[1:]:
        assert dt.datetime.strptime(r[1], "%m/%d/%Y") and r[2].startswith("Carnet ")
        assert bool(r[3]) != bool(r[4])  # a line is a debit or a credit
        per_journal[r[0]] += Decimal(r[3] or 0) - Decimal(r[4] or 0)
    assert per_journal and all(v == 0 for v in per_journal.values())
    assert sum(Decimal(r[3] or 0) for r in rows[1:]) * 100 == export.batch.debits_minor


def test_xero_csv_is_split_at_300_lines_between_journals_each_file_balanced(books, monkeypatch):
    _map_all(books)
    monkeypatch.setattr(formats, "XERO_MAX_LINES", 5)
    export = journal_export(actor=books, fmt="xero", start=MAY1, end=MAY31, detailed=True)
    assert len(export.files) > 1 and all("-part" in name for name, _ in export.files)
    for _, text in export.files:
        rows = _rows(text)
        assert rows[0] == XERO_COLUMNS and 1 <= len(rows) - 1 <= 5
        assert sum(Decimal(r[5]) for r in rows[1:]) == 0
        assert all(
            dt.datetime.strptime(r[1], "%d/%m/%Y") and r[3].isdigit() and r[4] == "Tax Exempt"
            for r in rows[1:]
        )
    assert XERO_MAX_LINES == 300


def test_quickbooks_desktop_iif_has_trns_spl_endtrns_blocks_that_balance(books):
    _map_all(books)
    ((name, text),) = journal_export(actor=books, fmt="iif", start=MAY1, end=MAY31).files
    lines = [line.split("\t") for line in text.split("\r\n") if line]
    assert name.endswith(".iif") and [row[0] for row in lines[:3]] == ["!TRNS", "!SPL", "!ENDTRNS"]
    assert lines[0][1:] == ["TRNSID", "TRNSTYPE", "DATE", "ACCNT", "NAME", "AMOUNT", "MEMO"]
    total, blocks = Decimal(0), 0
    for line in lines[3:]:
        if line[0] == "ENDTRNS":
            assert total == 0
            blocks += 1
            continue
        assert line[0] in ("TRNS", "SPL") and line[2] == "GENERAL JOURNAL"
        total += Decimal(line[6])
    assert blocks == 3


def test_text_that_a_spreadsheet_would_run_is_neutralised(books):
    _map_all(books)
    ((_, text),) = journal_export(
        actor=books, fmt="qbo", start=MAY1, end=MAY31, detailed=True
    ).files
    descriptions = [r[5] for r in _rows(text)[1:]]
    assert not any(d.startswith(("=", "+", "-", "@")) for d in descriptions)
    with pytest.raises(ValidationFailed, match="cannot start with"):
        account_mapping_set(
            actor=books, account_code="accounts_receivable", name="=cmd|' /C calc'!A0"
        )


def test_an_overlapping_period_warns_and_a_later_back_dated_posting_is_listed(
    books, catalog, client
):
    _map_all(books)
    first = journal_export(actor=books, fmt="xero", start=MAY1, end=MAY31).batch
    with pytest.raises(Conflict, match="overlaps what was already exported"):
        journal_export(actor=books, fmt="qbo", start=dt.date(2026, 5, 15), end=dt.date(2026, 6, 15))
    assert changed_since_export(first) == []
    with clock.frozen(
        at("2026-06-02", "09:00")
    ):  # e.g. opening balances imported with a May cut-over
        transaction_post(
            kind="opening_balance",
            at=at("2026-05-20", "00:00"),
            memo="late",
            lines=[
                Line("opening_balance_equity", debit=700),
                Line("gift_card_liability", credit=700),
            ],
        )
        _map_all(books)
    changed = changed_since_export(first)
    assert len(changed) == 1 and changed[0].kind
    client.force_login(books)
    html = client.get(reverse("accounting:export", args=[first.pk])).content.decode()
    assert "<td>Opening balance</td>" in html and "opening_balance" not in html  # words, not codes
    again = journal_export(actor=books, fmt="qbo", start=MAY1, end=MAY31, allow_overlap=True)
    assert again.batch.txn_count == first.txn_count + 1


def test_only_administrative_billing_and_up_export(books):
    front = make_staff(AccessLevel.FRONT_DESK).user
    with pytest.raises(NotAllowed):
        journal_export(actor=front, fmt="qbo", start=MAY1, end=MAY31)
    with pytest.raises(NotAllowed):
        account_mapping_set(actor=front, account_code="accounts_receivable", name="A/R")
