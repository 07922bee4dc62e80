"""Switching in and closing the month, end to end: a generated clinic of 500 patients, 800
packages (some partly paid) and memberships mid-term imported, some uses redeemed, membership fees
earned and the next cycles invoiced, the month exported in every format: every journal balances
and the files equal the trial balance."""

import csv
import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal

import pytest

from carnet.accounting.selectors import trial_balance
from carnet.accounting.services import account_mapping_set, journal_export
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.imports.generate import clinic_files
from carnet.imports.services import import_commit
from carnet.ledger import accounts
from carnet.ledger.models import Account
from carnet.ledger.selectors import balance
from carnet.passes.cycles import memberships_recognise
from carnet.passes.memberships.cycle_billing import cycles_issue
from carnet.passes.models import Pass
from carnet.passes.tests.factories import at, membership_template, package_template, practitioner
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


def test_a_generated_clinic_switches_in_is_used_and_exports_balanced_journals(catalog):
    clinic_set(time_zone="America/Toronto", allow_double_booking=True)
    with clock.frozen(at("2026-05-01", "08:00")):
        owner = make_staff(AccessLevel.ACCOUNT_OWNER)
        package_template(catalog, name="Switched pack", price=10000, quantity=10)
        membership_template(catalog, name="Switched monthly", price=6000, uses=4)
        files = clinic_files(
            patients=500,
            passes=800,
            template_name="Switched pack",
            membership_name="Switched monthly",
        )
        opening = 0
        for kind in ("patients", "packages", "memberships", "credit", "gift_cards"):
            batch = import_commit(
                actor=owner.user,
                kind=kind,
                data=files[kind],
                file_name=f"{kind}.csv",
                cut_over=dt.date(2026, 5, 1),
            )
            assert batch.skipped == 0 and batch.created > 0
            opening += batch.money_minor
        assert Pass.objects.filter(kind="package").count() == 800
        assert Pass.objects.filter(kind="membership").count() == 56
        owed = balance(accounts.AR)  # the partly paid packages' balances
        assert owed > 0 and balance(accounts.OPENING_BALANCE_EQUITY) == -(opening - owed)
        again = import_commit(
            actor=owner.user, kind="packages", data=files["packages"], file_name="again.csv"
        )
        assert (again.created, again.skipped) == (0, 800)
        assert_ledger_ok()

    prac = practitioner(catalog["location"])
    used = list(
        Pass.objects.filter(
            kind="package", used_before_import__lt=3, pass_invoices__isnull=True
        ).order_by("pk")[:12]
    )
    for n, sold in enumerate(used):
        with clock.frozen(at("2026-05-12", "08:00")):
            appointment = appointment_book(
                actor=owner.user,
                treatment=catalog["treatment"],
                practitioner=prac,
                location=catalog["location"],
                start=at("2026-05-12", f"{9 + n % 8:02d}:00"),
                patients=[sold.patient],
            )
            appointment_arrive(actor=owner.user, appointment=appointment)
    with clock.frozen(at("2026-05-20", "06:00")):
        memberships_recognise(today=dt.date(2026, 5, 20))
        assert cycles_issue(today=dt.date(2026, 5, 20))
    assert_ledger_ok()

    for account in Account.objects.all():
        account_mapping_set(
            actor=owner.user,
            account_code=account.code,
            name=f"QB {account.name}",
            code=str(100 + account.pk),
        )
    expected = {
        r["code"]: r["debits"] - r["credits"]
        for r in trial_balance(start=dt.date(2026, 5, 1), end=dt.date(2026, 5, 31))
    }
    names = {f"QB {a.name}": a.code for a in Account.objects.all()}
    codes = {str(100 + a.pk): a.code for a in Account.objects.all()}
    for fmt, detailed in (("qbo", False), ("xero", True), ("iif", False)):
        export = journal_export(
            actor=owner.user,
            fmt=fmt,
            start=dt.date(2026, 5, 1),
            end=dt.date(2026, 5, 31),
            detailed=detailed,
            allow_overlap=True,
        )
        net, journals = defaultdict(Decimal), defaultdict(Decimal)
        for name, text in export.files:
            if fmt == "qbo":
                for row in list(csv.reader(io.StringIO(text)))[1:]:
                    amount = Decimal(row[3] or 0) - Decimal(row[4] or 0)
                    net[names[row[2]]] += amount
                    journals[row[0]] += amount
            elif fmt == "xero":
                rows = list(csv.reader(io.StringIO(text)))[1:]
                assert len(rows) <= 300 and sum(Decimal(r[5]) for r in rows) == 0
                for row in rows:
                    net[codes[row[3]]] += Decimal(row[5])
                    journals[(row[0], row[1])] += Decimal(row[5])
            else:
                block = Decimal(0)
                for line in text.split("\r\n"):
                    cells = line.split("\t")
                    if cells[0] in ("TRNS", "SPL"):
                        net[names[cells[4]]] += Decimal(cells[6])
                        block += Decimal(cells[6])
                    elif cells[0] == "ENDTRNS":
                        assert block == 0
                        block = Decimal(0)
        assert all(v == 0 for v in journals.values()), fmt
        assert {c: int(v * 100) for c, v in net.items() if v} == {
            c: v for c, v in expected.items() if v
        }, fmt
