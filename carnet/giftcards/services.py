"""Gift-card services (SPEC 7): create/load, reload, redeem, transfer, refund, delete, notes.

Money path (SPEC 3.5), reusing billing's payments so cash lands in the right account:
- load/reload: an ordinary payment from the payer (cash → their credit), at once spent on the card
  (their credit → gift-card liability) via billing.payment_gift_card_spend;
- redeem: a billing payment by method GIFT_CARD for the invoice's patient (gift-card liability →
  their credit → A/R), in the same transaction as the card's conditional balance decrement;
- transfer: no posting (the money stays in the one liability account), two history rows;
- refund: liability → the load payment's credit (payment_gift_card_release), then payment_refund
  back to that payment's method.
Balances move only by conditional UPDATEs, so they never go below zero, even racing.
"""

from __future__ import annotations

import secrets
import unicodedata

from django.db import IntegrityError, transaction
from django.db.models import F

from carnet.billing import payments as billing
from carnet.billing.models import Payment
from carnet.clinic.selectors import clinic_get
from carnet.core import activity, clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.permissions import Action, require

from .models import GiftCard
from .models import GiftCardTransaction as Txn

def _money(minor: int) -> str:
    return str(clinic_get().money(minor))


def _canonical(code: str | None) -> str:
    """One spelling per code: Unicode NFKC (full-width "ＡＢＣ１２３" is "ABC123"), without invisible
    format characters (zero-width space and joiners, BOM, soft hyphen), upper-case."""
    code = unicodedata.normalize("NFKC", code or "")
    return "".join(c for c in code if unicodedata.category(c) != "Cf").strip().upper()


def _broken_rule(code: str) -> str | None:
    """The one SPEC 7 rule the code breaks, as the sentence to show, or None."""
    if len(code) < 6:
        return "A gift card code needs at least 6 characters."
    if len(code) > 40:
        return "A gift card code has at most 40 characters."
    if any(c.isspace() for c in code):
        return "A gift card code cannot contain spaces."
    if code.startswith("0"):
        return "A gift card code cannot start with 0."
    if any(unicodedata.category(c).startswith("C") for c in code):
        return "A gift card code cannot contain control characters."
    return None


def code_normalize(code: str) -> str:
    """The stored form of a code, or ValidationFailed naming the rule of SPEC 7 it breaks."""
    code = _canonical(code)
    rule = _broken_rule(code)
    if rule:
        raise ValidationFailed(f"“{code[:40]}” is not a valid gift card code. {rule}", fields={"code": [rule]})
    return code


def giftcard_get(*, code: str) -> GiftCard:
    card = GiftCard.objects.filter(code=_canonical(code)).first()
    if card is None:
        raise NotFound(f"No gift card with code “{_canonical(code)[:40]}”.", code="gift_card_not_found")
    return card


def _enabled():
    clinic = clinic_get()
    if not clinic.gift_cards_enabled:
        raise Conflict("Gift cards are turned off in the clinic settings.", code="gift_cards_disabled")
    return clinic


def _check_load(clinic, amount: int) -> None:
    if amount <= 0:
        raise ValidationFailed("Load an amount greater than zero.", fields={"amount_minor": ["Must be positive."]})
    limit = clinic.gift_card_load_limit_minor
    if limit and amount > limit:  # 0 means no limit
        raise Conflict(f"A gift card load is limited to {_money(limit)} (clinic settings).", code="load_limit")


def _history(card: GiftCard, kind: str, amount: int, *, actor, payment=None, invoice=None, other=None) -> Txn:
    """The card's history row, also written to the activity log (who, when, what)."""
    card.refresh_from_db(fields=["balance_minor"])
    row = Txn.objects.create(card=card, kind=kind, amount_minor=amount, balance_after_minor=card.balance_minor,
                             payment=payment, invoice=invoice, other_card=other, at=clock.now(),
                             created_by=actor if getattr(actor, "is_authenticated", False) else None)
    activity.record(actor=actor, verb=f"gift_card_{kind}", obj=row, after=activity.snapshot(row))
    return row


def _add(card: GiftCard, amount: int) -> None:
    GiftCard.objects.filter(pk=card.pk).update(balance_minor=F("balance_minor") + amount)


