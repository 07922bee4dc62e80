"""Payments: receive, apply, apply credit, unapply, refund (SPEC 3.2). Each posts to the ledger.

Money path in the ledger: receiving puts the money in cash (by method) against the patient's
credit; applying moves it from credit to the invoice's A/R; unapplying moves it back; a
refund takes it out of credit and cash.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from django.db import transaction

from carnet.clinic.selectors import clinic_currency, money_text
from carnet.core import activity, clock
from carnet.core.errors import CarnetError, Conflict, NotFound, ValidationFailed
from carnet.core.limits import amount_check, text_check
from carnet.core.permissions import Action, require
from carnet.gateway.services import card_label, card_tokenize
from carnet.ledger import accounts
from carnet.ledger.services import Line, transaction_post

from . import card_attempts
from .locks import lock_invoices, lock_payment, lock_payments
from .models import Allocation, CardAttempt, Invoice, Payment, Refund
from .selectors import open_invoices

# Ways to pay whose money another app holds (a gift card's balance): that app registers how such a
# payment is received when it loads (giftcards.apps), so billing imports none of the apps above it.
_RECEIVERS: dict[str, Callable[..., Payment]] = {}


def payment_receiver_register(method: str, receive: Callable[..., Payment]) -> None:
    _RECEIVERS[method] = receive


def payment_receiver(method: str) -> Callable[..., Payment] | None:
    """The registered `receive(actor=, code=, patient=, amount_minor=, allocations=, reference=)`
    for a method whose money another app holds, else None (billing receives it itself)."""
    return _RECEIVERS.get(method)


UNAPPLY_OLD_AFTER = timedelta(hours=24)
REFERENCE_MAX = Payment._meta.get_field("reference").max_length
REASON_MAX = Refund._meta.get_field("reason").max_length


def allocation_check(invoice: Invoice, *, patient_id: int, amount: int) -> None:
    if amount <= 0:
        raise ValidationFailed(
            "Apply an amount greater than zero.", fields={"amount_minor": ["Must be positive."]}
        )
    if invoice.deleted_at:
        raise Conflict(f"{invoice} is deleted; it cannot take payments.", code="invoice_deleted")
    if invoice.patient_id != patient_id:
        raise ValidationFailed(
            f"{invoice} belongs to another patient; a payment applies only to its payer's "
            "invoices.",
            fields={"invoice_id": ["Another patient's invoice."]},
        )
    if amount > invoice.balance_minor:
        raise Conflict(
            f"{invoice} owes only {money_text(invoice.balance_minor)}; apply at most that "
            "(the rest stays as credit).",
            code="over_apply",
        )


def _apply(*, payment: Payment, invoice: Invoice, amount: int) -> Allocation:
    """Both rows are locked by the caller. Moves `amount` from the patient's
    credit to the invoice."""
    allocation_check(invoice, patient_id=payment.patient_id, amount=amount)
    if amount > payment.unapplied_minor:
        raise Conflict(
            f"Only {money_text(payment.unapplied_minor)} of this payment is unapplied.",
            code="over_apply",
        )
    now = clock.now()
    allocation = Allocation.objects.create(
        payment=payment, invoice=invoice, amount_minor=amount, applied_at=now
    )
    invoice.applied_minor += amount
    payment.applied_minor += amount
    invoice.save(update_fields=["applied_minor"])
    payment.save(update_fields=["applied_minor"])
    transaction_post(
        kind="payment_applied",
        source=allocation,
        at=now,
        memo=f"{payment} → {invoice}",
        lines=[
            Line(accounts.PATIENT_CREDIT, debit=amount, patient_id=payment.patient_id),
            Line(accounts.AR, credit=amount, patient_id=invoice.patient_id),
        ],
    )
    return allocation


def card_on_file_check(patient, card):
    """The card, if it is one of this patient's cards still on file."""
    if card is None or card.patient_id != patient.pk or card.removed_at:
        raise ValidationFailed(
            "Choose one of this patient's cards on file to charge.",
            fields={"card_id": ["Choose a card on file."]},
        )
    return card


