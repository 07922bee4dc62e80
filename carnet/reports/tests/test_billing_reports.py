"""Billing reports (SPEC 10, 5.6, 8) against hand-computed numbers on one small fixed data set,
built with the services. Times are in the clinic's zone (America/Toronto).

The data set (income categories C = the catalog's, P = "Products"; no tax unless said):
- Practitioner A: rates C 40 %, P 20 %. Seller S (Front Desk): rate C 10 %. Front desk F (level 40).
- 2026-03-01  I-old: P2, 50.00 manual line (C), no staff; never paid.
- 2026-05-04  I1: P1, 100.00 manual line (P), staff A. 40.00 cash paid the same day
  (F's colleague, owner).
- 2026-05-05  package "Five" (C, 500.00, 5 sessions, item: additional charge 10.00, compensation
              80.00) sold to P2, no seller; paid 500.00 card (manual).
- 2026-05-06  package "Two" (C, 200.00, 2 sessions) sold to P1 by S (upfront); 100.00 cash paid.
- 2026-05-12  P2's 09:00 massage with A, covered by "Five"; arrived 10:00: invoice 10.00 + 13 % =
              11.30 (the treatment's tax); 100.00 of "Five" recognised.
- 2026-05-14  F takes 11.30 cash for that invoice.
- 2026-05-20  60.00 debit pays the rest of I1; 30.00 cash from P1 left as credit.
- 2026-05-21  10.00 of that credit refunded in cash.
- 2026-06-25  I6: P2, 25.00 manual line (C), staff A (line and invoice); unpaid.
"""

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from openpyxl import load_workbook

from carnet.billing.invoicing import LineInput, invoice_create
from carnet.billing.payments import allocation_unapply, payment_receive, payment_refund
from carnet.clinic.models import IncomeCategory
from carnet.conftest import Api, make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import NotAllowed
from carnet.core.permissions import AccessLevel
from carnet.passes.models import Redemption
from carnet.passes.packages.selling import package_sell
from carnet.passes.selectors import pass_invoices
from carnet.passes.tests.factories import at, package_template
from carnet.people.models import CommissionRate
from carnet.people.services import patient_portal_enable
from carnet.reports import billing_reports as reports
from carnet.reports.scope import Period
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set, practitioner

pytestmark = pytest.mark.django_db
MAY = Period(dt.date(2026, 5, 1), dt.date(2026, 5, 31))


def _invoice(owner, patient, amount, category, *, staff=None):
    return invoice_create(
        actor=owner.user,
        patient=patient,
        staff=staff,
        lines=[
            LineInput(
                description="Item",
                unit_price_minor=amount,
                income_category_id=category.pk,
                tax_ids=[],
                staff_id=staff.pk if staff else None,
            )
        ],
    )


def _pay(actor, patient, amount, method="cash", invoice=None):
    return payment_receive(
        actor=actor.user,
        patient=patient,
        method=method,
        amount_minor=amount,
        allocations=[(invoice, amount)] if invoice else [],
    )


@pytest.fixture
def data(owner, catalog):
    clinic_set(time_zone="America/Toronto")
    c, p = catalog["income_category"], IncomeCategory.objects.create(name="Products")
    a = practitioner(catalog["location"])
    a.display_name = "Alex"  # sorts before "Seller"
    a.save(update_fields=["display_name"])
    s = make_staff(AccessLevel.FRONT_DESK, name="Seller")
    f = make_staff(AccessLevel.FRONT_DESK, name="Front")
    CommissionRate.objects.create(staff=a, income_category=c, rate=Decimal("40"))
    CommissionRate.objects.create(staff=a, income_category=p, rate=Decimal("20"))
    CommissionRate.objects.create(staff=s, income_category=c, rate=Decimal("10"))
    p1, p2 = (
        make_patient(first_name="Ann", last_name="One"),
        make_patient(first_name="Bob", last_name="Two"),
    )
    with clock.frozen(at("2026-03-01", "10:00")):
        _invoice(owner, p2, 5000, c)
    with clock.frozen(at("2026-05-04", "10:00")):
        i1 = _invoice(owner, p1, 10000, p, staff=a)
        _pay(owner, p1, 4000, invoice=i1)
    with clock.frozen(at("2026-05-05", "10:00")):
        five = package_sell(
            actor=owner.user,
            patient=p2,
            template=package_template(
                catalog,
                name="Five",
                price=50000,
                quantity=5,
                items=[(catalog["treatment"], 1000, 8000, None)],
            ),
        )
        [sale] = pass_invoices(five)
        _pay(owner, p2, 50000, "card_manual", sale)
    with clock.frozen(at("2026-05-06", "10:00")):
        two = package_sell(
            actor=owner.user,
            patient=p1,
            sold_by=s,
            template=package_template(catalog, name="Two", price=20000, quantity=2),
        )
        _pay(owner, p1, 10000, invoice=pass_invoices(two)[0])
    with clock.frozen(at("2026-05-01", "10:00")):
        visit = appointment_book(
            actor=owner.user,
            treatment=catalog["treatment"],
            practitioner=a,
            location=catalog["location"],
            start=at("2026-05-12", "09:00"),
            patients=[p2],
        )
    with clock.frozen(at("2026-05-12", "10:00")):
        appointment_arrive(actor=owner.user, appointment=visit)
    covered = visit.visits.get().invoice
    with clock.frozen(at("2026-05-14", "10:00")):
        _pay(f, p2, 1130, invoice=covered)
    with clock.frozen(at("2026-05-20", "10:00")):
        _pay(owner, p1, 6000, "debit", i1)
        credit = _pay(owner, p1, 3000)
    with clock.frozen(at("2026-05-21", "10:00")):
        payment_refund(actor=owner.user, payment=credit, amount_minor=1000)
    with clock.frozen(at("2026-06-25", "10:00")):
        _invoice(owner, p2, 2500, c, staff=a)
    return {
        "owner": owner,
        "a": a,
        "s": s,
        "f": f,
        "c": c,
        "p": p,
        "p1": p1,
        "p2": p2,
        "i1": i1,
        "covered": covered,
        "catalog": catalog,
    }


