"""API schemas for memberships (SPEC 6, 9.7). Money is integer minor units of
the clinic currency."""

import datetime as dt
from typing import Literal

from ninja import Field

from carnet.core.schemas import Schema


class CycleOut(Schema):
    id: int
    seq: int
    period_start: dt.date
    last_day: dt.date = Field(..., description="The cycle's last covered day")
    due_on: dt.date
    amount_minor: int
    skipped: bool = Field(..., description="A paused cycle: never billed, not part of the term")
    invoice_id: int | None = Field(..., description="Null until the cycle is invoiced")
    invoice_status: str = Field(
        ..., description="not_invoiced, unpaid, partly_paid, paid or deleted"
    )
    paid_minor: int
    balance_minor: int
    uses_allowed: int | None = Field(..., description="Null = unlimited; includes rolled-over uses")
    used_count: int
    charge_attempts: int
    next_attempt_on: dt.date | None = Field(
        ..., description="When the card is charged (automatic payment)"
    )
    last_error: str
    billing_state: str = Field(
        ...,
        description="not_invoiced, due, paid, retrying, past_due, needs_new_card "
        "(a hard decline) or written_off",
    )
    billing_label: str = Field(..., description="The state as staff and patients read it")
    decline_kind: str = Field(
        ..., description="The last decline: hard (no retry), soft (retried) or empty"
    )
    needs_new_card: bool
    written_off_at: dt.datetime | None


class PastDueOut(Schema):
    days: int = Field(..., description="Days since the oldest cycle still owed was due")
    suspended: bool = Field(..., description="True: it does not cover new bookings (code past_due)")
    overridden: bool
    label: str


class CycleWriteOffIn(Schema):
    reason: str = Field("", max_length=200)


class PastDueOverrideIn(Schema):
    until: dt.date = Field(
        ..., description="The last day it may cover new bookings despite being past due"
    )


class UsesOut(Schema):
    state: str = Field(..., description="ok, not_started, paused or ended")
    used: int
    allowed: int | None = Field(..., description="Null = unlimited")
    left: int | None
    rolled: int = Field(..., description="Uses rolled over from the previous cycle")


class MembershipOut(Schema):
    id: int
    kind: str
    name: str
    template_id: int
    patient_id: int
    patient_name: str
    status: str = Field(..., description="active, cancelled or deleted")
    sold_online: bool
    purchase_date: dt.date
    start_date: dt.date
    cycle: str = Field(..., description="weekly, monthly or yearly")
    cycle_price_minor: int
    term_cycles: int | None = Field(..., description="Null = open-ended")
    cancellable_after_cycles: int
    uses_per_cycle: int | None
    rollover: bool
    rollover_cap: int | None
    pause_allowed: bool
    pause_max_cycles: int
    freeze_fee_kind: str = Field(
        ..., description="none, once (per pause) or per_cycle (per frozen cycle)"
    )
    freeze_fee_minor: int
    self_cancel: bool
    payment_mode: str = Field(..., description="manual or automatic")
    card_id: int | None
    location_id: int | None
    sold_by_id: int | None
    ends_after: dt.date | None = Field(..., description="Last covered day once cancelled")
    billed_cycles: int
    paused: bool
    paused_until: dt.date | None = Field(
        ..., description="First day billed again after the current pause"
    )
    next_billing_date: dt.date | None = Field(
        ..., description="When the next cycle is invoiced; null = none"
    )
    owing_minor: int
    past_due: PastDueOut | None = Field(
        ..., description="Null while nothing is owed past its due date"
    )
    uses_this_cycle: UsesOut
    cycles: list[CycleOut]


class ChargeOut(Schema):
    outcome: str = Field(
        ..., description="charged, declined, pending (tried again later) or none (nothing due)"
    )
    message: str


class MembershipSoldOut(MembershipOut):
    charge: ChargeOut = Field(
        ..., description="The first charge of an automatic membership, tried right away"
    )


class MembershipCancelledOut(MembershipOut):
    warning: str = Field(
        ..., description="The policy's 'cancellable after N cycles' warning, or empty"
    )


