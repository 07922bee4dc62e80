from django.db.models import QuerySet

from carnet.billing.models import Payment
from carnet.core.errors import NotFound

from .codes import code_canonical
from .models import GiftCard


def gift_cards_search(q: str = "") -> QuerySet[GiftCard]:
    """Cards whose code contains `q` (case-insensitive, spelled as codes are
    stored), newest first."""
    cards = GiftCard.objects.select_related("purchaser")
    q = code_canonical(q)
    return cards.filter(code__icontains=q) if q else cards


def gift_card_by_pk(pk: int) -> GiftCard:
    gift_card = GiftCard.objects.select_related("purchaser").filter(pk=pk).first()
    if gift_card is None:
        raise NotFound(f"No gift card with id {pk}.", code="gift_card_not_found")
    return gift_card


def gift_card_loaded_by_card(gift_card: GiftCard) -> bool:
    """Whether a payment that loaded this card went through the card gateway
    (its refund goes back there)."""
    return gift_card.transactions.filter(
        payment__gift_card_minor__gt=0, payment__method=Payment.Method.CARD_GATEWAY
    ).exists()
