"""POST /webhooks/stripe/: signed events (built here with Stripe's documented scheme,
t=…,v1=HMAC-SHA256(secret, f"{t}.{body}")) feed the same resolve path as reconciliation; each event
is handled once, in any order, however often it is delivered."""

import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client

from carnet.billing import card_attempts
from carnet.billing.models import CardAttempt, CardDispute, GatewayEvent, Invoice, Payment, Refund
from carnet.billing.payments import payment_refund
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.billing.webhooks import EVENTS
from carnet.conftest import make_patient, make_staff, race
from carnet.core.activity import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.gateway import stripe as stripe_gateway
from carnet.gateway.models import CardOnFile
from carnet.gateway.services import card_setup_begin, card_setup_complete
from carnet.gateway.tests.test_stripe import (
    Crash,
    browser_payment_method,
    card_payment,
    charge_then_crash,
    crash_in,
    save_card,
    stripe_client,
    unapply_all,
)

URL = "/webhooks/stripe/"
SECRET = "whsec_carnet_tests"


@pytest.fixture
def desk(stripe_gateway, db, catalog):
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    return {"staff": staff, "user": staff.user, "cat": catalog["income_category"]}


def signed(event: dict, *, secret=SECRET, at=None) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    t = int(at if at is not None else time.time())
    v1 = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={v1}"


def event(kind: str, obj: dict, event_id=None) -> dict:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def deliver(evt: dict, **sign):
    body, signature = signed(evt, **sign)
    return Client().post(
        URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature
    )


def _intent(pi_id):
    return stripe_client().v1.payment_intents.retrieve(pi_id).to_dict()


@pytest.fixture
def crashed_charge(desk, monkeypatch):
    return charge_then_crash(desk, monkeypatch)


# ---------------------------------------------------------------- signatures


@pytest.mark.parametrize("how", ["unsigned", "wrong secret", "stale", "body changed"])
def test_an_unsigned_wrongly_signed_or_stale_event_is_a_400_and_changes_nothing(
    crashed_charge, how
):
    evt = event("payment_intent.succeeded", _intent(crashed_charge.gateway_id))
    if how == "unsigned":
        response = Client().post(URL, data=json.dumps(evt), content_type="application/json")
    elif how == "wrong secret":
        response = deliver(evt, secret="whsec_someone_else")
    elif how == "stale":
        response = deliver(evt, at=time.time() - 600)
    else:
        body, signature = signed(evt)
        response = Client().post(
            URL,
            data=body.replace(b"succeeded", b"succeeded "),
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature,
        )
    assert response.status_code == 400 and response.json()["error"] == "bad_signature"
    crashed_charge.refresh_from_db()
    assert (
        crashed_charge.status == "pending"
        and not Payment.objects.exists()
        and not GatewayEvent.objects.exists()
    )


def test_not_json_or_not_an_event_is_a_400(desk):
    body = b"not json"
    t = int(time.time())
    sig = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    response = Client().post(
        URL, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=f"t={t},v1={sig}"
    )
    assert response.status_code == 400
    assert deliver({"id": "evt_1", "type": "x"}).status_code == 400
    assert Client().get(URL).status_code == 405


# ---------------------------------------------------------------- charges


def test_payment_intent_succeeded_records_the_crashed_charge_once_however_often_it_comes(
    crashed_charge,
):
    evt = event("payment_intent.succeeded", _intent(crashed_charge.gateway_id))
    first = deliver(evt)
    assert first.status_code == 200 and "succeeded" in first.json()["outcome"]
    assert deliver(evt).json()["outcome"] == "already handled"
    other_delivery = event(
        "payment_intent.succeeded", _intent(crashed_charge.gateway_id)
    )  # a new event id
    assert deliver(other_delivery).status_code == 200
    crashed_charge.refresh_from_db()
    assert crashed_charge.status == "succeeded"
    assert Payment.objects.get().gateway_charge_id == crashed_charge.gateway_id

    call_command(
        "payments_reconcile", "--older-than-minutes=0", stdout=open("/dev/null", "w")
    )  # after: nothing more
    assert Payment.objects.count() == 1 and GatewayEvent.objects.count() == 2
    assert_ledger_ok()


def test_a_webhook_after_the_page_recorded_the_charge_changes_nothing(desk):
    patient = make_patient()
    payment = card_payment(desk, patient, save_card(desk, patient))
    for kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):  # out of order, too
        assert deliver(event(kind, _intent(payment.gateway_charge_id))).status_code == 200
    assert Payment.objects.count() == 1 and CardAttempt.objects.get().status == "succeeded"


