"""API schemas for sold packages. Money is integer minor units of the clinic currency."""

import datetime as dt
from typing import Annotated

from ninja import Field

from carnet.core.schemas import Schema
from carnet.passes.redeeming.schemas import RedemptionOut
from carnet.passes.selectors import pass_fully_paid, pass_paid_minor, pass_unlocked, pass_uses


class PassItemOut(Schema):
    id: int
    treatment_id: int
    treatment_name: str = Field(..., alias="treatment.name")
    additional_charge_minor: int = Field(
        ..., description="What the patient still pays per covered visit"
    )
    compensation_minor: int | None
    limit: int | None = Field(
        ..., description="At most this many uses of the quantity for this item"
    )
    used_count: int
    value_minor: int | None = Field(
        ..., description="A value package: what one visit draws; null = the treatment's price"
    )


class PassInvoiceOut(Schema):
    # One of a package's pass invoices: a payment plan's instalment (1 of 1 when paid in full).
    seq: int
    due_on: dt.date
    amount_minor: int
    invoice_id: int | None = Field(..., description="Null until the instalment is invoiced")
    paid: bool

    @staticmethod
    def resolve_paid(obj) -> bool:
        invoice = obj.invoice
        return bool(
            invoice and not invoice.deleted_at and invoice.applied_minor >= invoice.total_minor
        )


class PassSummaryOut(Schema):
    id: int
    kind: str
    name: str
    template_id: int
    patient_id: int
    patient_name: str = Field(..., alias="patient.full_name")
    status: str = Field(..., description="active, expired, refunded, transferred or deleted")
    quantity: int | None
    used: int = Field(..., alias="used_count", description="Reserved plus posted uses")
    reserved_count: int
    posted_count: int
    forfeited_count: int
    total: int | None = Field(..., alias="quantity")
    remaining: int | None
    face_value_minor: int | None = Field(
        ...,
        description="A package that holds a value: the amount "
        "of treatments it covers; null = it counts uses",
    )
    value_left_minor: int | None = Field(
        ...,
        alias="value_left",
        description="A value package's balance still "
        "free to book (held by booked visits and drawn by arrived ones excluded)",
    )
    value_reserved_minor: int
    value_posted_minor: int
    value_forfeited_minor: int
    unlocked: int = Field(
        ...,
        description="Uses paid for (all once fully paid; by instalment on a plan); 0 for a "
        "package that holds a value (see paid)",
    )
    paid: bool = Field(..., description="Every instalment is invoiced and fully paid")
    paid_minor: int
    price_minor: int
    purchase_date: dt.date
    purchased_at: dt.datetime
    expires_on: dt.date | None
    expiry_preset: str = Field(
        ...,
        description="The clinic's expiry preset when it was sold (none, quebec, ontario, "
        "us_federal); it keeps those terms whatever the clinic's preset is now",
    )
    expiry_disclosure: str = Field(..., description="The expiry terms printed on its sale receipt")
    auto_select: bool
    family_sharing: bool
    transferable: bool
    instalments: int
    sold_by_id: int | None
    card_id: int | None
    transferred_from_id: int | None
    shared_with: list[int]
    invoice_ids: list[int]

    @staticmethod
    def resolve_unlocked(obj) -> int:
        return pass_unlocked(obj)

    @staticmethod
    def resolve_paid(obj) -> bool:
        return pass_fully_paid(obj)

    @staticmethod
    def resolve_paid_minor(obj) -> int:
        return pass_paid_minor(obj)

    @staticmethod
    def resolve_shared_with(obj) -> list[int]:
        return sorted(s.patient_id for s in obj.shares.all())

    @staticmethod
    def resolve_invoice_ids(obj) -> list[int]:
        return [r.invoice_id for r in obj.pass_invoices.all() if r.invoice_id]


class PassOut(PassSummaryOut):
    items: list[PassItemOut]
    pass_invoices: list[PassInvoiceOut]
    # The same pass invoices under the old name, for one release (CHANGELOG): clients move to
    # `pass_invoices`.
    instalment_rows: list[PassInvoiceOut] = Field(
        ...,
        deprecated=True,
        description="The same as `pass_invoices`; removed in the next release.",
    )
    redemptions: list[RedemptionOut] = Field(..., description="Use history, newest first")

    @staticmethod
    def resolve_items(obj):
        return list(obj.items.all())

    @staticmethod
    def resolve_pass_invoices(obj):
        return list(obj.pass_invoices.all())

    @staticmethod
    def resolve_instalment_rows(obj):
        return list(obj.pass_invoices.all())

    @staticmethod
    def resolve_redemptions(obj):

        return list(pass_uses(obj))


