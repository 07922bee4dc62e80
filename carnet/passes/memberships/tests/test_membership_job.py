"""The recurring billing job for memberships (SPEC 6.2): twice, concurrently or after a crash it
never issues a second invoice or a second charge for a cycle; automatic mode charges the card and
emails the receipt; a decline leaves the invoice unpaid, tells both sides and retries."""

import datetime as dt

import pytest
from django.core import mail

from carnet.billing import card_attempts
from carnet.billing.models import Invoice, Payment
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient, race
from carnet.core import clock
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.passes import charging, invoicing
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import cycle_billing
from carnet.passes.memberships import services as memberships
from carnet.passes.models import PassInvoice
from carnet.passes.tests.factories import at, membership_template
from carnet.scheduling.tests.factories import clinic_set

JUNE = dt.date(2026, 6, 1)


@pytest.fixture
def s(front_desk, catalog):
    clinic_set(time_zone="America/Toronto", email="desk@clinic.test")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {"fd": front_desk, "cat": catalog}


def _automatic(s, number="4242424242424242", n=1):
    sold = []
    for _ in range(n):
        patient = make_patient()
        card = card_store(
            actor=s["fd"].user,
            patient=patient,
            number=number,
            exp_month=12,
            exp_year=2030,
            cvc="123",
            holder="P",
        )
        sold.append(
            memberships.membership_sell(
                actor=s["fd"].user,
                patient=patient,
                template=membership_template(s["cat"]),
                payment_mode="automatic",
                card=card,
            )
        )
    return sold


@pytest.mark.django_db
def test_an_automatic_membership_is_charged_and_the_receipt_emailed(
    s, django_capture_on_commit_callbacks
):
    [sold] = _automatic(s)
    with django_capture_on_commit_callbacks(execute=True):
        report = passes_daily(today=dt.date(2026, 5, 1))
    assert report["charged"] == 1
    assert Invoice.objects.get(pass_invoice__sold_pass=sold).balance_minor == 0
    assert any("Payment received" in m.subject for m in mail.outbox)
    assert_ledger_ok()


@pytest.mark.django_db
def test_running_the_job_twice_issues_and_charges_each_cycle_once(s):
    [sold] = _automatic(s)
    for _ in range(2):
        passes_daily(today=JUNE)
    assert Invoice.objects.filter(pass_invoice__sold_pass=sold).count() == 2
    assert Payment.objects.count() == TestGatewayCharge.objects.count() == 2


@pytest.mark.django_db
def test_a_declined_cycle_stays_unpaid_notifies_both_and_is_retried(
    s, django_capture_on_commit_callbacks
):
    [sold] = _automatic(s, number="4000000000000002")
    with django_capture_on_commit_callbacks(execute=True):
        assert passes_daily(today=dt.date(2026, 5, 1))["declined"] == 1
    assert Invoice.objects.get(pass_invoice__sold_pass=sold).balance_minor == 6000
    assert {m.to[0] for m in mail.outbox} >= {sold.patient.email, "desk@clinic.test"}
    assert PassInvoice.objects.get(sold_pass=sold).next_attempt_on == dt.date(2026, 5, 2)
    assert passes_daily(today=dt.date(2026, 5, 2))["declined"] == 1


@pytest.mark.django_db
def test_a_crash_midway_then_a_rerun_issues_nothing_twice(s, monkeypatch):
    sold = _automatic(s, n=3)
    monkeypatch.setattr(
        cycle_billing, "CHUNK", 1
    )  # one membership per transaction: the first one commits
    real, calls = invoicing.invoices_create, []

    def dies_on_the_second(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(**kwargs)

    monkeypatch.setattr(invoicing, "invoices_create", dies_on_the_second)
    with pytest.raises(RuntimeError):
        cycle_billing.cycles_issue(today=JUNE)
    assert (
        Invoice.objects.filter(pass_invoice__sold_pass=sold[0]).count() == 2
    )  # its chunk committed
    assert (
        Invoice.objects.filter(pass_invoice__sold_pass=sold[1]).count() == 1
    )  # its chunk rolled back
    monkeypatch.undo()
    cycle_billing.cycles_issue(today=JUNE)
    cycle_billing.cycles_issue(today=JUNE)
    for one in sold:
        assert Invoice.objects.filter(pass_invoice__sold_pass=one).count() == 2
    assert_ledger_ok()


@pytest.mark.django_db
def test_a_crash_after_the_charge_is_recovered_with_one_charge(s, monkeypatch):
    [sold] = _automatic(s)
    # The process dies after the gateway charged and before the payment is recorded.
    monkeypatch.setattr(
        card_attempts, "charge_record", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        passes_daily(today=dt.date(2026, 5, 1))
    assert TestGatewayCharge.objects.count() == 1 and not Payment.objects.exists()
    monkeypatch.undo()
    with clock.frozen(at("2026-05-01", "10:30")):  # a later run (the next, or payments_reconcile's)
        passes_daily(today=dt.date(2026, 5, 1))
    assert TestGatewayCharge.objects.count() == Payment.objects.count() == 1
    assert_ledger_ok()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_issue_and_charge_each_cycle_once(s):
    sold = _automatic(s, n=3)
    results = race(2, lambda i: passes_daily(today=JUNE))
    assert not [r for r in results if isinstance(r, Exception)], results
    for one in sold:
        assert Invoice.objects.filter(pass_invoice__sold_pass=one).count() == 2
        assert PassInvoice.objects.filter(sold_pass=one).count() == 2
    assert Payment.objects.count() == TestGatewayCharge.objects.count() == 6
    assert_ledger_ok()


@pytest.mark.django_db
def test_each_cycle_is_taxed(s):
    cat = s["cat"]
    sold = memberships.membership_sell(
        actor=s["fd"].user,
        patient=make_patient(),
        template=membership_template(cat, taxes=[cat["tax"]]),
    )
    cycle_billing.cycles_issue(today=JUNE)
    assert [i.tax_minor for i in Invoice.objects.filter(pass_invoice__sold_pass=sold)] == [
        780,
        780,
    ]


@pytest.mark.django_db
def test_charging_right_after_the_sale_then_the_job_charges_nothing_more(s):
    [sold] = _automatic(s)
    assert len(charging.pass_charge_due(sold_pass=sold).charged) == 1
    assert passes_daily(today=dt.date(2026, 5, 1))["charged"] == 0
    assert TestGatewayCharge.objects.count() == Payment.objects.count() == 1