def test_payment_failed_fails_the_open_attempt_and_frees_nothing_twice(desk, monkeypatch):
    patient = make_patient()
    card = save_card(desk, patient, "4000000000000341")  # declined when charged
    crash_in(monkeypatch, card_attempts, "_failed")
    with pytest.raises(Crash):
        card_payment(desk, patient, card)
    monkeypatch.undo()
    attempt = CardAttempt.objects.get()
    assert attempt.status == "pending"
    evt = event("payment_intent.payment_failed", _intent(attempt.gateway_id))
    assert deliver(evt).status_code == 200 and deliver(evt).status_code == 200
    attempt.refresh_from_db()
    assert attempt.status == "failed" and not Payment.objects.exists()


# ---------------------------------------------------------------- refunds, disputes, cards


def test_charge_refunded_records_a_crashed_refund_once(desk, monkeypatch):
    patient = make_patient()
    payment = card_payment(desk, patient, save_card(desk, patient))
    unapply_all(desk, payment)
    crash_in(monkeypatch, card_attempts, "refund_record")
    with pytest.raises(Crash):
        payment_refund(
            actor=desk["user"],
            payment=payment,
            amount_minor=1000,
            method="card_gateway",
            reason="Overpaid",
            idempotency_key="r-hook",
        )
    monkeypatch.undo()
    charge = {
        "id": "ch_x",
        "object": "charge",
        "payment_intent": payment.gateway_charge_id,
        "amount_refunded": 1000,
    }
    evt = event("charge.refunded", charge)
    assert deliver(evt).status_code == 200 and deliver(evt).json()["outcome"] == "already handled"
    assert deliver(event("charge.refunded", charge)).status_code == 200
    assert Refund.objects.get().amount_minor == 1000
    assert_ledger_ok()


def test_a_refund_event_while_the_refund_is_still_being_sent_leaves_it_open(desk):
    patient = make_patient()
    payment = card_payment(desk, patient, save_card(desk, patient))
    unapply_all(desk, payment)
    attempt = card_attempts.refund_begin(
        request_key="r-open", payment=payment, amount_minor=500, actor=desk["user"]
    )
    deliver(event("charge.refunded", {"id": "ch_x", "payment_intent": payment.gateway_charge_id}))
    attempt.refresh_from_db()
    assert attempt.status == "pending"  # not failed: Stripe may not have it yet


def test_a_dispute_shows_on_the_payment_in_the_review_page_and_in_the_activity_log(desk):
    patient = make_patient()
    payment = card_payment(desk, patient, save_card(desk, patient), amount=7000)
    dispute = {
        "id": "dp_123",
        "object": "dispute",
        "amount": 7000,
        "payment_intent": payment.gateway_charge_id,
        "charge": "ch_1",
        "reason": "product_not_received",
        "status": "needs_response",
    }
    evt = event("charge.dispute.created", dispute)
    deliver(evt)
    deliver(evt)
    deliver(event("charge.dispute.created", dispute))  # the same dispute in another event
    found = CardDispute.objects.get()
    assert (found.payment, found.amount_minor, found.reason) == (
        payment,
        7000,
        "product_not_received",
    )
    assert ActivityLog.objects.filter(verb="card_disputed").count() == 1
    client = Client()
    client.force_login(desk["user"])
    tab = client.get(f"/patients/{patient.pk}/billing/").content.decode()
    assert "Disputed by the card holder" in tab and "product not received" in tab
    review = client.get("/billing/card-payments/review/").content.decode()
    assert (
        "Disputed card payments" in review
        and f"Payment #{payment.pk}" in review
        and "needs response" in review
    )


def setup_confirmed(user, patient) -> dict:
    """A card set-up begun by staff, confirmed by Stripe.js: the SetupIntent as Stripe sends it."""
    setup = card_setup_begin(actor=user, patient=patient)
    return (
        stripe_client()
        .v1.setup_intents.confirm(
            setup["setup_intent"],
            params={
                "client_secret": setup["client_secret"],
                "payment_method": browser_payment_method(),
            },
        )
        .to_dict()
    )


def test_setup_intent_succeeded_keeps_the_card_once_even_if_the_page_never_came_back(desk):
    patient = make_patient()
    intent = setup_confirmed(desk["user"], patient)
    deliver(event("setup_intent.succeeded", intent))
    deliver(event("setup_intent.succeeded", intent))
    card = CardOnFile.objects.get()
    assert card.patient == patient and card.last4 == "4242"


