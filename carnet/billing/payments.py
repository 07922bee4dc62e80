"""Payments: receive, apply, apply credit, unapply, refund (SPEC 3.2). Each posts to the ledger.

Money path in the ledger: receiving puts the money in cash (by method) against the patient's
credit; applying moves it from credit to the invoice's A/R; unapplying moves it back; a
refund takes it out of credit and cash.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction

from carnet.clinic.selectors import clinic_currency, clinic_get
from carnet.core import activity, clock
from carnet.core.limits import amount_check, text_check
from carnet.core.errors import CarnetError, Conflict, NotFound, ValidationFailed
from carnet.core.models import IdempotencyRecord
from carnet.core.permissions import Action, require
from carnet.ledger import accounts
from carnet.ledger.services import Line, transaction_post

from .locks import lock_invoices, lock_payment, lock_payments
from .models import Allocation, Invoice, Payment, Refund
from .selectors import open_invoices

UNAPPLY_OLD_AFTER = timedelta(hours=24)
REFERENCE_MAX = Payment._meta.get_field("reference").max_length
REASON_MAX = Refund._meta.get_field("reason").max_length


def _money(minor: int) -> str:
    return str(clinic_get().money(minor))


def _check_allocation(invoice: Invoice, *, patient_id: int, amount: int) -> None:
    if amount <= 0:
        raise ValidationFailed("Apply an amount greater than zero.", fields={"amount_minor": ["Must be positive."]})
    if invoice.deleted_at:
        raise Conflict(f"{invoice} is deleted; it cannot take payments.", code="invoice_deleted")
    if invoice.patient_id != patient_id:
        raise ValidationFailed(f"{invoice} belongs to another patient; a payment applies only to its payer's invoices.",
                               fields={"invoice_id": ["Another patient's invoice."]})
    if amount > invoice.balance_minor:
        raise Conflict(f"{invoice} owes only {_money(invoice.balance_minor)}; apply at most that "
                       "(the rest stays as credit).", code="over_apply")


def _apply(*, payment: Payment, invoice: Invoice, amount: int) -> Allocation:
    """Both rows are locked by the caller. Moves `amount` from the patient's credit to the invoice."""
    _check_allocation(invoice, patient_id=payment.patient_id, amount=amount)
    if amount > payment.unapplied_minor:
        raise Conflict(f"Only {_money(payment.unapplied_minor)} of this payment is unapplied.", code="over_apply")
    now = clock.now()
    allocation = Allocation.objects.create(payment=payment, invoice=invoice, amount_minor=amount, applied_at=now)
    invoice.applied_minor += amount
    payment.applied_minor += amount
    invoice.save(update_fields=["applied_minor"])
    payment.save(update_fields=["applied_minor"])
    transaction_post(kind="payment_applied", source=allocation, at=now, memo=f"{payment} → {invoice}", lines=[
        Line(accounts.PATIENT_CREDIT, debit=amount, patient_id=payment.patient_id),
        Line(accounts.AR, credit=amount, patient_id=invoice.patient_id),
    ])
    return allocation


def _charge_card(*, patient, card, amount: int, key: str) -> str:
    from carnet.gateway.services import card_charge

    if card is None or card.patient_id != patient.pk or card.removed_at:
        raise ValidationFailed("Choose one of this patient's cards on file to charge.",
                               fields={"card_id": ["Choose a card on file."]})
    return card_charge(card_or_token=card, amount_minor=amount, currency=clinic_get().currency,
                       idempotency_key=key).charge_id