def _rows(table, *keys):
    return [tuple(r[k] for k in keys) for r in table.rows]


def test_the_data_set_is_what_the_numbers_assume(data):
    r = Redemption.objects.get(status="posted")
    assert (r.compensation_minor, r.value_minor, r.practitioner_id) == (8000, 10000, data["a"].pk)
    assert (data["covered"].total_minor, data["covered"].tax_minor) == (1130, 130)


def test_compensation_accrual_basis(data):
    table = reports.compensation(actor=data["owner"].user, period=MAY)
    assert _rows(table, "staff_id", "source", "date", "value", "rate", "commission") == [
        (data["a"].pk, "Sale", MAY.start.replace(day=4), 10000, "20 %", 2000),
        (data["a"].pk, "Pass-covered visit", MAY.start.replace(day=12), 8000, "40 %", 3200),
        (data["s"].pk, "Upfront pass sale", MAY.start.replace(day=6), 20000, "10 %", 2000),
    ]
    assert table.totals == {"value": 38000, "commission": 7200}
    visit = table.rows[1]
    assert visit["income_category"] == data["c"].name and visit["item"].startswith("Five: ")
    assert visit["invoice"] == data["covered"].number  # its own 10.00 line is not counted as a sale


def test_compensation_cash_basis_prorates_partial_payments(data):
    table = reports.compensation(actor=data["owner"].user, period=MAY, basis="cash")
    assert _rows(table, "staff_id", "source", "date", "value", "commission") == [
        (data["a"].pk, "Sale", MAY.start.replace(day=4), 4000, 800),
        (
            data["a"].pk,
            "Pass-covered visit",
            MAY.start.replace(day=14),
            8000,
            3200,
        ),  # the day 11.30 was paid
        (data["a"].pk, "Sale", MAY.start.replace(day=20), 6000, 1200),
        (
            data["s"].pk,
            "Upfront pass sale",
            MAY.start.replace(day=6),
            10000,
            1000,
        ),  # half of 200.00 paid
    ]
    assert table.totals == {"value": 28000, "commission": 6200}
    first_half = reports.compensation(
        actor=data["owner"].user, basis="cash", period=Period(MAY.start, MAY.start.replace(day=13))
    )
    assert first_half.totals == {
        "value": 14000,
        "commission": 1800,
    }  # the visit is not paid yet on the 13th


def test_unapplying_takes_the_cash_share_back_and_aging_still_ties_out(data):
    debit = data["i1"].allocations.get(amount_minor=6000)
    with clock.frozen(at("2026-05-21", "09:00")):
        allocation_unapply(actor=data["owner"].user, allocation=debit)
    table = reports.compensation(
        actor=data["owner"].user, period=MAY, basis="cash", staff_id=data["a"].pk
    )
    assert _rows(table, "source", "date", "value", "commission") == [
        ("Sale", MAY.start.replace(day=4), 4000, 800),
        ("Pass-covered visit", MAY.start.replace(day=14), 8000, 3200),
        ("Sale", MAY.start.replace(day=20), 6000, 1200),
        ("Sale", MAY.start.replace(day=21), -6000, -1200),
    ]
    assert table.totals == {"value": 12000, "commission": 4000}
    aging = reports.ar_aging(actor=data["owner"].user, as_of=dt.date(2026, 5, 31))
    assert aging.totals["total"] == 6000 + 10000 + 5000  # I1 again, "Two", I-old
    assert reports.ar_ledger_check(aging, dt.date(2026, 5, 31))["ties_out"]


