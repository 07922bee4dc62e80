"""Cards on file, and thin wrappers over the configured gateway for billing to call.

card_store and card_remove check the actor's access; card_charge and charge_refund do not,
because billing services call them after checking their own (payment or refund) permission.
"""

from __future__ import annotations

from django.db import transaction

from carnet.core import activity, clock
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.people.models import Patient

from .base import (CardDeclined, ChargeResult, GatewayUnavailable, InsufficientFunds, PaymentFailed, RefundResult,
                   get_gateway)
from .models import CardOnFile

# Other apps talk to this one through its services: the results and errors they handle are here too.
__all__ = ["card_store", "card_remove", "card_charge", "charge_refund", "ChargeResult", "RefundResult",
           "PaymentFailed", "CardDeclined", "InsufficientFunds", "GatewayUnavailable"]

# The token lets us charge the card, so the activity log shows the card without it.
_LOG_EXCLUDE = ("token",)


def card_store(*, actor, patient: Patient, number: str, exp_month: int, exp_year: int, cvc: str,
               holder: str) -> CardOnFile:
    """Keep a patient's card at the gateway; Carnet stores only the token, brand, last four and expiry."""
    require(actor, Action.PAYMENT_TAKE)
    holder = (holder or "").strip()
    if not holder:
        raise ValidationFailed("Please enter the name on the card.", fields={"holder": ["This field is required."]})
    if len(holder) > 120:
        raise ValidationFailed("The name on the card is too long; keep it to 120 characters.",
                               fields={"holder": ["At most 120 characters."]})
    # The gateway call stays outside our transaction: no database transaction waits on the network.
    stored = get_gateway().store_card(number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc, holder=holder)
    with transaction.atomic():
        card = CardOnFile.objects.create(
            patient=patient, token=stored.token, brand=stored.brand, last4=stored.last4,
            exp_month=stored.exp_month, exp_year=stored.exp_year, holder=holder, created_at=clock.now(),
        )
        activity.record(actor=actor, verb="card_stored", obj=card, after=activity.snapshot(card, exclude=_LOG_EXCLUDE))
    return card


@transaction.atomic
def card_remove(*, actor, card: CardOnFile) -> CardOnFile:
    """Take a card off file. The row stays (payments may refer to it); removing twice is harmless."""
    require(actor, Action.PAYMENT_TAKE)
    before = activity.snapshot(card, exclude=_LOG_EXCLUDE)
    # Conditional update: of two concurrent removals only one logs, with or without row locks.
    if not CardOnFile.objects.filter(pk=card.pk, removed_at__isnull=True).update(removed_at=clock.now()):
        card.refresh_from_db()
        return card
    card.refresh_from_db()
    activity.record(actor=actor, verb="card_removed", obj=card, before={**before, "removed_at": None},
                    after=activity.snapshot(card, exclude=_LOG_EXCLUDE))
    return card


def card_charge(*, card_or_token: CardOnFile | str, amount_minor: int, currency: str,
                idempotency_key: str) -> ChargeResult:
    """Charge a card on file (or a raw gateway token). Retrying with the same key never charges twice."""
    token = card_or_token
    if isinstance(card_or_token, CardOnFile):
        if card_or_token.removed_at is not None:
            raise Conflict(f"{card_or_token} was removed from file; choose another card or payment method.",
                           code="card_removed")
        token = card_or_token.token
    return get_gateway().charge(token=token, amount_minor=amount_minor, currency=currency,
                                idempotency_key=idempotency_key)


def charge_refund(*, charge_id: str, amount_minor: int, idempotency_key: str) -> RefundResult:
    """Refund part or all of a gateway charge. Retrying with the same key never refunds twice."""
    return get_gateway().refund(charge_id=charge_id, amount_minor=amount_minor, idempotency_key=idempotency_key)