def payment_receive(*, actor, patient, method: str, amount_minor: int, reference: str = "",
                    allocations: list[tuple[Invoice, int]] = (), card=None, idempotency_key: str | None = None,
                    received_at=None) -> Payment:
    """Record money received from a patient and apply it; what is not applied becomes credit.

    A card is charged *before* our database transaction opens (no row locks held over the
    network), with the idempotency key as the gateway's key: a retry after a lost response
    finds the same charge. Once a card is charged the payment is always recorded; if applying
    it then fails (say the invoice was paid meanwhile) the money stays as the patient's credit.
    """
    require(actor, Action.PAYMENT_TAKE)
    if method not in Payment.Method.values:
        raise ValidationFailed(f"Unknown payment method “{method}”.", fields={"method": ["Unknown method."]})
    if method == Payment.Method.GIFT_CARD:  # the card's balance must move too: only giftcard_redeem may
        raise ValidationFailed("To pay with a gift card, redeem it with its code.",
                               fields={"gift_card_code": ["Enter the gift card's code."]})
    if amount_minor <= 0:
        raise ValidationFailed("Enter an amount greater than zero.", fields={"amount_minor": ["Must be positive."]})
    amount_check(amount_minor, field="amount_minor", kind="payment", currency=clinic_currency())
    text_check(reference, field="reference", limit=REFERENCE_MAX)
    wanted = sum(amount for _, amount in allocations)
    if wanted > amount_minor:
        raise ValidationFailed(f"You applied {_money(wanted)} but received only {_money(amount_minor)}.",
                               fields={"allocations": ["More than the payment."]})
    charge_id = ""
    if method == Payment.Method.CARD_GATEWAY:
        for invoice, amount in allocations:  # refuse obvious mistakes before charging anyone
            _check_allocation(Invoice.objects.get(pk=invoice.pk), patient_id=patient.pk, amount=amount)
        charge_id = _charge_card(patient=patient, card=card, amount=amount_minor,
                                 key=idempotency_key or f"payment-{uuid.uuid4()}")
    with transaction.atomic():
        return _record_payment(actor=actor, verb="received", patient=patient, method=method,
                               amount_minor=amount_minor, reference=reference, allocations=allocations,
                               charge_id=charge_id, card=card, received_at=received_at)


