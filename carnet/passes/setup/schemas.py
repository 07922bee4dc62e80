"""API schemas for passes. Money is integer minor units of the clinic currency."""

import datetime as dt
from typing import Literal

from ninja import Field

from carnet.core.schemas import Schema

# ---------------------------------------------------- templates (Settings → Packages & Memberships)
# Ranges are checked by setup.services.template_save, whose messages name the field
# (items as items.<n>.<field>).


class EligibleItemIn(Schema):
    treatment_id: int
    additional_charge_minor: int = Field(
        0, description="What the patient still pays per covered visit"
    )
    compensation_minor: int | None = Field(
        None, description="Visit value for commission; null = the treatment's price"
    )
    limit: int | None = Field(
        None, description="At most this many of the quantity; null = no per-item limit"
    )
    value_minor: int | None = Field(
        None,
        description="A package that holds a value: what one visit draws from its "
        "balance; null = the treatment's price",
    )


class EligibleItemOut(EligibleItemIn):
    id: int
    treatment_name: str

    @staticmethod
    def resolve_treatment_name(obj) -> str:
        return obj.treatment.name


class PassTemplateIn(Schema):
    kind: Literal["package", "membership"] = "package"
    name: str
    price_minor: int = Field(..., description="Price in minor units (may be 0)")
    tax_inclusive: bool = False
    tax_ids: list[int] = []
    income_category_id: int
    quantity: int | None = Field(
        None, description="Number of uses (required for a package that counts uses)"
    )
    face_value_minor: int | None = Field(
        None,
        description="A package that holds a value: the amount "
        "of eligible treatments it covers, drawn down by each covered visit's "
        "price or the item's value_minor; null = it counts uses (quantity). Paid "
        "in full (instalments 1); fixed once packages of the template are sold",
    )
    expiry_value: int | None = Field(
        None, description="Default expiry after purchase; null = never expires"
    )
    expiry_unit: Literal["days", "weeks", "months", "years"] = "months"
    auto_select: bool = True
    redeem_online: bool = False
    family_sharing: bool = False
    transferable: bool = False
    instalments: int = Field(1, description="Payment plan: 1 = paid in full, up to 24")
    expected_breakage_bp: int = Field(
        0,
        description="Package: breakage expected, in basis points (1000 = 10 %), "
        "recognised in proportion to redemptions when the clinic's breakage method is "
        "proportional (ASC 606-10-55-48); 0 to 9000",
    )
    sold_online: bool = Field(
        False, description="Sold online in the patient portal (memberships: online sign-up)"
    )
    new_patients_only: bool = Field(
        False,
        description="Intro offer: only for a patient with no arrived visit and "
        "no pass bought before",
    )
    once_per_patient: bool = Field(False, description="Intro offer: each patient may have it once")
    location_ids: list[int] = Field([], description="Locations it is used at; empty = all")
    allowed_days: str = Field(
        "",
        description='Days it is used on, "0" (Monday) to "6" (Sunday), e.g. "01234"; '
        "empty = every day",
    )
    window_start: dt.time | None = Field(
        None,
        description="Hours it is used in, in the location's time zone; "
        "an end before the start crosses midnight",
    )
    window_end: dt.time | None = None
    cap_uses: int | None = Field(
        None, description="At most this many uses per cap_period; null = no cap"
    )
    cap_period: Literal["day", "week"] = Field("week", description="Weeks run Monday to Sunday")
    # Memberships (SPEC 6.1, 9.7); a membership has no quantity, expiry, instalments,
    # transfer or family sharing.
    cycle: Literal["weekly", "monthly", "yearly"] = Field(
        "monthly", description="Membership billing cycle"
    )
    term_cycles: int | None = Field(
        None, description="Membership term, 1–52 cycles; null = open-ended"
    )
    cancellable_after_cycles: int = Field(
        0, description="Membership: a warning when cancelled before this many cycles"
    )
    uses_per_cycle: int | None = Field(
        None, description="Membership uses per cycle; null = unlimited"
    )
    rollover: bool = Field(False, description="Membership: unused uses roll over to the next cycle")
    rollover_cap: int | None = Field(
        None, description="At most this many uses roll over; null = no cap"
    )
    pause_allowed: bool = False
    pause_max_cycles: int = Field(
        0, description="Longest pause in cycles (at least 1 when pausing is allowed)"
    )
    freeze_fee_kind: Literal["none", "once", "per_cycle"] = Field(
        "none",
        description=(
            "Membership freeze fee: none, once per pause, or per frozen cycle (billed like a cycle)"
        ),
    )
    freeze_fee_minor: int = Field(
        0, ge=0, description="The freeze fee (line price); more than 0 when there is one"
    )
    self_cancel: bool = Field(False, description="Patients may cancel the membership themselves")
    items: list[EligibleItemIn] = Field(
        ..., description="Eligible items (the full list; at least one)"
    )


class PassTemplateOut(PassTemplateIn):
    id: int
    kind: str
    expiry_unit: str
    cycle: str
    archived: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    items: list[EligibleItemOut]

    @staticmethod
    def resolve_tax_ids(obj) -> list[int]:
        return [t.pk for t in obj.taxes.all()]

    @staticmethod
    def resolve_location_ids(obj) -> list[int]:
        return [loc.pk for loc in obj.allowed_locations.all()]

    @staticmethod
    def resolve_items(obj):
        return list(obj.items.all())


class ArchiveIn(Schema):
    archived: bool = True


class SoldItemTerms(Schema):
    treatment_id: int
    treatment: str
    additional_charge_minor: int
    compensation_minor: int | None
    limit: int | None
    value_minor: int | None = None


class SoldTerms(Schema):
    """A package's terms have `quantity`; a membership's `uses_per_cycle` (null = unlimited),
    `cycle_price_minor` (the amount of cycles not yet invoiced) and `cancellable_after_cycles`."""

    name: str
    quantity: int | None = None
    uses_per_cycle: int | None = None
    cycle_price_minor: int | None = None
    cancellable_after_cycles: int | None = None
    income_category_id: int
    income_category: str
    auto_select: bool
    items: list[SoldItemTerms]


class SoldUpdateProblem(Schema):
    code: str = Field(
        ..., description="quantity_below_used, limit_below_used or eligible_item_in_use"
    )
    message: str


class CycleChange(Schema):
    """A membership cycle not yet invoiced that takes the new amount and uses."""

    seq: int
    period_start: dt.date
    uses_allowed_before: int | None
    uses_allowed_after: int | None = Field(
        ..., description="Never below the uses already booked in it"
    )
    price_before: int
    price_after: int


class SoldUpdatePreviewOut(Schema):
    pass_id: int
    patient_id: int
    patient: str
    status: str
    kind: str
    changed: list[str] = Field(
        ...,
        description="Which terms change: name, quantity (packages), uses_per_cycle, "
        "cycle_price_minor, cancellable_after_cycles (memberships), income_category_id, "
        "auto_select, items",
    )
    before: SoldTerms
    after: SoldTerms
    problems: list[SoldUpdateProblem] = Field(
        ..., description="Any problem refuses the whole update"
    )
    notes: list[str] = Field(
        [], description="Memberships: from which cycle the amount and uses apply"
    )
    cycles: list[CycleChange] = []


class SoldUpdateOut(Schema):
    updated: int = Field(..., description="How many sold packages or memberships changed")
