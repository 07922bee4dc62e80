"""Payment plans (SPEC 9.6): sessions unlock in proportion to what is paid; the daily job invoices
each instalment once and charges the card on file once, whatever happens to the job."""

import datetime as dt

import pytest
from django.core import mail

from carnet.billing import card_attempts
from carnet.billing.models import Invoice, Payment
from carnet.billing.payments import payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient, race
from carnet.core import clock
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.passes import charging
from carnet.passes.jobs import expiry_reminders_send, passes_daily
from carnet.passes.models import PassInvoice
from carnet.passes.selectors import pass_invoices, pass_unlocked
from carnet.passes.tests.factories import at, package_template, sold_package
from carnet.scheduling.tests.factories import clinic_set

TODAY = dt.date(2026, 5, 1)


@pytest.fixture
def s(front_desk, catalog):
    clinic_set(time_zone="America/Toronto", email="desk@clinic.test")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {"fd": front_desk, "cat": catalog, "patient": make_patient()}


def _card(s, number="4242424242424242"):
    return card_store(
        actor=s["fd"].user,
        patient=s["patient"],
        number=number,
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="Pat Test",
    )


def _plan(s, card=None, price=30000, quantity=6, n=3):
    template = package_template(s["cat"], price=price, quantity=quantity, instalments=n)
    return sold_package(s["fd"], s["patient"], template, paid=False, card=card)


@pytest.mark.django_db
def test_a_plan_splits_the_price_into_monthly_instalments_without_losing_a_cent(s):
    sold = _plan(s, price=10000, n=3)
    rows = list(sold.pass_invoices.order_by("seq"))
    assert [r.amount_minor for r in rows] == [3333, 3333, 3334]
    assert [r.due_on for r in rows] == [TODAY, dt.date(2026, 6, 1), dt.date(2026, 7, 1)]
    assert len(pass_invoices(sold)) == 1 and pass_invoices(sold)[0].total_minor == 3333


@pytest.mark.django_db
def test_sessions_unlock_in_proportion_to_what_has_been_paid(s):
    sold = _plan(s)
    assert pass_unlocked(sold) == 0
    [first] = pass_invoices(sold)
    payment_receive(
        actor=s["fd"].user,
        patient=s["patient"],
        method="cash",
        amount_minor=10000,
        allocations=[(first, 10000)],
    )
    assert pass_unlocked(sold) == 2  # a third paid: 2 of 6
    charging.pass_invoices_bill(today=dt.date(2026, 6, 1))
    second = pass_invoices(sold)[1]
    payment_receive(
        actor=s["fd"].user,
        patient=s["patient"],
        method="cash",
        amount_minor=5000,
        allocations=[(second, 5000)],
    )
    assert pass_unlocked(sold) == 3


@pytest.mark.django_db
def test_the_job_issues_each_due_instalment_once_even_when_run_twice(s):
    sold = _plan(s)
    assert charging.pass_invoices_bill(today=TODAY).issued == []
    first = charging.pass_invoices_bill(today=dt.date(2026, 7, 15))
    again = charging.pass_invoices_bill(today=dt.date(2026, 7, 15))
    assert len(first.issued) == 2 and again.issued == []
    assert Invoice.objects.filter(pass_invoice__sold_pass=sold).count() == 3
    assert_ledger_ok()


@pytest.mark.django_db
def test_a_card_on_file_is_charged_once_and_the_receipt_emailed(
    s, django_capture_on_commit_callbacks
):
    card = _card(s)
    sold = _plan(s, card=card)
    with django_capture_on_commit_callbacks(execute=True):
        run = charging.pass_invoices_bill(today=TODAY)
    assert len(run.charged) == 1 and Payment.objects.filter(method="card_gateway").count() == 1
    assert pass_unlocked(sold) == 2
    assert charging.pass_invoices_bill(today=TODAY).charged == []
    assert any("Payment received" in m.subject for m in mail.outbox)
    assert_ledger_ok()