def payment_receive(
    *,
    actor,
    patient,
    method: str,
    amount_minor: int,
    reference: str = "",
    allocations: list[tuple[Invoice, int]] = (),
    card=None,
    idempotency_key: str | None = None,
    received_at=None,
    token: str = "",
    card_label: str = "",
) -> Payment:
    """Record money received from a patient and apply it; what is not applied becomes credit.

    A card on file is charged through a card attempt (billing.card_attempts): recorded and
    committed first, with its invoices reserved, then the gateway is called outside any
    transaction, then the payment is recorded. Call it outside a transaction for a card. The
    same `idempotency_key` again returns the first payment and charges nothing more.

    A new card (`token`, from gateway.services.card_tokenize; `card` too when it was also kept on
    file) is charged the same way, on-session: its holder is at the desk, so the bank may ask them
    to confirm (AuthenticationPending, the attempt waiting) rather than refuse.
    """
    require(actor, Action.PAYMENT_TAKE)
    if method not in Payment.Method.values:
        raise ValidationFailed(
            f"Unknown payment method “{method}”.", fields={"method": ["Unknown method."]}
        )
    if (
        method == Payment.Method.GIFT_CARD
    ):  # the card's balance must move too: only gift_card_redeem may
        raise ValidationFailed(
            "To pay with a gift card, redeem it with its code.",
            fields={"gift_card_code": ["Enter the gift card's code."]},
        )
    if amount_minor <= 0:
        raise ValidationFailed(
            "Enter an amount greater than zero.", fields={"amount_minor": ["Must be positive."]}
        )
    amount_check(amount_minor, field="amount_minor", kind="payment", currency=clinic_currency())
    text_check(reference, field="reference", limit=REFERENCE_MAX)
    wanted = sum(amount for _, amount in allocations)
    if wanted > amount_minor:
        raise ValidationFailed(
            f"You applied {money_text(wanted)} but received only {money_text(amount_minor)}.",
            fields={"allocations": ["More than the payment."]},
        )
    if method == Payment.Method.CARD_GATEWAY:
        card = card_on_file_check(patient, card) if card is not None or not token else None
        label = str(card) if card is not None else card_label
        return card_attempts.charge(
            request_key=f"payment:{actor.pk}:{idempotency_key or uuid.uuid4().hex}",
            purpose="payment",
            patient=patient,
            amount_minor=amount_minor,
            card=card,
            token="" if card is not None else token,
            card_label=label,
            allocations=list(allocations),
            context={"reference": reference or f"Card payment, {label}"}
            | ({"on_session": True} if token else {}),
            actor=actor,
        )
    with transaction.atomic():
        return payment_record(
            actor=actor,
            verb="received",
            patient=patient,
            method=method,
            amount_minor=amount_minor,
            reference=reference,
            allocations=allocations,
            charge_id="",
            received_at=received_at,
        )


