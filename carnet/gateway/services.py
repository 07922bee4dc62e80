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

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.shortcuts import render

from carnet.clinic.selectors import clinic_get
from carnet.core import activity, clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.middleware import CSP
from carnet.core.permissions import Action, require
from carnet.people.models import Patient

from .base import (
    AuthenticationPending,
    AuthenticationRequired,
    CardDeclined,
    ChargeResult,
    Gateway,
    GatewayUnavailable,
    InsufficientFunds,
    PaymentFailed,
    RefundResult,
    StoredCard,
    get_gateway,
)
from .models import BRAND_LABELS, CardOnFile, GatewayCustomer

# Other apps talk to this one through its services: the results and errors they handle are here too.
__all__ = [
    "card_store",
    "card_remove",
    "card_tokenize",
    "card_charge",
    "card_charge_prepare",
    "charge_refund",
    "gateway_retrieve",
    "gateway_refunds_outside",
    "card_setup_begin",
    "card_setup_complete",
    "gateway_uses_stripe_js",
    "ChargeResult",
    "RefundResult",
    "StoredCard",
    "PaymentFailed",
    "CardDeclined",
    "InsufficientFunds",
    "AuthenticationRequired",
    "AuthenticationPending",
    "GatewayUnavailable",
    "GatewayCallInTransaction",
]


class GatewayCallInTransaction(RuntimeError):
    """A programming error: a call to the card gateway from inside a database transaction."""


_DEMO_LOAD = contextvars.ContextVar("gateway_calls_in_demo_load", default=False)


@contextlib.contextmanager
def demo_load_calls():
    """Only for loading the demo clinic, with the test gateway: its cards and charges are made in
    the load's one transaction (a failed load leaves a few orphan test-gateway
    records, harmless)."""
    if get_gateway().__class__.__name__ != "TestGateway":
        raise GatewayCallInTransaction(
            "The demo clinic is loaded with the built-in test gateway only."
        )
    token = _DEMO_LOAD.set(True)
    try:
        yield
    finally:
        _DEMO_LOAD.reset(token)


def in_transaction() -> bool:
    """True inside a transaction of Carnet's own (the test case's wrapping
    transaction does not count)."""
    conn = connections[DEFAULT_DB_ALIAS]
    return conn.in_atomic_block and any(
        not getattr(b, "_from_testcase", False) for b in conn.atomic_blocks
    )


def _gateway(what: str) -> Gateway:
    if in_transaction() and not _DEMO_LOAD.get():
        raise GatewayCallInTransaction(
            f"The card gateway's {what} was called inside a database transaction. "
            "Record the attempt, commit, call the gateway, then record the outcome in a new "
            "transaction (billing.card_attempts)."
        )
    return get_gateway()


# The token lets us charge the card, so the activity log shows the card without it.
_LOG_EXCLUDE = ("token",)


def card_store(
    *, actor, patient: Patient, number: str, exp_month: int, exp_year: int, cvc: str, holder: str
) -> CardOnFile:
    """Keep a patient's card at the gateway; Carnet stores only the token, brand,
    last four and expiry."""
    require(actor, Action.PAYMENT_TAKE)
    holder = (holder or "").strip()
    if not holder:
        raise ValidationFailed(
            "Please enter the name on the card.", fields={"holder": ["This field is required."]}
        )
    if len(holder) > 120:
        raise ValidationFailed(
            "The name on the card is too long; keep it to 120 characters.",
            fields={"holder": ["At most 120 characters."]},
        )
    # The gateway call stays outside our transaction: no database transaction waits on the network.
    stored = _gateway("store_card").store_card(
        number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc, holder=holder
    )
    return card_file_stored(actor=actor, patient=patient, stored=stored, holder=holder)


@transaction.atomic
def card_file_stored(*, actor, patient: Patient, stored: StoredCard, holder: str) -> CardOnFile:
    """Keep on file a card the gateway already holds (`card_tokenize`'s, say, when the checkout's
    new card also pays a membership's later cycles; at a gateway with customers, attach it first
    with `card_keep_at_gateway`, outside any transaction)."""
    require(actor, Action.PAYMENT_TAKE)
    return card_on_file_new(user=actor, patient=patient, stored=stored, holder=holder)


