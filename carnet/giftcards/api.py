"""Gift-card endpoints. Every POST accepts `Idempotency-Key` (core.middleware replays the first
response); for card payments the key is also the gateway's key, so a retry never charges twice, and
a load, reload or refund by card requires one (400 `idempotency_key_required`)."""

from ninja import Router, Status

from carnet.billing.schemas import PaymentOut
from carnet.billing.selectors import allocations_for, payments_in_detail
from carnet.core.idempotency import calls_gateway, request_key
from carnet.core.permissions import Action, require
from carnet.gateway.selectors import card_get
from carnet.people.selectors import patient_get

from . import schemas as s
from . import services
from .selectors import gift_card_by_pk, gift_card_loaded_by_card, gift_cards_search

router = Router(tags=["gift cards"])


def _by_card(request, method: str, why: str) -> str | None:
    return request_key(request, required=method == "card_gateway", why=why)


def _gift_card(pk: int):
    return gift_card_by_pk(pk)


@router.get("/gift-cards", response=list[s.GiftCardOut], operation_id="gift_cards_list")
def giftcards(request, code: str = ""):
    """Cards whose code contains `code` (case-insensitive); an exact code finds that card."""
    require(request.auth, Action.SELL)
    return list(gift_cards_search(code).prefetch_related("transactions")[:100])


def _by_card_body(request, body, kwargs) -> bool:
    return body.get("method") == "card_gateway"


@router.post("/gift-cards", response={201: s.GiftCardOut}, operation_id="gift_card_create")
@calls_gateway(_by_card_body)
def create(request, payload: s.GiftCardIn):
    require(request.auth, Action.SELL)
    purchaser = patient_get(payload.purchaser_id) if payload.purchaser_id is not None else None
    gift_card = services.gift_card_create_and_load(
        actor=request.auth,
        code=payload.code,
        amount_minor=payload.amount_minor,
        purchaser=purchaser,
        method=payload.method,
        reference=payload.reference,
        card=card_get(payload.card_id) if payload.card_id is not None else None,
        recipient_name=payload.recipient_name,
        recipient_email=payload.recipient_email,
        notes=payload.notes,
        idempotency_key=_by_card(
            request, payload.method, "loading a gift card by card charges the card."
        ),
    )
    return Status(201, gift_card)


# Before /gift-cards/{pk}, which would otherwise take "redeem" for an id.
@router.post("/gift-cards/redeem", response={201: PaymentOut}, operation_id="gift_card_redeem")
def redeem(request, payload: s.RedeemIn):
    require(request.auth, Action.PAYMENT_TAKE)
    patient = patient_get(payload.patient_id)
    payment = services.gift_card_redeem(
        actor=request.auth,
        code=payload.code,
        patient=patient,
        amount_minor=payload.amount_minor,
        allocations=allocations_for(patient=patient, items=payload.allocations),
    )
    return Status(201, payments_in_detail().get(pk=payment.pk))


@router.get("/gift-cards/{pk}", response=s.GiftCardOut, operation_id="gift_card_read")
def read(request, pk: int):
    require(request.auth, Action.SELL)
    return _gift_card(pk)


@router.patch("/gift-cards/{pk}", response=s.GiftCardOut, operation_id="gift_card_update")
def update(request, pk: int, payload: s.GiftCardPatch):
    require(request.auth, Action.SELL)
    return services.gift_card_update(actor=request.auth, gift_card=_gift_card(pk), **payload.dict())


@router.post(
    "/gift-cards/{pk}/reload", response={201: s.GiftCardOut}, operation_id="gift_card_reload"
)
@calls_gateway(_by_card_body)
def reload(request, pk: int, payload: s.ReloadIn):
    require(request.auth, Action.SELL)
    gift_card = services.gift_card_reload(
        actor=request.auth,
        gift_card=_gift_card(pk),
        amount_minor=payload.amount_minor,
        payer=patient_get(payload.payer_id),
        method=payload.method,
        reference=payload.reference,
        card=card_get(payload.card_id) if payload.card_id is not None else None,
        idempotency_key=_by_card(
            request, payload.method, "reloading a gift card by card charges the card."
        ),
    )
    return Status(201, gift_card)


@router.post(
    "/gift-cards/{pk}/transfer", response={201: s.GiftCardOut}, operation_id="gift_card_transfer"
)
def transfer(request, pk: int, payload: s.TransferIn):
    require(request.auth, Action.SELL)
    source = _gift_card(pk)
    services.gift_card_transfer(
        actor=request.auth,
        source=source,
        target=services.gift_card_get(code=payload.target_code),
        amount_minor=payload.amount_minor,
    )
    return Status(201, _gift_card(pk))


@router.post(
    "/gift-cards/{pk}/refund", response={201: s.GiftCardOut}, operation_id="gift_card_refund"
)
@calls_gateway()  # loads paid by card are refunded through the gateway; the service is keyed itself
def refund(request, pk: int, payload: s.RefundIn):
    require(request.auth, Action.REFUND)
    gift_card = _gift_card(pk)
    key = request_key(
        request,
        required=gift_card_loaded_by_card(gift_card),
        why="this gift card was loaded by card, and its refund goes back to that card.",
    )
    services.gift_card_refund(
        actor=request.auth,
        gift_card=gift_card,
        amount_minor=payload.amount_minor,
        reason=payload.reason,
        idempotency_key=key,
    )
    return Status(201, _gift_card(pk))


@router.delete("/gift-cards/{pk}", response={204: None}, operation_id="gift_card_delete")
def delete(request, pk: int):
    require(request.auth, Action.SELL)
    services.gift_card_delete(actor=request.auth, gift_card=_gift_card(pk))
    return Status(204, None)
