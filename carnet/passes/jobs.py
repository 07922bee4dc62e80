"""The clinic's daily passes job: membership cycles, instalments and card charges, membership
revenue by day, expiry, expiry reminders, and purging expired idempotency keys. Run it from cron or
a systemd timer (`manage.py passes_daily`), or enqueue `passes_daily_task` on the background worker.
Every part is idempotent, so running it twice, late or concurrently does nothing twice, and every
part runs even if another fails (the failure is logged and reported in the result's "errors")."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django_tasks import task

from carnet.billing.card_attempts import attempts_reconcile
from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core import clock
from carnet.core.idempotency import idempotency_records_purge
from carnet.ledger.services import balance_checkpoints_advance
from carnet.passes.charging import pass_invoices_bill
from carnet.passes.cycles import memberships_recognise
from carnet.passes.memberships.charge_preview import charges_preview_email_send
from carnet.passes.memberships.cycle_billing import cycles_issue
from carnet.passes.memberships.overdue import memberships_overdue
from carnet.passes.memberships.plan_change import plan_changes_apply
from carnet.passes.memberships.services import memberships_end
from carnet.passes.packages.ending import passes_expire

from .emails import expiry_reminder_email
from .models import Pass

log = logging.getLogger(__name__)


def expiry_reminders_send(*, today: dt.date | None = None) -> int:
    """Email each patient whose pass expires within the clinic's reminder window,
    once per expiry date."""
    clinic = clinic_get()
    if not clinic.pass_expiry_reminder_days:
        return 0
    today = today or clinic_today(clinic)
    horizon = today + dt.timedelta(days=clinic.pass_expiry_reminder_days)
    sent = 0
    due = Pass.objects.filter(
        status=Pass.Status.ACTIVE,
        expires_on__gte=today,
        expires_on__lte=horizon,
        kind=Pass.Kind.PACKAGE,
    )
    for sold in due.select_related("patient").order_by("pk"):
        if (
            sold.expiry_reminded_on == sold.expires_on
            or not sold.patient.email
            or not (sold.value_left if sold.face_value_minor is not None else sold.remaining)
        ):
            continue
        with transaction.atomic():
            # The conditional update claims the reminder, so a concurrent run does not send it too.
            if (
                Pass.objects.filter(pk=sold.pk)
                .exclude(expiry_reminded_on=sold.expires_on)
                .update(expiry_reminded_on=sold.expires_on)
            ):
                expiry_reminder_email(sold=sold)
                sent += 1
    return sent


def passes_daily(*, today: dt.date | None = None) -> dict:
    """In order: reconcile card attempts left without an answer, invoice due membership cycles,
    invoice due instalments and charge cards on file, keep past-due memberships' state (and cancel
    those past due too long, if the clinic says so), earn membership fees to date, end finished
    memberships, expire packages, send reminders, email tomorrow's charges to the owner (opt-in),
    forget idempotency keys older than IDEMPOTENCY_KEY_HOURS,
    advance the ledger's balance checkpoints."""
    today = today or clinic_today()
    result: dict = {"errors": []}

    def part(name, fn):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one part's failure must not stop revenue, expiry or reminders
            log.exception("passes_daily: %s failed", name)
            result["errors"].append(f"{name}: {exc}")
            return None

    reconciled = part("payments_reconcile", attempts_reconcile) or {}
    result["card_attempts_reconciled"] = reconciled.get("succeeded", 0) + reconciled.get(
        "failed", 0
    )
    # Plan changes scheduled for a cycle that starts today, before that cycle is invoiced
    # (memberships/plan_change.py).
    result["plan_changes_applied"] = (
        part("plan_changes_apply", lambda: plan_changes_apply(today=today)) or 0
    )
    result["cycles_issued"] = len(part("cycles_issue", lambda: cycles_issue(today=today)) or [])
    run = part("pass_invoices_bill", lambda: pass_invoices_bill(today=today))
    result.update(
        {
            "instalments_issued": len(run.issued) if run else 0,
            "charged": len(run.charged) if run else 0,
            "declined": len(run.declined) if run else 0,
        }
    )
    overdue = part("memberships_overdue", lambda: memberships_overdue(today=today)) or {}
    result["memberships_cancelled_past_due"] = overdue.get("cancelled", 0)
    result["membership_revenue_recognised_minor"] = (
        part("memberships_recognise", lambda: memberships_recognise(today=today)) or 0
    )
    result["memberships_ended"] = part("memberships_end", lambda: memberships_end(today=today)) or 0
    result["passes_expired"] = part("passes_expire", lambda: passes_expire(today=today)) or 0
    result["expiry_reminders"] = (
        part("expiry_reminders", lambda: expiry_reminders_send(today=today)) or 0
    )
    # After today's charges: tomorrow's, for the owner to fix a card before it
    # fails (when opted in).
    result["charges_previewed"] = (
        part("charges_preview", lambda: charges_preview_email_send(today=today)) or 0
    )
    result["idempotency_keys_purged"] = (
        part("idempotency_purge", lambda: idempotency_records_purge(now=clock.now())) or 0
    )
    # Last, after the day's postings: the ledger's liability guard then reads only what follows.
    result["ledger_checkpoints_advanced"] = (
        part("ledger_checkpoints", balance_checkpoints_advance) or 0
    )
    return result


@task()
def passes_daily_task() -> dict:
    return passes_daily()
