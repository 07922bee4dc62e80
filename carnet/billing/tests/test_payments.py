import datetime as dt

import pytest

from carnet.billing.models import Allocation, Payment
from carnet.billing.payments import (
    allocation_unapply,
    credit_apply,
    payment_apply,
    payment_receive,
    payment_refund,
)
from carnet.billing.selectors import amount_owing, credit_balance
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import Conflict, NotAllowed, ValidationFailed
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.ledger import accounts
from carnet.ledger.selectors import balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def cat(catalog):
    return catalog["income_category"]


def test_one_payment_across_several_invoices_and_overpayment_becomes_credit(front_desk, cat):
    patient = make_patient()
    a, b = (
        manual_invoice(front_desk, patient, 3000, category=cat),
        manual_invoice(front_desk, patient, 2000, category=cat),
    )
    payment = payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=6000,
        allocations=[(a, 3000), (b, 2000)],
    )
    a.refresh_from_db(), b.refresh_from_db()
    assert a.status == b.status == "paid"
    assert payment.unapplied_minor == 1000 == credit_balance(patient)
    assert (
        balance(accounts.cash("cash")) == 6000 and balance(accounts.AR, patient_id=patient.pk) == 0
    )
    assert balance(accounts.PATIENT_CREDIT, patient_id=patient.pk) == 1000
    assert_ledger_ok()


def test_one_invoice_from_several_payments(front_desk, cat):
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 5000, category=cat)
    payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=2000,
        allocations=[(invoice, 2000)],
    )
    payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="debit",
        amount_minor=3000,
        allocations=[(invoice, 3000)],
    )
    invoice.refresh_from_db()
    assert invoice.status == "paid" and amount_owing(patient) == 0
    assert_ledger_ok()


def test_cannot_over_apply_an_invoice_or_a_payment(front_desk, cat):
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 1000, category=cat)
    with pytest.raises(Conflict):
        payment_receive(
            actor=front_desk.user,
            patient=patient,
            method="cash",
            amount_minor=5000,
            allocations=[(invoice, 1500)],
        )
    with pytest.raises(ValidationFailed):
        payment_receive(
            actor=front_desk.user,
            patient=patient,
            method="cash",
            amount_minor=500,
            allocations=[(invoice, 1000)],
        )
    assert not Payment.objects.exists()  # nothing half-recorded
    payment = payment_receive(
        actor=front_desk.user, patient=patient, method="cash", amount_minor=400
    )
    with pytest.raises(Conflict):
        payment_apply(actor=front_desk.user, payment=payment, invoice=invoice, amount_minor=500)


def test_payment_applies_only_to_its_payers_invoices(front_desk, cat):
    invoice = manual_invoice(front_desk, make_patient(), 1000, category=cat)
    with pytest.raises(ValidationFailed):
        payment_receive(
            actor=front_desk.user,
            patient=make_patient(),
            method="cash",
            amount_minor=1000,
            allocations=[(invoice, 1000)],
        )


def test_apply_credit_oldest_payment_first(front_desk, cat):
    patient = make_patient()
    first = payment_receive(
        actor=front_desk.user, patient=patient, method="cash", amount_minor=1000
    )
    second = payment_receive(
        actor=front_desk.user, patient=patient, method="cash", amount_minor=1000
    )
    invoice = manual_invoice(front_desk, patient, 1500, category=cat)
    allocations = credit_apply(actor=front_desk.user, patient=patient, invoice=invoice)
    assert [(a.payment_id, a.amount_minor) for a in allocations] == [
        (first.pk, 1000),
        (second.pk, 500),
    ]
    assert credit_balance(patient) == 500
    with pytest.raises(Conflict):
        credit_apply(
            actor=front_desk.user,
            patient=patient,
            invoice=manual_invoice(front_desk, patient, 900, category=cat),
            amount_minor=600,
        )
    assert_ledger_ok()


def test_unapply_moves_money_back_to_credit_with_access_rules(front_desk, admin_staff, cat):
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 1000, category=cat)
    payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=1000,
        allocations=[(invoice, 1000)],
    )
    allocation = Allocation.objects.get()
    with pytest.raises(NotAllowed):
        allocation_unapply(actor=front_desk.user, allocation=allocation)
    allocation_unapply(actor=admin_staff.user, allocation=allocation)
    invoice.refresh_from_db()
    assert invoice.balance_minor == 1000 and credit_balance(patient) == 1000
    assert_ledger_ok()


