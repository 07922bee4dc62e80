"""The base of every API schema: strict money and sane values before any service sees them.

`*_minor` fields take a JSON integer only (not true, "100", 1.0 or "1_000", which pydantic would
otherwise coerce); every integer fits the database's 64-bit columns; every date is between 1900
and 2200; no text holds NUL. Each refusal is a 422 naming the field."""

from __future__ import annotations

import datetime as dt

from django.http import HttpResponse
from ninja import Schema as NinjaSchema
from pydantic import field_validator

from .errors import ValidationFailed
from .limits import FIRST_YEAR, LAST_YEAR
from .money import MAX_MINOR


class Schema(NinjaSchema):
    @field_validator("*", mode="before")
    @classmethod
    def _strict_input(cls, value, info):
        if info.field_name.endswith("_minor") and value is not None:
            if type(value) is not int:
                raise ValueError("give whole minor units as a JSON number, e.g. 1250 for 12.50")
        if type(value) is int and not -MAX_MINOR <= value <= MAX_MINOR:
            raise ValueError("this number is too large")
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("null characters are not allowed")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _sane_dates(cls, value):
        if isinstance(value, dt.date) and not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise ValueError(f"give a date between {FIRST_YEAR} and {LAST_YEAR}")
        return value


def patient_view(schema: type[NinjaSchema], obj):
    """`obj` serialised with a patient-facing schema, for an endpoint that answers
    staff with a fuller one.

    The endpoint declares both (`response=StaffOut | PatientOut`) so the OpenAPI document shows
    each, but a union would hand a patient the first schema that fits, staff-only fields included:
    the patient's answer is therefore built here, with only the patient schema's fields."""

    return HttpResponse(schema.from_orm(obj).model_dump_json(), content_type="application/json")


def one_in_body(model, pk: int | None, field: str, label: str):
    """The `model` row an id in a request body names; None for no id. An unknown id is a 422
    naming the field (`field`), the body's mistake rather than a missing address (404)."""
    if pk is None:
        return None
    try:  # by its key: `.get()`, not `.first()`, whose ORDER BY every request would compile
        return model.objects.get(pk=pk)
    except model.DoesNotExist:
        raise ValidationFailed(f"No {label} with id {pk}.", fields={field: ["Unknown."]}) from None
