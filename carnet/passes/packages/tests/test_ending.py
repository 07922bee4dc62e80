"""Changing and ending a package (SPEC 5.4, 9.5, 9.10, 9.12) and what each posts to the ledger."""

import datetime as dt

import pytest

from carnet.billing.invoicing import invoice_delete
from carnet.billing.models import Invoice, Payment
from carnet.billing.payments import payment_refund
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import Conflict, NotAllowed, ValidationFailed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.models import Pass
from carnet.passes.packages.ending import (
    pass_delete,
    pass_expiry_set,
    pass_refund,
    pass_transfer,
    passes_expire,
    refund_suggestions,
)
from carnet.passes.selectors import pass_invoices
from carnet.passes.tests.factories import at, package_template, practitioner, sold_package
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "prac": practitioner(catalog["location"]),
            "patient": make_patient(),
        }


def _visit(s, day="2026-05-12", hhmm="09:00", arrive=True, patient=None):
    appointment = appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(day, hhmm),
        patients=[patient or s["patient"]],
    )
    if arrive:
        appointment_arrive(actor=s["fd"].user, appointment=appointment)
    return appointment


def _credit(patient) -> int:
    return balance(accounts.PATIENT_CREDIT, patient_id=patient.pk)


# ---------------------------------------------------------------- expiry


def test_per_package_expiry_can_be_changed_or_cleared_and_is_logged(s):
    sold = sold_package(
        s["fd"], s["patient"], package_template(s["cat"]), expires_on=dt.date(2026, 6, 1)
    )
    pass_expiry_set(actor=s["admin"].user, sold_pass=sold, expires_on=dt.date(2026, 9, 1))
    assert Pass.objects.get(pk=sold.pk).expires_on == dt.date(2026, 9, 1)
    pass_expiry_set(actor=s["admin"].user, sold_pass=sold, expires_on=None)
    assert Pass.objects.get(pk=sold.pk).expires_on is None
    log = ActivityLog.objects.filter(verb="expiry changed").order_by("pk")
    assert [entry.after["expires_on"] for entry in log] == ["2026-09-01", None]


def test_editing_expiry_needs_administrative_access(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]))
    with pytest.raises(NotAllowed):
        pass_expiry_set(actor=s["fd"].user, sold_pass=sold, expires_on=None)


def test_the_clinic_rule_forbidding_expiry_refuses_an_expiry_date(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]), expires_on=None)
    clinic_set(pass_expiry_rule="forbidden")
    with pytest.raises(ValidationFailed):
        pass_expiry_set(actor=s["admin"].user, sold_pass=sold, expires_on=dt.date(2026, 12, 1))


def test_the_clinic_minimum_duration_refuses_an_earlier_expiry(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]), expires_on=None)
    clinic_set(pass_expiry_rule="minimum", pass_expiry_minimum_days=365)
    with pytest.raises(ValidationFailed):
        pass_expiry_set(actor=s["admin"].user, sold_pass=sold, expires_on=dt.date(2026, 12, 1))
    pass_expiry_set(actor=s["admin"].user, sold_pass=sold, expires_on=dt.date(2027, 5, 1))


def test_expiry_moves_the_unused_value_to_breakage_once(s):
    sold = sold_package(
        s["fd"],
        s["patient"],
        package_template(s["cat"], price=10000, quantity=4),
        expires_on=dt.date(2026, 5, 31),
    )
    _visit(s)  # one use posted: 2500 recognised
    assert passes_expire(today=dt.date(2026, 5, 31)) == 0  # still valid on its last day
    assert passes_expire(today=dt.date(2026, 6, 1)) == 1
    assert passes_expire(today=dt.date(2026, 6, 1)) == 0  # idempotent
    sold.refresh_from_db()
    assert sold.status == "expired" and sold.remaining == 0 and sold.forfeited_count == 3
    assert balance(accounts.BREAKAGE) == 7500 and balance(accounts.DEFERRED_PACKAGES) == 0
    assert_ledger_ok()