@pytest.mark.django_db
def test_a_declined_card_leaves_the_invoice_unpaid_emails_both_and_retries_after_1_3_7_days(
    s, django_capture_on_commit_callbacks
):
    sold = _plan(s, card=_card(s, "4000000000000002"))
    with django_capture_on_commit_callbacks(execute=True):
        assert len(charging.pass_invoices_bill(today=TODAY).declined) == 1
    row = sold.pass_invoices.get(seq=1)
    assert row.charge_attempts == 1 and row.next_attempt_on == TODAY + dt.timedelta(days=1)
    assert pass_invoices(sold)[0].balance_minor == 10000
    recipients = {
        tuple(m.to)
        for m in mail.outbox
        if "did not go through" in m.subject or "Declined" in m.subject
    }
    assert recipients == {(s["patient"].email,), ("desk@clinic.test",)}
    assert charging.pass_invoices_bill(today=TODAY).declined == []  # not before the retry date
    day = TODAY
    for wait in (1, 3, 7):
        day += dt.timedelta(days=wait)
        assert len(charging.pass_invoices_bill(today=day).declined) == 1
    row.refresh_from_db()
    assert row.charge_attempts == 4 and row.next_attempt_on is None  # staff follow up now
    assert_ledger_ok()


@pytest.mark.django_db
def test_a_crash_after_charging_is_recovered_by_the_next_run_with_one_charge(s, monkeypatch):
    sold = _plan(s, card=_card(s))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")  # the process dies: nothing may catch it

    monkeypatch.setattr(card_attempts, "charge_record", crash)
    with pytest.raises(KeyboardInterrupt):
        charging.pass_invoices_bill(today=TODAY)
    assert TestGatewayCharge.objects.count() == 1 and not Payment.objects.exists()
    monkeypatch.undo()
    with clock.frozen(at("2026-05-02", "06:00")):  # the next morning's run asks the gateway first
        charging.pass_invoices_bill(today=TODAY)
    assert TestGatewayCharge.objects.count() == 1 and Payment.objects.count() == 1
    assert pass_invoices(sold)[0].balance_minor == 0
    assert_ledger_ok()


@pytest.mark.django_db
def test_a_run_that_meets_another_runs_charge_in_flight_leaves_it_alone(s, monkeypatch):
    """While one run waits for the gateway's answer, a second run finds the attempt pending: asking
    the gateway then would find nothing yet, fail it and charge a second time. It leaves it."""
    sold = _plan(s, card=_card(s))
    real, nested = card_attempts.card_charge, []

    def slow_gateway(**kwargs):
        if not nested:
            nested.append(charging.pass_invoices_bill(today=TODAY))  # the other run, meanwhile
        return real(**kwargs)

    monkeypatch.setattr(card_attempts, "card_charge", slow_gateway)
    assert charging.pass_invoices_bill(today=TODAY).charged == [sold.pass_invoices.get(seq=1).pk]
    assert nested[0].charged == []
    assert TestGatewayCharge.objects.count() == 1 and Payment.objects.count() == 1
    assert_ledger_ok()


@pytest.mark.django_db
def test_a_lost_gateway_response_is_retried_with_the_same_key_and_charges_once(s):
    sold = _plan(s, card=_card(s, "4000000000000770"))
    assert charging.pass_invoices_bill(today=TODAY).charged == []
    assert charging.pass_invoices_bill(today=TODAY).charged == [sold.pass_invoices.get(seq=1).pk]
    assert TestGatewayCharge.objects.count() == 1 and Payment.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_issue_and_charge_each_instalment_once(s):
    sold = _plan(s, card=_card(s))
    results = race(2, lambda i: charging.pass_invoices_bill(today=dt.date(2026, 7, 15)))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert PassInvoice.objects.filter(sold_pass=sold, invoice__isnull=False).count() == 3
    assert Invoice.objects.filter(pass_invoice__sold_pass=sold).count() == 3
    assert Payment.objects.count() == TestGatewayCharge.objects.count() == 3
    assert_ledger_ok()


@pytest.mark.django_db
def test_an_expiry_reminder_is_sent_once_per_expiry_date(s, django_capture_on_commit_callbacks):
    sold_package(s["fd"], s["patient"], package_template(s["cat"]), expires_on=dt.date(2026, 5, 10))
    with django_capture_on_commit_callbacks(execute=True):
        assert expiry_reminders_send(today=TODAY) == 1
    assert expiry_reminders_send(today=TODAY) == 0
    assert any("expires on 2026-05-10" in m.subject for m in mail.outbox)


@pytest.mark.django_db
def test_the_daily_job_reports_what_it_did(s):
    _plan(s)
    report = passes_daily(today=dt.date(2026, 6, 2))
    assert report["instalments_issued"] == 1 and report["passes_expired"] == 0
