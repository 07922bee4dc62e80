import datetime as dt

from ninja import Field

from carnet.billing.schemas import AllocationIn
from carnet.core.schemas import Schema

LoadMethod = str  # checked by billing.payment_receive (any payment method except gift_card)


class GiftCardIn(Schema):
    code: str
    amount_minor: int = Field(0, ge=0, description="0 creates an empty card")
    purchaser_id: int | None = Field(
        None, description="The patient paying the load; required when amount > 0"
    )
    method: LoadMethod = "cash"
    card_id: int | None = Field(None, description="For card_gateway: the purchaser's card on file")
    reference: str = ""
    recipient_name: str = ""
    recipient_email: str = ""
    notes: str = ""


class ReloadIn(Schema):
    amount_minor: int = Field(..., gt=0)
    payer_id: int
    method: LoadMethod = "cash"
    card_id: int | None = None
    reference: str = ""


class RedeemIn(Schema):
    code: str
    patient_id: int = Field(..., description="Whose invoices it pays: any patient")
    amount_minor: int = Field(..., gt=0)
    allocations: list[AllocationIn] = []


class TransferIn(Schema):
    target_code: str
    amount_minor: int = Field(..., gt=0)


class RefundIn(Schema):
    amount_minor: int = Field(..., gt=0)
    reason: str = ""


class GiftCardPatch(Schema):
    notes: str | None = None
    recipient_name: str | None = None
    recipient_email: str | None = None


class TransactionOut(Schema):
    id: int
    kind: str
    amount_minor: int
    balance_after_minor: int
    payment_id: int | None
    invoice_id: int | None
    other_gift_card_id: int | None  # a transfer's other gift card
    # The same id under its old name, for one release (CHANGELOG): `card` alone means a card on
    # file.
    other_card_id: int | None = Field(
        ...,
        alias="other_gift_card_id",
        deprecated=True,
        description="The same as `other_gift_card_id`; removed in the next release.",
    )
    at: dt.datetime


class GiftCardOut(Schema):
    id: int
    code: str
    balance_minor: int
    purchaser_id: int | None
    recipient_name: str
    recipient_email: str
    notes: str
    created_at: dt.datetime
    transactions: list[TransactionOut]
