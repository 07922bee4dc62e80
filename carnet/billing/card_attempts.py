"""Card money exactly once (SPEC 3.4): attempt recorded → call out → outcome recorded → reconciled.

A card gateway's charge cannot roll back with Carnet's transaction, so every charge and refund
is a `CardAttempt`, in three steps that each commit on their own:

1. **begin**: the attempt is recorded (what it is for, amount, patient, the gateway key) and
   committed. A charge for invoices reserves what it will pay under the invoices' locks, so
   parallel card payments on one invoice never charge more than it owes; a refund holds the money
   it will return, so it cannot be applied or refunded twice meanwhile.
2. **run**: the gateway is called outside any transaction (gateway.services refuses otherwise).
3. **record**: the outcome is written in one transaction with its payment or refund row and
   ledger posting, then the purpose's own step (sell the package, load the gift card…). A charge
   whose purpose is gone (invoice deleted or paid meanwhile, the sale refused) stays as the
   patient's account credit, never lost.

A crash or a lost answer leaves an attempt `pending` or `unknown`; `attempts_reconcile`
(`manage.py payments_reconcile`, also run by passes_daily) asks the gateway by the attempt's key
and records what happened, exactly once. The same request sent again (same form key or
Idempotency-Key, scoped to who asked) finds its attempt instead of making another.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum

from carnet.clinic.selectors import clinic_get, money_text
from carnet.core import activity, clock
from carnet.core.errors import CarnetError, Conflict, NotFound, ValidationFailed
from carnet.gateway.services import (
    AuthenticationPending,
    GatewayUnavailable,
    PaymentFailed,
    card_charge,
    card_charge_prepare,
    charge_refund,
    gateway_retrieve,
)

from .emails import balance_paid_email
from .locks import lock_invoices, lock_payment
from .models import CardAttempt, CardAttemptInvoice, Payment, Refund
from .payments import allocation_check, payment_record, refund_post

RECONCILE_AFTER = dt.timedelta(minutes=5)  # younger attempts may still have their call in flight
# A charge waiting for its card holder's 3-D Secure check is left this long before reconciliation
# gives up on it (cancels the PaymentIntent: no money can move after that).
AUTHENTICATION_WINDOW = dt.timedelta(hours=1)
OPEN = (CardAttempt.Status.PENDING, CardAttempt.Status.UNKNOWN)


@dataclass(frozen=True)
class Purpose:
    """What an attempt is for, and its own steps, run inside the outcome's transaction."""

    name: str
    reference: str  # the payment's or refund's reference when the attempt gives none
    on_charged: Callable[[CardAttempt, Payment], None] | None = None
    on_failed: Callable[[CardAttempt], None] | None = None
    on_refund_prepare: Callable[[CardAttempt, Payment], None] | None = (
        None  # before the refund is posted
    )
    on_refunded: Callable[[CardAttempt, Refund], None] | None = None


PURPOSES: dict[str, Purpose] = {}


def purpose_register(purpose: Purpose) -> Purpose:
    """Apps register their purposes when they load (AppConfig.ready)."""
    PURPOSES[purpose.name] = purpose
    return purpose


def _purpose(name: str) -> Purpose:
    return PURPOSES.get(name) or Purpose(name=name, reference="Card")


def _gateway_key(kind: str) -> str:
    # Unique across clinics sharing a gateway account, and across databases restored from backups.
    return f"carnet-{clinic_get().pk}-{kind}-{uuid.uuid4().hex}"


def reserved_minor(invoice_pk: int, *, exclude: int | None = None) -> int:
    """What pending or unknown card charges are about to pay on this invoice."""
    rows = CardAttemptInvoice.objects.filter(invoice_id=invoice_pk, attempt__status__in=OPEN)
    if exclude:
        rows = rows.exclude(attempt_id=exclude)
    return rows.aggregate(total=Sum("amount_minor"))["total"] or 0