def test_unapplying_a_payment_older_than_24_hours_needs_full_access(front_desk, admin_staff, cat):
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 1000, category=cat)
    payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=1000,
        allocations=[(invoice, 1000)],
    )
    later = clock.now() + dt.timedelta(hours=25)
    with clock.frozen(later):
        with pytest.raises(NotAllowed) as exc:
            allocation_unapply(actor=admin_staff.user, allocation=Allocation.objects.get())
        assert "24 hours" in exc.value.message
        allocation_unapply(
            actor=make_staff(AccessLevel.FULL_ACCESS).user, allocation=Allocation.objects.get()
        )


def test_refund_from_unapplied_amount_to_original_or_other_method(front_desk, admin_staff, cat):
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 1000, category=cat)
    payment = payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=3000,
        allocations=[(invoice, 1000)],
    )
    with pytest.raises(Conflict) as exc:
        payment_refund(actor=admin_staff.user, payment=payment, amount_minor=2500)
    assert exc.value.code == "refund_exceeds_unapplied"
    payment_refund(actor=admin_staff.user, payment=payment, amount_minor=1500)
    payment_refund(actor=admin_staff.user, payment=payment, amount_minor=500, method="etransfer")
    assert credit_balance(patient) == 0
    assert balance(accounts.cash("cash")) == 1500 and balance(accounts.cash("etransfer")) == -500
    with pytest.raises(NotAllowed):
        payment_refund(actor=front_desk.user, payment=payment, amount_minor=1)
    assert_ledger_ok()


def test_card_payment_through_the_gateway_and_its_refund(front_desk, admin_staff, cat):
    patient = make_patient()
    card = card_store(
        actor=front_desk.user,
        patient=patient,
        number="4242424242424242",
        exp_month=12,
        exp_year=clock.now().year + 2,
        cvc="123",
        holder="Pat",
    )
    invoice = manual_invoice(front_desk, patient, 4000, category=cat)
    payment = payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="card_gateway",
        amount_minor=4000,
        card=card,
        allocations=[(invoice, 4000)],
        idempotency_key="k-1",
    )
    assert payment.gateway_charge_id
    assert balance(accounts.CARD_CLEARING) == 4000
    allocation_unapply(actor=admin_staff.user, allocation=Allocation.objects.get())
    refund = payment_refund(actor=admin_staff.user, payment=payment, amount_minor=4000)
    assert refund.gateway_refund_id and balance(accounts.CARD_CLEARING) == 0
    assert_ledger_ok()


def test_declined_card_records_nothing(front_desk, cat):
    patient = make_patient()
    card = card_store(
        actor=front_desk.user,
        patient=patient,
        number="4000000000000002",
        exp_month=12,
        exp_year=clock.now().year + 2,
        cvc="123",
        holder="Pat",
    )
    with pytest.raises(Exception) as exc:
        payment_receive(
            actor=front_desk.user,
            patient=patient,
            method="card_gateway",
            amount_minor=4000,
            card=card,
            idempotency_key="k-2",
        )
    assert getattr(exc.value, "code", "") == "card_declined"
    assert not Payment.objects.exists()
    assert balance(accounts.CARD_CLEARING) == 0


def test_lost_gateway_response_then_retry_charges_once(front_desk, cat):
    patient = make_patient()
    card = card_store(
        actor=front_desk.user,
        patient=patient,
        number="4000000000000770",
        exp_month=12,
        exp_year=clock.now().year + 2,
        cvc="123",
        holder="Pat",
    )
    with pytest.raises(Exception):
        payment_receive(
            actor=front_desk.user,
            patient=patient,
            method="card_gateway",
            amount_minor=2500,
            card=card,
            idempotency_key="retry-me",
        )
    assert not Payment.objects.exists()
    payment = payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="card_gateway",
        amount_minor=2500,
        card=card,
        idempotency_key="retry-me",
    )
    assert TestGatewayCharge.objects.count() == 1 and payment.gateway_charge_id
    assert_ledger_ok()
