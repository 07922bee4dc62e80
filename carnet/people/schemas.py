import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

from ninja import Field
from pydantic import AfterValidator, WithJsonSchema

from carnet.core.schemas import Schema


def _wall_clock(value: dt.time) -> dt.time:
    if value.tzinfo is not None:
        raise ValueError(
            "give a wall-clock time in the location's time zone, such as 09:00, "
            "without a UTC offset"
        )
    return value


# A shift's times are wall-clock times at the location: no UTC offset (JSON Schema's "time" format
# would require one, and an offset used to reach the database as a 500).
WallTime = Annotated[
    dt.time,
    AfterValidator(_wall_clock),
    WithJsonSchema(
        {
            "type": "string",
            "format": "partial-time",
            "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$",
            "examples": ["09:00"],
        }
    ),
]


class StaffIn(Schema):
    username: str
    email: str = ""
    password: str = Field(..., min_length=8)
    display_name: str
    access_level: int = Field(
        ..., description="0 No Access … 70 Account Owner (see /access-levels)"
    )
    can_access_billing: bool = True
    is_practitioner: bool = False
    location_ids: list[int] = []


class StaffPatch(Schema):
    email: str = ""
    display_name: str
    access_level: int
    can_access_billing: bool
    is_practitioner: bool
    location_ids: list[int]
    is_active: bool


class StaffOut(Schema):
    id: int
    username: str = Field(..., alias="user.username")
    email: str = Field(..., alias="user.email")
    display_name: str
    access_level: int
    access_label: str
    can_access_billing: bool
    is_practitioner: bool
    is_active: bool
    location_ids: list[int]

    @staticmethod
    def resolve_location_ids(obj) -> list[int]:
        return [loc.pk for loc in obj.locations.all()]


class AccessLevelOut(Schema):
    level: int
    label: str


class CommissionRateIn(Schema):
    income_category_id: int
    rate: Decimal = Field(..., ge=0, le=100, description="Percent")


class CommissionRateOut(CommissionRateIn):
    id: int


class ShiftIn(Schema):
    location_id: int
    weekday: int = Field(..., ge=0, le=6, description="0 = Monday")
    start_time: WallTime
    end_time: WallTime


class ShiftOut(ShiftIn):
    id: int


class TokenIn(Schema):
    name: str = Field(..., min_length=1, max_length=80)


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class TokenCreatedOut(TokenOut):
    token: str = Field(..., description="Shown once; store it now.")


class PatientIn(Schema):
    first_name: str = Field(..., min_length=1)
    last_name: str = Field(..., min_length=1)
    preferred_name: str = ""
    email: str = ""
    phone: str = ""
    date_of_birth: dt.date | None = None
    address: str = ""
    notes: str = ""


class PatientOut(PatientIn):
    id: int
    full_name: str
    has_portal_login: bool

    @staticmethod
    def resolve_has_portal_login(obj) -> bool:
        return obj.user_id is not None


class PatientSelfOut(Schema):
    """What a patient sees of their own record (or a dependant's): no staff notes,
    no internal fields."""

    id: int
    first_name: str
    last_name: str
    preferred_name: str
    full_name: str
    email: str
    phone: str
    date_of_birth: dt.date | None
    address: str


class FamilyLinkIn(Schema):
    relative_id: int
    kind: Literal["guardian", "spouse"] = Field(
        ..., description="guardian: this patient is the guardian of the relative"
    )


class FamilyLinkOut(Schema):
    id: int
    relation: str
    relative_id: int
    relative_name: str


class PortalInvitationOut(Schema):
    sent_to: str = Field(..., description="the patient's email, which will be their login")
    valid_days: int = Field(..., description="how long the link works")


class MeOut(Schema):
    kind: Literal["staff", "patient"]
    name: str
    staff: StaffOut | None = None
    patient: PatientSelfOut | None = None
