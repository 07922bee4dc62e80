"""Gift-card services (SPEC 7): create/load, reload, redeem, transfer, refund, delete, notes.

Money path (SPEC 3.5), reusing billing's payments so cash lands in the right account:
- load/reload: an ordinary payment from the payer (cash → their credit), at once spent on the card
  (their credit → gift-card liability) via billing.payment_gift_card_spend;
- redeem: a billing payment by method GIFT_CARD for the invoice's patient (gift-card liability →
  their credit → A/R), in the same transaction as the card's conditional balance decrement;
- transfer: no posting (the money stays in the one liability account), two history rows;
- refund: liability → the load payment's credit (payment_gift_card_release), then a refund back
  to that payment's method.
Balances move only by conditional UPDATEs, so they never go below zero, even racing.

By card (SPEC 3.4): a load, reload or online sale is a card attempt (billing.card_attempts) whose
purpose step loads the card once the charge is recorded; a refund makes one attempt per card
payment that loaded the card, holding that part of the balance until its outcome is recorded.
None of these run inside a transaction of the caller's: the gateway is called between commits.
"""

from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction
from django.db.models import F

from carnet.billing import card_attempts
from carnet.billing import payments as billing
from carnet.billing.card_attempts import Purpose, purpose_register
from carnet.billing.models import CardAttempt, Payment
from carnet.clinic.selectors import clinic_get, money_text
from carnet.core import activity, clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.idempotency import claim_form_key
from carnet.core.limits import column_check
from carnet.core.permissions import Action, require
from carnet.ledger.services import LiabilityOverdrawn

from .codes import code_canonical, code_rule_broken
from .emails import gift_card_code_email
from .models import GiftCard
from .models import GiftCardTransaction as Txn


def code_normalize(code: str) -> str:
    """The stored form of a code, or ValidationFailed naming the rule of SPEC 7 it breaks."""
    code = code_canonical(code)
    rule = code_rule_broken(code)
    if rule:
        raise ValidationFailed(
            f"“{code[:40]}” is not a valid gift card code. {rule}", fields={"code": [rule]}
        )
    return code


def gift_card_get(*, code: str) -> GiftCard:
    gift_card = GiftCard.objects.filter(code=code_canonical(code)).first()
    if gift_card is None:
        raise NotFound(
            f"No gift card with code “{code_canonical(code)[:40]}”.", code="gift_card_not_found"
        )
    return gift_card


def _enabled():
    clinic = clinic_get()
    if not clinic.gift_cards_enabled:
        raise Conflict(
            "Gift cards are turned off in the clinic settings.", code="gift_cards_disabled"
        )
    return clinic


def _check_load(clinic, amount: int) -> None:
    if amount <= 0:
        raise ValidationFailed(
            "Load an amount greater than zero.", fields={"amount_minor": ["Must be positive."]}
        )
    limit = clinic.gift_card_load_limit_minor
    if limit and amount > limit:  # 0 means no limit
        raise Conflict(
            f"A gift card load is limited to {money_text(limit)} (clinic settings).",
            code="load_limit",
        )