def test_expiry_keeps_uses_reserved_for_visits_on_or_before_the_expiry_date(s):
    sold = sold_package(
        s["fd"],
        s["patient"],
        package_template(s["cat"], price=10000, quantity=4),
        expires_on=dt.date(2026, 5, 31),
    )
    reserved = _visit(s, day="2026-05-31", arrive=False)
    passes_expire(today=dt.date(2026, 6, 1))
    assert balance(accounts.BREAKAGE) == 7500 and balance(accounts.DEFERRED_PACKAGES) == 2500
    appointment_arrive(actor=s["fd"].user, appointment=reserved)  # arrived late, still covered
    sold.refresh_from_db()
    assert (sold.posted_count, sold.forfeited_count, sold.remaining) == (1, 3, 0)
    assert balance(accounts.DEFERRED_PACKAGES) == 0
    assert_ledger_ok()


def test_expiry_runs_in_the_clinic_time_zone(s):
    clinic_set(time_zone="Pacific/Auckland")
    sold = sold_package(
        s["fd"], s["patient"], package_template(s["cat"]), expires_on=dt.date(2026, 5, 2)
    )
    with clock.frozen(dt.datetime(2026, 5, 2, 11, 30, tzinfo=dt.UTC)):  # 23:30 on 2 May in Auckland
        assert passes_expire() == 0
    # 12:30 UTC on 2 May is already 3 May in Auckland (still 2 May in UTC):
    # the pass has expired there.
    with clock.frozen(dt.datetime(2026, 5, 2, 12, 30, tzinfo=dt.UTC)):
        assert passes_expire() == 1
    assert Pass.objects.get(pk=sold.pk).status == "expired"


# ---------------------------------------------------------------- refund


def test_refund_suggests_price_over_quantity_times_remaining_and_the_rule_based_amount(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"], price=80000, quantity=10))
    _visit(s, hhmm="09:00")
    _visit(s, hhmm="10:00")
    suggestion = refund_suggestions(Pass.objects.get(pk=sold.pk))
    assert suggestion["collected"] == 80000
    assert suggestion["suggested"] == 64000  # 800 ÷ 10 × 8
    assert (
        suggestion["by_rule"] == 80000 - 2 * 10170
    )  # used visits re-priced at the single-visit price, with tax


def test_refund_step_one_turns_the_amount_into_credit_and_ends_the_package(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"], price=80000, quantity=10))
    _visit(s)
    pass_refund(actor=s["admin"].user, sold_pass=sold, amount_minor=72000)
    sold.refresh_from_db()
    assert sold.status == "refunded" and sold.remaining == 0 and sold.posted_count == 1
    assert _credit(s["patient"]) == 72000
    assert balance(accounts.DEFERRED_PACKAGES) == 0
    [invoice] = pass_invoices(sold)
    assert invoice.total_minor == 8000 and invoice.balance_minor == 0
    assert_ledger_ok()
    # Step two: refund the payment's credit to the patient.
    payment = Payment.objects.get(patient=s["patient"])
    payment_refund(actor=s["admin"].user, payment=payment, amount_minor=72000)
    assert _credit(s["patient"]) == 0
    assert_ledger_ok()


def test_a_refund_cannot_exceed_what_was_collected(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"], price=80000, quantity=10))
    with pytest.raises(ValidationFailed, match="what was collected"):
        pass_refund(actor=s["admin"].user, sold_pass=sold, amount_minor=80001)


def test_refunding_more_than_the_unused_value_gives_back_recognised_revenue(s):
    cat = s["cat"]
    sold = sold_package(s["fd"], s["patient"], package_template(cat, price=80000, quantity=10))
    _visit(s)
    revenue_before = balance(accounts.revenue(cat["income_category"].pk))
    pass_refund(
        actor=s["admin"].user, sold_pass=sold, amount_minor=80000
    )  # all of it, the used one too
    assert balance(accounts.revenue(cat["income_category"].pk)) == revenue_before - 8000
    assert _credit(s["patient"]) == 80000
    assert_ledger_ok()


def test_a_refund_smaller_than_the_unused_value_keeps_the_rest_as_breakage(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"], price=80000, quantity=10))
    pass_refund(actor=s["admin"].user, sold_pass=sold, amount_minor=50000)
    assert balance(accounts.BREAKAGE) == 30000 and _credit(s["patient"]) == 50000
    assert_ledger_ok()


def test_a_refund_takes_back_the_tax_in_proportion(s):
    cat = s["cat"]
    sold = sold_package(
        s["fd"], s["patient"], package_template(cat, price=80000, quantity=10, taxes=[cat["tax"]])
    )
    assert balance(accounts.tax_payable(cat["tax"].pk)) == 10400
    pass_refund(actor=s["admin"].user, sold_pass=sold, amount_minor=90400)  # everything collected
    assert balance(accounts.tax_payable(cat["tax"].pk)) == 0 and _credit(s["patient"]) == 90400
    assert_ledger_ok()


def test_a_refund_first_needs_the_package_detached_from_future_visits(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]))
    _visit(s, arrive=False)
    with pytest.raises(Conflict) as error:
        pass_refund(actor=s["admin"].user, sold_pass=sold, amount_minor=0)
    assert error.value.code == "has_reservations"
    pass_refund(actor=s["admin"].user, sold_pass=sold, amount_minor=0, detach_future=True)
    sold.refresh_from_db()
    assert sold.reserved_count == 0 and sold.status == "refunded"
    assert_ledger_ok()


def test_refunding_an_unpaid_package_cancels_its_invoice_balance(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]), paid=False)
    pass_refund(actor=s["admin"].user, sold_pass=sold, amount_minor=0)
    [invoice] = pass_invoices(sold)
    assert invoice.total_minor == 0 and balance(accounts.AR, patient_id=s["patient"].pk) == 0
    assert_ledger_ok()


