"""Memberships (SPEC 6, 9.7): selling, cycles, uses per cycle, recognition by day, and ending."""

import datetime as dt

import pytest

from carnet.billing.models import Invoice
from carnet.billing.payments import payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.core.errors import Conflict, ValidationFailed
from carnet.gateway.services import card_store
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.cycles import memberships_recognise
from carnet.passes.memberships import services as ms
from carnet.passes.memberships.cycle_billing import cycles_issue
from carnet.passes.models import PassInvoice, Redemption
from carnet.passes.redeeming.redemption import explain
from carnet.passes.tests.factories import at, membership_template, practitioner
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book, appointment_reschedule
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


def _sell(s, template=None, **kw):
    return ms.membership_sell(
        actor=s["fd"].user,
        patient=s["patient"],
        template=template or membership_template(s["cat"]),
        **kw,
    )


def _book(s, day, hhmm="09:00", **kw):
    return appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(day, hhmm),
        patients=[s["patient"]],
        **kw,
    )


def _live(appointment):
    return Redemption.objects.filter(
        visit__appointment=appointment, status__in=["reserved", "posted"]
    ).first()


def _pay(s, invoice):
    payment_receive(
        actor=s["fd"].user,
        patient=s["patient"],
        method="cash",
        amount_minor=invoice.balance_minor,
        allocations=[(invoice, invoice.balance_minor)],
    )


def _invoices(sold):
    return list(Invoice.objects.filter(pass_invoice__sold_pass=sold).order_by("invoice_date", "pk"))


def test_selling_today_invoices_the_first_cycle(s):
    sold = _sell(s)
    [invoice] = _invoices(sold)
    assert (
        invoice.total_minor == 6000
        and "2026-05-01 to 2026-05-31" in invoice.lines.get().description
    )
    assert balance(accounts.DEFERRED_MEMBERSHIPS) == 6000
    assert_ledger_ok()


def test_a_start_in_the_past_invoices_the_past_cycles_at_once(s):
    sold = _sell(s, start_date=dt.date(2026, 2, 15))
    assert [i.invoice_date for i in _invoices(sold)] == [dt.date(2026, 5, 1)] * 3
    assert [r.period_start for r in sold.pass_invoices.order_by("seq")] == [
        dt.date(2026, 2, 15),
        dt.date(2026, 3, 15),
        dt.date(2026, 4, 15),
    ]
    assert_ledger_ok()


def test_a_start_in_the_future_invoices_nothing_yet(s):
    sold = _sell(s, start_date=dt.date(2026, 6, 1))
    assert _invoices(sold) == []
    assert cycles_issue(today=dt.date(2026, 6, 1)) and len(_invoices(sold)) == 1


def test_automatic_payment_needs_a_card_not_credit(s):
    with pytest.raises(ValidationFailed, match="card on file"):
        _sell(s, payment_mode="automatic")


def test_uses_are_counted_per_cycle(s):
    _sell(s)  # 2 uses a month
    first, second = _book(s, "2026-05-04"), _book(s, "2026-05-05")
    third = _book(s, "2026-05-06")
    next_month = _book(s, "2026-06-02")
    assert _live(first) and _live(second) and _live(third) is None and _live(next_month)
    assert explain(third.visits.get())[0]["code"] == "cycle_used_up"
    assert_ledger_ok()


def test_unlimited_uses(s):
    _sell(s, template=membership_template(s["cat"], uses=None))
    assert all(_live(_book(s, f"2026-05-{d:02d}")) for d in range(4, 10))


def test_a_membership_covers_a_visit_while_its_cycle_is_unpaid_with_a_warning(s):
    _sell(s)
    appointment = _book(s, "2026-05-04")
    [entry] = explain(appointment.visits.get())
    assert entry["code"] == "attached"
    other = _book(s, "2026-05-05", pass_choice=None)
    [entry] = explain(other.visits.get())
    assert entry["can_cover"] and "not paid yet" in entry["warning"]