def test_compensation_staff_filter_and_own_rows(data):
    only_s = reports.compensation(actor=data["owner"].user, period=MAY, staff_id=str(data["s"].pk))
    assert only_s.totals == {"value": 20000, "commission": 2000}
    # A (Practitioner/Front Desk) sees only their own rows, whatever staff they ask for.
    own = reports.compensation(actor=data["a"].user, period=MAY, staff_id=data["s"].pk)
    assert {r["staff_id"] for r in own.rows} == {data["a"].pk}
    assert own.totals == {"value": 18000, "commission": 5200}


def test_transactions_per_day_and_method(data):
    table = reports.transactions(actor=data["owner"].user, period=MAY)
    d = MAY.start.replace
    assert _rows(table, "date", "method", "received", "refunded", "net") == [
        (d(day=4), "Cash", 4000, 0, 4000),
        (d(day=5), "Card (manual)", 50000, 0, 50000),
        (d(day=6), "Cash", 10000, 0, 10000),
        (d(day=14), "Cash", 1130, 0, 1130),
        (d(day=20), "Cash", 3000, 0, 3000),
        (d(day=20), "Debit", 6000, 0, 6000),
        (d(day=21), "Cash", 0, 1000, -1000),
    ]
    assert table.totals == {"payments": 6, "received": 74130, "refunded": 1000, "net": 73130}
    own = reports.transactions(actor=data["f"].user, period=MAY)  # F recorded one payment
    assert _rows(own, "date", "received") == [(d(day=14), 1130)]


def test_ar_aging_buckets_and_ties_out_to_the_ledger(data):
    as_of = dt.date(2026, 6, 30)
    table = reports.ar_aging(actor=data["owner"].user, as_of=as_of)
    assert _rows(table, "patient_id", "invoices", "b0_30", "b31_60", "b61_90", "b90", "total") == [
        (data["p1"].pk, 1, 0, 10000, 0, 0, 10000),  # "Two", 2026-05-06: 55 days
        (data["p2"].pk, 2, 2500, 0, 0, 5000, 7500),  # I6 5 days; I-old 121 days
    ]
    assert table.totals["total"] == 17500
    assert reports.ar_ledger_check(table, as_of) == {
        "ledger_minor": 17500,
        "report_minor": 17500,
        "difference_minor": 0,
        "ties_out": True,
    }
    # As of 2026-05-10: I1 had 60.00 owing (6 days), "Two" 100.00 (4 days), I-old 50.00 (70 days).
    earlier = reports.ar_aging(actor=data["owner"].user, as_of=dt.date(2026, 5, 10))
    assert earlier.totals == {
        "invoices": 3,
        "b0_30": 16000,
        "b31_60": 0,
        "b61_90": 5000,
        "b90": 0,
        "total": 21000,
    }
    assert reports.ar_ledger_check(earlier, dt.date(2026, 5, 10))["ties_out"]
    own = reports.ar_aging(
        actor=data["a"].user, as_of=as_of
    )  # invoices assigned to A: the paid visit, I6
    assert _rows(own, "patient_id", "b0_30", "total") == [(data["p2"].pk, 2500, 2500)]
    assert reports.ar_ledger_check(own, as_of) is None


def test_billing_summary_by_income_category(data):
    table = reports.billing_summary(actor=data["owner"].user, period=MAY)
    by = {r["income_category_id"]: r for r in table.rows}
    keys = ("sales", "deferred", "tax", "total", "recognised", "earned")
    assert tuple(by[data["c"].pk][k] for k in keys) == (1000, 70000, 130, 71130, 10000, 11000)
    assert tuple(by[data["p"].pk][k] for k in keys) == (10000, 0, 0, 10000, 0, 10000)
    assert table.totals == {
        "sales": 11000,
        "deferred": 70000,
        "tax": 130,
        "total": 81130,
        "recognised": 10000,
        "earned": 21000,
    }
    own = reports.billing_summary(actor=data["a"].user, period=MAY)
    assert own.totals == {
        "sales": 11000,
        "deferred": 0,
        "tax": 130,
        "total": 11130,
        "recognised": 10000,
        "earned": 21000,
    }


PAGES = [
    (
        "reports:billing_compensation",
        "?start=2026-05-01&end=2026-05-31&basis=cash",
        "commission",
        6200,
    ),
    ("reports:billing_transactions", "?start=2026-05-01&end=2026-05-31", "net", 73130),
    ("reports:billing_ar_aging", "?as_of=2026-06-30", "total", 17500),
    ("reports:billing_summary", "?start=2026-05-01&end=2026-05-31", "earned", 21000),
]


