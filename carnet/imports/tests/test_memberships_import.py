"""Memberships brought in mid-term: the current cycle paid before the switch, its unearned part
deferred against opening balance equity, uses taken counted, the next cycle invoiced by Carnet."""

import datetime as dt

import pytest
from django.urls import reverse

from carnet.billing.models import Invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.core import clock
from carnet.core.errors import Conflict
from carnet.imports.services import import_commit, import_preview, import_undo
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.cycles import memberships_recognise
from carnet.passes.memberships.cycle_billing import cycles_issue
from carnet.passes.memberships.services import cycle_refund, membership_cancel
from carnet.passes.models import Pass
from carnet.passes.redeeming.eligibility import pass_check
from carnet.passes.tests.factories import at, membership_template, package_template
from carnet.reports.pass_reports import deferred_revenue_rollforward

pytestmark = pytest.mark.django_db

PATIENTS = "External ID,First name,Last name\nP1,Ana,Silva\nP2,Ben,Okafor\n"
MEMBERSHIPS = (
    "Patient external ID,Membership,Start date,Next cycle date,Uses this cycle,Payment\n"
    "P1,Wellness monthly,2026-01-15,2026-05-15,1,manual\n"
    "P2,Wellness monthly,2026-03-01,2026-05-01,,automatic\n"
)


def _commit(user, kind, text):
    return import_commit(
        actor=user,
        kind=kind,
        data=text.encode(),
        file_name=f"{kind}.csv",
        cut_over=dt.date(2026, 5, 1),
    )


def _problems(user, text):
    plan = import_preview(
        actor=user,
        kind="memberships",
        data=text.encode(),
        file_name="m.csv",
        cut_over=dt.date(2026, 5, 1),
    ).plan
    return {(p.line, p.column): p.message for p in plan.problems}


@pytest.fixture
def imported(owner_user, catalog):
    membership_template(catalog, name="Wellness monthly", price=6000, uses=2, term=12)
    _commit(owner_user, "patients", PATIENTS)
    return _commit(owner_user, "memberships", MEMBERSHIPS)


def test_the_current_cycle_comes_in_paid_with_its_unearned_part_deferred(
    owner_user, catalog, imported
):
    ana = Pass.objects.get(patient__first_name="Ana")
    assert (ana.purchase_date, ana.start_date, ana.term_cycles) == (
        dt.date(2026, 1, 15),
        dt.date(2026, 4, 15),
        9,
    )
    [row] = ana.pass_invoices.all()
    assert (row.period_start, row.period_end, row.uses_allowed) == (
        dt.date(2026, 4, 15),
        dt.date(2026, 5, 15),
        1,
    )
    assert row.invoice.status == "paid" and row.invoice.total_minor == 6000
    # 16 of the cycle's 30 days were before the cut-over: 6000 × 16 // 30 = 3200 earned there, 2800
    # left; Ben's cycle ended on the cut-over day: nothing of it is left to earn.
    assert (row.recognised_minor, imported.money_minor) == (3200, 2800)
    ben = Pass.objects.get(patient__first_name="Ben")
    assert (ben.payment_mode, ben.card_id) == ("automatic", None)  # waits for a card on file
    assert balance(accounts.DEFERRED_MEMBERSHIPS) == 2800
    assert balance(accounts.OPENING_BALANCE_EQUITY) == -2800
    assert balance(accounts.AR) == 0
    assert_ledger_ok()
    report = deferred_revenue_rollforward(actor=owner_user, start="2026-05-01", end="2026-05-31")
    assert report.ties_out, report.mismatches
    assert (
        next(r for r in report.table.rows if r["template"] == "Wellness monthly")["imported"]
        == 2800
    )


def test_uses_taken_before_the_switch_count_and_the_next_cycle_is_carnets(
    owner_user, catalog, imported
):
    ana = Pass.objects.get(patient__first_name="Ana")
    assert pass_check(
        ana, patient=ana.patient, treatment=catalog["treatment"], visit_date=dt.date(2026, 5, 10)
    ).ok
    with clock.frozen(at("2026-05-15", "06:00")):
        memberships_recognise(today=dt.date(2026, 5, 15))
        issued = cycles_issue(today=dt.date(2026, 5, 15))
    assert len(issued) == 2  # Ana's next cycle; Ben's, due since 1 May
    ana.refresh_from_db()
    rows = list(ana.pass_invoices.order_by("seq"))
    assert [(r.seq, r.period_start, r.uses_allowed) for r in rows] == [
        (1, dt.date(2026, 4, 15), 1),
        (2, dt.date(2026, 5, 15), 2),
    ]
    assert rows[0].recognised_minor == rows[0].net_minor
    assert Invoice.objects.get(pk=rows[1].invoice_id).balance_minor == 6000
    assert_ledger_ok()


