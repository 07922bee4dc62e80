"""What input Carnet accepts at all, whatever the page or endpoint: amounts a clinic could really
charge, dates in a sane range, text without NUL and within its column. Each refusal is a
ValidationFailed naming the field and the limit, so the user gets a 4xx with a sentence instead of
a database error (500) or a silently shortened value."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings

from .errors import ValidationFailed
from .money import Money, exponent

# Years a date may have: far enough for dates of birth and long-lived passes, near enough that
# every time-zone conversion and "+ N days" stays inside what Python and the databases can hold.
FIRST_YEAR, LAST_YEAR = 1900, 2200


def _label(field: str) -> str:
    return field.replace("_minor", "").replace("_id", "").replace("_", " ")


def _refuse(field: str, problem: str) -> ValidationFailed:
    return ValidationFailed(
        f"Please correct {_label(field)}: {problem}",
        fields={field: [problem[:1].upper() + problem[1:]]},
    )


def max_minor(kind: str, currency: str) -> int:
    """The largest line total or payment, in minor units of `currency` (settings MAX_LINE_AMOUNT and
    MAX_PAYMENT_AMOUNT, in major units, default 1,000,000)."""
    major = {"line": settings.MAX_LINE_AMOUNT, "payment": settings.MAX_PAYMENT_AMOUNT}[kind]
    return int(Decimal(major).scaleb(exponent(currency)))


def amount_check(minor: int, *, field: str, kind: str, currency: str) -> int:
    """Refuse an amount above the clinic's limit for a line ("line") or a payment ("payment")."""
    limit = max_minor(kind, currency)
    if abs(minor) > limit:
        what = "a line" if kind == "line" else "a payment"
        raise _refuse(
            field,
            f"{Money(limit, currency)} is the most {what} can be; "
            f"split it, or ask an administrator to raise the limit.",
        )
    return minor


def date_check(value: dt.date | dt.datetime | None, *, field: str) -> dt.date | dt.datetime | None:
    if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise _refuse(field, f"give a date between {FIRST_YEAR} and {LAST_YEAR}.")
    return value


def day_from_text(text: str | None, *, field: str = "date") -> dt.date | None:
    """A day from a query string (`?date=2026-05-01`): None when absent,
    refused when not a day in range."""
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise _refuse(field, f"give a date like 2026-05-01, not “{text[:40]}”.") from None
    return date_check(day, field=field)


def text_check(value: str, *, field: str, limit: int) -> str:
    """Refuse NUL (PostgreSQL cannot store it) and text longer than its column,
    instead of cutting it."""
    if "\x00" in value:
        raise _refuse(field, "null characters are not allowed.")
    if len(value) > limit:
        raise _refuse(field, f"at most {limit} characters (this is {len(value)}).")
    return value


def column_check(model, **values: str | None) -> None:
    """text_check for each value against its model field's own max_length (a value of None: not
    given; a TextField: no length limit, NUL still refused), so the limit named is the column's."""
    for name, value in values.items():
        if value is not None:
            limit = model._meta.get_field(name).max_length
            text_check(value, field=name, limit=len(value) if limit is None else limit)