def card_on_file_new(
    *, user, patient: Patient, stored: StoredCard, holder: str, verb: str = "card_stored"
) -> CardOnFile:
    """The CardOnFile row of a card the gateway holds, logged: only its token, brand, last four and
    expiry are kept. Made once per gateway card: the same card kept again (the page's return and
    Stripe's setup_intent.succeeded webhook, a form posted twice) is the first row, even when both
    arrive at once (card_token_once_on_file). The caller has checked who may keep it (staff with
    PAYMENT_TAKE, or the patient online: passes.online)."""
    found = CardOnFile.objects.filter(token=stored.token).first()
    if found is None:
        try:
            with transaction.atomic():
                card = CardOnFile.objects.create(
                    patient=patient,
                    token=stored.token,
                    brand=stored.brand,
                    last4=stored.last4,
                    exp_month=stored.exp_month,
                    exp_year=stored.exp_year,
                    holder=(holder or "").strip()[:120],
                    created_at=clock.now(),
                )
                activity.record(
                    actor=user,
                    verb=verb,
                    obj=card,
                    after=activity.snapshot(card, exclude=_LOG_EXCLUDE),
                )
            return card
        except IntegrityError:  # a twin kept it first (committed meanwhile): that row
            found = CardOnFile.objects.filter(token=stored.token).first()
            if found is None:
                raise
    if found.patient_id != patient.pk:
        raise Conflict(
            "This card is on file for another patient; enter the card again.",
            code="card_on_file_elsewhere",
        )
    return found


def card_remove(*, actor, card: CardOnFile) -> CardOnFile:
    """Take a card off file. The row stays (payments may refer to it); removing twice is harmless.
    At a gateway that keeps cards per customer (Stripe) the card is detached first, outside any
    transaction: if that fails nothing changes here and the remove can be tried again."""
    require(actor, Action.PAYMENT_TAKE)
    if card.removed_at is None and card.token.startswith("pm_"):
        gateway = _gateway("card_detach")
        if hasattr(gateway, "card_detach"):
            gateway.card_detach(token=card.token)
    return _card_off_file(actor=actor, card=card)


@transaction.atomic
def _card_off_file(*, actor, card: CardOnFile) -> CardOnFile:
    before = activity.snapshot(card, exclude=_LOG_EXCLUDE)
    # Conditional update: of two concurrent removals only one logs, with or without row locks.
    if not CardOnFile.objects.filter(pk=card.pk, removed_at__isnull=True).update(
        removed_at=clock.now()
    ):
        card.refresh_from_db()
        return card
    card.refresh_from_db()
    activity.record(
        actor=actor,
        verb="card_removed",
        obj=card,
        before={**before, "removed_at": None},
        after=activity.snapshot(card, exclude=_LOG_EXCLUDE),
    )
    return card


def card_tokenize(
    *,
    holder: str,
    number: str = "",
    exp_month: int = 0,
    exp_year: int = 0,
    cvc: str = "",
    setup_intent: str = "",
    entry_for: str = "",
) -> StoredCard:
    """A card entered for one payment (online): the gateway keeps it and gives back a token. With
    Stripe.js the card went straight to Stripe: `setup_intent` is what the page got back, made by
    card_entry_begin for `entry_for`."""
    holder = (holder or "").strip()
    if not holder or len(holder) > 120:
        raise ValidationFailed(
            "Please enter the name on the card (at most 120 characters).",
            fields={"holder": ["Enter the name on the card."]},
        )
    if setup_intent or gateway_uses_stripe_js():
        if not setup_intent:
            raise ValidationFailed(
                "Please enter the card in the card form.",
                code="card_entry_by_stripe_js",
                fields={"setup_intent": ["Enter the card."]},
            )
        return _gateway("setup_intent_card").setup_intent_card(
            setup_intent=setup_intent, entry_for=entry_for
        )
    return _gateway("store_card").store_card(
        number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc, holder=holder
    )


def card_keep_at_gateway(*, patient: Patient, stored: StoredCard) -> None:
    """A card typed online that is to stay on file (a membership's): at a gateway with customers
    (Stripe) it is attached to the patient's, so it can be charged off-session later."""
    gateway = _gateway("card_attach")
    if hasattr(gateway, "card_attach"):
        gateway.card_attach(token=stored.token, customer=customer_for(patient))


def card_entry_begin(*, entry_for: str, keep: bool = False) -> dict:
    """What a page taking a card for one payment needs for Stripe.js (empty with the test gateway,
    whose form the page shows instead): the publishable key, the script's address and a SetupIntent
    tagged with `entry_for` (the payment it may serve)."""
    if not gateway_uses_stripe_js():
        return {}
    gateway = _gateway("setup_intent_create")
    setup_id, client_secret = gateway.setup_intent_create(entry_for=entry_for, keep=keep)
    return {
        "setup_intent": setup_id,
        "client_secret": client_secret,
        "publishable_key": gateway.publishable_key,
        "js_url": stripe_js_url(),
    }