def _same_request(
    attempt: CardAttempt, *, kind: str, patient_id: int, amount_minor: int
) -> CardAttempt:
    if (attempt.kind, attempt.patient_id, attempt.amount_minor) != (kind, patient_id, amount_minor):
        raise Conflict(
            "This key was already used for a different card payment or refund; use a new key for a "
            "new request.",
            code="idempotency_key_reused",
        )
    return attempt


def _create(request_key: str, **fields) -> CardAttempt | None:
    """The new attempt, or None when a twin request with the same key recorded its own first."""
    try:
        with transaction.atomic():
            return CardAttempt.objects.create(
                request_key=request_key, created_at=clock.now(), **fields
            )
    except IntegrityError:
        return None


# ---------------------------------------------------------------- charges


def charge_begin(
    *,
    request_key: str,
    purpose: str,
    patient,
    amount_minor: int,
    card=None,
    token: str = "",
    card_label: str = "",
    allocations=(),
    context: dict | None = None,
    actor=None,
) -> CardAttempt:
    """Record a card charge about to be made (committed before any call out); the same request
    key again returns the first attempt. `allocations` (invoice, amount) are reserved."""

    if amount_minor <= 0:
        raise ValidationFailed(
            "Charge an amount greater than zero.", fields={"amount_minor": ["Must be positive."]}
        )
    with transaction.atomic():
        done = CardAttempt.objects.filter(request_key=request_key).first()
        if done is not None:
            return _same_request(
                done, kind=CardAttempt.Kind.CHARGE, patient_id=patient.pk, amount_minor=amount_minor
            )
        invoices = lock_invoices([invoice.pk for invoice, _ in allocations])
        done = CardAttempt.objects.filter(
            request_key=request_key
        ).first()  # a twin that held the locks first
        if done is not None:
            return _same_request(
                done, kind=CardAttempt.Kind.CHARGE, patient_id=patient.pk, amount_minor=amount_minor
            )
        for invoice, amount in allocations:
            locked = invoices.get(invoice.pk)
            if locked is None:
                raise NotFound(f"No invoice with id {invoice.pk}.")
            allocation_check(locked, patient_id=patient.pk, amount=amount)
            if amount > locked.balance_minor - reserved_minor(locked.pk):
                raise Conflict(
                    f"A card payment on {locked} is already being processed; wait for it to finish "
                    "before charging again (it may pay the whole balance).",
                    code="card_payment_in_progress",
                )
        attempt = _create(
            request_key,
            kind=CardAttempt.Kind.CHARGE,
            purpose=purpose,
            patient=patient,
            amount_minor=amount_minor,
            currency=clinic_get().currency,
            card=card,
            token=token,
            card_label=card_label or (str(card) if card else ""),
            gateway_key=_gateway_key("charge"),
            context=context or {},
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        if attempt is None:  # a twin committed first: its attempt
            twin = CardAttempt.objects.get(request_key=request_key)
            return _same_request(
                twin, kind=CardAttempt.Kind.CHARGE, patient_id=patient.pk, amount_minor=amount_minor
            )
        CardAttemptInvoice.objects.bulk_create(
            [
                CardAttemptInvoice(attempt=attempt, invoice_id=invoice.pk, amount_minor=amount)
                for invoice, amount in allocations
                if amount > 0
            ]
        )
    return attempt


def charge_run(attempt: CardAttempt) -> CardAttempt:
    """Call the gateway for a begun charge (outside any transaction) and record the outcome.
    Raises the gateway's PaymentFailed (402) or GatewayUnavailable (503) after recording it."""
    if attempt.status == CardAttempt.Status.SUCCEEDED:
        return attempt
    if attempt.status == CardAttempt.Status.FAILED:
        raise PaymentFailed(attempt.message or None)
    if attempt.context.get("authenticating") and attempt.gateway_id:
        return _authenticated(attempt)
    card_or_token = attempt.card if attempt.card_id else attempt.token
    try:
        reference = attempt.gateway_id or _prepare(attempt, card_or_token)
        result = card_charge(
            card_or_token=card_or_token,
            amount_minor=attempt.amount_minor,
            currency=attempt.currency,
            idempotency_key=attempt.gateway_key,
            reference=reference,
            on_session=bool(attempt.context.get("on_session")),
        )
    except (
        AuthenticationPending
    ) as exc:  # 3-D Secure: the attempt stays pending, its PaymentIntent waits
        _authenticating(attempt)
        exc.attempt = attempt
        raise
    except GatewayUnavailable as exc:
        _unknown(attempt.pk, exc.message)
        raise
    except (
        CarnetError
    ) as exc:  # declined, the card removed or unknown to the gateway: no money moved
        _failed(attempt.pk, exc.message)
        raise
    return charge_record(attempt.pk, result.charge_id)


def _authenticating(attempt: CardAttempt) -> None:
    """Mark the open attempt as waiting for its card holder's bank check (committed on its own)."""
    attempt.context = {**attempt.context, "authenticating": True}
    CardAttempt.objects.filter(pk=attempt.pk, status__in=OPEN).update(context=attempt.context)


def _authenticated(attempt: CardAttempt) -> CardAttempt:
    """The page came back after the bank check: what the charge became, read from the gateway by the
    PaymentIntent id Carnet stored (never what the browser says), recorded once whichever of the
    page, Stripe's webhook or reconciliation gets there first. Raises AuthenticationPending while it
    still waits, the decline if the check failed."""
    try:
        found = gateway_retrieve(
            kind=CardAttempt.Kind.CHARGE,
            idempotency_key=attempt.gateway_key,
            reference=attempt.gateway_id,
            authenticating=True,
        )
    except AuthenticationPending as exc:
        exc.attempt = attempt
        raise
    except GatewayUnavailable as exc:
        _unknown(attempt.pk, exc.message)
        raise
    except CarnetError as exc:
        _failed(attempt.pk, exc.message)
        raise
    if found is None:
        message = "The payment was cancelled before the bank confirmed it; nothing was charged."
        _failed(attempt.pk, message)
        raise PaymentFailed(message)
    return charge_record(attempt.pk, found.charge_id)


def _prepare(attempt: CardAttempt, card_or_token) -> str:
    """A two-call gateway (Stripe): create the charge unconfirmed and commit its id on the attempt
    BEFORE confirming it, so reconciliation finds it by id whatever happens next."""
    reference = card_charge_prepare(
        card_or_token=card_or_token,
        amount_minor=attempt.amount_minor,
        currency=attempt.currency,
        idempotency_key=attempt.gateway_key,
    )
    if reference:
        CardAttempt.objects.filter(pk=attempt.pk, gateway_id="").update(gateway_id=reference)
        attempt.gateway_id = reference
    return reference


def charge(**begin) -> Payment:
    """begin + run: the payment the charge became (or the decline / outage raised)."""
    return charge_run(charge_begin(**begin)).payment


def charge_record(pk: int, charge_id: str, *, reconciled: bool = False) -> CardAttempt:
    """The charge succeeded at the gateway: its payment, allocations and the
    purpose's step, once."""

    with transaction.atomic():
        attempt = (
            CardAttempt.objects.select_for_update(of=("self",))
            .select_related("patient", "card")
            .get(pk=pk)
        )
        if attempt.status == CardAttempt.Status.SUCCEEDED:
            return attempt
        purpose = _purpose(attempt.purpose)
        rows = list(attempt.invoices.all())
        invoices = lock_invoices([row.invoice_id for row in rows])
        allocations = []
        for row in rows:
            invoice = invoices[row.invoice_id]
            amount = min(row.amount_minor, max(invoice.balance_minor, 0))
            if amount > 0 and not invoice.deleted_at:
                allocations.append((invoice, amount))
        payment = payment_record(
            actor=attempt.created_by,
            verb="charged" if attempt.created_by is None else "received",
            patient=attempt.patient,
            method=Payment.Method.CARD_GATEWAY,
            amount_minor=attempt.amount_minor,
            reference=(attempt.context.get("reference") or purpose.reference)[:120],
            allocations=allocations,
            charge_id=charge_id,
            card=attempt.card,
        )
        attempt.status, attempt.gateway_id, attempt.payment = (
            CardAttempt.Status.SUCCEEDED,
            charge_id,
            payment,
        )
        attempt.token, attempt.resolved_at = "", clock.now()
        attempt.reconciled_at = attempt.resolved_at if reconciled else None
        if purpose.on_charged:
            try:
                with transaction.atomic():
                    purpose.on_charged(attempt, payment)
            except CarnetError as exc:  # the purpose is gone: the money stays the patient's credit
                attempt.message = (
                    f"{exc.message} The money is kept as the patient's account credit."[:300]
                )
        if payment.unapplied_minor and rows and not attempt.message:
            attempt.message = (
                f"{money_text(payment.unapplied_minor)} was no longer owed "
                "and is kept as account credit."
            )
        attempt.save()
        _log(attempt, "card_charged" if not reconciled else "card_charge_reconciled")
    return attempt


# ---------------------------------------------------------------- refunds


def refund_begin(
    *,
    request_key: str,
    payment: Payment,
    amount_minor: int,
    reason: str = "",
    actor=None,
    purpose: str = "refund",
    from_credit: bool = True,
    context: dict | None = None,
) -> CardAttempt:
    """Record a card refund about to be made. `from_credit`: the money comes from the payment's
    unapplied amount, which is held until the outcome (gift-card refunds hold the card instead)."""
    with transaction.atomic():
        done = CardAttempt.objects.filter(request_key=request_key).first()
        if done is not None:
            return _same_request(
                done,
                kind=CardAttempt.Kind.REFUND,
                patient_id=payment.patient_id,
                amount_minor=amount_minor,
            )
        locked = lock_payment(payment.pk)
        done = CardAttempt.objects.filter(
            request_key=request_key
        ).first()  # a twin that held the lock first
        if done is not None:
            return _same_request(
                done,
                kind=CardAttempt.Kind.REFUND,
                patient_id=payment.patient_id,
                amount_minor=amount_minor,
            )
        if not locked.gateway_charge_id:
            raise ValidationFailed(
                "This payment was not charged through the gateway; record the refund as another "
                "method.",
                fields={"method": ["Not a gateway payment."]},
            )
        if from_credit:
            if amount_minor > locked.unapplied_minor:
                raise Conflict(
                    f"Only {money_text(locked.unapplied_minor)} of this payment is unapplied. "
                    "Unapply it from invoices first to refund more.",
                    code="refund_exceeds_unapplied",
                )
            Payment.objects.filter(pk=locked.pk).update(held_minor=locked.held_minor + amount_minor)
        attempt = _create(
            request_key,
            kind=CardAttempt.Kind.REFUND,
            purpose=purpose,
            patient_id=locked.patient_id,
            amount_minor=amount_minor,
            currency=clinic_get().currency,
            payment=locked,
            card_id=locked.card_id,
            gateway_key=_gateway_key("refund"),
            context={**(context or {}), "reason": reason[:200], "held": from_credit},
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        if (
            attempt is None
        ):  # a twin request with this key committed its attempt first: the same refund
            twin = CardAttempt.objects.get(request_key=request_key)
            transaction.set_rollback(True)  # and this request's hold goes: the twin holds the money
            return _same_request(
                twin,
                kind=CardAttempt.Kind.REFUND,
                patient_id=payment.patient_id,
                amount_minor=amount_minor,
            )
    return attempt


def refund_run(attempt: CardAttempt) -> CardAttempt:
    if attempt.status == CardAttempt.Status.SUCCEEDED:
        return attempt
    if attempt.status == CardAttempt.Status.FAILED:
        raise Conflict(attempt.message or "The gateway refused this refund.", code="refund_failed")
    charge_id = Payment.objects.values_list("gateway_charge_id", flat=True).get(
        pk=attempt.payment_id
    )
    try:
        result = charge_refund(
            charge_id=charge_id,
            amount_minor=attempt.amount_minor,
            idempotency_key=attempt.gateway_key,
        )
    except GatewayUnavailable as exc:
        _unknown(attempt.pk, exc.message)
        raise
    except CarnetError as exc:  # refused by the gateway: nothing moved
        _failed(attempt.pk, exc.message)
        raise
    return refund_record(attempt.pk, result.refund_id)


def refund_record(pk: int, refund_id: str, *, reconciled: bool = False) -> CardAttempt:

    with transaction.atomic():
        attempt = CardAttempt.objects.select_for_update(of=("self",)).get(pk=pk)
        if attempt.status == CardAttempt.Status.SUCCEEDED:
            return attempt
        purpose = _purpose(attempt.purpose)
        payment = lock_payment(attempt.payment_id)
        if attempt.context.get("held") and attempt.status in OPEN:
            payment.held_minor -= attempt.amount_minor
            payment.save(update_fields=["held_minor"])
        if purpose.on_refund_prepare:
            purpose.on_refund_prepare(attempt, payment)
            payment.refresh_from_db()
        refund = refund_post(
            payment=payment,
            amount_minor=attempt.amount_minor,
            method=Payment.Method.CARD_GATEWAY,
            refund_id=refund_id,
            reason=attempt.context.get("reason", ""),
        )
        attempt.status, attempt.gateway_id, attempt.refund = (
            CardAttempt.Status.SUCCEEDED,
            refund_id,
            refund,
        )
        attempt.resolved_at = clock.now()
        attempt.reconciled_at = attempt.resolved_at if reconciled else None
        if purpose.on_refunded:
            purpose.on_refunded(attempt, refund)
        attempt.save()
        _log(attempt, "card_refunded" if not reconciled else "card_refund_reconciled")
    return attempt


def refund(**begin) -> Refund:
    return refund_run(refund_begin(**begin)).refund


# ---------------------------------------------------------------- outcomes without money


def _failed(pk: int, message: str, *, reconciled: bool = False) -> None:
    """No money moved: release what the attempt reserved or held, and free its request key."""
    with transaction.atomic():
        attempt = CardAttempt.objects.select_for_update(of=("self",)).get(pk=pk)
        if attempt.status not in OPEN:
            return
        if attempt.kind == CardAttempt.Kind.REFUND and attempt.context.get("held"):
            payment = lock_payment(attempt.payment_id)
            payment.held_minor -= attempt.amount_minor
            payment.save(update_fields=["held_minor"])
        attempt.status, attempt.message = CardAttempt.Status.FAILED, (message or "")[:300]
        attempt.token, attempt.resolved_at = "", clock.now()
        attempt.reconciled_at = attempt.resolved_at if reconciled else None
        # The request may be corrected and sent again with the same key (another card, say).
        attempt.request_key = f"{attempt.request_key[:170]}~failed~{attempt.pk}"
        purpose = _purpose(attempt.purpose)
        if purpose.on_failed:
            purpose.on_failed(attempt)
        attempt.save()
        _log(attempt, f"card_{attempt.kind}_failed")


def _unknown(pk: int, message: str) -> None:
    CardAttempt.objects.filter(pk=pk, status=CardAttempt.Status.PENDING).update(
        status=CardAttempt.Status.UNKNOWN, message=(message or "")[:300]
    )


def _log(attempt: CardAttempt, verb: str) -> None:
    activity.record(
        actor=None if attempt.reconciled_at else attempt.created_by,
        verb=verb,
        obj=attempt,
        after=activity.snapshot(attempt, exclude=("token",)),
    )


# ---------------------------------------------------------------- reconciliation


def attempt_resolve(
    attempt: CardAttempt, *, settle_missing: bool = True, now: dt.datetime | None = None
) -> str:
    """Ask the gateway what became of an open attempt and record it: "succeeded", "failed" or
    "unknown" (the gateway could not be reached; asked again next time). settle_missing=False (a
    webhook's hint, which may arrive while the call is still in flight): what the gateway does not
    have yet is left open ("pending") instead of failed. A charge whose card holder is confirming
    it with their bank (3-D Secure) is left "pending" for AUTHENTICATION_WINDOW; after that it is
    given up (cancelled at the gateway, no money moved)."""
    authenticating = (
        bool(attempt.context.get("authenticating"))
        and attempt.created_at > (now or clock.now()) - AUTHENTICATION_WINDOW
    )
    try:
        charge_id = (
            Payment.objects.values_list("gateway_charge_id", flat=True).get(pk=attempt.payment_id)
            if attempt.kind == CardAttempt.Kind.REFUND
            else ""
        )
        found = gateway_retrieve(
            kind=attempt.kind,
            idempotency_key=attempt.gateway_key,
            reference=attempt.gateway_id if attempt.kind == CardAttempt.Kind.CHARGE else "",
            charge_id=charge_id,
            authenticating=authenticating,
        )
    except AuthenticationPending:
        return CardAttempt.Status.PENDING
    except GatewayUnavailable as exc:
        _unknown(attempt.pk, exc.message)
        return CardAttempt.Status.UNKNOWN
    except PaymentFailed as exc:  # the bank's check failed: the gateway cancelled the charge
        _failed(attempt.pk, exc.message, reconciled=True)
        return CardAttempt.Status.FAILED
    if found is None and not settle_missing:
        return CardAttempt.Status.PENDING
    if found is None:
        _failed(
            attempt.pk,
            f"The gateway has no {attempt.kind} for this attempt: no money moved.",
            reconciled=True,
        )
        return CardAttempt.Status.FAILED
    if attempt.kind == CardAttempt.Kind.CHARGE:
        charge_record(attempt.pk, found.charge_id, reconciled=True)
    else:
        refund_record(attempt.pk, found.refund_id, reconciled=True)
    return CardAttempt.Status.SUCCEEDED


def attempts_reconcile(
    *, now: dt.datetime | None = None, older_than: dt.timedelta = RECONCILE_AFTER
) -> dict:
    """Resolve every pending or unknown attempt older than `older_than`. Safe to run concurrently
    (each outcome is recorded under the attempt's row lock, once). Returns counts by outcome."""
    now = now or clock.now()
    counts = {"succeeded": 0, "failed": 0, "unknown": 0, "pending": 0, "errors": 0}
    due = (
        CardAttempt.objects.filter(status__in=OPEN, created_at__lt=now - older_than)
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )
    for pk in list(due):
        attempt = CardAttempt.objects.select_related("card").get(pk=pk)
        try:
            counts[attempt_resolve(attempt, now=now)] += 1
        except (
            Exception
        ) as exc:  # one bad row never stops the rest; it stays open and is shown for review
            counts["errors"] += 1
            CardAttempt.objects.filter(pk=pk).update(message=f"Could not reconcile: {exc}"[:300])
    return counts


def attempts_to_review(*, now: dt.datetime | None = None, days: int = 30):
    """Attempts staff should look at: still open after the reconcile delay, resolved by
    reconciliation, or whose money became credit, in the last `days` days."""

    now = now or clock.now()
    since = now - dt.timedelta(days=days)
    return (
        CardAttempt.objects.filter(
            Q(status__in=OPEN, created_at__lt=now - RECONCILE_AFTER)
            | Q(reconciled_at__gte=since)
            | Q(status=CardAttempt.Status.SUCCEEDED, resolved_at__gte=since) & ~Q(message="")
        )
        .select_related("patient", "payment")
        .order_by("-created_at", "-pk")
    )


def open_attempt_for(*, purpose: str, **context) -> CardAttempt | None:
    """The latest open attempt of a purpose whose context matches (the daily job's instalment)."""
    filters = {f"context__{name}": value for name, value in context.items()}
    return (
        CardAttempt.objects.filter(purpose=purpose, status__in=OPEN, **filters)
        .select_related("card")
        .order_by("-created_at", "-pk")
        .first()
    )


def _receipt(attempt: CardAttempt, payment: Payment) -> None:

    balance_paid_email(payment=payment)  # sent once the transaction commits


def _register_billing_purposes() -> None:
    purpose_register(Purpose(name="payment", reference="Card payment"))
    purpose_register(Purpose(name="refund", reference="Card refund"))
    purpose_register(Purpose(name="pay_balance", reference="Pay Balance link", on_charged=_receipt))


_register_billing_purposes()
