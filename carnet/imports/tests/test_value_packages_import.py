"""Importing packages that hold a value (issue 23 point 3, SPEC 15): a row names a value package
template and gives the value left (and, if not the template's, the value held); the pass comes in
with that balance, the value drawn before the switch kept apart, and the price's share of the value
left in deferred revenue. It then draws down, partly covers, refunds, transfers, expires, reports
and undoes like a value package sold in Carnet, and the roll-forward ties."""

import datetime as dt

import pytest

from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.core.errors import Conflict
from carnet.imports.models import ImportBatch
from carnet.imports.services import import_commit, import_preview, import_undo
from carnet.imports.tests.test_services import PATIENTS
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.models import Pass
from carnet.passes.packages.ending import pass_transfer, passes_expire, refund_suggestions
from carnet.passes.redeeming.tests.test_value_redemption import value_template
from carnet.passes.tests.factories import at, package_template, practitioner
from carnet.reports.pass_reports import deferred_revenue_rollforward, pass_sales_report
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book

pytestmark = pytest.mark.django_db
CUT_OVER = dt.date(2026, 5, 1)
# Wellness bank: pay 900.00, get 1,000.00 of treatments. Ana has 350.00 left of hers (315.00 of
# what she paid is still unearned); Chloé bought a 500.00 one for 450.00 and has it all.
VALUES = (
    "External ID,Patient external ID,Package,Purchase date,Price,Value left,Value held,"
    "Expiry date\n"
    "W1,P1,Wellness bank,2026-01-10,,350.00,,2026-12-31\n"
    "W2,P3,Wellness bank,2026-02-01,450.00,500.00,500.00,\n"
)


def _commit(user, text, **kw):
    return import_commit(
        actor=user, kind="packages", data=text.encode(), file_name="v.csv", cut_over=CUT_OVER, **kw
    )


def _preview(user, text):
    return import_preview(
        actor=user, kind="packages", data=text.encode(), file_name="v.csv", cut_over=CUT_OVER
    )


@pytest.fixture
def bank(owner_user, catalog):
    import_commit(actor=owner_user, kind="patients", data=PATIENTS.encode(), file_name="p.csv")
    return value_template(catalog, transferable=True)


def _ana(owner_user, bank):
    _commit(owner_user, VALUES)
    return Pass.objects.get(patient__first_name="Ana")


def _visit(owner_user, catalog, sold, hhmm="09:00", day="2026-05-12"):
    appointment = appointment_book(
        actor=owner_user,
        treatment=catalog["treatment"],
        practitioner=practitioner(catalog["location"]),
        location=catalog["location"],
        start=at(day, hhmm),
        patients=[sold.patient],
    )
    return appointment


def test_a_value_package_comes_in_with_its_balance_and_the_prices_share_deferred(owner_user, bank):
    batch = _commit(owner_user, VALUES)
    ana = Pass.objects.get(patient__first_name="Ana")
    assert (ana.face_value_minor, ana.value_left, ana.value_before_import_minor) == (
        100000,
        35000,
        65000,
    )
    assert ana.quantity is None and ana.price_minor == 90000  # blank price: the template's
    assert ana.deferred_minor - ana.recognised_minor == 31500  # 900.00 × 350 ÷ 1,000
    chloe = Pass.objects.get(patient__first_name="Chloé")
    assert (chloe.face_value_minor, chloe.value_left, chloe.price_minor) == (50000, 50000, 45000)
    assert batch.money_minor == 31500 + 45000
    assert balance(accounts.DEFERRED_PACKAGES) == 31500 + 45000
    assert balance(accounts.OPENING_BALANCE_EQUITY) == -(31500 + 45000)
    assert_ledger_ok()
    again = _commit(owner_user, VALUES)
    assert (again.created, again.skipped) == (0, 2) and Pass.objects.count() == 2


def test_it_draws_down_recognising_its_share_and_covers_in_part_when_short(
    owner_user, bank, catalog
):
    ana = _ana(owner_user, bank)
    appointment_arrive(actor=owner_user, appointment=_visit(owner_user, catalog, ana))
    ana.refresh_from_db()
    # 90.00 drawn of 350.00 left recognises 315.00 × 90 ÷ 350 = 81.00.
    assert (ana.value_left, ana.value_posted_minor) == (26000, 9000)
    assert ana.deferred_minor - ana.recognised_minor == 31500 - 8100
    for hhmm in ("11:00", "13:00"):
        _visit(owner_user, catalog, ana, hhmm=hhmm)  # each holds 90.00: 80.00 left
    short = _visit(owner_user, catalog, ana, hhmm="15:00")  # 80.00 covers 80.00 of 90.00
    redemption = short.visits.get().redemptions.get()
    assert (redemption.drawn_minor, redemption.full_value_minor) == (8000, 9000)
    appointment_arrive(actor=owner_user, appointment=short)
    ana.refresh_from_db()
    assert ana.value_left == 0 and ana.value_posted_minor == 9000 + 8000
    assert short.visits.get().invoice.balance_minor > 0  # the patient owes the rest
    assert_ledger_ok()