def payment_record(
    *,
    actor,
    verb: str,
    patient,
    method: str,
    amount_minor: int,
    reference: str,
    allocations,
    charge_id: str,
    card=None,
    received_at=None,
) -> Payment:
    """Inside the caller's transaction: the payment, its ledger posting and log row, then its
    allocations. Shared by payment_receive (staff) and balance_pay_online (the patient)."""
    invoices = lock_invoices([inv.pk for inv, _ in allocations])
    now = clock.now()
    payment = Payment.objects.create(
        patient=patient,
        method=method,
        amount_minor=amount_minor,
        received_at=received_at or now,
        reference=reference[:120],
        gateway_charge_id=charge_id,
        card=card if charge_id else None,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    transaction_post(
        kind="payment_received",
        source=payment,
        at=now,
        memo=str(payment),
        lines=[
            Line(accounts.cash(method), debit=amount_minor),
            Line(accounts.PATIENT_CREDIT, credit=amount_minor, patient_id=patient.pk),
        ],
    )
    activity.record(actor=actor, verb=verb, obj=payment, after=activity.snapshot(payment))
    try:
        with transaction.atomic():
            for invoice, amount in allocations:
                _apply(payment=payment, invoice=invoices[invoice.pk], amount=amount)
    except CarnetError:
        if not charge_id:
            raise
        payment.refresh_from_db()  # charged: keep the money as credit rather than lose the record
    return payment


def payment_apply_system(*, payment: Payment, invoice: Invoice, amount_minor: int) -> Allocation:
    """Inside the caller's transaction, for a card attempt's purpose step (no staff actor): apply
    up to `amount_minor` of the payment to the invoice, as far as both allow."""
    invoice = lock_invoices([invoice.pk])[invoice.pk]
    payment = lock_payment(payment.pk)
    amount = min(amount_minor, payment.unapplied_minor, max(invoice.balance_minor, 0))
    return _apply(payment=payment, invoice=invoice, amount=amount) if amount > 0 else None


@transaction.atomic
def payment_apply(*, actor, payment: Payment, invoice: Invoice, amount_minor: int) -> Allocation:
    require(actor, Action.PAYMENT_TAKE)
    locked_invoice = lock_invoices([invoice.pk])[invoice.pk]
    allocation = _apply(
        payment=lock_payment(payment.pk), invoice=locked_invoice, amount=amount_minor
    )
    activity.record(
        actor=actor, verb="applied", obj=allocation, after=activity.snapshot(allocation)
    )
    return allocation


@transaction.atomic
def credit_apply(
    *, actor, patient, invoice: Invoice, amount_minor: int | None = None
) -> list[Allocation]:
    """Apply the patient's account credit to an invoice, oldest payments first."""
    require(actor, Action.PAYMENT_TAKE)
    invoice = lock_invoices([invoice.pk])[invoice.pk]
    open_payments = [
        p.pk
        for p in Payment.objects.filter(patient=patient).order_by("received_at", "pk")
        if p.unapplied_minor > 0
    ]
    payments = lock_payments(open_payments)
    credit = sum(payments[pk].unapplied_minor for pk in open_payments)
    if invoice.balance_minor <= 0:
        raise Conflict(
            f"{invoice} is already paid; there is nothing to apply credit to.", code="nothing_owing"
        )
    wanted = min(credit, invoice.balance_minor) if amount_minor is None else amount_minor
    if wanted <= 0 or wanted > credit:
        raise Conflict(
            f"{patient} has {money_text(credit)} of credit; apply between 0.01 and that.",
            code="not_enough_credit",
        )
    allocations, left = [], wanted
    for pk in open_payments:
        if left == 0:
            break
        take = min(left, payments[pk].unapplied_minor)
        allocations.append(_apply(payment=payments[pk], invoice=invoice, amount=take))
        left -= take
    for allocation in allocations:
        activity.record(
            actor=actor, verb="credit_applied", obj=allocation, after=activity.snapshot(allocation)
        )
    return allocations


@transaction.atomic
def allocation_unapply(*, actor, allocation: Allocation) -> Allocation:
    """Move an applied amount back to the patient's credit."""
    require(actor, Action.PAYMENT_UNAPPLY)
    return _unapply(actor=actor, allocation=allocation)


def _unapply(*, actor, allocation: Allocation) -> Allocation:
    """actor None: the card processor took the money back (a refund made in Stripe's Dashboard, a
    lost chargeback), so what it paid is owing again; no one's permission is asked."""
    invoice = lock_invoices([allocation.invoice_id])[allocation.invoice_id]
    payment = lock_payment(allocation.payment_id)
    allocation = Allocation.objects.get(pk=allocation.pk)
    if allocation.unapplied_at:
        raise NotFound("This payment was already unapplied from that invoice.")
    if actor is not None and clock.now() - payment.received_at > UNAPPLY_OLD_AFTER:
        require(actor, Action.PAYMENT_UNAPPLY_OLD)
    before = activity.snapshot(allocation)
    now = clock.now()
    allocation.unapplied_at = now
    allocation.save(update_fields=["unapplied_at"])
    invoice.applied_minor -= allocation.amount_minor
    payment.applied_minor -= allocation.amount_minor
    invoice.save(update_fields=["applied_minor"])
    payment.save(update_fields=["applied_minor"])
    transaction_post(
        kind="payment_unapplied",
        source=allocation,
        at=now,
        memo=f"{payment} ↛ {invoice}",
        lines=[
            Line(accounts.AR, debit=allocation.amount_minor, patient_id=invoice.patient_id),
            Line(
                accounts.PATIENT_CREDIT,
                credit=allocation.amount_minor,
                patient_id=payment.patient_id,
            ),
        ],
    )
    activity.record(
        actor=actor,
        verb="unapplied",
        obj=allocation,
        before=before,
        after=activity.snapshot(allocation),
    )
    return allocation


def payment_refund(
    *,
    actor,
    payment: Payment,
    amount_minor: int,
    method: str | None = None,
    reason: str = "",
    idempotency_key: str | None = None,
) -> Refund:
    """Refund from the payment's unapplied amount: to the original card through the gateway (a card
    attempt: held, called outside any transaction, recorded), or recorded as another method."""
    require(actor, Action.REFUND)
    method = method or payment.method
    if method not in Payment.Method.values:
        raise ValidationFailed(
            f"Unknown refund method “{method}”.", fields={"method": ["Unknown method."]}
        )
    if (
        method == Payment.Method.GIFT_CARD
    ):  # it would grow the liability with no card balance behind it
        raise ValidationFailed(
            "A refund cannot be paid onto a gift card; choose another method.",
            fields={"method": ["Choose another method."]},
        )
    if amount_minor <= 0:
        raise ValidationFailed(
            "Refund an amount greater than zero.", fields={"amount_minor": ["Must be positive."]}
        )
    text_check(reason, field="reason", limit=REASON_MAX)
    if method == Payment.Method.CARD_GATEWAY:
        return card_attempts.refund(
            request_key=f"refund:{actor.pk}:{idempotency_key or uuid.uuid4().hex}",
            payment=payment,
            amount_minor=amount_minor,
            reason=reason,
            actor=actor,
        )
    with transaction.atomic():
        payment = lock_payment(payment.pk)
        if amount_minor > payment.unapplied_minor:
            raise Conflict(
                f"Only {money_text(payment.unapplied_minor)} of this payment is unapplied. "
                "Unapply it from invoices first to refund more.",
                code="refund_exceeds_unapplied",
            )
        refund = refund_post(
            payment=payment, amount_minor=amount_minor, method=method, refund_id="", reason=reason
        )
        activity.record(actor=actor, verb="refunded", obj=refund, after=activity.snapshot(refund))
    return refund


def refund_post(
    *, payment: Payment, amount_minor: int, method: str, refund_id: str, reason: str
) -> Refund:
    """Inside the caller's transaction, the payment locked: the refund row and
    its ledger posting."""
    now = clock.now()
    refund = Refund.objects.create(
        payment=payment,
        amount_minor=amount_minor,
        method=method,
        refunded_at=now,
        gateway_refund_id=refund_id,
        reason=reason[:200],
    )
    payment.refunded_minor += amount_minor
    payment.save(update_fields=["refunded_minor"])
    transaction_post(
        kind="payment_refunded",
        source=refund,
        at=now,
        memo=f"Refund of {payment}",
        lines=[
            Line(accounts.PATIENT_CREDIT, debit=amount_minor, patient_id=payment.patient_id),
            Line(accounts.cash(method), credit=amount_minor),
        ],
    )
    return refund


def refund_outside(
    *, payment_pk: int, amount_minor: int, refund_id: str, reason: str, verb: str
) -> Refund | None:
    """Money the card processor returned to the card holder without Carnet asking (a refund made in
    Stripe's Dashboard, a chargeback lost), recorded once by its id (`refund_id`, unique among
    refunds): the payment's unapplied money first, then what it paid on invoices (newest first,
    owing again). Never more than the payment still holds. None when already recorded."""
    with transaction.atomic():
        payment = lock_payment(payment_pk)
        if Refund.objects.filter(gateway_refund_id=refund_id).exists():
            return None
        free, last = payment.unapplied_minor, None
        for allocation in payment.allocations.filter(unapplied_at__isnull=True).order_by("-pk"):
            if payment.unapplied_minor >= amount_minor:
                break
            last = _unapply(actor=None, allocation=allocation)
            payment.refresh_from_db()
        amount = min(amount_minor, payment.unapplied_minor)
        if amount <= 0:
            return None
        refund = refund_post(
            payment=payment,
            amount_minor=amount,
            method=Payment.Method.CARD_GATEWAY,
            refund_id=refund_id,
            reason=reason,
        )
        if (
            last is not None and payment.unapplied_minor > free
        ):  # what was unapplied beyond the refund pays again
            payment_apply_system(
                payment=payment, invoice=last.invoice, amount_minor=payment.unapplied_minor - free
            )
        activity.record(
            actor=None,
            verb=verb,
            obj=payment,
            after={
                "refund": refund.pk,
                "gateway_refund_id": refund_id,
                "amount_minor": amount,
                "reason": reason[:200],
            },
        )
    return refund


# -------------------------------------------------------- gift cards (carnet.giftcards calls these)
# A gift-card load is paid by an ordinary payment from the purchaser (cash → their credit), fully
# spent on the load at once (their credit → gift-card liability), so "credit equals unapplied
# payments" still holds: `gift_card_minor` counts the spent part. A redemption is a payment by
# method GIFT_CARD, whose "cash" account is the gift-card liability (liability → credit → A/R).


def payment_gift_card_record(
    *, actor, patient, amount_minor: int, reference: str, allocations: list[tuple[Invoice, int]]
) -> Payment:
    """Inside gift_card_redeem's transaction, after the card's balance was taken down."""
    return payment_record(
        actor=actor,
        verb="received",
        patient=patient,
        method=Payment.Method.GIFT_CARD,
        amount_minor=amount_minor,
        reference=reference,
        allocations=allocations,
        charge_id="",
    )


def payment_gift_card_spend(*, payment: Payment, amount_minor: int, source, memo: str) -> Payment:
    """Move `amount_minor` of the payment's unapplied money from its payer's
    credit to the liability."""
    payment = lock_payment(payment.pk)
    if not 0 < amount_minor <= payment.unapplied_minor:
        raise Conflict(
            f"Only {money_text(payment.unapplied_minor)} of this payment is unapplied.",
            code="over_apply",
        )
    payment.gift_card_minor += amount_minor
    payment.save(update_fields=["gift_card_minor"])
    transaction_post(
        kind="gift_card_loaded",
        source=source,
        at=clock.now(),
        memo=memo,
        lines=[
            Line(accounts.PATIENT_CREDIT, debit=amount_minor, patient_id=payment.patient_id),
            Line(accounts.GIFT_CARD_LIABILITY, credit=amount_minor),
        ],
    )
    return payment


def payment_gift_card_release(*, payment: Payment, amount_minor: int, source, memo: str) -> Payment:
    """The reverse of spend: back from the liability to the payer's credit (before a refund)."""
    payment = lock_payment(payment.pk)
    if not 0 < amount_minor <= payment.gift_card_minor:
        raise Conflict(
            f"Only {money_text(payment.gift_card_minor)} of this payment went to gift cards.",
            code="refund_exceeds_load",
        )
    payment.gift_card_minor -= amount_minor
    payment.save(update_fields=["gift_card_minor"])
    transaction_post(
        kind="gift_card_released",
        source=source,
        at=clock.now(),
        memo=memo,
        lines=[
            Line(accounts.GIFT_CARD_LIABILITY, debit=amount_minor),
            Line(accounts.PATIENT_CREDIT, credit=amount_minor, patient_id=payment.patient_id),
        ],
    )
    return payment


# ---------------------------------------------------------------- paying online (SPEC 3.3, 9.1, 7)


def form_key_check(idempotency_key: str) -> str:
    key = (idempotency_key or "").strip()
    if not 1 <= len(key) <= 100:
        raise ValidationFailed(
            "This payment form is missing its key; reload the page and try again.",
            fields={"form_key": ["Missing."]},
        )
    return key


def card_pay_online(
    *,
    patient,
    purpose: str,
    request_key: str,
    amount_minor: int,
    card_entry: dict,
    allocations=(),
    context: dict | None = None,
    actor=None,
):
    """The one way a patient pays by a card typed in online (Pay Balance, buy a package, buy a gift
    card): the card is checked and kept at the gateway (card-holder checks in gateway.services),
    then charged as a card attempt. A double submit or retry with the same key charges once and
    returns the same attempt; a declined card frees the key, so the patient can correct it; a lost
    answer keeps it, so the retry asks the gateway about the same charge."""

    attempt = CardAttempt.objects.filter(request_key=request_key).first()
    if attempt is None:
        stored = card_tokenize(**card_entry)  # a bad number, expiry, CVC or name stops here
        label = card_label(stored)
        context = dict(context or {})
        context["reference"] = f"{context.get('reference', 'Paid online')}, {label}"
        attempt = card_attempts.charge_begin(
            request_key=request_key,
            purpose=purpose,
            patient=patient,
            amount_minor=amount_minor,
            token=stored.token,
            card_label=label,
            allocations=allocations,
            context=context,
            actor=actor,
        )
    return card_attempts.charge_run(attempt)


def pay_balance_entry_for(patient) -> str:
    """What a card typed on a patient's Pay Balance page may pay (the Stripe SetupIntent's tag)."""
    return f"pay-balance:{patient.pk}"


def balance_pay_online(
    *,
    patient,
    holder: str,
    idempotency_key: str,
    card_number: str = "",
    exp_month: int = 0,
    exp_year: int = 0,
    cvc: str = "",
    setup_intent: str = "",
) -> Payment:
    """The patient pays their whole outstanding balance by card, from a Pay Balance link (SPEC 3.3).

    The one payment made by the patient rather than staff, so there is no staff access check: it
    can pay only this patient's own open invoices, oldest first, for exactly what is outstanding.
    """

    request_key = f"pay-balance:{patient.pk}:{form_key_check(idempotency_key)}"
    invoices, amount = [], 0
    if not CardAttempt.objects.filter(request_key=request_key).exists():
        invoices = list(open_invoices(patient))
        amount = sum(i.balance_minor for i in invoices)
        if amount <= 0:
            raise Conflict("There is nothing to pay: your balance is zero.", code="nothing_owing")
    attempt = card_pay_online(
        patient=patient,
        purpose="pay_balance",
        request_key=request_key,
        amount_minor=amount,
        card_entry={
            "number": card_number,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "cvc": cvc,
            "holder": holder,
            "setup_intent": setup_intent,
            "entry_for": pay_balance_entry_for(patient),
        },
        allocations=[(i, i.balance_minor) for i in invoices],
        context={"reference": "Pay Balance link"},
    )
    return attempt.payment
