"""Breaks: time a practitioner is not bookable. Availability leaves them out and
booking refuses them."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from carnet.core import activity
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.limits import column_check
from carnet.people.models import StaffMember

from .access import schedule_require
from .locks import lock_practitioners
from .models import Appointment, Break, Status


@transaction.atomic
def break_create(
    *,
    actor,
    practitioner: StaffMember,
    location,
    start: dt.datetime,
    end: dt.datetime,
    reason: str = "",
) -> Break:
    schedule_require(actor, practitioner_id=practitioner.pk, location_id=location.pk)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed(
            "Give the times with their UTC offset.", fields={"start": ["Include a UTC offset."]}
        )
    if end <= start:
        raise ValidationFailed(
            "A break must end after it starts.", fields={"end": ["After the start."]}
        )
    reason = (reason or "").strip()
    column_check(Break, reason=reason)  # too long is refused naming the limit, never cut
    lock_practitioners([practitioner.pk])
    booked = (
        Appointment.objects.filter(practitioner=practitioner, start__lt=end, end__gt=start)
        .exclude(status=Status.CANCELLED)
        .first()
    )
    if booked is not None:
        raise Conflict(
            f"{practitioner} has an appointment then ({booked}). Move it first, "
            "or choose another time.",
            code="break_overlaps_appointment",
        )
    item = Break.objects.create(
        practitioner=practitioner, location=location, start=start, end=end, reason=reason
    )
    activity.record(actor=actor, verb="created", obj=item, after=activity.snapshot(item))
    return item


@transaction.atomic
def break_delete(*, actor, item: Break) -> None:
    schedule_require(actor, practitioner_id=item.practitioner_id, location_id=item.location_id)
    activity.record(actor=actor, verb="deleted", obj=item, before=activity.snapshot(item))
    item.delete()
