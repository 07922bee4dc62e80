"""Dunning by decline code (issue 22 point 1): what a declined automatic payment — a membership
cycle or a payment-plan instalment — does next, and each cycle's billing state.

The gateway classifies every decline (gateway.base.HARD_DECLINES, the same for the test gateway
and Stripe):

- a **soft** decline (insufficient funds, a processing error, a generic decline) is tried again on
  the clinic's schedule (Clinic.dunning_retry_days, default 1, 3 and 7 days after each failed try,
  counted in the clinic's days); after the last one the cycle is past due — or written off, when
  the clinic says so (Clinic.dunning_write_off, `cycle_write_off`);
- a **hard** decline (lost or stolen card, closed account, do not honour, expired card…) stops the
  retries at once: trying that card again cannot work. The cycle is marked `needs_new_card` and,
  for a membership, a card update request (card_requests, issue 22 point 3) emails the
  patient a link to add a new card, whose cycles still owed are then charged at once.

A bank asking the card holder to confirm (authentication_required) is neither: no retry either,
the patient gets their pay link (as before).

A membership whose cycle is still owed after its due date is **past due**: its date is kept here
(`past_due_refresh`, after a decline, a payment or a write-off) and eligibility reads it
(`past_due_refusal`); what staff and the job do about it is memberships.overdue.

At the passes root because both kinds are charged through passes.charging, which records each
decline here, and redeeming reads the past-due date: memberships sits above them all.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import F, Min, Q

from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core import activity
from carnet.core.errors import CarnetError
from carnet.passes.emails import pass_invoice_declined_email
from carnet.passes.models import CardUpdateRequest, Pass, PassInvoice

log = logging.getLogger(__name__)


# A declined membership cycle may need two steps of memberships': a card update request (a hard
# decline) and a write-off (the last retry failed, when the clinic says so). Memberships charges
# through passes.charging, which records each decline here, so this module cannot import them:
# memberships registers both when passes loads (passes.apps), like scheduling/coverage.py. Asked
# before they are registered, a step fails loudly rather than silently doing nothing.
ASKS = {
    "card_update_request": "memberships.card_requests: email the patient a link to add a new card",
    "cycle_write_off": "memberships.writeoff: write off what a membership cycle still owes",
}
_steps: dict = {}


def membership_steps_register(**steps) -> None:
    if set(steps) != set(ASKS):
        raise ImproperlyConfigured(f"dunning asks memberships for exactly: {', '.join(ASKS)}")
    _steps.update(steps)


def _step(name: str):
    if name not in _steps:
        raise ImproperlyConfigured("memberships has not registered its dunning steps (passes.apps)")
    return _steps[name]


def _ask_for_a_new_card(row: PassInvoice) -> None:
    """A hard decline of a membership cycle: a card update request, in its own transaction after the
    decline's (it locks the pass; the decline held the cycle's row). Its failure is logged, never
    undoing the decline."""
    try:
        with transaction.atomic():
            _step("card_update_request")(
                sold_pass=row.sold_pass,
                actor=None,
                reason=CardUpdateRequest.Reason.HARD_DECLINE,
                note=row.last_error,
            )
    except CarnetError as exc:
        log.warning("card update request for %s not made: %s", row.sold_pass_id, exc.message)


def retry_schedule() -> tuple[int, ...]:
    """Days to wait after the 1st, 2nd, … soft decline before trying again
    (the clinic's setting)."""
    return clinic_get().retry_days() or (1, 3, 7)


def decline_record(*, pk: int, failure, today: dt.date) -> PassInvoice:
    """One automatic charge of the row `pk` was declined (`failure`: the gateway's PaymentFailed):
    count it, schedule the next try (soft) or stop and ask for a new card (hard), tell the patient
    and the clinic. When the last try failed and the clinic writes such cycles off, write it off."""
    schedule = retry_schedule()
    with transaction.atomic():
        row = (
            PassInvoice.objects.select_for_update(of=("self",))
            .select_related("sold_pass")
            .get(pk=pk)
        )
        row.charge_attempts += 1
        needs_patient = failure.code == "authentication_required"
        emailed = needs_patient and bool(
            row.sold_pass.patient.email
        )  # pass_invoice_declined_email tells them
        row.last_error = (
            getattr(failure, "SENT_MESSAGE", failure.message) if emailed else failure.message
        )[:200]
        row.decline_kind = failure.kind
        tries = row.charge_attempts
        row.needs_new_card = (
            failure.hard
        )  # the last decline decides (a new card may decline softly)
        if (
            failure.hard or needs_patient
        ):  # the same card, or the bank without the card holder, cannot work
            row.next_attempt_on = None
        else:
            row.next_attempt_on = (
                today + dt.timedelta(days=schedule[tries - 1]) if tries <= len(schedule) else None
            )
        row.save(
            update_fields=[
                "charge_attempts",
                "last_error",
                "decline_kind",
                "next_attempt_on",
                "needs_new_card",
            ]
        )
        activity.record(
            actor=None,
            verb="card declined",
            obj=row.sold_pass,
            after={
                "cycle": row.seq,
                "kind": failure.kind,
                "reason": row.last_error,
                "next_try": row.next_attempt_on.isoformat() if row.next_attempt_on else None,
            },
        )
        pass_invoice_declined_email(row=row, reason=failure.message, authenticate=needs_patient)
        last_try_failed = not failure.hard and not needs_patient and row.next_attempt_on is None
        membership = row.sold_pass.kind == Pass.Kind.MEMBERSHIP
        if membership:
            past_due_refresh(row.sold_pass_id, today=today)
    if failure.hard and membership:
        _ask_for_a_new_card(row)
    if last_try_failed and membership and clinic_get().dunning_write_off:
        # Its own transaction, after the row's lock is let go:
        # the write-off locks invoice, then pass.
        row = _step("cycle_write_off")(
            actor=None, row=row, reason="The last automatic retry was declined."
        )
    return row


# A row whose invoice still has a balance (issued, not deleted).
OWED = Q(
    invoice__isnull=False,
    invoice__deleted_at__isnull=True,
    invoice__applied_minor__lt=F("invoice__total_minor"),
)


def new_card_given(sold: Pass, *, today: dt.date) -> int:
    """A new card was put on the membership (staff, or the patient's card update): every cycle
    still owed that is not written off is tried on it at the job's next run. Returns how many."""
    owed = PassInvoice.objects.filter(sold_pass=sold, written_off_at__isnull=True).filter(OWED)
    return owed.update(
        next_attempt_on=today, charge_attempts=0, needs_new_card=False, decline_kind=""
    )


# ---------------------------------------------------------------- past due (memberships.overdue)

PAST_DUE_REASON = (
    "Past due: a membership payment has been owed for {days} days (since {since}), so it no longer "
    "covers new bookings. Take the payment (or a new card) first, or override it for a while on "
    "the membership's page (Front Desk with billing and up)."
)


def owed_late(today: dt.date):
    """Cycles still owed after their due date (the day after it at the earliest)."""
    return PassInvoice.objects.filter(
        OWED, written_off_at__isnull=True, due_on__lt=today, sold_pass__kind=Pass.Kind.MEMBERSHIP
    )


def past_due_refresh(pk: int, *, today: dt.date | None = None) -> dt.date | None:
    """Recompute one membership's past-due date (after a decline, a payment or a write-off)."""
    today = today or clinic_today()
    since = owed_late(today).filter(sold_pass_id=pk).aggregate(since=Min("due_on"))["since"]
    Pass.objects.filter(pk=pk).exclude(past_due_since=since).update(past_due_since=since)
    return since


def past_due_days(sold: Pass, *, today: dt.date) -> int:
    """How many days the oldest cycle still owed is past its due date (0: none owed), confirmed
    against the invoices (a desk payment since the last run counts)."""
    if sold.past_due_since is None:
        return 0
    since = owed_late(today).filter(sold_pass_id=sold.pk).aggregate(since=Min("due_on"))["since"]
    return 0 if since is None else (today - since).days


def past_due_refusal(sold: Pass) -> dict | None:
    """The `past_due` reason's fields when this membership may not cover a NEW booking today, else
    None. Free for a membership in good standing (reads the kept date only)."""
    if sold.past_due_since is None:
        return None
    clinic = clinic_get()
    today = clinic_today(clinic)
    if (today - sold.past_due_since).days < clinic.past_due_suspend_days:
        return None  # even the kept (oldest possible) date is not old enough
    if sold.past_due_override_until is not None and today <= sold.past_due_override_until:
        return None
    days = past_due_days(sold, today=today)
    if days < clinic.past_due_suspend_days:
        return None
    return {"days": days, "since": today - dt.timedelta(days=days)}


# ---------------------------------------------------------------- what staff and patients read

PAID, DUE, RETRYING, PAST_DUE, WRITTEN_OFF, NEW_CARD = (
    "paid",
    "due",
    "retrying",
    "past_due",
    "written_off",
    "needs_new_card",
)


@dataclass(frozen=True)
class BillingState:
    code: str  # one of the names above (the API's value)
    label: str  # what staff and patients read
    next_try: dt.date | None = None


def cycle_state(row: PassInvoice, *, today: dt.date) -> BillingState | None:
    """A cycle's billing state: paid, due, retrying (next on …), past due (or waiting for a new
    card), written off. None for a cycle not invoiced (skipped, or later)."""
    invoice = row.invoice if row.invoice_id else None
    if invoice is None or invoice.deleted_at:
        return None
    if row.written_off_at:
        return BillingState(WRITTEN_OFF, "Written off")
    if invoice.balance_minor <= 0:
        return BillingState(PAID, "Paid")
    if row.next_attempt_on:
        if not row.charge_attempts:
            return BillingState(
                DUE, f"Due — card charged on {row.next_attempt_on:%Y-%m-%d}", row.next_attempt_on
            )
        return BillingState(
            RETRYING, f"Retrying (next on {row.next_attempt_on:%Y-%m-%d})", row.next_attempt_on
        )
    if row.needs_new_card:
        return BillingState(NEW_CARD, "Past due — the card was refused; a new card is needed")
    if row.charge_attempts or row.due_on < today:
        return BillingState(PAST_DUE, "Past due")
    return BillingState(DUE, "Due")


def cycle_states(rows, *, today: dt.date, last: int = 3) -> list[tuple[PassInvoice, BillingState]]:
    """The billing state of the `last` invoiced cycles, newest first (the portal's list)."""
    states = [(row, cycle_state(row, today=today)) for row in sorted(rows, key=lambda r: -r.seq)]
    return [(row, state) for row, state in states if state is not None][:last]
