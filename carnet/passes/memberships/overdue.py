"""Overdue states of memberships (issue 22 point 2, Kill Bill style), per the clinic's settings:

- **past due**: a cycle's invoice is still owed after its due date (retries included; from the
  day after it). The due
  date of the oldest such cycle is kept on the membership (`Pass.past_due_since`) by the daily job,
  by a declined or successful automatic charge and by a write-off, so the eligibility check reads
  it with the pass — no extra query while a membership is in good standing;
- **suspended** after `Clinic.past_due_suspend_days` (default 14): it no longer covers NEW
  bookings (code `past_due` in Explain and the API). Bookings it already covers stay covered.
  Staff may override for a while (`membership_past_due_override`, logged);
- after `Clinic.past_due_end_days` (default 45) the clinic's choice: cancel the membership (the
  job does it, logged), or keep it suspended until it is paid.

A payment taken at the desk is not seen here until the next run, so whenever the kept date says
"suspended" the check confirms it with one query (`past_due_days`). Keeping the date and the check
eligibility reads are in passes.dunning, below redeeming and the charging that refreshes it.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Count, F, Min, Sum

from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core import activity, clock
from carnet.core.errors import ValidationFailed
from carnet.core.permissions import Action, require
from carnet.passes.dunning import owed_late, past_due_days
from carnet.passes.locks import lock_pass
from carnet.passes.memberships.card_requests import card_request_label, card_requests_open_of
from carnet.passes.models import Pass, PassInvoice, Redemption
from carnet.passes.redeeming.redemption import redemption_void


def overdue_state(sold: Pass, *, today: dt.date | None = None) -> dict | None:
    """What staff and the patient read about a past-due membership,
    or None when nothing is owed late."""
    if sold.kind != Pass.Kind.MEMBERSHIP or sold.past_due_since is None:
        return None
    clinic = clinic_get()
    today = today or clinic_today(clinic)
    days = past_due_days(sold, today=today)
    if not days:
        return None
    suspended = days >= clinic.past_due_suspend_days
    overridden = (
        suspended
        and sold.past_due_override_until is not None
        and today <= sold.past_due_override_until
    )
    if overridden:
        label = (
            f"Past due {days} days — covering bookings until "
            f"{sold.past_due_override_until:%Y-%m-%d} (override)"
        )
    elif suspended:
        label = f"Past due {days} days — not covering new bookings"
    else:
        label = (
            f"Past due {days} day{'s' if days != 1 else ''} — stops covering new bookings after "
            f"{clinic.past_due_suspend_days} days"
        )
    return {
        "days": days,
        "suspended": suspended and not overridden,
        "overridden": overridden,
        "label": label,
    }


@transaction.atomic
def membership_past_due_override(*, actor, sold_pass: Pass, until: dt.date) -> Pass:
    """Staff let a suspended membership cover new bookings again until `until` (at most 31 days
    ahead), written to the activity log."""
    require(actor, Action.SELL)
    today = clinic_today()
    if not today <= until <= today + dt.timedelta(days=31):
        raise ValidationFailed(
            "Choose a date from today to 31 days ahead.", fields={"until": ["Out of range."]}
        )
    sold = lock_pass(sold_pass.pk)
    if sold.kind != Pass.Kind.MEMBERSHIP or sold.status != Pass.Status.ACTIVE:
        raise ValidationFailed(
            f"{sold.name} is not an active membership.", fields={"pass_id": ["Not active."]}
        )
    before = activity.snapshot(sold)
    sold.past_due_override_until = until
    sold.save(update_fields=["past_due_override_until"])
    activity.record(
        actor=actor,
        verb="past due override",
        obj=sold,
        before=before,
        after={**activity.snapshot(sold), "days_past_due": past_due_days(sold, today=today)},
    )
    return sold


def memberships_overdue(*, today: dt.date | None = None) -> dict:
    """The daily job's step: keep every membership's past-due date, then cancel those past the
    clinic's last threshold when the clinic chose to cancel. Idempotent."""
    clinic = clinic_get()
    today = today or clinic_today(clinic)
    oldest = dict(
        owed_late(today)
        .filter(sold_pass__status=Pass.Status.ACTIVE)
        .order_by()
        .values("sold_pass_id")
        .annotate(since=Min("due_on"))
        .values_list("sold_pass_id", "since")
    )
    changed = (
        Pass.objects.filter(past_due_since__isnull=False)
        .exclude(pk__in=oldest)
        .update(past_due_since=None)
    )
    for pk, since in oldest.items():
        changed += (
            Pass.objects.filter(pk=pk).exclude(past_due_since=since).update(past_due_since=since)
        )
    cancelled = 0
    if clinic.past_due_end_action == clinic.PastDueEndAction.CANCEL:
        limit = today - dt.timedelta(days=clinic.past_due_end_days)
        for pk in sorted(pk for pk, since in oldest.items() if since <= limit):
            cancelled += _cancel_past_due(pk, today=today, days=clinic.past_due_end_days)
    return {"changed": changed, "cancelled": cancelled}


