from decimal import Decimal
from typing import Literal

from ninja import Field

from carnet.core.schemas import Schema


class ClinicIn(Schema):
    name: str
    currency: str = Field(..., description="ISO 4217 code, e.g. CAD")
    time_zone: str
    locale: str = "en-CA"
    address: str = ""
    email: str = ""
    phone: str = ""
    invoice_prefix: str = ""
    no_show_fee_minor: int = Field(0, ge=0)
    allow_double_booking: bool = False
    cancellation_window_hours: int = Field(24, ge=0, le=24 * 60)
    online_bookings_per_patient: int = Field(3, ge=1, le=100)
    two_factor_all_staff: bool = Field(
        False, description="Every staff login needs a second factor (Full Access and up always do)"
    )
    online_sales_enabled: bool = False
    gift_cards_enabled: bool = True
    gift_card_load_limit_minor: int = Field(100000, ge=0)
    gift_card_online_sales_enabled: bool = False
    gift_card_online_minimum_minor: int = Field(2500, ge=0)
    pass_expiry_preset: Literal["none", "quebec", "ontario", "us_federal"] = Field(
        "none",
        description=(
            "The law the clinic's pass expiry follows (quebec, ontario: no expiry; us_federal: "
            "5 years at least); none = pass_expiry_rule. Passes already sold keep the terms they "
            "were sold with"
        ),
    )
    pass_expiry_rule: Literal["allowed", "forbidden", "minimum"] = Field(
        "allowed",
        description=("Where the law forbids or limits pass expiry; used when the preset is none"),
    )
    pass_expiry_minimum_days: int = Field(
        0, ge=0, description="With the minimum rule: days a pass lasts at least"
    )
    pass_expiry_reminder_days: int = Field(
        14, ge=0, description="Remind the patient this many days before expiry; 0 = no reminder"
    )
    insurer_ready_receipts: bool = False
    breakage_method: Literal["expiry", "proportional"] = Field(
        "expiry",
        description=(
            "Package breakage: at expiry, or in proportion to redemptions at each template's "
            "expected breakage rate (ASC 606-10-55-48); packages already sold keep the method of "
            "their sale"
        ),
    )
    membership_proration: Literal["prorate", "none"] = Field(
        "prorate",
        description=(
            "Changing a member's plan at once: credit the unused days of the current cycle and "
            "charge the rest of the new plan's cycle, or none (the new price applies from the "
            "next cycle)"
        ),
    )

    dunning_retry_days: str = Field(
        "1,3,7",
        max_length=40,
        description="Days between tries of a soft-declined "
        "membership or instalment payment, e.g. 1,3,7; hard declines are not retried",
    )
    dunning_write_off: bool = Field(
        False,
        description="Write off a cycle whose last retry failed (no uses, no "
        "back-charge) instead of letting owed cycles stack up",
    )
    past_due_suspend_days: int = Field(
        14,
        ge=1,
        le=365,
        description="Days past due after which a membership no longer covers new bookings",
    )
    past_due_end_days: int = Field(
        45, ge=1, le=730, description="Days past due after which past_due_end_action is taken"
    )
    past_due_end_action: Literal["suspend", "cancel"] = "suspend"
    charges_preview_email: bool = Field(
        False,
        description="Each night, email the account owner the automatic card "
        "charges of the next day",
    )


class ClinicOut(ClinicIn):
    id: int


class LocationIn(Schema):
    name: str
    time_zone: str = Field(..., description="IANA time zone, e.g. America/Vancouver")
    address: str = ""
    phone: str = ""
    is_active: bool = True


class LocationOut(LocationIn):
    id: int


class NamedIn(Schema):
    name: str


class NamedOut(NamedIn):
    id: int


class TaxIn(Schema):
    name: str
    rate: Decimal = Field(..., description="Percent, e.g. 13 or 4.975", ge=0, le=100)
    registration_number: str = ""


class TaxOut(TaxIn):
    id: int


class PricedIn(Schema):
    name: str
    price_minor: int = Field(..., ge=0, description="Price in minor units (1250 = 12.50)")
    tax_inclusive: bool = False
    tax_ids: list[int] = []
    income_category_id: int
    is_active: bool = True


class PricedOut(PricedIn):
    id: int

    @staticmethod
    def resolve_tax_ids(obj) -> list[int]:
        return [t.pk for t in obj.taxes.all()]


class TreatmentIn(PricedIn):
    discipline_id: int
    kind: Literal["individual", "group", "class"] = "individual"
    duration_minutes: int = Field(..., ge=5, le=1440)
    online_bookable: bool = False
    capacity: int | None = Field(None, ge=1)


class TreatmentOut(TreatmentIn, PricedOut):
    pass


class ProductIn(PricedIn):
    stock: int = 0
    sku: str = ""


class ProductOut(ProductIn, PricedOut):
    pass