def _take(card: GiftCard, amount: int) -> None:
    """The race-proof decrement: one UPDATE … WHERE balance >= amount (a row lock on PostgreSQL,
    serialised writers under BEGIN IMMEDIATE on SQLite)."""
    if not GiftCard.objects.filter(pk=card.pk, balance_minor__gte=amount).update(
            balance_minor=F("balance_minor") - amount):
        left = GiftCard.objects.filter(pk=card.pk).values_list("balance_minor", flat=True).first() or 0
        raise Conflict(f"{card} has only {_money(left)} left.", code="gift_card_insufficient_balance")


def _pay_into(card: GiftCard, *, actor, kind: str, payer, amount: int, method: str, reference: str,
              card_on_file, idempotency_key) -> Payment:
    if payer is None:
        raise ValidationFailed("Choose the patient who pays for the gift card.",
                               fields={"purchaser_id": ["Choose the purchaser."]})
    if method == Payment.Method.GIFT_CARD:
        raise ValidationFailed("A gift card cannot be loaded from another gift card; transfer the balance instead.",
                               fields={"method": ["Choose another method."]})
    payment = billing.payment_receive(actor=actor, patient=payer, method=method, amount_minor=amount,
                                      reference=reference or f"{card}", card=card_on_file,
                                      idempotency_key=idempotency_key)
    return _spend(card, actor=actor, kind=kind, payment=payment, amount=amount)


def _spend(card, *, actor, kind, payment, amount) -> Payment:
    payment = billing.payment_gift_card_spend(payment=payment, amount_minor=amount, source=card,
                                              memo=f"{Txn.Kind(kind).label} {card}")
    _add(card, amount)
    _history(card, kind, amount, actor=actor, payment=payment)
    return payment


@transaction.atomic
def giftcard_create_and_load(*, actor, code: str, amount_minor: int = 0, purchaser=None, method: str = "cash",
                             reference: str = "", card_on_file=None, recipient_name: str = "",
                             recipient_email: str = "", notes: str = "", idempotency_key: str | None = None) -> GiftCard:
    """Create a card; when `amount_minor` > 0, load it with a payment from the purchaser."""
    require(actor, Action.SELL)
    clinic = _enabled()
    code = code_normalize(code)
    if amount_minor:
        _check_load(clinic, amount_minor)
    elif amount_minor < 0:
        raise ValidationFailed("Load an amount greater than zero.", fields={"amount_minor": ["Must be positive."]})
    card = _create(code=code, purchaser=purchaser, recipient_name=recipient_name,
                   recipient_email=recipient_email, notes=notes)
    activity.record(actor=actor, verb="created", obj=card, after=activity.snapshot(card))
    if amount_minor:
        _pay_into(card, actor=actor, kind=Txn.Kind.LOAD, payer=purchaser, amount=amount_minor, method=method,
                  reference=reference, card_on_file=card_on_file, idempotency_key=idempotency_key)
        card.refresh_from_db()
    return card


def _create(*, code, **fields) -> GiftCard:
    if GiftCard.objects.filter(code=code).exists():
        raise Conflict(f"The code {code} is already used by another gift card.", code="gift_card_code_taken")
    try:
        with transaction.atomic():
            return GiftCard.objects.create(code=code, created_at=clock.now(),
                                           recipient_name=fields["recipient_name"][:120],
                                           recipient_email=fields["recipient_email"], notes=fields["notes"],
                                           purchaser=fields["purchaser"])
    except IntegrityError:  # a twin created the same code meanwhile
        raise Conflict(f"The code {code} is already used by another gift card.", code="gift_card_code_taken")


@transaction.atomic
def giftcard_reload(*, actor, card: GiftCard, amount_minor: int, payer, method: str = "cash", reference: str = "",
                    card_on_file=None, idempotency_key: str | None = None) -> GiftCard:
    require(actor, Action.SELL)
    _check_load(_enabled(), amount_minor)
    _pay_into(card, actor=actor, kind=Txn.Kind.RELOAD, payer=payer, amount=amount_minor, method=method,
              reference=reference, card_on_file=card_on_file, idempotency_key=idempotency_key)
    card.refresh_from_db()
    return card


