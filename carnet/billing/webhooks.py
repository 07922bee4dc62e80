"""Stripe's webhook events (POST /webhooks/stripe/): signature checked, each event handled once.

An event is a hint, not the record: a payment or refund event makes Carnet resolve the attempt it
names through the same path as reconciliation (card_attempts.attempt_resolve), which asks Stripe by
the PaymentIntent id and records the outcome under the attempt's row lock, once. So an event
arriving before the page's own answer, after it, twice, or out of order changes nothing more.

Handled: payment_intent.succeeded, payment_intent.payment_failed, charge.refunded,
charge.refund.updated, charge.dispute.created, charge.dispute.updated, charge.dispute.closed,
setup_intent.succeeded (EVENTS). Others are acknowledged and ignored. Refunds made in Stripe's
Dashboard and lost disputes are recorded in Carnet's books once, by their Stripe id.
"""

from __future__ import annotations

import datetime as dt
import json

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from carnet.core import activity, clock
from carnet.core.errors import CarnetError, ValidationFailed
from carnet.gateway.models import GatewayCustomer
from carnet.gateway.services import card_setup_complete, gateway_refunds_outside

from . import card_attempts
from .models import CardAttempt, CardDispute, GatewayEvent, Payment
from .payments import refund_outside

TOLERANCE_SECONDS = 300  # Stripe's own default: an older signature is a replay


def event_verify(payload: bytes, signature: str) -> dict:
    """The event, if Stripe signed exactly this body recently with our endpoint's secret."""
    secret = getattr(settings, "STRIPE_WEBHOOK_SECRET", "")
    if not secret:
        raise ValidationFailed(
            "Stripe webhooks are not set up on this Carnet (no STRIPE_WEBHOOK_SECRET).",
            code="webhooks_off",
        )
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), signature or "", secret, TOLERANCE_SECONDS
        )
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError):
        raise ValidationFailed(
            "The Stripe-Signature header does not match this body, or is too old.",
            code="bad_signature",
        ) from None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance((event.get("data") or {}).get("object"), dict)
    ):
        raise ValidationFailed("This is not a Stripe event.", code="bad_event")
    return event


def event_handle(*, payload: bytes, signature: str) -> str:
    """Verify and handle one delivery; returns what was done (a repeat: "already handled")."""
    event = event_verify(payload, signature)
    if GatewayEvent.objects.filter(event_id=event["id"]).exists():
        return "already handled"
    handler = HANDLERS.get(event.get("type", ""))
    # Outside any transaction: resolving an attempt asks Stripe. Every handler is idempotent, so
    # twin deliveries racing here still record once.
    outcome = handler(event["data"]["object"]) if handler else "ignored"
    try:
        with transaction.atomic():
            GatewayEvent.objects.create(
                event_id=event["id"],
                type=str(event.get("type", ""))[:80],
                received_at=clock.now(),
                outcome=outcome[:300],
            )
    except IntegrityError:
        return "already handled"
    return outcome


def _resolve(attempts, *, settle_missing: bool) -> str:
    outcomes = []
    for attempt in attempts:
        outcomes.append(
            f"attempt #{attempt.pk} "
            f"{card_attempts.attempt_resolve(attempt, settle_missing=settle_missing)}"
        )
    return "; ".join(outcomes) or "no open attempt"


def _payment_intent(intent: dict) -> str:
    # The attempt whose PaymentIntent this is (its id was committed before it was confirmed),
    # resolved by asking Stripe for it, as reconciliation does: succeeded or failed.
    key = str((intent.get("metadata") or {}).get("carnet_key") or "-")
    attempts = CardAttempt.objects.filter(
        Q(gateway_id=str(intent.get("id") or "-")) | Q(gateway_key=key),
        kind=CardAttempt.Kind.CHARGE,
        status__in=card_attempts.OPEN,
    )
    return _resolve(attempts.select_related("card"), settle_missing=True)


def _charge_refunded(charge: dict) -> str:
    intent = str(charge.get("payment_intent") or "-")
    attempts = CardAttempt.objects.filter(
        kind=CardAttempt.Kind.REFUND,
        status__in=card_attempts.OPEN,
        payment__gateway_charge_id=intent,
    )
    # A refund still being sent is not at Stripe yet: left open, not failed.
    outcome = _resolve(attempts, settle_missing=False)
    return "; ".join(part for part in (outcome, _refunds_outside(intent)) if part)


def _refund_updated(refund: dict) -> str:
    """A refund's status changed (a Dashboard refund pending at first goes through later)."""
    return _refunds_outside(str(refund.get("payment_intent") or "-")) or "nothing to record"