def test_events_for_things_carnet_did_not_make_are_acknowledged(desk):
    assert (
        deliver(event("payment_intent.succeeded", {"id": "pi_unknown", "metadata": {}})).status_code
        == 200
    )
    assert deliver(event("customer.created", {"id": "cus_1"})).json()["outcome"] == "ignored"
    assert (
        deliver(
            event("charge.dispute.created", {"id": "dp_9", "payment_intent": "pi_nope"})
        ).status_code
        == 200
    )
    assert (
        deliver(
            event("setup_intent.succeeded", {"id": "seti_1", "customer": "cus_nope"})
        ).status_code
        == 200
    )
    assert stripe_gateway.METADATA_KEY == "carnet_key"


def test_a_webhook_after_reconciliation_recorded_the_crashed_charge_changes_nothing(crashed_charge):
    call_command("payments_reconcile", "--older-than-minutes=0", stdout=open("/dev/null", "w"))
    evt = event("payment_intent.succeeded", _intent(crashed_charge.gateway_id))
    deliver(evt)
    deliver(evt)
    deliver(event("payment_intent.succeeded", _intent(crashed_charge.gateway_id)))
    crashed_charge.refresh_from_db()
    assert crashed_charge.status == "succeeded" and crashed_charge.reconciled_at is not None
    assert Payment.objects.count() == 1
    assert_ledger_ok()


# --------------------------------------------------------------- changes made in Stripe's Dashboard


def test_a_refund_made_in_stripes_dashboard_is_recorded_once_and_what_it_paid_is_owing_again(desk):
    patient = make_patient()
    payment = card_payment(
        desk, patient, save_card(desk, patient), amount=5000
    )  # all of it paid an invoice
    made = stripe_client().v1.refunds.create(
        params={"payment_intent": payment.gateway_charge_id, "amount": 2000}
    )
    charge = {
        "id": "ch_x",
        "object": "charge",
        "payment_intent": payment.gateway_charge_id,
        "amount_refunded": 2000,
    }
    evt = event("charge.refunded", charge)
    first = deliver(evt)
    assert first.status_code == 200 and made.id in first.json()["outcome"]
    deliver(evt)
    deliver(event("charge.refunded", charge))  # another delivery of the same change
    deliver(
        event("charge.refund.updated", {"id": made.id, "payment_intent": payment.gateway_charge_id})
    )
    refund = Refund.objects.get()
    assert (refund.amount_minor, refund.gateway_refund_id, refund.method) == (
        2000,
        made.id,
        "card_gateway",
    )
    payment.refresh_from_db()
    assert payment.refunded_minor == 2000
    assert (
        Invoice.objects.get().balance_minor == 2000
    )  # the clinic gave the money back: owing again
    assert ActivityLog.objects.filter(verb="card_refunded_outside_carnet").count() == 1
    client = Client()
    client.force_login(desk["user"])
    assert "Refunded in Stripe" in client.get(f"/patients/{patient.pk}/billing/").content.decode()
    assert_ledger_ok()


def test_a_refund_carnet_sent_is_not_taken_for_a_dashboard_one(desk):
    patient = make_patient()
    payment = card_payment(desk, patient, save_card(desk, patient))
    unapply_all(desk, payment)
    payment_refund(
        actor=desk["user"],
        payment=payment,
        amount_minor=1000,
        method="card_gateway",
        reason="Moved",
        idempotency_key="r-own",
    )
    deliver(event("charge.refunded", {"id": "ch_x", "payment_intent": payment.gateway_charge_id}))
    assert (
        Refund.objects.count() == 1
        and not ActivityLog.objects.filter(verb="card_refunded_outside_carnet").exists()
    )


def _dispute(payment, status, dispute_id="dp_1", amount=7000):
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "payment_intent": payment.gateway_charge_id,
        "charge": "ch_1",
        "reason": "fraudulent",
        "status": status,
    }


@pytest.mark.parametrize(
    "order",
    [
        ("created", "updated", "closed"),
        ("closed", "updated", "created"),
        ("closed", "closed", "created"),
    ],
)
def test_a_lost_dispute_returns_the_money_once_in_any_order(desk, order):
    patient = make_patient()
    payment = card_payment(desk, patient, save_card(desk, patient), amount=7000)
    status = {"created": "needs_response", "updated": "under_review", "closed": "lost"}
    for kind in order:
        assert (
            deliver(event(f"charge.dispute.{kind}", _dispute(payment, status[kind]))).status_code
            == 200
        )
    dispute = CardDispute.objects.get()
    assert dispute.status == "lost"  # a late "created" or "updated" never takes it back
    refund = Refund.objects.get()
    assert (refund.amount_minor, refund.gateway_refund_id) == (
        7000,
        "dp_1",
    ) and "Chargeback lost" in refund.reason
    assert Invoice.objects.get().balance_minor == 7000
    assert ActivityLog.objects.filter(verb="card_dispute_lost").count() == 1
    client = Client()
    client.force_login(desk["user"])
    assert "lost" in client.get("/billing/card-payments/review/").content.decode()
    assert_ledger_ok()


