import datetime as dt
from typing import Literal

from ninja import Field

from carnet.core.schemas import Schema

Method = Literal["cash", "cheque", "debit", "card_manual", "card_gateway", "etransfer", "other"]


class LineIn(Schema):
    product_id: int | None = None
    treatment_id: int | None = None
    description: str = ""
    quantity: int = Field(1, ge=1, le=10000)
    unit_price_minor: int | None = Field(
        None, ge=0, description="Defaults to the product's or treatment's price"
    )
    adjustment_minor: int = Field(0, ge=0, description="Discount taken off quantity × unit price")
    income_category_id: int | None = None
    tax_ids: list[int] | None = Field(
        None, description="Defaults to the product's or treatment's taxes"
    )
    tax_inclusive: bool | None = None
    staff_id: int | None = Field(None, description="The staff member the line is credited to")


class InvoiceIn(Schema):
    patient_id: int
    location_id: int | None = None
    notes: str = ""
    lines: list[LineIn] = Field(..., min_length=1)


class LineTaxOut(Schema):
    tax_id: int
    rate: str
    amount_minor: int


class LineOut(Schema):
    id: int
    kind: str
    description: str
    quantity: int
    unit_price_minor: int
    adjustment_minor: int
    tax_inclusive: bool
    income_category_id: int
    product_id: int | None
    treatment_id: int | None
    staff_id: int | None
    net_minor: int
    tax_minor: int
    total_minor: int
    taxes: list[LineTaxOut]

    @staticmethod
    def resolve_taxes(obj):
        return [
            {"tax_id": t.tax_id, "rate": str(t.rate), "amount_minor": t.amount_minor}
            for t in obj.line_taxes.all()
        ]


class AllocationOut(Schema):
    id: int
    payment_id: int
    invoice_id: int
    amount_minor: int
    applied_at: dt.datetime
    unapplied_at: dt.datetime | None


class InvoiceOut(Schema):
    id: int
    number: int
    patient_id: int
    location_id: int | None
    invoice_date: dt.date
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    applied_minor: int
    balance_minor: int
    status: str
    deleted_at: dt.datetime | None
    lines: list[LineOut]


class AllocationIn(Schema):
    invoice_id: int
    amount_minor: int = Field(..., gt=0)


class PaymentIn(Schema):
    patient_id: int
    method: Method
    amount_minor: int = Field(..., gt=0)
    reference: str = ""
    card_id: int | None = Field(
        None, description="Required for card_gateway: the card on file to charge"
    )
    allocations: list[AllocationIn] = []


class RefundOut(Schema):
    id: int
    amount_minor: int
    method: str
    refunded_at: dt.datetime
    reason: str


class PaymentOut(Schema):
    id: int
    patient_id: int
    method: str
    amount_minor: int
    applied_minor: int
    refunded_minor: int
    unapplied_minor: int
    received_at: dt.datetime
    reference: str
    card_id: int | None
    allocations: list[AllocationOut]
    refunds: list[RefundOut]


class ApplyIn(Schema):
    invoice_id: int
    amount_minor: int = Field(..., gt=0)


class CreditApplyIn(Schema):
    invoice_id: int
    amount_minor: int | None = Field(
        None, gt=0, description="Defaults to as much credit as the invoice owes"
    )


class RefundIn(Schema):
    amount_minor: int = Field(..., gt=0)
    method: Method | None = Field(None, description="Defaults to the payment's method")
    reason: str = ""


class AccountOut(Schema):
    patient_id: int
    owing_minor: int
    credit_minor: int
    currency: str


class CardIn(Schema):
    number: str = Field(..., description="Sent to the gateway; never stored")
    exp_month: int = Field(..., ge=1, le=12)
    exp_year: int = Field(..., ge=2000, le=2100)
    cvc: str
    holder: str = Field(..., min_length=1, max_length=120)


class CardSetupOut(Schema):
    setup_intent: str = Field(..., description="The SetupIntent's id (seti_…)")
    client_secret: str = Field(..., description="For Stripe.js's confirmCardSetup in the browser")
    publishable_key: str
    js_url: str = Field(..., description="Where the page loads Stripe.js from")


class CardSetupIn(Schema):
    setup_intent: str = Field(..., min_length=1, max_length=255)
    holder: str = Field(
        "", max_length=120, description="Name on the card (default: the patient's name)"
    )


class CardOut(Schema):
    id: int
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    holder: str


class QueuedOut(Schema):
    detail: str