def test_the_refund_suggestion_is_the_price_in_proportion_to_the_value_left(owner_user, bank):
    ana = _ana(owner_user, bank)
    suggestions = refund_suggestions(ana)
    assert suggestions["value_left"] == 35000
    assert suggestions["suggested"] == 31500  # 900.00 × 350 ÷ 1,000, within what was collected


def test_a_transfer_moves_the_value_left_with_its_deferred_revenue(owner_user, bank):
    ana = _ana(owner_user, bank)
    chloe_patient = Pass.objects.get(patient__first_name="Chloé").patient
    new = pass_transfer(actor=owner_user, sold_pass=ana, to_patient=chloe_patient)
    assert (new.face_value_minor, new.value_left, new.deferred_minor) == (35000, 35000, 31500)
    ana.refresh_from_db()
    assert ana.status == Pass.Status.TRANSFERRED and ana.value_left == 0
    assert_ledger_ok()


def test_expiry_moves_the_unearned_share_of_the_balance_to_breakage(owner_user, bank):
    ana = _ana(owner_user, bank)
    assert passes_expire(today=dt.date(2027, 1, 1)) == 1
    ana.refresh_from_db()
    assert ana.status == Pass.Status.EXPIRED and ana.value_left == 0
    assert balance(accounts.BREAKAGE) == 31500
    assert_ledger_ok()


def test_the_sales_report_counts_value_drawn_before_the_switch_and_the_rollforward_ties(
    owner_user, bank
):
    _ana(owner_user, bank)
    report = pass_sales_report(actor=owner_user, start="2026-01-01", end="2026-12-31")
    row = next(r for r in report.rows if r["patient"].startswith("Ana"))
    assert (row["value_held"], row["value_drawn"], row["value_left"]) == (100000, 65000, 35000)
    rollforward = deferred_revenue_rollforward(
        actor=owner_user, start="2026-05-01", end="2026-05-31"
    )
    assert rollforward.ties_out, rollforward.mismatches
    bank_row = next(r for r in rollforward.table.rows if r["template"] == "Wellness bank")
    assert bank_row["imported"] == 31500 + 45000


def test_undo_takes_it_out_until_it_is_used(owner_user, bank, catalog):
    batch = _commit(owner_user, VALUES)
    import_undo(actor=owner_user, batch=batch)
    assert balance(accounts.DEFERRED_PACKAGES) == 0 and not Pass.objects.exists()
    _commit(owner_user, VALUES)
    ana = Pass.objects.get(patient__first_name="Ana")
    _visit(owner_user, catalog, ana)
    with pytest.raises(Conflict, match="has been used"):
        import_undo(
            actor=owner_user, batch=ImportBatch.objects.get(kind="packages", undone_at=None)
        )
    assert_ledger_ok()


def test_value_rows_are_checked_and_a_count_template_still_needs_its_uses(
    owner_user, bank, catalog
):
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    text = (
        "Patient external ID,Package,Purchase date,Price,Value left,Value held,Remaining uses\n"
        "P1,Wellness bank,2026-01-01,900.00,,,\n"
        "P1,Wellness bank,2026-01-01,900.00,1200.00,,\n"
        "P1,Wellness bank,2026-01-01,,100.00,500.00,\n"
        "P1,10 massages,2026-01-01,900.00,100.00,,\n"
        "P1,Wellness bank,2026-01-01,900.00,-1.00,,\n"
        "P1,Wellness bank,2026-01-01,400.00,100.00,0,\n"
    )
    said = {(p.line, p.column): p.message for p in _preview(owner_user, text).plan.problems}
    assert "holds a value, not uses: give the value it still covers" in said[(2, "Value left")]
    assert "more than the value held ($1,000.00)" in said[(3, "Value left")]
    assert "Give the price paid for $500.00 of value" in said[(4, "Price")]
    assert said[(5, "Remaining uses")] == "This is required."
    assert "negative" in said[(6, "Value left")]
    assert "more than zero" in said[(7, "Value held")]
    with pytest.raises(Exception, match="Nothing was imported"):
        _commit(owner_user, text)
    assert not Pass.objects.exists()


def test_a_file_without_remaining_uses_or_value_left_is_refused_by_its_columns(owner_user, bank):
    with pytest.raises(Exception, match="Remaining uses or Value left"):
        _preview(owner_user, "Patient external ID,Package,Purchase date,Price\nP1,X,2026-01-01,1\n")