def test_a_won_dispute_moves_no_money_and_shows_it_won(desk):
    patient = make_patient()
    payment = card_payment(desk, patient, save_card(desk, patient), amount=7000)
    for kind, status in (
        ("created", "needs_response"),
        ("updated", "under_review"),
        ("closed", "won"),
    ):
        deliver(event(f"charge.dispute.{kind}", _dispute(payment, status)))
    deliver(
        event("charge.dispute.updated", _dispute(payment, "needs_response"))
    )  # late and out of order
    assert CardDispute.objects.get().status == "won" and not Refund.objects.exists()
    assert ActivityLog.objects.filter(verb="card_dispute_updated").count() == 2
    client = Client()
    client.force_login(desk["user"])
    assert (
        "Won: the clinic keeps the money."
        in client.get(f"/patients/{patient.pk}/billing/").content.decode()
    )


def test_a_lost_dispute_after_a_refund_returns_only_what_the_payment_still_holds(desk):
    patient = make_patient()
    payment = card_payment(desk, patient, save_card(desk, patient), amount=7000)
    unapply_all(desk, payment)
    payment_refund(
        actor=desk["user"],
        payment=payment,
        amount_minor=3000,
        method="card_gateway",
        reason="Part",
        idempotency_key="r-part",
    )
    deliver(event("charge.dispute.closed", _dispute(payment, "lost")))
    payment.refresh_from_db()
    assert payment.refunded_minor == 7000 and Refund.objects.count() == 2
    assert_ledger_ok()


def test_the_readme_lists_every_event_to_enable_in_the_dashboard():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("### Taking real card payments (Stripe)")[1].split("\n### ")[0]
    assert all(f"`{name}`" in section for name in EVENTS) and "3-D Secure" in section


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_the_page_and_the_setup_webhook_racing_keep_one_card(stripe_gateway, catalog):
    """Stripe sends setup_intent.succeeded as the page posts back: both keep the card, once."""
    desk = make_staff(AccessLevel.ADMIN_BILLING)
    patient = make_patient()
    for _ in range(3):  # a few rounds: the window is narrow on one of them
        intent = setup_confirmed(desk.user, patient)
        evt = event("setup_intent.succeeded", intent)
        results = race(
            4,
            lambda i: (
                card_setup_complete(
                    actor=desk.user,
                    patient=patient,
                    setup_intent=intent["id"],
                    holder="Pat Test",
                )
                if i % 2
                else deliver(evt if i else event("setup_intent.succeeded", intent)).status_code
            ),
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        assert [r for r in results if isinstance(r, int)] == [200, 200]
        token = intent["payment_method"]
        assert CardOnFile.objects.filter(token=token).count() == 1
        assert (
            ActivityLog.objects.filter(
                verb="card_stored", object_id=str(CardOnFile.objects.get(token=token).pk)
            ).count()
            == 1
        )


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_deliveries_and_reconciliation_racing_record_the_crashed_charge_once(
    stripe_gateway, catalog, monkeypatch
):
    """The same event delivered twice at once, another event for it and reconciliation, all
    together: one payment, each event kept once."""
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    attempt = charge_then_crash(
        {"staff": staff, "user": staff.user, "cat": catalog["income_category"]}, monkeypatch
    )
    intent = _intent(attempt.gateway_id)
    evt = event("payment_intent.succeeded", intent)
    other = event("payment_intent.succeeded", intent)
    results = race(
        4,
        lambda i: (
            card_attempts.attempt_resolve(CardAttempt.objects.get(pk=attempt.pk))
            if i == 3
            else deliver(other if i == 2 else evt).status_code
        ),
    )
    assert results[:3] == [200, 200, 200] and results[3] == "succeeded", results
    attempt.refresh_from_db()
    assert attempt.status == "succeeded" and Payment.objects.count() == 1
    assert set(GatewayEvent.objects.values_list("event_id", flat=True)) == {evt["id"], other["id"]}
    assert ActivityLog.objects.filter(verb__startswith="card_charge").count() == 1
    assert_ledger_ok()