def test_refunding_needs_administrative_access(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]))
    with pytest.raises(NotAllowed):
        pass_refund(actor=s["fd"].user, sold_pass=sold, amount_minor=0)


# ---------------------------------------------------------------- delete


def test_an_unpaid_purchase_can_be_deleted_with_its_invoice(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]), paid=False)
    pass_delete(actor=s["admin"].user, sold_pass=sold)
    sold.refresh_from_db()
    assert sold.status == "deleted" and Invoice.objects.get().deleted_at is not None
    assert balance(accounts.DEFERRED_PACKAGES) == 0
    assert_ledger_ok()


def test_a_package_invoice_cannot_be_deleted_on_its_own(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]), paid=False)
    with pytest.raises(Conflict) as error:
        invoice_delete(actor=s["admin"].user, invoice=pass_invoices(sold)[0])
    assert error.value.code == "pass_invoice"


def test_deleting_is_refused_while_a_payment_is_applied(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]))
    with pytest.raises(Conflict) as error:
        pass_delete(actor=s["admin"].user, sold_pass=sold)
    assert error.value.code == "invoice_has_payments"


# ---------------------------------------------------------------- transfer


def test_transfer_moves_the_remaining_uses_and_their_value_to_another_patient(s):
    other = make_patient(first_name="Other")
    sold = sold_package(
        s["fd"],
        s["patient"],
        package_template(s["cat"], price=10000, quantity=4, transferable=True),
    )
    _visit(s)
    new = pass_transfer(actor=s["admin"].user, sold_pass=sold, to_patient=other)
    sold.refresh_from_db()
    assert sold.status == "transferred" and sold.remaining == 0
    assert (
        new.patient == other and new.quantity == 3 and new.remaining == 3 and new.net_minor == 7500
    )
    assert ActivityLog.objects.filter(verb="transferred").exists()
    assert balance(accounts.DEFERRED_PACKAGES) == 7500
    _visit(s, hhmm="11:00", patient=other)  # the new owner's booking uses it at once
    new.refresh_from_db()
    assert new.posted_count == 1
    assert_ledger_ok()


def test_a_package_that_is_not_transferable_cannot_be_transferred(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]))
    with pytest.raises(Conflict) as error:
        pass_transfer(actor=s["admin"].user, sold_pass=sold, to_patient=make_patient())
    assert error.value.code == "not_transferable"


def test_transferring_needs_administrative_access(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"], transferable=True))
    with pytest.raises(NotAllowed):
        pass_transfer(
            actor=make_staff(AccessLevel.FRONT_DESK).user, sold_pass=sold, to_patient=make_patient()
        )