@transaction.atomic
def giftcard_redeem(*, actor, code: str, patient, amount_minor: int, allocations=(), reference: str = "") -> Payment:
    """Pay `patient`'s invoices (any patient's) from the card: a billing payment by method GIFT_CARD.

    Billing locks the invoices first, then the card's balance is taken down by a conditional
    update (the fixed order invoice → gift card); if it is short, everything rolls back.
    """
    require(actor, Action.PAYMENT_TAKE)
    _enabled()
    if not (code or "").strip():
        raise ValidationFailed("Enter the gift card's code.", fields={"gift_card_code": ["Enter the code."]})
    card = giftcard_get(code=code)
    if amount_minor <= 0:
        raise ValidationFailed("Redeem an amount greater than zero.", fields={"amount_minor": ["Must be positive."]})
    wanted = sum(amount for _, amount in allocations)
    if wanted > amount_minor:
        raise ValidationFailed(f"You applied {_money(wanted)} but redeemed only {_money(amount_minor)}.",
                               fields={"allocations": ["More than the payment."]})
    if card.balance_minor < amount_minor:  # the common case said plainly; a race is decided by _take below
        raise Conflict(f"{card} has only {_money(card.balance_minor)} left.", code="gift_card_insufficient_balance")
    payment = billing.payment_gift_card_record(actor=actor, patient=patient, amount_minor=amount_minor,
                                               reference=(reference or f"Gift card {card.code}"),
                                               allocations=list(allocations))
    _take(card, amount_minor)
    first_invoice = allocations[0][0] if allocations else None
    _history(card, Txn.Kind.REDEEM, -amount_minor, actor=actor, payment=payment, invoice=first_invoice)
    return payment


@transaction.atomic
def giftcard_transfer(*, actor, source: GiftCard, target: GiftCard, amount_minor: int) -> Txn:
    """Move balance between cards: no ledger posting, both sides sit in the gift-card liability."""
    require(actor, Action.SELL)
    _enabled()
    if source.pk == target.pk:
        raise ValidationFailed("Choose another card to transfer to.", fields={"target_code": ["Same card."]})
    if amount_minor <= 0:
        raise ValidationFailed("Transfer an amount greater than zero.", fields={"amount_minor": ["Must be positive."]})
    # Rows are written in pk order so opposite transfers cannot deadlock on PostgreSQL.
    if source.pk < target.pk:
        _take(source, amount_minor)
        _add(target, amount_minor)
    else:
        _add(target, amount_minor)
        _take(source, amount_minor)
    out = _history(source, Txn.Kind.TRANSFER_OUT, -amount_minor, actor=actor, other=target)
    _history(target, Txn.Kind.TRANSFER_IN, amount_minor, actor=actor, other=source)
    return out


@transaction.atomic
def giftcard_refund(*, actor, card: GiftCard, amount_minor: int, reason: str = "",
                    idempotency_key: str | None = None) -> list[Txn]:
    """Refund part of the balance back to the payments that loaded this card, newest first."""
    require(actor, Action.REFUND)
    if amount_minor <= 0:
        raise ValidationFailed("Refund an amount greater than zero.", fields={"amount_minor": ["Must be positive."]})
    _take(card, amount_minor)
    loads = (Payment.objects.filter(gift_card_transactions__card=card, gift_card_minor__gt=0)
             .distinct().order_by("-received_at", "-pk"))
    rows, left = [], amount_minor
    for payment in loads:
        if left == 0:
            break
        part = min(left, payment.gift_card_minor)
        billing.payment_gift_card_release(payment=payment, amount_minor=part, source=card, memo=f"Refund {card}")
        billing.payment_refund(actor=actor, payment=payment, amount_minor=part, reason=reason or f"Refund {card}",
                               idempotency_key=f"{idempotency_key}-{payment.pk}" if idempotency_key else None)
        rows.append(_history(card, Txn.Kind.REFUND, -part, actor=actor, payment=payment))
        left -= part
    if left:
        raise Conflict(f"Only {_money(amount_minor - left)} of {card}'s balance came from its own loads and can be "
                       "refunded to them.", code="refund_exceeds_load")
    return rows


