"""Gift cards' invariant for `ledger_check`: the liability equals the sum of card balances."""

from django.db.models import Sum

from carnet.ledger import accounts
from carnet.ledger.invariants import invariant
from carnet.ledger.models import Posting

from .models import GiftCard


@invariant("gift-card liability equals the sum of card balances")
def liability_matches_cards():
    # A liability's balance is credits - debits, i.e. -sum(amount).
    ledger = -(
        Posting.objects.filter(account__code=accounts.GIFT_CARD_LIABILITY).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
    cards = GiftCard.objects.aggregate(total=Sum("balance_minor"))["total"] or 0
    if ledger != cards:
        yield f"{accounts.GIFT_CARD_LIABILITY}: ledger {ledger} != {cards} on the cards"
