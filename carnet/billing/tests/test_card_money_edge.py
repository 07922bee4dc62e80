"""Money at the card processor's edge (SPEC 3.4): every charge and refund exactly once, recorded and
reconciled, whatever crashes. The test gateway keeps its books in a database of its own, so a
crash or rollback in Carnet leaves its charges standing, as a real processor's would."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import transaction
from django.db.models import Sum

from carnet.billing import card_attempts
from carnet.billing.models import CardAttempt, Invoice, Payment, Refund
from carnet.billing.payments import balance_pay_online, payment_receive, payment_refund
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import PASSWORD, Api, make_patient, make_staff, race
from carnet.core import clock
from carnet.core.errors import Conflict
from carnet.core.permissions import AccessLevel
from carnet.gateway import testing as test_gateway
from carnet.gateway.models import TestGatewayCharge, TestGatewayRefund
from carnet.gateway.services import (
    GatewayCallInTransaction,
    GatewayUnavailable,
    card_charge,
    card_store,
)
from carnet.giftcards.models import GiftCard
from carnet.giftcards.services import (
    gift_card_create_and_load,
    gift_card_refund,
    gift_card_reload,
    gift_card_sell_online,
)
from carnet.passes import charging
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships.online import membership_sign_up_online
from carnet.passes.packages.online import package_buy_online
from carnet.passes.tests.factories import membership_template, package_template, sold_package
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

CARD = {
    "card_number": "4242 4242 4242 4242",
    "exp_month": 12,
    "exp_year": 2040,
    "cvc": "123",
    "holder": "Pat Test",
}
LOST = "4000000000000770"


class Crash(BaseException):
    """The process dies (not an error any code may catch): nothing after it runs."""


@pytest.fixture
def crash_before_recording(monkeypatch):
    """The next outcome to be recorded is never recorded: the process dies after
    the gateway answered."""

    def arm(name="charge_record"):
        real, calls = getattr(card_attempts, name), []

        def dies_once(*args, **kwargs):
            if not calls:
                calls.append(1)
                raise Crash()
            return real(*args, **kwargs)

        monkeypatch.setattr(card_attempts, name, dies_once)

    return arm


@pytest.fixture
def desk(db, catalog):
    clinic_set(
        gift_cards_enabled=True, online_sales_enabled=True, gift_card_online_sales_enabled=True
    )
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    return {
        "staff": staff,
        "user": staff.user,
        "cat": catalog["income_category"],
        "catalog": catalog,
    }


def _card(desk, patient, number="4242424242424242"):
    return card_store(
        actor=desk["user"],
        patient=patient,
        number=number,
        exp_month=12,
        exp_year=2040,
        cvc="123",
        holder="Pat Test",
    )


def assert_gateway_money_is_recorded_money():
    """What the gateway took and gave back equals what Carnet recorded, and the ledger holds."""
    charged = TestGatewayCharge.objects.aggregate(amount=Sum("amount_minor"))["amount"] or 0
    refunded = TestGatewayRefund.objects.aggregate(amount=Sum("amount_minor"))["amount"] or 0
    card_payments = Payment.objects.filter(method=Payment.Method.CARD_GATEWAY)
    assert (card_payments.aggregate(amount=Sum("amount_minor"))["amount"] or 0) == charged
    assert sorted(card_payments.values_list("gateway_charge_id", flat=True)) == sorted(
        TestGatewayCharge.objects.values_list("charge_id", flat=True)
    )
    assert (
        Refund.objects.filter(method=Payment.Method.CARD_GATEWAY).aggregate(
            amount=Sum("amount_minor")
        )["amount"]
        or 0
    ) == refunded
    assert_ledger_ok()


def reconcile_now():
    call_command("payments_reconcile", "--older-than-minutes=0", stdout=open("/dev/null", "w"))


# ---------------------------------------------------------------- the boundary itself


def test_no_gateway_call_runs_inside_a_database_transaction(desk):
    card = _card(desk, make_patient())
    with pytest.raises(GatewayCallInTransaction), transaction.atomic():
        card_charge(
            card_or_token=card, amount_minor=100, currency="CAD", idempotency_key="in-a-transaction"
        )
    assert not TestGatewayCharge.objects.exists()


def test_the_test_gateway_keeps_its_charge_when_carnet_rolls_back(desk):
    card = _card(desk, make_patient())
    card_charge(card_or_token=card, amount_minor=100, currency="CAD", idempotency_key="kept")
    with pytest.raises(RuntimeError), transaction.atomic():
        Payment.objects.all().delete()
        raise RuntimeError("Carnet rolls back")
    assert (
        TestGatewayCharge.objects.filter(key="kept").count() == 1
    )  # the remote side is not Carnet's to undo


# ---------------------------------------------------------- a crash after the answer, in every path


def staff_card_payment(desk, patient):
    invoice = manual_invoice(desk["staff"], patient, 5000, category=desk["cat"])
    payment_receive(
        actor=desk["user"],
        patient=patient,
        method="card_gateway",
        amount_minor=5000,
        allocations=[(invoice, 5000)],
        card=_card(desk, patient),
        idempotency_key="crash-staff",
    )


def _api_payment(desk, patient):
    invoice = manual_invoice(desk["staff"], patient, 5000, category=desk["cat"])
    card = _card(desk, patient)
    Api(desk["user"]).post(
        "/payments",
        {
            "patient_id": patient.pk,
            "method": "card_gateway",
            "amount_minor": 5000,
            "card_id": card.pk,
            "allocations": [{"invoice_id": invoice.pk, "amount_minor": 5000}],
        },
        **{"Idempotency-Key": "crash-api"},
    )


def _gift_card_load(desk, patient):
    gift_card_create_and_load(
        actor=desk["user"],
        code="CRASH01",
        amount_minor=5000,
        purchaser=patient,
        method="card_gateway",
        card=_card(desk, patient),
        idempotency_key="crash-gc",
    )


def _pay_balance(desk, patient):
    manual_invoice(desk["staff"], patient, 5000, category=desk["cat"])
    balance_pay_online(patient=patient, idempotency_key="crash-pay", **CARD)


def _package_online(desk, patient):
    patient_portal_enable(actor=desk["user"], patient=patient, password=PASSWORD)
    patient.refresh_from_db()
    template = package_template(
        desk["catalog"], name="5 online", price=40000, quantity=5, sold_online=True
    )
    package_buy_online(
        user=patient.user, patient=patient, template=template, idempotency_key="crash-pass", **CARD
    )


def _gift_card_online(desk, patient):
    gift_card_sell_online(
        patient=patient,
        amount_minor=5000,
        recipient_name="Friend",
        recipient_email="friend@example.test",
        idempotency_key="crash-gco",
        **CARD,
    )


def _membership_online(desk, patient):
    patient_portal_enable(actor=desk["user"], patient=patient, password=PASSWORD)
    patient.refresh_from_db()
    template = membership_template(desk["catalog"], name="Online monthly", sold_online=True)
    membership_sign_up_online(
        user=patient.user, patient=patient, template=template, idempotency_key="crash-ms", **CARD
    )


def _daily_job(desk, patient):
    template = package_template(desk["catalog"], price=30000, quantity=6, instalments=3)
    sold_package(desk["staff"], patient, template, paid=False, card=_card(desk, patient))
    charging.pass_invoices_bill(today=clock.today("America/Toronto"))


@pytest.mark.parametrize(
    "path",
    [
        staff_card_payment,
        _api_payment,
        _gift_card_load,
        _pay_balance,
        _package_online,
        _gift_card_online,
        _membership_online,
        _daily_job,
    ],
)
def test_a_crash_after_the_gateway_answered_is_recorded_once_by_reconciliation(
    desk, crash_before_recording, path
):
    patient = make_patient(email="p@example.test")
    crash_before_recording()
    with pytest.raises(Crash):
        path(desk, patient)
    assert (
        TestGatewayCharge.objects.count() == 1
        and not Payment.objects.filter(method="card_gateway").exists()
    )
    [attempt] = CardAttempt.objects.all()
    assert attempt.status == "pending"
    reconcile_now()
    reconcile_now()  # twice: still once
    attempt.refresh_from_db()
    assert attempt.status == "succeeded" and attempt.reconciled_at is not None
    assert Payment.objects.filter(method="card_gateway").count() == 1
    assert_gateway_money_is_recorded_money()


def test_a_purpose_completes_on_reconciliation(desk, crash_before_recording):
    """The online package is sold and the gift card loaded by reconciliation, not only paid."""
    patient = make_patient(email="p@example.test")
    crash_before_recording()
    with pytest.raises(Crash):
        _gift_card_online(desk, patient)
    reconcile_now()
    card = GiftCard.objects.get()
    assert card.balance_minor == 5000 and card.purchaser == patient
    assert (
        gift_card_sell_online(
            patient=patient,
            amount_minor=5000,
            recipient_name="Friend",
            recipient_email="friend@example.test",
            idempotency_key="crash-gco",
            **CARD,
        )
        == card
    )
    assert TestGatewayCharge.objects.count() == 1


def test_a_crash_after_a_refund_is_recorded_once_by_reconciliation(desk, crash_before_recording):
    patient = make_patient()
    payment = payment_receive(
        actor=desk["user"],
        patient=patient,
        method="card_gateway",
        amount_minor=4000,
        card=_card(desk, patient),
        idempotency_key="to-refund",
    )
    crash_before_recording("refund_record")
    with pytest.raises(Crash):
        payment_refund(
            actor=desk["user"], payment=payment, amount_minor=1500, idempotency_key="refund-1"
        )
    payment.refresh_from_db()
    assert (
        payment.held_minor == 1500 and payment.unapplied_minor == 2500
    )  # held: not spendable twice meanwhile
    with pytest.raises(Conflict):
        payment_refund(
            actor=desk["user"], payment=payment, amount_minor=3000, idempotency_key="refund-2"
        )
    reconcile_now()
    payment.refresh_from_db()
    assert (payment.refunded_minor, payment.held_minor, TestGatewayRefund.objects.count()) == (
        1500,
        0,
        1,
    )
    assert_gateway_money_is_recorded_money()


# ---------------------------------------------------------------- the reproductions


@pytest.mark.django_db(transaction=True)
def test_ten_parallel_card_payments_on_one_invoice_charge_it_once(catalog):
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    patient = make_patient()
    invoice = manual_invoice(staff, patient, 5000, category=catalog["income_category"])
    card = card_store(
        actor=staff.user,
        patient=patient,
        number="4242424242424242",
        exp_month=12,
        exp_year=2040,
        cvc="123",
        holder="Pat Test",
    )

    def pay(i):
        return payment_receive(
            actor=staff.user,
            patient=patient,
            method="card_gateway",
            amount_minor=5000,
            allocations=[(Invoice.objects.get(pk=invoice.pk), 5000)],
            card=card,
            idempotency_key=f"parallel-{i}",
        )

    results = race(10, pay)
    paid = [r for r in results if isinstance(r, Payment)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(paid) == 1 and len(refused) == 9, results
    assert (
        TestGatewayCharge.objects.count() == 1
        and TestGatewayCharge.objects.get().amount_minor == 5000
    )
    invoice.refresh_from_db()
    assert invoice.balance_minor == 0
    assert_gateway_money_is_recorded_money()


def test_a_lost_response_then_a_desk_payment_becomes_credit_never_orphaned(desk):
    patient = make_patient()
    template = package_template(desk["catalog"], price=30000, quantity=6, instalments=3)
    sold = sold_package(
        desk["staff"], patient, template, paid=False, card=_card(desk, patient, LOST)
    )
    today = clock.today("America/Toronto")
    assert (
        charging.pass_invoices_bill(today=today).charged == []
    )  # charged at the gateway, answer lost
    row = sold.pass_invoices.get(seq=1)
    payment_receive(
        actor=desk["user"],
        patient=patient,
        method="cash",
        amount_minor=row.invoice.balance_minor,
        allocations=[(row.invoice, row.invoice.balance_minor)],
    )
    passes_daily(today=today)
    [card_payment] = Payment.objects.filter(method="card_gateway")
    assert (
        card_payment.unapplied_minor == 10000
    )  # the paid-twice money is the patient's credit, recorded
    assert_gateway_money_is_recorded_money()


def test_a_lost_response_then_a_card_change_lets_the_daily_job_complete(desk):
    patient = make_patient()
    template = package_template(desk["catalog"], price=30000, quantity=6, instalments=3)
    sold = sold_package(
        desk["staff"], patient, template, paid=False, card=_card(desk, patient, LOST)
    )
    today = clock.today("America/Toronto")
    assert (
        charging.pass_invoices_bill(today=today).charged == []
    )  # charged at the gateway, answer lost
    sold.refresh_from_db()
    sold.card = _card(desk, patient)  # the desk puts a new card on the membership meanwhile
    sold.save(update_fields=["card"])
    report = passes_daily(today=today)
    assert report["errors"] == [] and report["charged"] == 1
    assert (
        Payment.objects.filter(method="card_gateway").count()
        == 1
        == TestGatewayCharge.objects.count()
    )
    assert_gateway_money_is_recorded_money()


def test_an_automatic_charge_takes_only_the_balance_still_owed(desk):
    patient = make_patient()
    template = package_template(desk["catalog"], price=30000, quantity=6, instalments=3)
    sold = sold_package(desk["staff"], patient, template, paid=False, card=_card(desk, patient))
    invoice = sold.pass_invoices.get(seq=1).invoice
    payment_receive(
        actor=desk["user"],
        patient=patient,
        method="cash",
        amount_minor=4000,
        allocations=[(invoice, 4000)],
    )
    charging.pass_invoices_bill(today=clock.today("America/Toronto"))
    assert TestGatewayCharge.objects.get().amount_minor == invoice.total_minor - 4000
    invoice.refresh_from_db()
    assert invoice.balance_minor == 0
    assert_gateway_money_is_recorded_money()


def test_one_failing_row_never_stops_the_daily_job(desk, monkeypatch):
    patient = make_patient()
    template = package_template(desk["catalog"], price=30000, quantity=6, instalments=3)
    sold_package(desk["staff"], patient, template, paid=False, card=_card(desk, patient))
    monkeypatch.setattr(charging, "_charge", lambda pk, today: 1 / 0)
    report = passes_daily(today=clock.today("America/Toronto"))
    assert (
        report["errors"] == []
        and "division by zero" in patient.passes.get().pass_invoices.get(seq=1).last_error
    )


def test_a_gift_card_refund_failing_half_way_records_exactly_what_was_refunded(desk, monkeypatch):
    patient = make_patient()
    card = _card(desk, patient)
    gift_card = gift_card_create_and_load(
        actor=desk["user"],
        code="HALF01",
        amount_minor=3000,
        purchaser=patient,
        method="card_gateway",
        card=card,
        idempotency_key="l1",
    )

    gift_card_reload(
        actor=desk["user"],
        gift_card=gift_card,
        amount_minor=2000,
        payer=patient,
        method="card_gateway",
        card=card,
        idempotency_key="l2",
    )
    real, calls = test_gateway.TestGateway.refund, []

    def second_fails(self, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise GatewayUnavailable()
        return real(self, **kwargs)

    monkeypatch.setattr(test_gateway.TestGateway, "refund", second_fails)
    with pytest.raises(Conflict) as refused:
        gift_card_refund(
            actor=desk["user"], gift_card=gift_card, amount_minor=5000, idempotency_key="r1"
        )
    assert refused.value.code == "refund_partly_failed"
    gift_card.refresh_from_db()
    assert (gift_card.balance_minor, gift_card.held_minor) == (
        3000,
        3000,
    )  # 20.00 refunded; 30.00 waits for its answer
    reconcile_now()  # the gateway never made the second refund: released, back to spendable
    gift_card.refresh_from_db()
    assert (gift_card.balance_minor, gift_card.held_minor) == (3000, 0)
    assert_gateway_money_is_recorded_money()
    gift_card_refund(
        actor=desk["user"], gift_card=gift_card, amount_minor=3000, idempotency_key="r2"
    )  # the rest, retried
    gift_card.refresh_from_db()
    assert gift_card.balance_minor == 0 and TestGatewayRefund.objects.count() == 2
    assert_gateway_money_is_recorded_money()


@pytest.mark.django_db(transaction=True)
def test_two_reconciliations_at_once_record_each_charge_once(catalog, monkeypatch):
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    patient = make_patient()
    card = card_store(
        actor=staff.user,
        patient=patient,
        number="4242424242424242",
        exp_month=12,
        exp_year=2040,
        cvc="123",
        holder="Pat Test",
    )
    monkeypatch.setattr(
        card_attempts, "charge_record", lambda *a, **k: (_ for _ in ()).throw(Crash())
    )
    for i in range(3):
        with pytest.raises(Crash):
            payment_receive(
                actor=staff.user,
                patient=patient,
                method="card_gateway",
                amount_minor=1000 + i,
                card=card,
                idempotency_key=f"r{i}",
            )
    monkeypatch.undo()
    results = race(2, lambda i: card_attempts.attempts_reconcile(older_than=dt.timedelta(0)))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert (
        Payment.objects.count() == 3 and CardAttempt.objects.filter(status="succeeded").count() == 3
    )
    assert_gateway_money_is_recorded_money()


# ---------------------------------------------------------------- the review page


def test_card_payments_to_review_is_for_administrative_billing_staff(
    desk, crash_before_recording, client
):
    patient = make_patient(first_name="Reconciled")
    crash_before_recording()
    with pytest.raises(Crash):
        staff_card_payment(desk, patient)
    reconcile_now()
    url = "/billing/card-payments/review/"
    client.force_login(desk["user"])
    page = client.get(url)
    assert (
        page.status_code == 200 and b"Reconciled" in page.content and b"reconciled" in page.content
    )
    front = make_staff(AccessLevel.FRONT_DESK)
    client.force_login(front.user)
    assert client.get(url).status_code == 403
    no_billing = make_staff(AccessLevel.ADMIN_BILLING, billing=False)
    client.force_login(no_billing.user)
    assert client.get(url).status_code == 403
    client.logout()
    assert client.get(url).status_code in (302, 403)
