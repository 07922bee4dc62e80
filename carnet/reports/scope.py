"""Who sees which report rows (SPEC 8, 10): whole-clinic reports for Administrative/All Billing
and up; lower levels see only their own billing and compensation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from carnet.clinic.selectors import clinic_today
from carnet.core.errors import ValidationFailed
from carnet.core.limits import date_check
from carnet.core.permissions import Action, can, require, staff_of


def report_staff_scope(actor) -> int | None:
    """None = the whole clinic; otherwise the staff id whose own rows the actor may see."""
    if can(actor, Action.REPORTS_CLINIC):
        return None
    require(actor, Action.REPORTS_OWN)
    return staff_of(actor).pk


@dataclass(frozen=True)
class Period:
    start: dt.date  # inclusive
    end: dt.date  # inclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def date_param(value, field: str) -> dt.date | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.date):
        return value
    try:
        day = dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValidationFailed(
            f"“{value}” is not a date; use YYYY-MM-DD.", fields={field: ["Use YYYY-MM-DD."]}
        ) from None
    return date_check(day, field=field)


def period_from(start=None, end=None) -> Period:
    """A date range from filters; default: this month so far, in the clinic's time zone."""
    today = clinic_today()
    start_date = date_param(start, "start") or today.replace(day=1)
    end_date = date_param(end, "end") or today
    if end_date < start_date:
        raise ValidationFailed(
            "The end date is before the start date.", fields={"end": ["Before the start."]}
        )
    if (end_date - start_date).days > 3700:
        raise ValidationFailed(
            "Choose a range of at most ten years.", fields={"start": ["Too long."]}
        )
    return Period(start_date, end_date)
