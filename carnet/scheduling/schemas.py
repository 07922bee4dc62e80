import datetime as dt
from typing import Literal

from ninja import Field

from carnet.core.schemas import Schema


class BookIn(Schema):
    treatment_id: int
    practitioner_id: int
    location_id: int
    start: dt.datetime = Field(
        ..., description="With its UTC offset, e.g. 2026-03-09T09:00:00-04:00"
    )
    patient_ids: list[int] = Field(
        [], description="Individual: one; group: primary first; class: any number"
    )
    notes: str = ""
    pass_choice: Literal["auto", "none"] | int = Field(
        "auto",
        description='"auto" attaches an auto-selected package, "none" none, or a pass id that one',
    )


class JoinIn(Schema):
    patient_id: int


class PatientsIn(Schema):
    patient_ids: list[int] | None = Field(
        None, description="Group: secondary clients who came; class: participants"
    )


class NoShowIn(PatientsIn):
    charge_fee: bool = Field(True, description="Charge the clinic's no-show fee (if one is set)")
    use_pass: bool = Field(
        True, description="A visit a package covers uses its session; false frees it"
    )


class CancelIn(Schema):
    patient_id: int | None = Field(
        None, description="Only this class participant or group secondary client"
    )


class StartIn(Schema):
    start: dt.datetime


class ClassIn(Schema):
    treatment_id: int = Field(..., description="The class treatment to book instead of the group")


class VisitOut(Schema):
    patient_id: int
    patient_name: str
    role: str
    status: str
    invoice_id: int | None

    # Resolvers, not dotted aliases: ninja reads those through a template Variable and two
    # AttributeErrors per field and object (issue 25).
    @staticmethod
    def resolve_patient_name(obj):
        return obj.patient.full_name


class AppointmentOut(Schema):
    id: int
    treatment_id: int
    treatment_name: str
    kind: str
    practitioner_id: int
    location_id: int
    start: dt.datetime
    end: dt.datetime
    status: str
    booked_by: str
    notes: str
    visits: list[VisitOut]
    # The same visits under the old name, for one release (CHANGELOG): clients move to `visits`.
    participants: list[VisitOut] = Field(
        ..., deprecated=True, description="The same as `visits`; removed in the next release."
    )

    @staticmethod
    def resolve_treatment_name(obj):
        return obj.treatment.name

    @staticmethod
    def resolve_visits(obj):
        return list(obj.visits.all())

    @staticmethod
    def resolve_participants(obj):
        return list(obj.visits.all())


class FreeOut(Schema):
    location_id: int
    start: dt.datetime
    end: dt.datetime


class BreakIn(Schema):
    location_id: int
    start: dt.datetime = Field(..., description="With its UTC offset")
    end: dt.datetime
    reason: str = ""


class BreakOut(Schema):
    id: int
    practitioner_id: int
    location_id: int
    start: dt.datetime
    end: dt.datetime
    reason: str
