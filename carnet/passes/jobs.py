"""The clinic's daily passes job: membership cycles, instalments and card charges, membership
revenue by day, expiry, expiry reminders, and purging expired idempotency keys. Run it from cron or a
systemd timer (`manage.py passes_daily`), or enqueue `passes_daily_task` on the background worker.
Every part is idempotent, so running it twice, late or concurrently does nothing twice."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django_tasks import task

from carnet.clinic.selectors import clinic_get
from carnet.core import clock
from carnet.core.idempotency import idempotency_records_purge

from .emails import expiry_reminder_email
from .ending import passes_expire
from .cycles import memberships_recognise
from .instalments import instalments_bill
from .cycle_billing import cycles_issue
from .memberships import memberships_end
from .models import Pass


def expiry_reminders_send(*, today: dt.date | None = None) -> int:
    """Email each patient whose pass expires within the clinic's reminder window, once per expiry date."""
    clinic = clinic_get()
    if not clinic.pass_expiry_reminder_days:
        return 0
    today = today or clock.today(clinic.time_zone)
    horizon = today + dt.timedelta(days=clinic.pass_expiry_reminder_days)
    sent = 0
    due = Pass.objects.filter(status=Pass.Status.ACTIVE, expires_on__gte=today, expires_on__lte=horizon,
                              kind=Pass.Kind.PACKAGE)
    for sold in due.select_related("patient").order_by("pk"):
        if sold.expiry_reminded_on == sold.expires_on or not sold.patient.email or not sold.remaining:
            continue
        with transaction.atomic():
            # The conditional update claims the reminder, so a concurrent run does not send it too.
            if Pass.objects.filter(pk=sold.pk).exclude(expiry_reminded_on=sold.expires_on).update(
                    expiry_reminded_on=sold.expires_on):
                expiry_reminder_email(sold=sold)
                sent += 1
    return sent


def passes_daily(*, today: dt.date | None = None) -> dict:
    """In order: invoice due membership cycles, invoice due instalments and charge cards on file,
    earn membership fees to date, end finished memberships, expire packages, send reminders,
    forget idempotency keys older than IDEMPOTENCY_KEY_HOURS."""
    today = today or clock.today(clinic_get().time_zone)
    cycles = cycles_issue(today=today)
    run = instalments_bill(today=today)
    return {"cycles_issued": len(cycles), "instalments_issued": len(run.issued), "charged": len(run.charged),
            "declined": len(run.declined), "membership_revenue_recognised_minor": memberships_recognise(today=today),
            "memberships_ended": memberships_end(today=today), "passes_expired": passes_expire(today=today),
            "expiry_reminders": expiry_reminders_send(today=today),
            "idempotency_keys_purged": idempotency_records_purge(now=clock.now())}


@task()
def passes_daily_task() -> dict:
    return passes_daily()