def test_arrival_of_a_covered_visit_bills_the_additional_charge_and_recognises_nothing_per_visit(s):
    sold = _sell(s)
    appointment = _book(s, "2026-05-04")
    appointment_arrive(actor=s["fd"].user, appointment=appointment)
    visit = appointment.visits.get()
    visit.refresh_from_db()
    assert visit.invoice.total_minor == 0 and _live(appointment).value_minor == 0
    sold.refresh_from_db()
    assert sold.posted_count == 1
    assert_ledger_ok()


def test_fees_are_recognised_ratably_by_day(s):
    _sell(s, template=membership_template(s["cat"], price=3100))  # May has 31 days: 1.00 a day
    assert memberships_recognise(today=dt.date(2026, 5, 11)) == 1000
    assert memberships_recognise(today=dt.date(2026, 5, 11)) == 0  # idempotent
    assert memberships_recognise(today=dt.date(2026, 6, 1)) == 2100
    assert balance(accounts.DEFERRED_MEMBERSHIPS) == 0
    assert_ledger_ok()


def test_rollover_carries_unused_uses_up_to_the_cap(s):
    sold = _sell(s, template=membership_template(s["cat"], uses=2, rollover=True, rollover_cap=1))
    cycles_issue(today=dt.date(2026, 6, 1))
    june = sold.pass_invoices.get(seq=2)
    assert june.uses_allowed == 3


def test_rescheduling_into_a_full_cycle_is_refused(s):
    _sell(s, template=membership_template(s["cat"], uses=1))
    may, june = _book(s, "2026-05-04"), _book(s, "2026-06-04")
    assert _live(may) and _live(june)
    with pytest.raises(Conflict) as error:
        appointment_reschedule(actor=s["fd"].user, appointment=may, start=at("2026-06-05", "09:00"))
    assert error.value.code == "cycle_used_up"
    appointment_reschedule(actor=s["fd"].user, appointment=may, start=at("2026-05-20", "09:00"))
    assert_ledger_ok()


def test_a_term_ends_after_its_cycles(s):
    sold = _sell(s, template=membership_template(s["cat"], term=2))
    cycles_issue(today=dt.date(2026, 9, 1))
    assert sold.pass_invoices.count() == 2
    late = _book(s, "2026-07-02")
    assert _live(late) is None and explain(late.visits.get())[0]["code"] == "ended"


def test_cancel_needs_a_paid_cycle_then_ends_at_the_cycle_end(s):
    sold = _sell(s)
    with pytest.raises(Conflict) as error:
        ms.membership_cancel(actor=s["fd"].user, sold_pass=sold)
    assert error.value.code == "no_paid_cycle"
    _pay(s, _invoices(sold)[0])
    june = _book(s, "2026-06-03")
    ms.membership_cancel(actor=s["fd"].user, sold_pass=sold)
    sold.refresh_from_db()
    assert sold.ends_after == dt.date(2026, 5, 31) and sold.status == "active"
    assert _live(june) is None
    cycles_issue(today=dt.date(2026, 6, 15))
    assert len(_invoices(sold)) == 1
    assert ms.memberships_end(today=dt.date(2026, 6, 1)) == 1
    sold.refresh_from_db()
    assert sold.status == "cancelled"
    assert_ledger_ok()


def test_cancel_at_once_earns_the_current_cycle_now(s):
    sold = _sell(s)
    _pay(s, _invoices(sold)[0])
    ms.membership_cancel(actor=s["fd"].user, sold_pass=sold, at_cycle_end=False)
    sold.refresh_from_db()
    assert sold.status == "cancelled" and balance(accounts.DEFERRED_MEMBERSHIPS) == 0
    assert_ledger_ok()


def test_cancelling_inside_the_policy_warns_but_does_not_block(s):
    sold = _sell(s, template=membership_template(s["cat"], cancellable_after_cycles=3))
    assert "cancellable after 3" in ms.cancel_warning(sold)
    _pay(s, _invoices(sold)[0])
    ms.membership_cancel(actor=s["fd"].user, sold_pass=sold)


