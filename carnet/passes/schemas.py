"""API schemas for passes. Money is integer minor units of the clinic currency."""

import datetime as dt
from typing import Literal

from ninja import Field, Schema

# ---------------------------------------------------------------- templates (Settings → Packages & Memberships)
# Ranges are checked by passes.setup.template_save, whose messages name the field (items as items.<n>.<field>).


class EligibleItemIn(Schema):
    treatment_id: int
    additional_charge_minor: int = Field(0, description="What the patient still pays per covered visit")
    compensation_minor: int | None = Field(None, description="Visit value for commission; null = the treatment's price")
    limit: int | None = Field(None, description="At most this many of the quantity; null = no per-item limit")


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
    quantity: int | None = Field(None, description="Number of uses (required for a package)")
    expiry_value: int | None = Field(None, description="Default expiry after purchase; null = never expires")
    expiry_unit: Literal["days", "weeks", "months", "years"] = "months"
    auto_select: bool = True
    redeem_online: bool = False
    family_sharing: bool = False
    transferable: bool = False
    instalments: int = Field(1, description="Payment plan: 1 = paid in full, up to 24")
    sold_online: bool = False
    items: list[EligibleItemIn] = Field(..., description="Eligible items (the full list; at least one)")


class PassTemplateOut(PassTemplateIn):
    id: int
    kind: str
    expiry_unit: str
    archived: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    items: list[EligibleItemOut]

    @staticmethod
    def resolve_tax_ids(obj) -> list[int]:
        return [t.pk for t in obj.taxes.all()]

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


class SoldTerms(Schema):
    name: str
    quantity: int | None
    income_category_id: int
    income_category: str
    auto_select: bool
    items: list[SoldItemTerms]


class SoldUpdateProblem(Schema):
    code: str = Field(..., description="quantity_below_used, limit_below_used or eligible_item_in_use")
    message: str


class SoldUpdatePreviewOut(Schema):
    pass_id: int
    patient_id: int
    patient: str
    status: str
    changed: list[str] = Field(..., description="Which of name, quantity, income_category_id, auto_select, items change")
    before: SoldTerms
    after: SoldTerms
    problems: list[SoldUpdateProblem] = Field(..., description="Any problem refuses the whole update")


class SoldUpdateOut(Schema):
    updated: int = Field(..., description="How many sold packages changed")
