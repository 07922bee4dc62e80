"""Can this pass cover this booking? One answer with a reason code (SPEC 5.3 "Explain"), used by
attaching, auto-select, rescheduling and the Explain panel alike, so they never disagree."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from carnet.clinic.selectors import clinic_get, money_text
from carnet.passes.cycles import cycle_preview
from carnet.passes.dunning import PAST_DUE_REASON, past_due_refusal
from carnet.passes.models import Pass, PassItem
from carnet.passes.selectors import pass_fully_paid, pass_unlocked

from .windows import window_refusal

# code -> what staff (and patients) read; {…} fields filled from the pass.
REASONS = {
    "ok": "Can cover this booking.",
    "attached": "Already covers this booking.",
    "deleted": "This purchase was deleted.",
    "refunded": "Refunded: it no longer covers visits.",
    "transferred": "Its remaining uses were transferred to another patient.",
    "other_patient": "Belongs to {owner}, who does not share it with this patient.",
    "not_eligible": "{treatment} is not one of its eligible items.",
    "not_paid": (
        "Not paid yet: it covers visits once its invoice is fully paid (balance {balance})."
    ),
    "plan_not_paid": "Payment plan: {unlocked} of {quantity} uses are paid for and all are taken. "
    "Collect the next instalment to unlock more.",
    "expired": "Expired on {expires_on}; the visit is on {visit_date}.",
    "used_up": "All {quantity} uses are taken.",
    "used_up_value": (
        "Its balance of {face_value} is used up: all of it is drawn by visits or held by bookings."
    ),
    "item_limit": "Its limit of {limit} for {treatment} is reached.",
    "not_online": (
        "This package is not used on online bookings; the clinic attaches it at the front desk."
    ),
    "group_secondary": "In a group appointment only the primary client's package is used.",
    "cancelled": "Cancelled: it no longer covers visits.",
    "not_started": "The membership starts on {start_date}, after the visit ({visit_date}).",
    "ended": "The membership's last covered day is before the visit ({visit_date}).",
    "paused": "The membership is paused during the cycle of {visit_date}.",
    "cycle_used_up": "All {uses} uses of the cycle that includes {visit_date} are taken.",
    "wrong_location": "Used only at {locations}; this visit is at {location}.",
    "outside_hours": "Used only {window} ({zone} time); this visit is on {when}.",
    "weekly_cap": "Used at most {cap} a week: {taken} already booked {span}.",
    "daily_cap": "Used at most {cap} a day: {taken} already booked {span}.",
    "past_due": PAST_DUE_REASON,
    "written_off": (
        "The cycle that includes {visit_date} was written off unpaid, so it covers no visits."
    ),
}
UNPAID_WARNING = "Covers it, but this cycle's invoice is not paid yet (balance {balance})."
PARTIAL_WARNING = (
    "Covers {covered} of this visit's {full}: only that much of its balance is left, "
    "so the patient pays the rest."
)


@dataclass(frozen=True)
class Verdict:
    code: str
    message: str
    item: PassItem | None = None
    warning: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "ok"


def _balance(sold: Pass) -> str:
    owed = sum(
        r.invoice.balance_minor
        for r in sold.pass_invoices.all()
        if r.invoice_id and not r.invoice.deleted_at
    )
    return money_text(owed)


def pass_check(
    sold: Pass,
    *,
    patient,
    treatment,
    visit_date: dt.date,
    online: bool = False,
    location=None,
    start: dt.datetime | None = None,
    visit_pk: int | None = None,
) -> Verdict:
    """The first rule the pass breaks for this booking, or ok. Uses the counters on `sold` as given
    (callers that then write hold its lock and passed a fresh row). `location` and `start` (the
    visit's) bring in the template's place and hours; `visit_pk` is left out of its use cap."""

    def no(code: str, item: PassItem | None = None, **extra) -> Verdict:
        fields = dict(
            owner=sold.patient.full_name if sold.patient_id else "",
            treatment=treatment.name,
            quantity=sold.quantity,
            expires_on=sold.expires_on,
            visit_date=visit_date,
            **extra,
        )
        return Verdict(code, REASONS[code].format(**fields), item)

    if sold.status == Pass.Status.DELETED:
        return no("deleted")
    if sold.status == Pass.Status.REFUNDED:
        return no("refunded")
    if sold.status == Pass.Status.TRANSFERRED:
        return no("transferred")
    if sold.status == Pass.Status.CANCELLED:
        return no("cancelled")
    if sold.patient_id != patient.pk and not (
        sold.family_sharing and any(s.patient_id == patient.pk for s in sold.shares.all())
    ):
        return no("other_patient")
    item = next((i for i in sold.items.all() if i.treatment_id == treatment.pk), None)
    if item is None:
        return no("not_eligible")
    rule = window_refusal(
        sold, location=location, start=start, visit_date=visit_date, visit_pk=visit_pk
    )
    if rule is not None:
        return no(rule[0], **rule[1])
    if sold.kind == Pass.Kind.MEMBERSHIP:
        return _membership_check(sold, item, no, visit_date=visit_date, online=online)
    if sold.expires_on is not None and visit_date > sold.expires_on:
        return no("expired")
    if sold.face_value_minor is not None:
        return _value_check(sold, item, no, treatment=treatment, online=online)
    unlocked = pass_unlocked(sold)
    if unlocked == 0:
        return no("not_paid", balance=_balance(sold))
    if sold.remaining is not None and sold.remaining <= 0:
        return no("used_up")
    if sold.status == Pass.Status.EXPIRED:
        return no("expired")
    if sold.used_count >= unlocked:
        return no("plan_not_paid", unlocked=unlocked)
    if item.limit is not None and item.used_count >= item.limit:
        return no("item_limit", limit=item.limit)
    if online and not sold.redeem_online:
        return no("not_online")
    return Verdict("ok", REASONS["ok"], item)


def visit_value(item, treatment) -> int:
    """What a visit is worth to a value package: its eligible item's value,
    or the treatment's price."""
    return item.value_minor if item.value_minor is not None else treatment.price_minor


def _value_check(sold: Pass, item: PassItem, no, *, treatment, online: bool) -> Verdict:
    """A value package (issue 23): paid in full, some balance left; less than the visit's value
    left still covers it in part (a warning says how much)."""
    money = clinic_get().money
    if not pass_fully_paid(sold):
        return no("not_paid", balance=_balance(sold))
    if sold.value_left <= 0:
        return no("used_up_value", face_value=money(sold.face_value_minor))
    if sold.status == Pass.Status.EXPIRED:
        return no("expired")
    if item.limit is not None and item.used_count >= item.limit:
        return no("item_limit", limit=item.limit)
    if online and not sold.redeem_online:
        return no("not_online")
    full = visit_value(item, treatment)
    warning = ""
    if sold.value_left < full:
        warning = PARTIAL_WARNING.format(covered=money(sold.value_left), full=money(full))
    return Verdict("ok", REASONS["ok"], item, warning)


def _membership_check(
    sold: Pass, item: PassItem, no, *, visit_date: dt.date, online: bool
) -> Verdict:
    """Memberships count uses per cycle and may cover a visit while its cycle is
    unpaid (SPEC 6.3)."""

    state, row, left = cycle_preview(sold, visit_date)
    if state != "ok":
        return no(state, start_date=sold.start_date)
    if row is not None and row.written_off_at is not None:
        return no("written_off")
    late = past_due_refusal(sold)  # reads the kept date: no query unless it is past due
    if late is not None:
        return no("past_due", **late)
    if left is not None and left <= 0:
        return no(
            "cycle_used_up", uses=row.uses_allowed if row is not None else sold.uses_per_cycle
        )
    if item.limit is not None and item.used_count >= item.limit:
        return no("item_limit", limit=item.limit)
    if online and not sold.redeem_online:
        return no("not_online")
    warning = ""
    if row is not None and row.invoice_id and row.invoice.balance_minor > 0:
        warning = UNPAID_WARNING.format(balance=clinic_get().money(row.invoice.balance_minor))
    return Verdict("ok", REASONS["ok"], item, warning)


def auto_candidates(
    candidates,
    *,
    patient,
    treatment,
    visit_date: dt.date,
    online: bool = False,
    location=None,
    start: dt.datetime | None = None,
    visit_pk: int | None = None,
) -> list[Pass]:
    """SPEC 5.3 auto-select, best first: of the passes that can cover it and have auto-select on,
    the one expiring first (no expiry last), then the oldest purchase."""
    usable = [
        p
        for p in candidates
        if p.auto_select
        and pass_check(
            p,
            patient=patient,
            treatment=treatment,
            visit_date=visit_date,
            online=online,
            location=location,
            start=start,
            visit_pk=visit_pk,
        ).ok
    ]
    usable.sort(key=lambda p: (p.expires_on or dt.date.max, p.purchased_at, p.pk))
    return usable