def _refunds_outside(intent: str) -> str:
    """Refunds made in Stripe's Dashboard (not sent by Carnet): each recorded once by its id, as a
    refund of the payment (ledger, the payment's refunds, the activity log)."""

    payment = Payment.objects.filter(gateway_charge_id=intent).first() if intent != "-" else None
    if payment is None:
        return ""
    done = []
    for found in gateway_refunds_outside(charge_id=intent):  # asked outside any transaction
        refund = refund_outside(
            payment_pk=payment.pk,
            amount_minor=found.amount_minor,
            refund_id=found.refund_id,
            reason="Refunded in Stripe's Dashboard",
            verb="card_refunded_outside_carnet",
        )
        if refund is not None:
            done.append(f"refund {found.refund_id} recorded on payment #{payment.pk}")
    return "; ".join(done)


# Stripe's dispute statuses, in the order they move; a late event never takes one back.
DISPUTE_RANK = {
    "warning_needs_response": 1,
    "needs_response": 1,
    "warning_under_review": 2,
    "under_review": 2,
    "won": 3,
    "lost": 3,
    "warning_closed": 3,
    "charge_refunded": 3,
    "prevented": 3,
}


def _dispute(dispute: dict) -> str:
    """charge.dispute.created / updated / closed, in any order: the dispute is kept once and its
    status only moves forward. A lost one returns the money to the card holder in Carnet's books
    once (a refund of the payment keyed by the dispute's id;
    what it paid on invoices is owing again)."""

    intent = str(dispute.get("payment_intent") or "")
    payment = Payment.objects.filter(gateway_charge_id=intent).first() if intent else None
    if payment is None:
        return "dispute on a payment Carnet did not record"
    status = str(dispute.get("status") or "")[:40]
    with transaction.atomic():
        found, made = CardDispute.objects.get_or_create(
            dispute_id=str(dispute.get("id"))[:255],
            defaults={
                "payment": payment,
                "amount_minor": int(dispute.get("amount") or 0),
                "reason": str(dispute.get("reason") or "")[:60],
                "status": status,
                "created_at": clock.now(),
            },
        )
        if made:
            activity.record(
                actor=None,
                verb="card_disputed",
                obj=payment,
                after={
                    "dispute": found.dispute_id,
                    "amount_minor": found.amount_minor,
                    "reason": found.reason,
                    "status": found.status,
                },
            )
        else:
            found = CardDispute.objects.select_for_update().get(pk=found.pk)
            if DISPUTE_RANK.get(status, 0) > DISPUTE_RANK.get(found.status, 0):
                before = found.status
                found.status = status
                found.save(update_fields=["status"])
                activity.record(
                    actor=None,
                    verb="card_dispute_updated",
                    obj=payment,
                    before={"dispute": found.dispute_id, "status": before},
                    after={"dispute": found.dispute_id, "status": status},
                )
    if found.status == "lost":
        refund_outside(
            payment_pk=payment.pk,
            amount_minor=found.amount_minor,
            refund_id=found.dispute_id,
            reason=f"Chargeback lost (dispute {found.dispute_id})",
            verb="card_dispute_lost",
        )
    return f"dispute {found.dispute_id} on payment #{payment.pk}: {found.status}"


def _setup_intent_succeeded(intent: dict) -> str:

    customer = (
        GatewayCustomer.objects.filter(customer_id=str(intent.get("customer") or "-"))
        .select_related("patient")
        .first()
    )
    if customer is None:
        return "set-up for a customer Carnet does not know"
    try:
        card = card_setup_complete(
            actor=None,
            patient=customer.patient,
            setup_intent=str(intent.get("id")),
            patient_actor=True,
        )
    except CarnetError as exc:
        return f"card not kept: {exc.message}"
    return f"card #{card.pk} on file"


HANDLERS = {
    "payment_intent.succeeded": _payment_intent,
    "payment_intent.payment_failed": _payment_intent,
    "charge.refunded": _charge_refunded,
    "charge.refund.updated": _refund_updated,
    "charge.dispute.created": _dispute,
    "charge.dispute.updated": _dispute,
    "charge.dispute.closed": _dispute,
    "setup_intent.succeeded": _setup_intent_succeeded,
}
EVENTS = tuple(HANDLERS)  # what to enable on the webhook endpoint in Stripe's Dashboard (README)


def disputes_to_review(*, days: int = 90):
    since = clock.now() - dt.timedelta(days=days)
    return CardDispute.objects.filter(created_at__gte=since).select_related(
        "payment", "payment__patient"
    )