@transaction.atomic
def _cancel_past_due(pk: int, *, today: dt.date, days: int) -> int:
    """End a membership past due too long: no more cycles or charges; the uses of bookings after
    today are voided; the invoices still owed stay owed (collect or write them off)."""
    sold = lock_pass(pk)
    if sold.status != Pass.Status.ACTIVE or sold.past_due_since is None:
        return 0
    if sold.past_due_override_until is not None and today <= sold.past_due_override_until:
        return 0
    before = activity.snapshot(sold)
    for redemption in sold.redemptions.filter(
        status=Redemption.Status.RESERVED, visit_date__gt=today
    ):
        redemption_void(redemption)
    sold.pass_invoices.filter(invoice__isnull=True, period_start__gt=today).delete()
    PassInvoice.objects.filter(sold_pass=sold).update(next_attempt_on=None)
    sold.status, sold.ended_at, sold.ends_after = Pass.Status.CANCELLED, clock.now(), today
    sold.save(update_fields=["status", "ended_at", "ends_after"])
    activity.record(
        actor=None,
        verb="cancelled (past due)",
        obj=sold,
        before=before,
        after={**activity.snapshot(sold), "reason": f"Past due for {days} days or more."},
    )
    return 1


def past_due_memberships(
    *,
    today: dt.date | None = None,
    patient_ids=None,
    sold_by_id: int | None = None,
    limit: int | None = None,
    clinic=None,
) -> list[dict]:
    """Memberships (not deleted) owing a cycle past its due date, most days past due first: what the
    front desk's alerts and the Past due report show, with the card update request still open
    ("Card update requested (sent …)", issue 22 point 3). One query when none is past due, four
    else."""

    clinic = clinic or clinic_get()
    today = today or clinic_today(clinic)
    owed = owed_late(today).exclude(sold_pass__status=Pass.Status.DELETED)
    if patient_ids is not None:
        owed = owed.filter(sold_pass__patient_id__in=list(patient_ids))
    if sold_by_id is not None:
        owed = owed.filter(sold_pass__sold_by_id=sold_by_id)
    groups = list(
        owed.order_by()
        .values("sold_pass_id")
        .annotate(
            cycles=Count("id"),
            amount=Sum(F("invoice__total_minor") - F("invoice__applied_minor")),
            since=Min("due_on"),
            next_try=Min("next_attempt_on"),
        )
        .order_by("since", "sold_pass_id")
    )
    if limit is not None:
        groups = groups[:limit]
    pks = [g["sold_pass_id"] for g in groups]
    passes = Pass.objects.select_related("patient", "card").in_bulk(pks)
    last, new_card = {}, set()
    for pk, reason, needs in (
        owed.filter(sold_pass_id__in=pks)
        .exclude(last_error="")
        .order_by("seq")
        .values_list("sold_pass_id", "last_error", "needs_new_card")
    ):
        last[pk] = reason  # the latest cycle's reason wins
        if needs:
            new_card.add(pk)
    asked = {req.sold_pass_id: card_request_label(req) for req in card_requests_open_of(pks)}
    out = []
    for g in groups:
        sold = passes[g["sold_pass_id"]]
        days = (today - g["since"]).days
        suspended = days >= clinic.past_due_suspend_days and not (
            sold.past_due_override_until is not None and today <= sold.past_due_override_until
        )
        out.append(
            {
                "sold": sold,
                "patient": sold.patient,
                "cycles": g["cycles"],
                "amount_minor": int(g["amount"]),
                "since": g["since"],
                "days": days,
                "next_try": g["next_try"],
                "last_reason": last.get(sold.pk, ""),
                "needs_new_card": sold.pk in new_card,
                "card_request": asked.get(sold.pk, ""),
                "suspended": suspended and sold.status == Pass.Status.ACTIVE,
                "can_retry": sold.status == Pass.Status.ACTIVE and sold.card_id is not None,
            }
        )
    return out