@transaction.atomic
def giftcard_delete(*, actor, card: GiftCard) -> None:
    require(actor, Action.SELL)
    if Txn.objects.filter(card=card).exists():
        raise Conflict(f"{card} has transactions; only a card without any can be deleted.",
                       code="gift_card_has_transactions")
    activity.record(actor=actor, verb="deleted", obj=card, before=activity.snapshot(card))
    GiftCard.objects.filter(pk=card.pk).delete()


@transaction.atomic
def giftcard_update(*, actor, card: GiftCard, notes: str | None = None, recipient_name: str | None = None,
                    recipient_email: str | None = None) -> GiftCard:
    require(actor, Action.SELL)
    card = GiftCard.objects.get(pk=card.pk)
    before = activity.snapshot(card)
    for name, value in (("notes", notes), ("recipient_name", recipient_name), ("recipient_email", recipient_email)):
        if value is not None:
            setattr(card, name, value.strip())
    card.recipient_name = card.recipient_name[:120]
    card.save(update_fields=["notes", "recipient_name", "recipient_email"])
    activity.record(actor=actor, verb="updated", obj=card, before=before, after=activity.snapshot(card))
    return card


def code_generate() -> str:
    """A fresh random code for cards sold online: 10 characters without look-alikes, never leading 0."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    while True:
        code = "".join(secrets.choice(alphabet) for _ in range(10))
        if not GiftCard.objects.filter(code=code).exists():
            return code


def giftcard_sell_online(*, patient, amount_minor: int, recipient_name: str, recipient_email: str,
                         card_number: str, exp_month: int, exp_year: int, cvc: str, holder: str,
                         idempotency_key: str) -> GiftCard:
    """The patient buys a card in the portal by card; the code is emailed to the recipient.

    The gateway call uses the form key as its idempotency key, so a double submit charges once;
    the card is found again by that key (`sale_key`, unique) rather than created twice.
    """
    from carnet.gateway.base import get_gateway
    from carnet.gateway.services import card_charge

    from .emails import giftcard_code_email

    clinic = _enabled()
    if not clinic.gift_card_online_sales_enabled:
        raise Conflict("Gift cards are not sold online at the moment.", code="gift_card_online_sales_off")
    key = (idempotency_key or "").strip()
    if not 1 <= len(key) <= 100:
        raise ValidationFailed("This form is missing its key; reload the page and try again.",
                               fields={"form_key": ["Missing."]})
    sale_key = f"{patient.pk}:{key}"
    done = GiftCard.objects.filter(sale_key=sale_key).first()
    if done is not None:
        return done
    if amount_minor < clinic.gift_card_online_minimum_minor:
        raise ValidationFailed(f"The smallest gift card sold online is {_money(clinic.gift_card_online_minimum_minor)}.",
                               fields={"amount": ["Below the minimum."]})
    _check_load(clinic, amount_minor)
    recipient_email = (recipient_email or "").strip()
    if not recipient_email or "@" not in recipient_email:
        raise ValidationFailed("Enter the recipient's email address; the code is sent there.",
                               fields={"recipient_email": ["Enter an email address."]})
    stored = get_gateway().store_card(number=card_number, exp_month=exp_month, exp_year=exp_year, cvc=cvc,
                                      holder=(holder or "").strip())  # a bad number, expiry or CVC stops here
    charge_id = card_charge(card_or_token=stored.token, amount_minor=amount_minor, currency=clinic.currency,
                            idempotency_key=f"giftcard-online-{sale_key}").charge_id
    try:
        with transaction.atomic():
            card = GiftCard.objects.create(code=code_generate(), created_at=clock.now(), purchaser=patient,
                                           recipient_name=(recipient_name or "").strip()[:120],
                                           recipient_email=recipient_email, sale_key=sale_key)
            payment = billing.payment_record_online(patient=patient, amount_minor=amount_minor,
                                                    reference=f"Gift card {card.code} bought online",
                                                    charge_id=charge_id)
            _spend(card, actor=None, kind=Txn.Kind.LOAD, payment=payment, amount=amount_minor)
            activity.record(actor=None, verb="sold_online", obj=card, after=activity.snapshot(card))
            giftcard_code_email(card=card)
    except IntegrityError:  # a twin submission recorded the same charge first
        return GiftCard.objects.get(sale_key=sale_key)
    card.refresh_from_db()
    return card