def _record_payment(*, actor, verb: str, patient, method: str, amount_minor: int, reference: str,
                    allocations, charge_id: str, card=None, received_at=None) -> Payment:
    """Inside the caller's transaction: the payment, its ledger posting and log row, then its
    allocations. Shared by payment_receive (staff) and balance_pay_online (the patient)."""
    invoices = lock_invoices([inv.pk for inv, _ in allocations])
    now = clock.now()
    payment = Payment.objects.create(
        patient=patient, method=method, amount_minor=amount_minor, received_at=received_at or now,
        reference=reference[:120], gateway_charge_id=charge_id, card=card if charge_id else None,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    transaction_post(kind="payment_received", source=payment, at=now, memo=str(payment), lines=[
        Line(accounts.cash(method), debit=amount_minor),
        Line(accounts.PATIENT_CREDIT, credit=amount_minor, patient_id=patient.pk),
    ])
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


@transaction.atomic
def payment_apply(*, actor, payment: Payment, invoice: Invoice, amount_minor: int) -> Allocation:
    require(actor, Action.PAYMENT_TAKE)
    locked_invoice = lock_invoices([invoice.pk])[invoice.pk]
    allocation = _apply(payment=lock_payment(payment.pk), invoice=locked_invoice, amount=amount_minor)
    activity.record(actor=actor, verb="applied", obj=allocation, after=activity.snapshot(allocation))
    return allocation


@transaction.atomic
def credit_apply(*, actor, patient, invoice: Invoice, amount_minor: int | None = None) -> list[Allocation]:
    """Apply the patient's account credit to an invoice, oldest payments first."""
    require(actor, Action.PAYMENT_TAKE)
    invoice = lock_invoices([invoice.pk])[invoice.pk]
    open_payments = [p.pk for p in Payment.objects.filter(patient=patient).order_by("received_at", "pk")
                     if p.unapplied_minor > 0]
    payments = lock_payments(open_payments)
    credit = sum(payments[pk].unapplied_minor for pk in open_payments)
    if invoice.balance_minor <= 0:
        raise Conflict(f"{invoice} is already paid; there is nothing to apply credit to.", code="nothing_owing")
    wanted = min(credit, invoice.balance_minor) if amount_minor is None else amount_minor
    if wanted <= 0 or wanted > credit:
        raise Conflict(f"{patient} has {_money(credit)} of credit; apply between 0.01 and that.",
                       code="not_enough_credit")
    allocations, left = [], wanted
    for pk in open_payments:
        if left == 0:
            break
        take = min(left, payments[pk].unapplied_minor)
        allocations.append(_apply(payment=payments[pk], invoice=invoice, amount=take))
        left -= take
    for allocation in allocations:
        activity.record(actor=actor, verb="credit_applied", obj=allocation, after=activity.snapshot(allocation))
    return allocations


@transaction.atomic
def allocation_unapply(*, actor, allocation: Allocation) -> Allocation:
    """Move an applied amount back to the patient's credit."""
    require(actor, Action.PAYMENT_UNAPPLY)
    invoice = lock_invoices([allocation.invoice_id])[allocation.invoice_id]
    payment = lock_payment(allocation.payment_id)
    allocation = Allocation.objects.get(pk=allocation.pk)
    if allocation.unapplied_at:
        raise NotFound("This payment was already unapplied from that invoice.")
    if clock.now() - payment.received_at > UNAPPLY_OLD_AFTER:
        require(actor, Action.PAYMENT_UNAPPLY_OLD)
    before = activity.snapshot(allocation)
    now = clock.now()
    allocation.unapplied_at = now
    allocation.save(update_fields=["unapplied_at"])
    invoice.applied_minor -= allocation.amount_minor
    payment.applied_minor -= allocation.amount_minor
    invoice.save(update_fields=["applied_minor"])
    payment.save(update_fields=["applied_minor"])
    transaction_post(kind="payment_unapplied", source=allocation, at=now, memo=f"{payment} ↛ {invoice}", lines=[
        Line(accounts.AR, debit=allocation.amount_minor, patient_id=invoice.patient_id),
        Line(accounts.PATIENT_CREDIT, credit=allocation.amount_minor, patient_id=payment.patient_id),
    ])
    activity.record(actor=actor, verb="unapplied", obj=allocation, before=before, after=activity.snapshot(allocation))
    return allocation


@transaction.atomic
def payment_refund(*, actor, payment: Payment, amount_minor: int, method: str | None = None, reason: str = "",
                   idempotency_key: str | None = None) -> Refund:
    """Refund from the payment's unapplied amount: to the original method, or recorded as another."""
    require(actor, Action.REFUND)
    payment = lock_payment(payment.pk)
    method = method or payment.method
    if method not in Payment.Method.values:
        raise ValidationFailed(f"Unknown refund method “{method}”.", fields={"method": ["Unknown method."]})
    if method == Payment.Method.GIFT_CARD:  # it would grow the liability with no card balance behind it
        raise ValidationFailed("A refund cannot be paid onto a gift card; choose another method.",
                               fields={"method": ["Choose another method."]})
    if amount_minor <= 0:
        raise ValidationFailed("Refund an amount greater than zero.", fields={"amount_minor": ["Must be positive."]})
    text_check(reason, field="reason", limit=REASON_MAX)
    if amount_minor > payment.unapplied_minor:
        raise Conflict(f"Only {_money(payment.unapplied_minor)} of this payment is unapplied. Unapply it from "
                       "invoices first to refund more.", code="refund_exceeds_unapplied")
    refund_id = ""
    if method == Payment.Method.CARD_GATEWAY:
        if not payment.gateway_charge_id:
            raise ValidationFailed("This payment was not charged through the gateway; record the refund as "
                                   "another method.", fields={"method": ["Not a gateway payment."]})
        from carnet.gateway.services import charge_refund

        refund_id = charge_refund(charge_id=payment.gateway_charge_id, amount_minor=amount_minor,
                                  idempotency_key=idempotency_key or f"refund-{uuid.uuid4()}").refund_id
    now = clock.now()
    refund = Refund.objects.create(payment=payment, amount_minor=amount_minor, method=method, refunded_at=now,
                                   gateway_refund_id=refund_id, reason=reason[:200])
    payment.refunded_minor += amount_minor
    payment.save(update_fields=["refunded_minor"])
    transaction_post(kind="payment_refunded", source=refund, at=now, memo=f"Refund of {payment}", lines=[
        Line(accounts.PATIENT_CREDIT, debit=amount_minor, patient_id=payment.patient_id),
        Line(accounts.cash(method), credit=amount_minor),
    ])
    activity.record(actor=actor, verb="refunded", obj=refund, after=activity.snapshot(refund))
    return refund


# ---------------------------------------------------------------- gift cards (carnet.giftcards calls these)
# A gift-card load is paid by an ordinary payment from the purchaser (cash → their credit), fully
# spent on the load at once (their credit → gift-card liability), so "credit equals unapplied
# payments" still holds: `gift_card_minor` counts the spent part. A redemption is a payment by
# method GIFT_CARD, whose "cash" account is the gift-card liability (liability → credit → A/R).

def payment_gift_card_record(*, actor, patient, amount_minor: int, reference: str,
                             allocations: list[tuple[Invoice, int]]) -> Payment:
    """Inside giftcard_redeem's transaction, after the card's balance was taken down."""
    return _record_payment(actor=actor, verb="received", patient=patient, method=Payment.Method.GIFT_CARD,
                           amount_minor=amount_minor, reference=reference, allocations=allocations, charge_id="")


def payment_record_online(*, patient, amount_minor: int, reference: str, charge_id: str) -> Payment:
    """Inside the caller's transaction: a card payment the patient made online (no staff actor)."""
    return _record_payment(actor=None, verb="paid_online", patient=patient, method=Payment.Method.CARD_GATEWAY,
                           amount_minor=amount_minor, reference=reference, allocations=(), charge_id=charge_id)


def payment_record_charge(*, patient, amount_minor: int, reference: str, charge_id: str, invoice: Invoice,
                          card=None) -> Payment:
    """Inside the caller's transaction: a gateway charge made by the clinic's own job (an instalment
    or a membership cycle), applied to `invoice` as far as it is owed, the rest left as credit.
    Recorded once per charge: a rerun after a crash finds the payment the first run recorded."""
    done = Payment.objects.filter(gateway_charge_id=charge_id, method=Payment.Method.CARD_GATEWAY).first()
    if done is not None:
        return done
    invoice = lock_invoices([invoice.pk])[invoice.pk]
    apply = min(amount_minor, max(invoice.balance_minor, 0))
    return _record_payment(actor=None, verb="charged", patient=patient, method=Payment.Method.CARD_GATEWAY,
                           amount_minor=amount_minor, reference=reference, charge_id=charge_id, card=card,
                           allocations=[(invoice, apply)] if apply else [])


def payment_gift_card_spend(*, payment: Payment, amount_minor: int, source, memo: str) -> Payment:
    """Move `amount_minor` of the payment's unapplied money from its payer's credit to the liability."""
    payment = lock_payment(payment.pk)
    if not 0 < amount_minor <= payment.unapplied_minor:
        raise Conflict(f"Only {_money(payment.unapplied_minor)} of this payment is unapplied.", code="over_apply")
    payment.gift_card_minor += amount_minor
    payment.save(update_fields=["gift_card_minor"])
    transaction_post(kind="gift_card_loaded", source=source, at=clock.now(), memo=memo, lines=[
        Line(accounts.PATIENT_CREDIT, debit=amount_minor, patient_id=payment.patient_id),
        Line(accounts.GIFT_CARD_LIABILITY, credit=amount_minor),
    ])
    return payment


def payment_gift_card_release(*, payment: Payment, amount_minor: int, source, memo: str) -> Payment:
    """The reverse of spend: back from the liability to the payer's credit (before a refund)."""
    payment = lock_payment(payment.pk)
    if not 0 < amount_minor <= payment.gift_card_minor:
        raise Conflict(f"Only {_money(payment.gift_card_minor)} of this payment went to gift cards.",
                       code="refund_exceeds_load")
    payment.gift_card_minor -= amount_minor
    payment.save(update_fields=["gift_card_minor"])
    transaction_post(kind="gift_card_released", source=source, at=clock.now(), memo=memo, lines=[
        Line(accounts.GIFT_CARD_LIABILITY, debit=amount_minor),
        Line(accounts.PATIENT_CREDIT, credit=amount_minor, patient_id=payment.patient_id),
    ])
    return payment


# ---------------------------------------------------------------- paying online (Pay Balance link)
# One IdempotencyRecord per form submission key holds the attempt: while PENDING, the gateway
# token, amount and invoices of the first try (so a retry charges the same card, for the same
# amount, under the same gateway key: the gateway charges once); once RECORDED, the payment id.
_PENDING, _RECORDED = 0, 201


def _attempt_get(scope: str, key: str) -> dict | None:
    record = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
    return None if record is None else json.loads(bytes(record.body))


def _attempt_claim(scope: str, key: str, attempt: dict) -> dict:
    """Claim the key for this attempt; if a twin submission claimed it first, the twin's attempt."""
    for _ in range(3):  # the twin's claim may vanish again if its card is declined meanwhile
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(scope=scope, key=key, request_hash="", status_code=_PENDING,
                                                 content_type="application/json", created_at=clock.now(),
                                                 body=json.dumps(attempt).encode())
            return attempt
        except IntegrityError:
            twin = _attempt_get(scope, key)
            if twin is not None:
                return twin
    raise Conflict("This payment is already being processed. Wait a moment, then reload the page.",
                   code="payment_in_progress")


def balance_pay_online(*, patient, card_number: str, exp_month: int, exp_year: int, cvc: str, holder: str,
                       idempotency_key: str) -> Payment:
    """The patient pays their whole outstanding balance by card, from a Pay Balance link (SPEC 3.3).

    The one payment made by the patient rather than staff, so there is no staff access check: it
    can pay only this patient's own open invoices, oldest first, for exactly what is outstanding.
    A double submit or retry with the same key charges once and returns the same payment. A
    declined card frees the key (nothing was charged) so the patient can correct it; a network
    error keeps it, so the retry asks the gateway about the same charge.
    """
    key = (idempotency_key or "").strip()
    if not 1 <= len(key) <= 100:
        raise ValidationFailed("This payment form is missing its key; reload the page and try again.",
                               fields={"form_key": ["Missing."]})
    holder = (holder or "").strip()
    if not holder or len(holder) > 120:
        raise ValidationFailed("Please enter the name on the card (at most 120 characters).",
                               fields={"holder": ["Enter the name on the card."]})
    from carnet.gateway.base import get_gateway
    from carnet.gateway.models import BRAND_LABELS
    from carnet.gateway.services import PaymentFailed, card_charge

    from .emails import balance_paid_email

    scope = f"pay-balance:{patient.pk}"
    attempt = _attempt_get(scope, key)
    if attempt is None:
        invoices = list(open_invoices(patient))
        amount = sum(i.balance_minor for i in invoices)
        if amount <= 0:
            raise Conflict("There is nothing to pay: your balance is zero.", code="nothing_owing")
        stored = get_gateway().store_card(number=card_number, exp_month=exp_month, exp_year=exp_year, cvc=cvc,
                                          holder=holder)  # a bad number, expiry or CVC stops here
        card = f"{BRAND_LABELS.get(stored.brand, 'Card')} •••• {stored.last4}"
        attempt = _attempt_claim(scope, key, {"token": stored.token, "amount": amount, "card": card, "payment": None,
                                              "invoices": [[i.pk, i.balance_minor] for i in invoices]})
    if attempt["payment"]:
        return Payment.objects.get(pk=attempt["payment"])
    try:
        charge_id = card_charge(card_or_token=attempt["token"], amount_minor=attempt["amount"],
                                currency=clinic_get().currency,
                                idempotency_key=f"pay-balance-{patient.pk}-{key}").charge_id
    except PaymentFailed:
        IdempotencyRecord.objects.filter(scope=scope, key=key, status_code=_PENDING).delete()
        raise
    with transaction.atomic():
        # The conditional update lets exactly one of two racing twins record the charge.
        if not IdempotencyRecord.objects.filter(scope=scope, key=key, status_code=_PENDING).update(
                status_code=_RECORDED):
            return Payment.objects.get(pk=_attempt_get(scope, key)["payment"])
        invoices = Invoice.objects.in_bulk([pk for pk, _ in attempt["invoices"]])
        payment = _record_payment(
            actor=None, verb="paid_online", patient=patient, method=Payment.Method.CARD_GATEWAY,
            amount_minor=attempt["amount"], reference=f"Pay Balance link, {attempt['card']}",
            allocations=[(invoices[pk], amount) for pk, amount in attempt["invoices"]], charge_id=charge_id)
        IdempotencyRecord.objects.filter(scope=scope, key=key).update(
            body=json.dumps({"payment": payment.pk}).encode())  # the token is no longer kept
        balance_paid_email(payment=payment)
    return payment
