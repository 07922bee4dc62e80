"""API schemas for using a pass on an appointment: attach, remove, explain. Money is integer minor
units of the clinic currency."""

import datetime as dt

from ninja import Field

from carnet.core.schemas import Schema


class RedemptionOut(Schema):
    id: int
    pass_id: int = Field(..., alias="sold_pass_id")
    pass_name: str
    visit_id: int = Field(..., description="The visit (one patient in one appointment)")
    appointment_id: int
    patient_id: int
    treatment_name: str
    status: str = Field(
        ..., description="reserved (booked), posted (used) or voided (removed, cancelled)"
    )
    visit_date: dt.date
    reserved_at: dt.datetime
    posted_at: dt.datetime | None
    voided_at: dt.datetime | None
    released_at: dt.datetime | None = Field(
        ...,
        alias="voided_at",
        deprecated=True,
        description="Deprecated: voided_at under its old name, kept for one release",
    )
    value_minor: int = Field(..., description="Session value recognised when posted")
    additional_charge_minor: int
    remaining_after: int | None
    drawn_minor: int = Field(
        ...,
        description="A value package: the amount this visit holds (reserved) or drew "
        "(posted); less than full_value_minor when the balance covered it in part",
    )
    full_value_minor: int = Field(
        ..., description="A value package: the visit's value when it was attached"
    )
    value_left_after_minor: int | None = Field(
        ...,
        alias="value_left_after",
        description="A value package: its balance left after this visit",
    )
    by_no_show: bool

    # Resolvers, not dotted aliases (see scheduling.schemas.VisitOut).
    @staticmethod
    def resolve_pass_name(obj):
        return obj.sold_pass.name

    @staticmethod
    def resolve_appointment_id(obj):
        return obj.visit.appointment_id

    @staticmethod
    def resolve_treatment_name(obj):
        return obj.item.treatment.name


class AttachIn(Schema):
    pass_id: int | None = Field(None, description="The pass to use; null = auto-select")


class ExplainOut(Schema):
    pass_id: int
    pass_name: str
    owner_id: int
    status: str
    remaining: int | None
    expires_on: dt.date | None
    code: str = Field(..., description="ok, attached, or why the pass cannot cover the visit")
    message: str
    can_cover: bool
