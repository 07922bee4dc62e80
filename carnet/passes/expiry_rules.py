"""Pass expiry: the default expiry date from a purchase date, and the clinic's rule (SPEC 9.10).

A pass covers visits on or before its `expires_on`. The clinic may forbid expiry (passes never
expire) or require a minimum: a pass may expire no sooner than `pass_expiry_minimum_days` after
its purchase date. The template form, the sale and the per-package expiry edit all call
`expiry_allowed()`, so the rule is enforced in one place.
"""

from __future__ import annotations

import calendar
import datetime as dt

from carnet.clinic.models import Clinic
from carnet.clinic.selectors import clinic_get
from carnet.core.errors import ValidationFailed

Rule = Clinic.PassExpiryRule


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day of the month `months` later, clamped to the month's end (31 Jan + 1 = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))




def expiry_date(*, purchase_date: dt.date, value: int | None, unit: str) -> dt.date | None:
    """The default expiry of a pass bought on `purchase_date`: `value` `unit`s later; None = never.

    Days and weeks add plainly; months and years keep the day of the month, clamped to the month's
    end (a pass bought 31 January for one month expires 28 February, or 29 in a leap year)."""
    if value is None:
        return None
    if unit == "days":
        return purchase_date + dt.timedelta(days=value)
    if unit == "weeks":
        return purchase_date + dt.timedelta(weeks=value)
    if unit == "months":
        return add_months(purchase_date, value)
    if unit == "years":
        return add_months(purchase_date, 12 * value)
    raise ValidationFailed(f"“{unit}” is not an expiry unit; use days, weeks, months or years.",
                           fields={"expiry_unit": ["Use days, weeks, months or years."]})


def shortest_duration_days(*, value: int, unit: str) -> int:
    """The fewest days `value` `unit`s can last, whatever the purchase date.

    Months and years vary with the start (1 month is 28 to 31 days; 12 months 365 or 366), so a
    template's expiry is checked against the clinic's minimum at its shortest: every start date of
    a four-year leap cycle is tried, which covers every month length and 29 February."""
    if unit in ("days", "weeks"):
        return value * (7 if unit == "weeks" else 1)
    start = dt.date(2027, 1, 1)
    return min((expiry_date(purchase_date=d, value=value, unit=unit) - d).days
               for d in (start + dt.timedelta(days=i) for i in range(4 * 366)))


def _minimum_message(clinic: Clinic) -> str:
    return (f"The clinic's expiry rule requires a pass to last at least {clinic.pass_expiry_minimum_days} days "
            "from its purchase date.")


def forbidden_message() -> str:
    return "The clinic's expiry rule forbids expiry: passes never expire. Clear the expiry."


def expiry_allowed(*, purchase_date: dt.date, expires_on: dt.date | None, clinic: Clinic | None = None,
                   field: str = "expires_on") -> None:
    """Raise ValidationFailed (naming `field`) if the clinic's rule does not allow this expiry date."""
    if expires_on is None:
        return
    clinic = clinic or clinic_get()
    if expires_on < purchase_date:
        raise ValidationFailed("A pass cannot expire before its purchase date.",
                               fields={field: ["Must be on or after the purchase date."]})
    if clinic.pass_expiry_rule == Rule.FORBIDDEN:
        raise ValidationFailed(forbidden_message(), fields={field: ["The clinic's rule forbids expiry."]})
    if clinic.pass_expiry_rule == Rule.MINIMUM and (expires_on - purchase_date).days < clinic.pass_expiry_minimum_days:
        earliest = purchase_date + dt.timedelta(days=clinic.pass_expiry_minimum_days)
        raise ValidationFailed(f"{_minimum_message(clinic)} Choose {earliest.isoformat()} or later, or no expiry.",
                               fields={field: [_minimum_message(clinic)]})


def template_expiry_allowed(*, value: int | None, unit: str, clinic: Clinic | None = None) -> None:
    """A template's default expiry against the clinic's rule, at its shortest (see above)."""
    if value is None:
        return
    clinic = clinic or clinic_get()
    if clinic.pass_expiry_rule == Rule.FORBIDDEN:
        raise ValidationFailed(forbidden_message(), fields={"expiry_value": ["The clinic's rule forbids expiry."]})
    if clinic.pass_expiry_rule == Rule.MINIMUM:
        shortest = shortest_duration_days(value=value, unit=unit)
        if shortest < clinic.pass_expiry_minimum_days:
            raise ValidationFailed(
                f"{_minimum_message(clinic)} {value} {unit} can be as short as {shortest} days; choose a longer "
                "expiry, or none.", fields={"expiry_value": [_minimum_message(clinic)]})