def stripe_js_url() -> str:

    base = getattr(settings, "STRIPE_API_BASE", "")  # a local fake Stripe serves its own Stripe.js
    return f"{base.rstrip('/')}/js.stripe.com/v3/" if base else "https://js.stripe.com/v3/"


def stripe_csp() -> str:
    """The Content-Security-Policy of a page that loads Stripe.js: Carnet's own, plus exactly
    Stripe's script, frame and API origins."""

    base = getattr(settings, "STRIPE_API_BASE", "").rstrip("/")
    js, frames, api = (
        (base, base, base)
        if base
        else (
            "https://js.stripe.com",
            "https://js.stripe.com https://hooks.stripe.com",
            "https://api.stripe.com",
        )
    )
    return CSP.replace("script-src 'self'", f"script-src 'self' {js}").replace(
        "default-src 'self';", f"default-src 'self'; frame-src {frames}; connect-src 'self' {api};"
    )


def card_authenticate_page(
    request, exc: AuthenticationPending, *, nav: str = "", staff: bool = False, action: str = ""
):
    """The page that completes a charge's 3-D Secure check with Stripe.js (the attempt waits,
    pending, with its PaymentIntent id): Stripe's window opens, then the same form is posted again
    (same form key: the same attempt) and Carnet reads the outcome from Stripe by the id it stored.
    Only Stripe's origins are admitted, on this page as on the card pages."""

    clinic = clinic_get()
    skip = {
        "csrfmiddlewaretoken",
        "setup_intent",
        "payment_intent",
        "number",
        "cvc",
        "exp_month",
        "exp_year",
    }
    # Posted again to the same page (the same form key finds the same attempt), or to `action`.
    fields = (
        []
        if action
        else [(name, value) for name, value in request.POST.items() if name not in skip]
    )
    response = render(
        request,
        "card_authenticate.html",
        {
            "clinic": clinic,
            "nav": nav,
            "action": action,
            "fields": fields,
            "client_secret": exc.client_secret,
            "payment_intent": exc.reference,
            "publishable_key": get_gateway().publishable_key,
            "js_url": stripe_js_url(),
            "amount": clinic.money(exc.attempt.amount_minor) if exc.attempt else "",
            "who": "The patient's" if staff else "Your",
            "whom": "them" if staff else "you",
        },
        status=200,
    )
    response["Content-Security-Policy"] = stripe_csp()
    return response


def card_label(stored) -> str:

    return f"{BRAND_LABELS.get(stored.brand, 'Card')} •••• {stored.last4}"


def _token_and_customer(card_or_token: CardOnFile | str) -> tuple[str, str]:
    if not isinstance(card_or_token, CardOnFile):
        return card_or_token, ""
    if card_or_token.removed_at is not None:
        raise Conflict(
            f"{card_or_token} was removed from file; choose another card or payment method.",
            code="card_removed",
        )
    customer = (
        GatewayCustomer.objects.filter(patient_id=card_or_token.patient_id)
        .values_list("customer_id", flat=True)
        .first()
    )
    return card_or_token.token, customer or ""


def card_charge_prepare(
    *, card_or_token: CardOnFile | str, amount_minor: int, currency: str, idempotency_key: str
) -> str:
    """For a gateway whose charge is two calls: make the charge (not yet confirmed) and return its
    reference, to be committed before `card_charge` confirms it.
    "" when the gateway has no such step."""
    gateway = _gateway("prepare_charge")
    if not hasattr(gateway, "prepare_charge"):
        return ""
    token, customer = _token_and_customer(card_or_token)
    return gateway.prepare_charge(
        token=token,
        amount_minor=amount_minor,
        currency=currency,
        idempotency_key=idempotency_key,
        customer=customer,
    )


def card_charge(
    *,
    card_or_token: CardOnFile | str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    reference: str = "",
    on_session: bool = False,
) -> ChargeResult:
    """Charge a card on file (or a raw gateway token). Retrying with the same key never charges
    twice. `on_session`: the card holder is at the page (a card on file charged as they sign up), so
    the bank may ask them to confirm it (3-D Secure) rather than refuse."""
    token, customer = _token_and_customer(card_or_token)
    # Only what this gateway needs: a gateway with one-call charges may not take these at all.
    extra = {
        name: value for name, value in (("customer", customer), ("reference", reference)) if value
    }
    gateway = _gateway("charge")
    if (on_session or not isinstance(card_or_token, CardOnFile)) and hasattr(
        gateway, "prepare_charge"
    ):
        extra["off_session"] = (
            False  # a card just typed in: the patient is there to confirm with their bank
        )
    return gateway.charge(
        token=token,
        amount_minor=amount_minor,
        currency=currency,
        idempotency_key=idempotency_key,
        **extra,
    )