def _history(
    gift_card: GiftCard, kind: str, amount: int, *, actor, payment=None, invoice=None, other=None
) -> Txn:
    """The card's history row, also written to the activity log (who, when, what)."""
    gift_card.refresh_from_db(fields=["balance_minor"])
    row = Txn.objects.create(
        gift_card=gift_card,
        kind=kind,
        amount_minor=amount,
        balance_after_minor=gift_card.balance_minor,
        payment=payment,
        invoice=invoice,
        other_gift_card=other,
        at=clock.now(),
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    activity.record(actor=actor, verb=f"gift_card_{kind}", obj=row, after=activity.snapshot(row))
    return row


def _add(gift_card: GiftCard, amount: int) -> None:
    GiftCard.objects.filter(pk=gift_card.pk).update(balance_minor=F("balance_minor") + amount)


def _take(gift_card: GiftCard, amount: int) -> None:
    """The race-proof decrement: one UPDATE … WHERE balance >= amount (a row lock on PostgreSQL,
    serialised writers under BEGIN IMMEDIATE on SQLite)."""
    if not GiftCard.objects.filter(
        pk=gift_card.pk, balance_minor__gte=F("held_minor") + amount
    ).update(balance_minor=F("balance_minor") - amount):
        _short(gift_card)


def _short(gift_card: GiftCard):
    """Refuse a redemption the card's balance, as it is now, cannot pay."""
    left = (
        GiftCard.objects.filter(pk=gift_card.pk).values_list("balance_minor", flat=True).first()
        or 0
    )
    raise Conflict(
        f"{gift_card} has only {money_text(left)} left.", code="gift_card_insufficient_balance"
    )


def _check_payer(payer, method: str) -> None:
    if payer is None:
        raise ValidationFailed(
            "Choose the patient who pays for the gift card.",
            fields={"purchaser_id": ["Choose the purchaser."]},
        )
    if method == Payment.Method.GIFT_CARD:
        raise ValidationFailed(
            "A gift card cannot be loaded from another gift card; transfer the balance instead.",
            fields={"method": ["Choose another method."]},
        )


def _pay_into(
    gift_card: GiftCard,
    *,
    actor,
    kind: str,
    payer,
    amount: int,
    method: str,
    reference: str,
    card,
    idempotency_key,
) -> Payment:
    """Inside the caller's transaction: a load paid by cash, cheque, debit…"""
    _check_payer(payer, method)
    payment = billing.payment_receive(
        actor=actor,
        patient=payer,
        method=method,
        amount_minor=amount,
        reference=reference or f"{gift_card}",
        card=card,
        idempotency_key=idempotency_key,
    )
    return _spend(gift_card, actor=actor, kind=kind, payment=payment, amount=amount)


def _load_by_card(
    gift_card: GiftCard,
    *,
    actor,
    kind: str,
    payer,
    amount: int,
    reference: str,
    card,
    idempotency_key,
    created: bool,
) -> GiftCard:
    """Outside any transaction: charge the card on file, and load the gift card
    once it is recorded."""
    require(actor, Action.PAYMENT_TAKE)
    billing.card_on_file_check(payer, card)
    try:
        attempt = card_attempts.charge_run(
            card_attempts.charge_begin(
                request_key=(
                    f"gift-card-{kind}:{actor.pk}:{idempotency_key or secrets.token_hex(16)}"
                ),
                purpose="gift_card_load",
                patient=payer,
                amount_minor=amount,
                card=card,
                actor=actor,
                context={
                    "reference": (reference or f"{gift_card}")[:120],
                    "gift_card": gift_card.pk,
                    "kind": kind,
                    "created": created,
                },
            )
        )
    except Exception:
        if (
            created
        ):  # nothing charged (or not yet known): an empty new card would only block its code
            _discard_if_unused(gift_card.pk)
        raise
    gift_card.refresh_from_db()
    if attempt.message:
        raise Conflict(attempt.message, code="kept_as_credit")
    return gift_card


def _discard_if_unused(pk: int) -> None:
    with transaction.atomic():
        if (
            not Txn.objects.filter(gift_card_id=pk).exists()
            and not CardAttempt.objects.filter(
                purpose="gift_card_load", context__gift_card=pk, status__in=card_attempts.OPEN
            ).exists()
        ):
            GiftCard.objects.filter(pk=pk).delete()


def _loaded_by_card(attempt: CardAttempt, payment: Payment) -> None:
    gift_card = GiftCard.objects.filter(pk=attempt.context["gift_card"]).first()
    if gift_card is None:
        raise Conflict("The gift card no longer exists.", code="gift_card_gone")
    _spend(
        gift_card,
        actor=attempt.created_by,
        kind=attempt.context["kind"],
        payment=payment,
        amount=attempt.amount_minor,
    )


def _spend(gift_card, *, actor, kind, payment, amount) -> Payment:
    payment = billing.payment_gift_card_spend(
        payment=payment,
        amount_minor=amount,
        source=gift_card,
        memo=f"{Txn.Kind(kind).label} {gift_card}",
    )
    _add(gift_card, amount)
    _history(gift_card, kind, amount, actor=actor, payment=payment)
    return payment


def gift_card_create_and_load(
    *,
    actor,
    code: str,
    amount_minor: int = 0,
    purchaser=None,
    method: str = "cash",
    reference: str = "",
    card=None,
    recipient_name: str = "",
    recipient_email: str = "",
    notes: str = "",
    idempotency_key: str | None = None,
) -> GiftCard:
    """Create a card; when `amount_minor` > 0, load it with a payment from the purchaser.
    By card on file: the card is created, then charged outside any transaction (see the module)."""
    require(actor, Action.SELL)
    clinic = _enabled()
    code, recipient_name, recipient_email = _new_card_terms(
        clinic,
        code=code,
        amount_minor=amount_minor,
        recipient_name=recipient_name,
        recipient_email=recipient_email,
    )
    by_card = bool(amount_minor) and method == Payment.Method.CARD_GATEWAY
    if by_card:
        _check_payer(purchaser, method)
        billing.card_on_file_check(purchaser, card)
    with transaction.atomic():
        gift_card = _create(
            code=code,
            purchaser=purchaser,
            recipient_name=recipient_name,
            recipient_email=recipient_email,
            notes=notes,
        )
        activity.record(
            actor=actor, verb="created", obj=gift_card, after=activity.snapshot(gift_card)
        )
        if amount_minor and not by_card:
            _pay_into(
                gift_card,
                actor=actor,
                kind=Txn.Kind.LOAD,
                payer=purchaser,
                amount=amount_minor,
                method=method,
                reference=reference,
                card=card,
                idempotency_key=idempotency_key,
            )
    if by_card:
        return _load_by_card(
            gift_card,
            actor=actor,
            kind=Txn.Kind.LOAD,
            payer=purchaser,
            amount=amount_minor,
            reference=reference,
            card=card,
            idempotency_key=idempotency_key,
            created=True,
        )
    gift_card.refresh_from_db()
    return gift_card


def _new_card_terms(
    clinic, *, code: str, amount_minor: int, recipient_name: str, recipient_email: str
):
    """A new card's code and recipient as stored, its first load checked against
    the clinic's rules."""
    code = code_normalize(code)
    recipient_name, recipient_email = (
        (recipient_name or "").strip(),
        (recipient_email or "").strip(),
    )
    column_check(GiftCard, recipient_name=recipient_name, recipient_email=recipient_email)
    if amount_minor:
        _check_load(clinic, amount_minor)
    elif amount_minor < 0:
        raise ValidationFailed(
            "Load an amount greater than zero.", fields={"amount_minor": ["Must be positive."]}
        )
    return code, recipient_name, recipient_email


def gift_card_sell_begin(
    *,
    actor,
    purchaser,
    amount_minor: int,
    code: str = "",
    recipient_name: str = "",
    recipient_email: str = "",
) -> GiftCard:
    """A gift card sold with other things in one checkout (staff.checkout), in the caller's
    transaction: made empty (a blank code gets a fresh one), its amount checked like any load.
    The checkout's payment then loads it: at the desk with `gift_card_sell_load` in the same
    transaction, or by a card charge with purpose "gift_card_sale", whose step loads it once the
    charge is recorded and whose failure discards it (nothing half-sold stays)."""
    require(actor, Action.SELL)
    clinic = _enabled()
    if amount_minor <= 0:
        raise ValidationFailed(
            "Enter the gift card's amount (greater than zero).",
            fields={"new_gift_card_amount": ["Must be positive."]},
        )
    code, recipient_name, recipient_email = _new_card_terms(
        clinic,
        code=(code or "").strip() or code_generate(),
        amount_minor=amount_minor,
        recipient_name=recipient_name,
        recipient_email=recipient_email,
    )
    gift_card = _create(
        code=code,
        purchaser=purchaser,
        recipient_name=recipient_name,
        recipient_email=recipient_email,
        notes="",
    )
    activity.record(actor=actor, verb="created", obj=gift_card, after=activity.snapshot(gift_card))
    return gift_card


def gift_card_sell_load(
    *, actor, gift_card: GiftCard, payment: Payment, amount_minor: int
) -> Payment:
    """Load a card sold in a checkout from the part of the checkout's payment left after its
    invoices (the payer's credit → gift-card liability), in the caller's transaction."""
    return _spend(gift_card, actor=actor, kind=Txn.Kind.LOAD, payment=payment, amount=amount_minor)


def _sold_in_checkout(attempt: CardAttempt, payment: Payment) -> None:
    for pk, amount in attempt.context.get("gift_cards", []):
        gift_card = GiftCard.objects.filter(pk=pk).first()
        if gift_card is None:
            raise Conflict("The gift card no longer exists.", code="gift_card_gone")
        _spend(
            gift_card, actor=attempt.created_by, kind=Txn.Kind.LOAD, payment=payment, amount=amount
        )
    payment.refresh_from_db(
        fields=["gift_card_minor"]
    )  # the outcome's step reads what is left unapplied


def _checkout_declined(attempt: CardAttempt) -> None:
    for pk, _amount in attempt.context.get("gift_cards", []):
        _discard_if_unused(pk)


def _create(*, code, **fields) -> GiftCard:
    if GiftCard.objects.filter(code=code).exists():
        raise Conflict(
            f"The code {code} is already used by another gift card.", code="gift_card_code_taken"
        )
    try:
        with transaction.atomic():
            return GiftCard.objects.create(
                code=code,
                created_at=clock.now(),
                recipient_name=fields["recipient_name"],
                recipient_email=fields["recipient_email"],
                notes=fields["notes"],
                purchaser=fields["purchaser"],
            )
    except IntegrityError:  # a twin created the same code meanwhile
        raise Conflict(
            f"The code {code} is already used by another gift card.", code="gift_card_code_taken"
        )


def gift_card_reload(
    *,
    actor,
    gift_card: GiftCard,
    amount_minor: int,
    payer,
    method: str = "cash",
    reference: str = "",
    card=None,
    idempotency_key: str | None = None,
) -> GiftCard:
    require(actor, Action.SELL)
    _check_load(_enabled(), amount_minor)
    if method == Payment.Method.CARD_GATEWAY:
        _check_payer(payer, method)
        return _load_by_card(
            gift_card,
            actor=actor,
            kind=Txn.Kind.RELOAD,
            payer=payer,
            amount=amount_minor,
            reference=reference,
            card=card,
            idempotency_key=idempotency_key,
            created=False,
        )
    with transaction.atomic():
        _pay_into(
            gift_card,
            actor=actor,
            kind=Txn.Kind.RELOAD,
            payer=payer,
            amount=amount_minor,
            method=method,
            reference=reference,
            card=card,
            idempotency_key=idempotency_key,
        )
    gift_card.refresh_from_db()
    return gift_card


@transaction.atomic
def gift_card_redeem(
    *, actor, code: str, patient, amount_minor: int, allocations=(), reference: str = ""
) -> Payment:
    """Pay `patient`'s invoices (any patient's) from the card:
    a billing payment by method GIFT_CARD.

    Billing locks the invoices first, then the card's balance is taken down by a conditional
    update (the fixed order invoice → gift card); if it is short, everything rolls back.
    """
    require(actor, Action.PAYMENT_TAKE)
    _enabled()
    if not (code or "").strip():
        raise ValidationFailed(
            "Enter the gift card's code.", fields={"gift_card_code": ["Enter the code."]}
        )
    gift_card = gift_card_get(code=code)
    if amount_minor <= 0:
        raise ValidationFailed(
            "Redeem an amount greater than zero.", fields={"amount_minor": ["Must be positive."]}
        )
    wanted = sum(amount for _, amount in allocations)
    if wanted > amount_minor:
        raise ValidationFailed(
            f"You applied {money_text(wanted)} but redeemed only {money_text(amount_minor)}.",
            fields={"allocations": ["More than the payment."]},
        )
    if (
        gift_card.balance_minor < amount_minor
    ):  # the common case said plainly; a race is decided by _take below
        raise Conflict(
            f"{gift_card} has only {money_text(gift_card.balance_minor)} left.",
            code="gift_card_insufficient_balance",
        )
    try:
        payment = billing.payment_gift_card_record(
            actor=actor,
            patient=patient,
            amount_minor=amount_minor,
            reference=(reference or f"Gift card {gift_card.code}"),
            allocations=list(allocations),
        )
    except LiabilityOverdrawn:
        # Another redemption of this card committed after the check above: the ledger's guard
        # caught it before _take could (the payment debits only the gift-card liability). The
        # desk gets the card's message, and this transaction rolls back.
        _short(gift_card)
    _take(gift_card, amount_minor)
    first_invoice = allocations[0][0] if allocations else None
    _history(
        gift_card,
        Txn.Kind.REDEEM,
        -amount_minor,
        actor=actor,
        payment=payment,
        invoice=first_invoice,
    )
    return payment


@transaction.atomic
def gift_card_transfer(*, actor, source: GiftCard, target: GiftCard, amount_minor: int) -> Txn:
    """Move balance between cards: no ledger posting, both sides sit in the gift-card liability."""
    require(actor, Action.SELL)
    _enabled()
    if source.pk == target.pk:
        raise ValidationFailed(
            "Choose another card to transfer to.", fields={"target_code": ["Same card."]}
        )
    if amount_minor <= 0:
        raise ValidationFailed(
            "Transfer an amount greater than zero.", fields={"amount_minor": ["Must be positive."]}
        )
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


def gift_card_refund(
    *,
    actor,
    gift_card: GiftCard,
    amount_minor: int,
    reason: str = "",
    idempotency_key: str | None = None,
) -> list[Txn]:
    """Refund part of the balance back to the payments that loaded this card, newest first.

    Loads paid by cash, cheque… are refunded at once, in one transaction with the hold. Each load
    paid by card becomes its own card refund attempt (the part held on the card meanwhile), called
    after that commit: if one fails, the others still stand, Carnet records exactly what was
    refunded, and the rest stays on the card to be refunded again."""
    require(actor, Action.REFUND)
    if amount_minor <= 0:
        raise ValidationFailed(
            "Refund an amount greater than zero.", fields={"amount_minor": ["Must be positive."]}
        )
    prefix = f"gift-card-refund:{actor.pk}:{idempotency_key or secrets.token_hex(16)}:"
    attempts = list(CardAttempt.objects.filter(request_key__startswith=prefix).order_by("pk"))
    rows = []
    if (
        not attempts
    ):  # a retry of the same request re-runs its own attempts, and holds nothing again
        with transaction.atomic():
            rows, attempts = _refund_plan(
                gift_card, actor=actor, amount=amount_minor, reason=reason, prefix=prefix
            )
    failures = []
    for attempt in attempts:
        try:
            attempt = card_attempts.refund_run(attempt)
        except (
            Exception
        ) as exc:  # the others still go; this part stays on the card (or is reconciled)
            failures.append(getattr(exc, "message", str(exc)))
            continue
        rows.extend(
            Txn.objects.filter(
                gift_card=gift_card,
                kind=Txn.Kind.REFUND,
                payment_id=attempt.payment_id,
                amount_minor=-attempt.amount_minor,
            ).order_by("-pk")[:1]
        )
    if failures:
        done = sum(-row.amount_minor for row in rows)
        raise Conflict(
            f"{money_text(done)} of {money_text(amount_minor)} was refunded. The rest could not be "
            f"refunded to the card: {failures[0]} It stays on {gift_card}; try the refund again.",
            code="refund_partly_failed",
        )
    return rows


def _refund_plan(gift_card: GiftCard, *, actor, amount: int, reason: str, prefix: str):
    """Inside one transaction: hold `amount` on the card, refund the cash loads now and begin one
    card attempt for each card load."""

    if not claim_form_key(
        user=actor, key=prefix
    ):  # the same request again (cash loads have no attempt)
        return [], []
    if not GiftCard.objects.filter(
        pk=gift_card.pk, balance_minor__gte=F("held_minor") + amount
    ).update(held_minor=F("held_minor") + amount):
        left = GiftCard.objects.filter(pk=gift_card.pk).values_list(
            "balance_minor", "held_minor"
        ).first() or (0, 0)
        raise Conflict(
            f"{gift_card} has only {money_text(left[0] - left[1])} left to refund.",
            code="gift_card_insufficient_balance",
        )
    loads = (
        Payment.objects.filter(gift_card_transactions__gift_card=gift_card, gift_card_minor__gt=0)
        .distinct()
        .order_by("-received_at", "-pk")
    )
    rows, attempts, left = [], [], amount
    for payment in loads:
        if left == 0:
            break
        busy = CardAttempt.objects.filter(
            purpose="gift_card_refund", payment=payment, status__in=card_attempts.OPEN
        ).values_list("amount_minor", flat=True)
        part = min(left, payment.gift_card_minor - sum(busy))
        if part <= 0:
            continue
        left -= part
        if payment.method == Payment.Method.CARD_GATEWAY:
            attempts.append(
                card_attempts.refund_begin(
                    request_key=f"{prefix}{payment.pk}",
                    payment=payment,
                    amount_minor=part,
                    purpose="gift_card_refund",
                    reason=reason or f"Refund {gift_card}",
                    actor=actor,
                    from_credit=False,
                    context={"gift_card": gift_card.pk},
                )
            )
            continue
        billing.payment_gift_card_release(
            payment=payment, amount_minor=part, source=gift_card, memo=f"Refund {gift_card}"
        )
        billing.payment_refund(
            actor=actor, payment=payment, amount_minor=part, reason=reason or f"Refund {gift_card}"
        )
        _unhold_and_take(gift_card, part)
        rows.append(_history(gift_card, Txn.Kind.REFUND, -part, actor=actor, payment=payment))
    if left:
        raise Conflict(
            f"Only {money_text(amount - left)} of {gift_card}'s balance came from its own loads "
            "and can be refunded to them.",
            code="refund_exceeds_load",
        )
    return rows, attempts


def _unhold_and_take(gift_card: GiftCard, amount: int) -> None:
    GiftCard.objects.filter(pk=gift_card.pk).update(
        held_minor=F("held_minor") - amount, balance_minor=F("balance_minor") - amount
    )


def _refund_prepare(attempt: CardAttempt, payment: Payment) -> None:
    gift_card = GiftCard.objects.get(pk=attempt.context["gift_card"])
    billing.payment_gift_card_release(
        payment=payment,
        amount_minor=attempt.amount_minor,
        source=gift_card,
        memo=f"Refund {gift_card}",
    )


def _refunded(attempt: CardAttempt, refund) -> None:
    gift_card = GiftCard.objects.get(pk=attempt.context["gift_card"])
    _unhold_and_take(gift_card, attempt.amount_minor)
    _history(
        gift_card,
        Txn.Kind.REFUND,
        -attempt.amount_minor,
        actor=attempt.created_by,
        payment=refund.payment,
    )


def _refund_failed(attempt: CardAttempt) -> None:
    GiftCard.objects.filter(pk=attempt.context["gift_card"]).update(
        held_minor=F("held_minor") - attempt.amount_minor
    )


@transaction.atomic
def gift_card_delete(*, actor, gift_card: GiftCard) -> None:
    require(actor, Action.SELL)
    if Txn.objects.filter(gift_card=gift_card).exists():
        raise Conflict(
            f"{gift_card} has transactions; only a card without any can be deleted.",
            code="gift_card_has_transactions",
        )
    activity.record(actor=actor, verb="deleted", obj=gift_card, before=activity.snapshot(gift_card))
    GiftCard.objects.filter(pk=gift_card.pk).delete()


@transaction.atomic
def gift_card_update(
    *,
    actor,
    gift_card: GiftCard,
    notes: str | None = None,
    recipient_name: str | None = None,
    recipient_email: str | None = None,
) -> GiftCard:
    require(actor, Action.SELL)
    gift_card = GiftCard.objects.get(pk=gift_card.pk)
    before = activity.snapshot(gift_card)
    for name, value in (
        ("notes", notes),
        ("recipient_name", recipient_name),
        ("recipient_email", recipient_email),
    ):
        if value is not None:
            column_check(
                GiftCard, **{name: value.strip()}
            )  # too long is refused naming the limit, never cut
            setattr(gift_card, name, value.strip())
    gift_card.save(update_fields=["notes", "recipient_name", "recipient_email"])
    activity.record(
        actor=actor,
        verb="updated",
        obj=gift_card,
        before=before,
        after=activity.snapshot(gift_card),
    )
    return gift_card


def code_generate() -> str:
    """A fresh random code for cards sold online: 10 characters without
    look-alikes, never leading 0."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    while True:
        code = "".join(secrets.choice(alphabet) for _ in range(10))
        if not GiftCard.objects.filter(code=code).exists():
            return code


def gift_card_sell_online(
    *,
    patient,
    amount_minor: int,
    recipient_name: str,
    recipient_email: str,
    holder: str,
    idempotency_key: str,
    card_number: str = "",
    exp_month: int = 0,
    exp_year: int = 0,
    cvc: str = "",
    setup_intent: str = "",
    entry_for: str = "",
) -> GiftCard:
    """The patient buys a card in the portal by card; the code is emailed to the recipient.

    A card attempt keyed by the form (purpose "gift_card_online"): the gift card is made and loaded
    by the attempt's purpose step once the charge is recorded, so a double submit charges once
    and finds the same card (`sale_key`)."""
    clinic = _enabled()
    if not clinic.gift_card_online_sales_enabled:
        raise Conflict(
            "Gift cards are not sold online at the moment.", code="gift_card_online_sales_off"
        )
    key = billing.form_key_check(idempotency_key)
    sale_key = f"{patient.pk}:{key}"
    done = GiftCard.objects.filter(sale_key=sale_key).first()
    if done is not None:
        return done
    if amount_minor < clinic.gift_card_online_minimum_minor:
        raise ValidationFailed(
            "The smallest gift card sold online is "
            f"{money_text(clinic.gift_card_online_minimum_minor)}.",
            fields={"amount": ["Below the minimum."]},
        )
    _check_load(clinic, amount_minor)
    recipient_name, recipient_email = (
        (recipient_name or "").strip(),
        (recipient_email or "").strip(),
    )
    column_check(GiftCard, recipient_name=recipient_name, recipient_email=recipient_email)
    if not recipient_email or "@" not in recipient_email:
        raise ValidationFailed(
            "Enter the recipient's email address; the code is sent there.",
            fields={"recipient_email": ["Enter an email address."]},
        )
    attempt = billing.card_pay_online(
        patient=patient,
        purpose="gift_card_online",
        request_key=f"gift-card-online:{sale_key}",
        amount_minor=amount_minor,
        card_entry={
            "number": card_number,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "cvc": cvc,
            "holder": holder,
            "setup_intent": setup_intent,
            "entry_for": entry_for,
        },
        context={
            "reference": "Gift card bought online",
            "sale_key": sale_key,
            "recipient_name": recipient_name,
            "recipient_email": recipient_email,
        },
    )
    gift_card = GiftCard.objects.filter(sale_key=sale_key).first()
    if gift_card is None:
        raise Conflict(f"{attempt.message} Please contact the clinic.", code="kept_as_credit")
    return gift_card


def _sold_online(attempt: CardAttempt, payment: Payment) -> None:

    context = attempt.context
    gift_card = GiftCard.objects.create(
        code=code_generate(),
        created_at=clock.now(),
        purchaser=attempt.patient,
        recipient_name=context["recipient_name"],
        recipient_email=context["recipient_email"],
        sale_key=context["sale_key"],
    )
    payment.reference = f"Gift card {gift_card.code} bought online"[:120]
    Payment.objects.filter(pk=payment.pk).update(reference=payment.reference)
    _spend(gift_card, actor=None, kind=Txn.Kind.LOAD, payment=payment, amount=attempt.amount_minor)
    activity.record(
        actor=None, verb="sold_online", obj=gift_card, after=activity.snapshot(gift_card)
    )
    gift_card_code_email(gift_card=gift_card)


purpose_register(
    Purpose(name="gift_card_load", reference="Gift card load", on_charged=_loaded_by_card)
)
purpose_register(
    Purpose(
        name="gift_card_sale",
        reference="Card payment",
        on_charged=_sold_in_checkout,
        on_failed=_checkout_declined,
    )
)
purpose_register(
    Purpose(name="gift_card_online", reference="Gift card bought online", on_charged=_sold_online)
)
purpose_register(
    Purpose(
        name="gift_card_refund",
        reference="Gift card refund",
        on_refund_prepare=_refund_prepare,
        on_refunded=_refunded,
        on_failed=_refund_failed,
    )
)