class MyPassOut(Schema):
    """What a patient sees of their own (or a dependant's) package."""

    id: int
    patient_id: int
    patient_name: str = Field(..., alias="patient.full_name")
    name: str
    status: str
    purchase_date: dt.date
    quantity: int | None
    used: int = Field(..., alias="used_count")
    remaining: int | None
    face_value_minor: int | None = Field(
        ...,
        description="A package that holds a value: the amount "
        "of treatments it covers; null = it counts uses",
    )
    value_left_minor: int | None = Field(
        ...,
        alias="value_left",
        description="A value package's balance still "
        "free to book (held by booked visits and drawn by arrived ones excluded)",
    )
    expires_on: dt.date | None
    expiry_disclosure: str = Field(..., description="The expiry terms it was sold with")
    # Memberships (kind "membership"): the details are at GET /passes/{id}/membership.
    kind: str = Field(..., description="package or membership")
    start_date: dt.date | None = Field(None, description="A membership's first day")
    ends_after: dt.date | None = Field(
        None, description="A cancelled membership's last covered day"
    )
    self_cancel: bool = Field(
        False, description="The patient may cancel it (POST /me/passes/{id}/cancel)"
    )
    pause_allowed: bool = Field(
        False, description="The patient may pause it (POST /me/passes/{id}/pause)"
    )


class MyPassItemOut(Schema):
    """An eligible item as the patient sees it: no staff compensation value."""

    treatment_id: int
    treatment_name: str = Field(..., alias="treatment.name")
    additional_charge_minor: int = Field(..., description="What you still pay per covered visit")
    limit: int | None
    used_count: int
    value_minor: int | None = Field(
        None,
        description="A value package: what one visit draws from its balance; "
        "null = the treatment's price",
    )


class MyPassDetailOut(MyPassOut):
    """One of the patient's own (or a dependant's) packages: what it covers,
    without staff-only values."""

    items: list[MyPassItemOut]

    @staticmethod
    def resolve_items(obj):
        return list(obj.items.all())


class SellIn(Schema):
    template_id: int
    expires_on: dt.date | None = Field(
        None, description="Omit for the template's default; null = never expires"
    )
    sold_by_id: int | None = Field(
        None, description="Staff member credited for upfront compensation"
    )
    card_id: int | None = Field(
        None, description="A card on file for the instalments of a payment plan"
    )
    location_id: int | None = Field(
        None, description="Where it is sold (its invoices and the pass sales report)"
    )
    intro_override: bool = Field(
        False,
        description="Sell an intro offer the patient may not have "
        "(Administrative/All Billing; logged)",
    )


class ExpiryIn(Schema):
    expires_on: dt.date | None = Field(..., description="The new expiry date; null = never expires")


class RefundSuggestionOut(Schema):
    collected: int = Field(
        ..., description="What the patient paid for the pass: the most a refund can be"
    )
    suggested: int = Field(
        ..., description="Price ÷ quantity × remaining uses, within what was collected"
    )
    by_rule: int = Field(
        ..., description="Used sessions re-priced at the single-visit price, the rest refunded"
    )
    remaining: int = Field(..., description="Uses the suggestion counts: unused + reserved")
    unused: int = Field(..., description="Uses neither booked nor redeemed")
    reserved: int = Field(
        ..., description="Uses held by booked visits not yet arrived; refunding voids them"
    )
    used_at_full_price: int
    value_left: int | None = Field(
        None,
        description="A value package: the value the suggestion counts (free + "
        "held by booked visits); the suggestion is price × value_left ÷ face value",
    )
    value_reserved: int = 0
    small_balance: int | None = Field(
        None,
        description="Sold under the Quebec preset with a balance under 5.00: "
        "that balance, refundable on request",
    )


class PassRefundIn(Schema):
    amount_minor: int = Field(
        ..., description="0 to what was collected; it becomes the patient's credit"
    )
    detach_future: bool = Field(False, description="Void the uses reserved by booked visits first")
    reason: str = Field("", max_length=500)


class PassTransferIn(Schema):
    to_patient_id: int


class SharesIn(Schema):
    # Ids are database keys: anything outside a 64-bit key is refused here
    # (422), not by the database.
    patient_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        ..., description="The full list of family members who may use the pass"
    )
