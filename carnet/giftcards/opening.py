"""Gift cards brought in from the clinic's previous system (SPEC 15): each card with its balance,
held as gift-card liability against opening balance equity (the money came in before the switch)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count

from carnet.core import activity, bulk
from carnet.core.undo import imported_rows_remove
from carnet.ledger import accounts
from carnet.ledger.services import Entry, Line, transactions_post_many

from .models import GiftCard, GiftCardTransaction


@dataclass(frozen=True)
class Opening:
    code: str  # already checked against the code rules and upper-cased
    balance_minor: int
    purchaser_id: int | None
    recipient_name: str


def gift_cards_open(
    *, actor, openings: list[Opening], at: dt.datetime, memo: str
) -> list[tuple[GiftCard, int | None]]:
    user = actor if getattr(actor, "is_authenticated", False) else None
    gift_cards = bulk.insert(
        GiftCard,
        [
            GiftCard(
                code=o.code,
                balance_minor=o.balance_minor,
                purchaser_id=o.purchaser_id,
                recipient_name=o.recipient_name,
                notes=memo,
                created_at=at,
            )
            for o in openings
        ],
    )
    loaded = [c for c in gift_cards if c.balance_minor]
    bulk.insert(
        GiftCardTransaction,
        [
            GiftCardTransaction(
                gift_card=c,
                kind=GiftCardTransaction.Kind.LOAD,
                amount_minor=c.balance_minor,
                balance_after_minor=c.balance_minor,
                at=at,
                created_by=user,
            )
            for c in loaded
        ],
    )
    txns = transactions_post_many(
        [
            Entry(
                kind="opening_balance",
                source=c,
                at=at,
                memo=f"{memo}: gift card {c.code}",
                lines=[
                    Line(accounts.OPENING_BALANCE_EQUITY, debit=c.balance_minor),
                    Line(accounts.GIFT_CARD_LIABILITY, credit=c.balance_minor),
                ],
            )
            for c in loaded
        ]
    )
    by_gift_card = {c.pk: t.pk for c, t in zip(loaded, txns)}
    activity.record_many(actor=actor, verb="imported", objs=gift_cards)
    return [(c, by_gift_card.get(c.pk)) for c in gift_cards]


def gift_cards_in_use(pks: list[int]) -> list[str]:
    problems = []
    for part in bulk.chunks(pks):
        gift_cards = (
            GiftCard.objects.filter(pk__in=part)
            .annotate(moves=Count("transactions"))
            .order_by("pk")
        )
        for gift_card in gift_cards:
            if (
                gift_card.moves > (1 if gift_card.balance_minor else 0)
                or gift_card.transactions.exclude(kind=GiftCardTransaction.Kind.LOAD).exists()
            ):
                problems.append(f"gift card {gift_card.code} has been used")
    return problems


def gift_cards_close(*, actor, pks: list[int]) -> None:
    """Undo imported gift cards (caller's transaction; the caller reverses the opening balances),
    refused if any has been used. A gift card with only its opening load goes, as an unused one may
    (SPEC 7)."""
    imported_rows_remove(
        actor=actor,
        model=GiftCard,
        pks=pks,
        in_use=gift_cards_in_use,
        children=((GiftCardTransaction, "gift_card_id"),),
    )