def test_delete_only_while_every_cycle_invoice_is_unpaid(s):
    sold = _sell(s, start_date=dt.date(2026, 4, 1))
    memberships_recognise(today=dt.date(2026, 5, 1))
    ms.membership_delete(actor=s["admin"].user, sold_pass=sold)
    sold.refresh_from_db()
    assert sold.status == "deleted" and all(i.deleted_at for i in _invoices(sold))
    assert balance(accounts.DEFERRED_MEMBERSHIPS) == 0
    assert_ledger_ok()
    paid = _sell(s)
    _pay(s, _invoices(paid)[0])
    with pytest.raises(Conflict):
        ms.membership_delete(actor=s["admin"].user, sold_pass=paid)


def test_refund_a_cycle_by_unused_uses_within_what_was_collected(s):
    sold = _sell(s)  # 60.00, 2 uses
    _pay(s, _invoices(sold)[0])
    appointment_arrive(actor=s["fd"].user, appointment=_book(s, "2026-05-04"))
    row = sold.pass_invoices.get(seq=1)
    assert ms.cycle_refund_suggestion(row)["suggested"] == 3000
    with pytest.raises(ValidationFailed):
        ms.cycle_refund(actor=s["admin"].user, row=row, amount_minor=6001)
    ms.cycle_refund(actor=s["admin"].user, row=row, amount_minor=3000)
    assert balance(accounts.PATIENT_CREDIT, patient_id=s["patient"].pk) == 3000
    assert balance(accounts.DEFERRED_MEMBERSHIPS) == 0
    assert _live(_book(s, "2026-05-06")) is None  # the refunded cycle has no uses left
    assert_ledger_ok()


def test_an_unlimited_cycle_refund_is_prorated_by_unused_days(s):
    sold = _sell(s, template=membership_template(s["cat"], price=3100, uses=None))
    _pay(s, _invoices(sold)[0])
    row = sold.pass_invoices.get(seq=1)
    assert ms.cycle_refund_suggestion(row, today=dt.date(2026, 5, 11))["suggested"] == 2100


def test_pause_skips_cycles_and_pushes_the_end_out(s):
    sold = _sell(
        s, template=membership_template(s["cat"], term=3, pause_allowed=True, pause_max_cycles=2)
    )
    ms.membership_pause(actor=s["fd"].user, sold_pass=sold, cycles=2)
    cycles_issue(today=dt.date(2026, 10, 15))
    rows = list(sold.pass_invoices.order_by("seq"))
    assert [(r.period_start, r.skipped) for r in rows] == [
        (dt.date(2026, 5, 1), False),
        (dt.date(2026, 6, 1), True),
        (dt.date(2026, 7, 1), True),
        (dt.date(2026, 8, 1), False),
        (dt.date(2026, 9, 1), False),
    ]
    assert len(_invoices(sold)) == 3
    june = _book(s, "2026-06-10")
    assert explain(june.visits.get())[0]["code"] == "paused"
    assert_ledger_ok()


def test_self_cancel_from_the_portal_respects_the_policy(s):
    sold = _sell(
        s, template=membership_template(s["cat"], self_cancel=True, cancellable_after_cycles=2)
    )
    _pay(s, _invoices(sold)[0])
    with pytest.raises(Conflict) as error:
        ms.membership_cancel(actor=None, sold_pass=sold, by_patient=True)
    assert error.value.code == "inside_policy"
    with clock.frozen(at("2026-06-02", "10:00")):
        cycles_issue()
        ms.membership_cancel(actor=None, sold_pass=sold, by_patient=True)
    sold.refresh_from_db()
    assert sold.ends_after == dt.date(2026, 6, 30)


def test_changing_the_card_schedules_the_unpaid_current_cycle_on_it(s):
    sold = _sell(s)
    card = card_store(
        actor=s["fd"].user,
        patient=s["patient"],
        number="4242424242424242",
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="P",
    )
    ms.membership_payment_set(
        actor=s["fd"].user, sold_pass=sold, payment_mode="automatic", card=card
    )
    assert PassInvoice.objects.get(sold_pass=sold, seq=1).next_attempt_on == dt.date(2026, 5, 1)