def test_membership_rows_that_do_not_fit_say_what_to_write(owner_user, catalog):
    membership_template(catalog, name="Wellness monthly", price=6000, uses=2, term=3)
    _commit(owner_user, "patients", PATIENTS)
    said = _problems(
        owner_user,
        "Patient external ID,Membership,Start date,Next cycle date,Uses this cycle,Payment\n"
        "P1,Wellness monthly,2026-04-15,2026-05-20,,\n"
        "P1,Wellness monthly,2026-01-15,2026-05-15,,\n"
        "P1,Wellness monthly,2026-04-15,2026-05-15,3,\n"
        "P1,Wellness monthly,2026-04-15,2026-05-15,,sometimes\n"
        "P1,Yoga,2026-04-15,2026-05-15,,\n"
        "P1,Wellness monthly,2026-04-15,2026-07-15,,\n"
        "P1,Wellness monthly,2026-05-15,2026-06-15,,\n",
    )
    assert "runs 2026-05-15 to 2026-06-15" in said[(2, "Next cycle date")]
    assert "runs 3 cycles" in said[(3, "Next cycle date")]
    assert "more than the 2 uses" in said[(4, "Uses this cycle")]
    assert "neither manual nor automatic" in said[(5, "Payment")]
    assert "Unknown membership template “Yoga”" in said[(6, "Membership")]
    assert "starts after the cut-over" in said[(7, "Next cycle date")]
    assert "starts after the cut-over" in said[(8, "Start date")]
    assert Pass.objects.count() == 0


def test_undo_takes_back_what_was_earned_since_and_is_refused_once_billed_again(
    owner_user, catalog, imported
):
    with clock.frozen(at("2026-05-05", "06:00")):
        memberships_recognise(today=dt.date(2026, 5, 5))
    assert_ledger_ok()
    import_undo(actor=owner_user, batch=imported)
    assert not Pass.objects.exists() and not Invoice.objects.exists()
    assert (
        balance(accounts.DEFERRED_MEMBERSHIPS) == 0
        and balance(accounts.OPENING_BALANCE_EQUITY) == 0
    )
    assert balance(accounts.revenue(catalog["income_category"].pk)) == 0
    assert_ledger_ok()

    again = _commit(owner_user, "memberships", MEMBERSHIPS)
    assert again.created == 2
    with clock.frozen(at("2026-05-15", "06:00")):
        cycles_issue(today=dt.date(2026, 5, 15))
    with pytest.raises(Conflict, match="billed or paused in Carnet"):
        import_undo(actor=owner_user, batch=again)
    assert_ledger_ok()


def test_a_second_run_creates_nothing(owner_user, catalog, imported):
    again = _commit(owner_user, "memberships", MEMBERSHIPS)
    assert (again.created, again.skipped) == (0, 2) and Pass.objects.count() == 2


def test_a_combined_sales_export_imports_as_packages_and_as_memberships(owner_user, catalog):
    membership_template(catalog, name="Wellness monthly", price=6000, uses=2)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    _commit(owner_user, "patients", PATIENTS)
    text = (
        "Patient ID,Type,Item,Purchase Date,Price,Remaining Sessions,Start Date,Next Billing Date\n"
        "P1,Package,10 massages,2026-01-10,900.00,6,,\n"
        "P2,Membership,Wellness monthly,,60.00,,2026-04-15,2026-05-15\n"
        "P2,,Wellness monthly,,60.00,,2026-03-20,2026-05-20\n"
    )
    packages = import_preview(
        actor=owner_user,
        kind="packages",
        data=text.encode(),
        file_name="sales.csv",
        cut_over=dt.date(2026, 5, 1),
    )
    assert packages.ok and len(packages.plan.rows) == 1 and packages.plan.elsewhere == [3, 4]
    assert str(packages.first_rows()[0]["price"]) == "$900.00"  # money, not minor units
    memberships = import_preview(
        actor=owner_user,
        kind="memberships",
        data=text.encode(),
        file_name="sales.csv",
        cut_over=dt.date(2026, 5, 1),
    )
    assert memberships.ok, memberships.plan.problems
    assert len(memberships.plan.rows) == 2 and memberships.plan.elsewhere == [2]
    _commit(owner_user, "packages", text)
    _commit(owner_user, "memberships", text)
    assert (
        Pass.objects.filter(kind="package").count() == 1
        and Pass.objects.filter(kind="membership").count() == 2
    )
    assert_ledger_ok()


def test_an_imported_cycle_is_refunded_and_cancelled_like_one_sold_in_carnet(
    owner_user, catalog, imported
):
    ana = Pass.objects.get(patient__first_name="Ana")
    row = ana.pass_invoices.get()
    refunded = cycle_refund(actor=owner_user, row=row, amount_minor=2000)
    assert refunded.recognised_minor == refunded.net_minor
    assert balance(accounts.PATIENT_CREDIT, patient_id=ana.patient_id) == 2000
    assert balance(accounts.DEFERRED_MEMBERSHIPS) == 0
    membership_cancel(actor=owner_user, sold_pass=Pass.objects.get(patient__first_name="Ben"))
    assert_ledger_ok()


def test_the_membership_page_says_an_automatic_one_waits_for_a_card(
    owner_user, catalog, imported, client
):
    ben = Pass.objects.get(patient__first_name="Ben")
    client.force_login(owner_user)
    page = client.get(reverse("memberships:detail", args=[ben.pk]))
    assert page.status_code == 200
    assert (
        b"waiting for a card on file" in page.content
        and b"None" not in page.content.split(b'data-testid="payment"')[1][:200]
    )
