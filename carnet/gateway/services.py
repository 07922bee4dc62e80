"""Cards on file, and the one way out to the configured gateway.

Every call to the gateway (store a card, charge, refund, retrieve) goes through `_gateway()`,
which refuses to run inside a database transaction: a remote charge cannot roll back with
Carnet's transaction, and a row lock held over the network stalls everyone else (habit 15).
Billing records an attempt before calling and the outcome after (billing.card_attempts).

card_store and card_remove check the actor's access; the others do not, because billing
services call them after checking their own (payment or refund) permission.
"""

from __future__ import annotations

import contextlib
import contextvars

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from carnet.core import activity, clock
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.people.models import Patient

from .base import (CardDeclined, ChargeResult, Gateway, GatewayUnavailable, InsufficientFunds, PaymentFailed,
                   RefundResult, StoredCard, get_gateway)
from .models import CardOnFile

# Other apps talk to this one through its services: the results and errors they handle are here too.
__all__ = ["card_store", "card_remove", "card_tokenize", "card_charge", "charge_refund", "gateway_retrieve",
           "ChargeResult", "RefundResult", "StoredCard", "PaymentFailed", "CardDeclined", "InsufficientFunds",
           "GatewayUnavailable", "GatewayCallInTransaction"]


class GatewayCallInTransaction(RuntimeError):
    """A programming error: a call to the card gateway from inside a database transaction."""


_DEMO_LOAD = contextvars.ContextVar("gateway_calls_in_demo_load", default=False)


@contextlib.contextmanager
def demo_load_calls():
    """Only for loading the demo clinic, with the test gateway: its cards and charges are made in
    the load's one transaction (a failed load leaves a few orphan test-gateway records, harmless)."""
    if get_gateway().__class__.__name__ != "TestGateway":
        raise GatewayCallInTransaction("The demo clinic is loaded with the built-in test gateway only.")
    token = _DEMO_LOAD.set(True)
    try:
        yield
    finally:
        _DEMO_LOAD.reset(token)


def in_transaction() -> bool:
    """True inside a transaction of Carnet's own (the test case's wrapping transaction does not count)."""
    conn = connections[DEFAULT_DB_ALIAS]
    return conn.in_atomic_block and any(not getattr(b, "_from_testcase", False) for b in conn.atomic_blocks)


def _gateway(what: str) -> Gateway:
    if in_transaction() and not _DEMO_LOAD.get():
        raise GatewayCallInTransaction(
            f"The card gateway's {what} was called inside a database transaction. Record the attempt, commit, "
            "call the gateway, then record the outcome in a new transaction (billing.card_attempts).")
    return get_gateway()

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
    stored = _gateway("store_card").store_card(number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc, holder=holder)
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


def card_tokenize(*, number: str, exp_month: int, exp_year: int, cvc: str, holder: str) -> StoredCard:
    """A card entered for one payment (online): the gateway keeps it and gives back a token."""
    holder = (holder or "").strip()
    if not holder or len(holder) > 120:
        raise ValidationFailed("Please enter the name on the card (at most 120 characters).",
                               fields={"holder": ["Enter the name on the card."]})
    return _gateway("store_card").store_card(number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc,
                                             holder=holder)


def card_label(stored) -> str:
    from .models import BRAND_LABELS

    return f"{BRAND_LABELS.get(stored.brand, 'Card')} •••• {stored.last4}"


def card_charge(*, card_or_token: CardOnFile | str, amount_minor: int, currency: str,
                idempotency_key: str) -> ChargeResult:
    """Charge a card on file (or a raw gateway token). Retrying with the same key never charges twice."""
    token = card_or_token
    if isinstance(card_or_token, CardOnFile):
        if card_or_token.removed_at is not None:
            raise Conflict(f"{card_or_token} was removed from file; choose another card or payment method.",
                           code="card_removed")
        token = card_or_token.token
    return _gateway("charge").charge(token=token, amount_minor=amount_minor, currency=currency,
                                idempotency_key=idempotency_key)


def charge_refund(*, charge_id: str, amount_minor: int, idempotency_key: str) -> RefundResult:
    """Refund part or all of a gateway charge. Retrying with the same key never refunds twice."""
    return _gateway("refund").refund(charge_id=charge_id, amount_minor=amount_minor, idempotency_key=idempotency_key)


def gateway_retrieve(*, kind: str, idempotency_key: str) -> ChargeResult | RefundResult | None:
    """What became of the charge or refund sent with this key (None: no money moved)."""
    return _gateway("retrieve").retrieve(kind=kind, idempotency_key=idempotency_key)
