"""The activity log: every service that changes something calls record()."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from django.db import models

from . import bulk, clock
from .models import ActivityLog


def _plain(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(obj: models.Model, *, exclude: tuple[str, ...] = ("password",)) -> dict:
    """The object's field values as JSON-ready data (many-to-many as sorted primary keys)."""
    data = {}
    for field in obj._meta.concrete_fields:
        if field.name in exclude:
            continue
        data[field.attname] = _plain(getattr(obj, field.attname))
    if obj.pk:
        for field in obj._meta.many_to_many:
            data[field.name] = sorted(getattr(obj, field.name).values_list("pk", flat=True))
    return data


def _values(*, actor, verb: str, obj: models.Model, before: dict | None, after: dict | None, at) -> dict:
    user = actor if getattr(actor, "is_authenticated", False) else None
    return dict(
        at=at,
        actor_id=user.pk if user else None,
        actor_name=(user.get_full_name() or user.get_username()) if user else "system",
        verb=verb,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        before=before,
        after=after,
    )


def record(*, actor, verb: str, obj: models.Model, before: dict | None = None, after: dict | None = None) -> ActivityLog:
    entry = ActivityLog(**_values(actor=actor, verb=verb, obj=obj, before=before, after=after, at=clock.now()))
    entry.save(force_insert=True)
    return entry


def record_many(*, actor, verb: str, objs: list[models.Model]) -> None:
    """`record` with after=snapshot for many new objects in one insert (the billing job)."""
    at = clock.now()
    bulk.insert_rows(ActivityLog, (_values(actor=actor, verb=verb, obj=o, before=None, after=snapshot(o), at=at)
                                   for o in objs))