class MembershipSellIn(Schema):
    template_id: int
    start_date: dt.date | None = Field(
        None, description="Default today; past cycles are invoiced at once"
    )
    payment_mode: Literal["manual", "automatic"] = "manual"
    card_id: int | None = Field(
        None, description="A card on file of the patient; required for automatic"
    )
    location_id: int | None = None
    sold_by_id: int | None = None
    intro_override: bool = Field(
        False,
        description="Sell an intro offer the patient may not have "
        "(Administrative/All Billing; logged)",
    )


class MembershipCancelIn(Schema):
    at_cycle_end: bool = Field(
        True, description="Benefits last to the current cycle's end; false = end today"
    )


class MembershipPauseIn(Schema):
    cycles: int = Field(..., ge=1, description="1 to the template's pause_max_cycles")
    freeze_fee_minor: int | None = Field(
        None,
        description="The total freeze fee shown before confirming (line "
        "prices); refused (409) if it is no longer right",
    )


class MembershipPaymentIn(Schema):
    payment_mode: Literal["manual", "automatic"]
    card_id: int | None = None


class CycleRefundSuggestionOut(Schema):
    collected: int = Field(
        ..., description="What was paid on the cycle's invoice: the most a refund can be"
    )
    suggested: int = Field(
        ..., description="Cycle price ÷ uses × unused uses (unlimited: by unused days)"
    )


class CycleRefundIn(Schema):
    amount_minor: int = Field(
        ..., ge=0, description="0 to what was collected; it becomes the patient's credit"
    )
    reason: str = Field("", max_length=500)


class CardUpdateRequestOut(Schema):
    id: int
    membership_id: int
    emailed_to: str
    created_at: dt.datetime
    expires_at: dt.datetime
    label: str


class PlanChangeIn(Schema):
    template_id: int = Field(..., description="The membership template to move to")
    when: Literal["now", "next_cycle"] = Field(
        "now",
        description="now (prorated as the clinic's setting says) or "
        "next_cycle (scheduled; applied when the next cycle starts)",
    )
    expected_credit_minor: int | None = Field(
        None, description="The preview's credit_minor: refused (409) if it moved"
    )
    expected_charge_minor: int | None = Field(
        None, description="The preview's charge_minor: refused (409) if it moved"
    )


class PlanChangePreviewOut(Schema):
    when: str
    effective_on: dt.date
    from_name: str
    to_name: str
    proration: str = Field(..., description="prorate or none")
    credit_minor: int = Field(
        ..., description="Taken off the current cycle's invoice, tax included"
    )
    credit_days: int
    cycle_days: int
    credit_to_account_minor: int = Field(
        ..., description="Of the credit, what was paid: it becomes account credit"
    )
    charge_minor: int = Field(..., description="The new plan's invoice now, tax included")
    charge_unit_minor: int
    charge_start: dt.date | None
    charge_last_day: dt.date | None
    credit_applied_minor: int = Field(
        ..., description="Of that account credit, applied to the new invoice"
    )
    due_now_minor: int
    uses: str = Field(
        ..., description="carried (this cycle's uses count against the new allowance) or reset"
    )
    uses_left: int | None = Field(
        ..., description="In the new plan's first cycle; null = unlimited"
    )
    next_billing: dt.date | None
    next_price_minor: int
    automatic: bool
    lines: list[str] = Field(..., description="The preview in words, as the staff page shows it")


class PlanChangeOut(Schema):
    id: int
    status: str = Field(..., description="applied or scheduled")
    effective_on: dt.date
    from_name: str
    to_name: str
    credit_minor: int
    charge_minor: int
    credit_applied_minor: int
    uses: str


class MembershipPlanChangedOut(MembershipOut):
    plan_change: PlanChangeOut
    charge: ChargeOut = Field(
        ..., description="What is due now on an automatic membership, charged right away"
    )


class RetryNowOut(Schema):
    outcome: Literal["charged", "declined", "unavailable"] = Field(
        ...,
        description=(
            "charged: nothing past due is left; declined: see the cycles' last_error; "
            "unavailable: no answer from the card processor (checked again shortly, "
            "never charged twice)"
        ),
    )
    membership: MembershipOut