@pytest.mark.parametrize("name,query,key,expected", PAGES, ids=[p[0].split(":")[1] for p in PAGES])
def test_page_csv_xlsx_and_api_agree(data, client, name, query, key, expected):
    client.force_login(data["owner"].user)
    url = reverse(name) + query
    page = client.get(url)
    assert page.status_code == 200
    table = page.context["table"]
    assert table.totals[key] == expected
    html = page.content.decode()
    assert "<svg" in html and "cdn" not in html.lower()
    for cell in page.context["totals_row"]:
        if cell["num"]:
            assert cell["text"] in html
    columns = [c for c in table.columns if c.total]
    exported = list(
        csv.reader(io.StringIO(client.get(url + "&format=csv").content.decode("utf-8-sig")))
    )
    header, total_row = exported[0], exported[-1]
    assert len(exported) == len(table.rows) + 2
    for c in columns:
        csv_value = Decimal(total_row[header.index(c.label)])
        assert csv_value == (
            Decimal(table.totals[c.key]) / 100 if c.kind == "money" else table.totals[c.key]
        )
        assert sum(Decimal(r[header.index(c.label)] or 0) for r in exported[1:-1]) == csv_value
    book = load_workbook(io.BytesIO(client.get(url + "&format=xlsx").content))
    sheet = list(book.active.iter_rows(values_only=True))
    for c in columns:
        value = sheet[-1][list(sheet[0]).index(c.label)]
        assert Decimal(str(value)) == (
            Decimal(table.totals[c.key]) / 100 if c.kind == "money" else table.totals[c.key]
        )
    api_path = {
        "reports:billing_compensation": "compensation",
        "reports:billing_transactions": "transactions",
        "reports:billing_ar_aging": "ar-aging",
        "reports:billing_summary": "summary",
    }[name]
    body = Api(data["owner"].user).get(f"/reports/billing/{api_path}{query}").json()
    assert body["totals"] == table.totals
    assert body["rows"] == table.as_json()["rows"]
    if name == "reports:billing_ar_aging":
        assert body["ledger_check"]["ties_out"] is True
        assert "they agree" in html


def test_access_whole_clinic_own_rows_or_refused(data, client):
    """Administrative/All Billing with billing: the whole clinic; without billing or lower: own
    rows; No Access and patients: refused."""
    admin = make_staff(AccessLevel.ADMIN_BILLING)
    admin_no_billing = make_staff(AccessLevel.ADMIN_BILLING, billing=False)
    nobody = make_staff(AccessLevel.NO_ACCESS)
    assert len(reports.compensation(actor=admin.user, period=MAY).rows) == 3
    assert reports.compensation(actor=admin_no_billing.user, period=MAY).rows == []
    assert reports.compensation(actor=data["a"].user, period=MAY).totals["commission"] == 5200
    with pytest.raises(NotAllowed):
        reports.billing_summary(actor=nobody.user, period=MAY)
    query = "?start=2026-05-01&end=2026-05-31"
    url = reverse("reports:billing_compensation") + query
    client.force_login(data["a"].user)
    page = client.get(url)
    assert page.status_code == 200 and page.context["table"].totals["commission"] == 5200
    assert b"Your own billing" in page.content and b'name="staff"' not in page.content
    assert (
        Api(data["a"].user)
        .get("/reports/billing/compensation" + query)
        .json()["totals"]["commission"]
        == 5200
    )
    client.force_login(nobody.user)
    assert client.get(url).status_code == 403
    assert Api(nobody.user).get("/reports/billing/compensation" + query).status_code == 403

    patient_portal_enable(
        actor=data["owner"].user, patient=data["p1"], password="a long enough password"
    )
    data["p1"].refresh_from_db()
    client.force_login(data["p1"].user)
    assert client.get(url)["Location"] == reverse("portal:home")
    assert Api(data["p1"].user).get("/reports/billing/summary" + query).status_code == 403
    assert Api().get("/reports/billing/summary" + query).status_code == 401


def test_bad_filters_are_a_message_not_an_error(data, client):
    client.force_login(data["owner"].user)
    page = client.get(reverse("reports:billing_transactions") + "?start=2026-05-31&end=2026-05-01")
    assert page.status_code == 400 and b"before the start" in page.content
    api = Api(data["owner"].user)
    assert api.get("/reports/billing/compensation?basis=weekly").status_code == 422
    assert api.get("/reports/billing/ar-aging?as_of=soon").status_code == 422


def test_reports_write_nothing(data):
    with CaptureQueriesContext(connection) as ctx:
        reports.compensation(actor=data["owner"].user, period=MAY, basis="cash")
        reports.transactions(actor=data["owner"].user, period=MAY)
        reports.billing_summary(actor=data["owner"].user, period=MAY)
        reports.ar_aging(actor=data["owner"].user, as_of=dt.date(2026, 6, 30))
    assert not [
        q
        for q in ctx.captured_queries
        if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