def charge_refund(*, charge_id: str, amount_minor: int, idempotency_key: str) -> RefundResult:
    """Refund part or all of a gateway charge. Retrying with the same key never refunds twice."""
    return _gateway("refund").refund(
        charge_id=charge_id, amount_minor=amount_minor, idempotency_key=idempotency_key
    )


def gateway_retrieve(
    *,
    kind: str,
    idempotency_key: str,
    reference: str = "",
    charge_id: str = "",
    authenticating: bool = False,
) -> ChargeResult | RefundResult | None:
    """What became of the charge or refund sent with this key (None: no money moved).
    `authenticating`: a charge its card holder may still be confirming with their bank (3-D Secure):
    AuthenticationPending while it waits, the decline if the check failed."""
    extra = {
        name: value
        for name, value in (
            ("reference", reference),
            ("charge_id", charge_id),
            ("authenticating", authenticating),
        )
        if value
    }
    return _gateway("retrieve").retrieve(kind=kind, idempotency_key=idempotency_key, **extra)


def gateway_refunds_outside(*, charge_id: str) -> list[RefundResult]:
    """Refunds of a charge made at the gateway without Carnet (Stripe's Dashboard); [] for a gateway
    that has no such thing."""
    gateway = _gateway("refunds_outside")
    return (
        gateway.refunds_outside(charge_id=charge_id) if hasattr(gateway, "refunds_outside") else []
    )


# ---------------------------------------------------------- cards saved by Stripe.js (SetupIntents)


def gateway_uses_stripe_js() -> bool:
    """True when cards are typed into Stripe's own form in the browser (never sent to Carnet)."""
    return hasattr(get_gateway(), "setup_intent_create")


def customer_for(patient: Patient) -> str:
    """The patient's customer at the gateway, made on first use (outside any transaction)."""
    gateway = _gateway("customer_create")
    found = GatewayCustomer.objects.filter(patient=patient, gateway=gateway.name).first()
    if found is not None:
        return found.customer_id

    customer_id = gateway.customer_create(
        name=patient.full_name,
        email=patient.email or "",
        reference=f"carnet-{clinic_get().pk}-patient-{patient.pk}",
    )
    try:
        with transaction.atomic():
            GatewayCustomer.objects.create(
                patient=patient,
                gateway=gateway.name,
                customer_id=customer_id,
                created_at=clock.now(),
            )
    except (
        IntegrityError
    ):  # a concurrent first card made one first: use that (this one stays empty)
        return GatewayCustomer.objects.get(patient=patient).customer_id
    return customer_id


def card_setup_begin(*, actor, patient: Patient, patient_actor: bool = False) -> dict:
    """Start saving a card with Stripe.js: what the page needs (the SetupIntent's client secret).
    patient_actor: the patient saves their own card (the portal checked it is theirs)."""
    if not patient_actor:
        require(actor, Action.PAYMENT_TAKE)
    gateway = _gateway("setup_intent_create")
    setup_id, client_secret = gateway.setup_intent_create(customer=customer_for(patient))
    return {
        "setup_intent": setup_id,
        "client_secret": client_secret,
        "publishable_key": gateway.publishable_key,
    }


def card_setup_complete(
    *, actor, patient: Patient, setup_intent: str, holder: str = "", patient_actor: bool = False
) -> CardOnFile:
    """The card a SetupIntent saved, kept on file once (the page's return and Stripe's
    setup_intent.succeeded webhook may both arrive: the second finds the first's card)."""
    if not patient_actor:
        require(actor, Action.PAYMENT_TAKE)
    customer = (
        GatewayCustomer.objects.filter(patient=patient)
        .values_list("customer_id", flat=True)
        .first()
    )
    if not customer:
        raise NotFound("No such card set-up for this patient.", code="unknown_setup_intent")
    stored = _gateway("setup_intent_card").setup_intent_card(
        setup_intent=setup_intent, customer=customer
    )
    holder = (holder or "").strip()[:120] or patient.full_name[:120]
    return card_on_file_new(
        user=actor if getattr(actor, "is_authenticated", False) else None,
        patient=patient,
        stored=stored,
        holder=holder,
    )
