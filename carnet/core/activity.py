"""The activity log: every service that changes something calls record()."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connection, models

from . import bulk, clock, statements
from .models import ActivityLog


def _plain(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(
    obj: models.Model, *, exclude: tuple[str, ...] = ("password",), m2m: dict | None = None
) -> dict:
    """The object's field values as JSON-ready data (many-to-many as sorted primary keys; `m2m`
    gives them when the caller read them for many objects at once)."""
    data = {}
    for field in obj._meta.concrete_fields:
        if field.name in exclude:
            continue
        data[field.attname] = _plain(getattr(obj, field.attname))
    if obj.pk:
        for field in obj._meta.many_to_many:
            data[field.name] = (
                m2m[field.name]
                if m2m is not None
                else sorted(getattr(obj, field.name).values_list("pk", flat=True))
            )
    return data


def _m2m_of(objs: list[models.Model]) -> dict[int, dict[str, list]]:
    """pk -> {many-to-many field: sorted related pks} for objects of one model, one query per field
    and chunk (snapshot's own query per object was most of an import's time)."""
    found: dict[int, dict[str, list]] = {o.pk: {} for o in objs}
    for field in objs[0]._meta.many_to_many:
        through = field.remote_field.through
        source, target = f"{field.m2m_field_name()}_id", f"{field.m2m_reverse_field_name()}_id"
        related: dict[int, list] = {}
        for part in bulk.chunks(list(found)):
            for a, b in through.objects.filter(**{f"{source}__in": part}).values_list(
                source, target
            ):
                related.setdefault(a, []).append(b)
        for pk, fields in found.items():
            fields[field.name] = sorted(related.get(pk, []))
    return found


def _values(
    *, actor, verb: str, obj: models.Model, before: dict | None, after: dict | None, at
) -> dict:
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


# The rows `together` holds back, and the savepoints open where it began.
_held: ContextVar[tuple[list, int] | None] = ContextVar("activity_held", default=None)


@contextmanager
def together():
    """The rows recorded inside are inserted in one statement at its end (an arrival records its
    invoices and itself), in the order recorded; inside another `together`, at that one's end. A
    row recorded below a savepoint opened inside it is inserted at once, so that rolling back to
    the savepoint takes it back too. Nothing is inserted when the block raises, or when it ends
    in a transaction marked for rollback (a keyed API request refused: its rows go with it)."""
    if _held.get() is not None:
        yield
        return
    rows: list[dict] = []
    token = _held.set((rows, len(connection.savepoint_ids)))
    try:
        yield
    finally:
        _held.reset(token)
    if rows and not connection.needs_rollback:
        bulk.insert_rows(ActivityLog, rows)


def held_unsent() -> tuple[str, list] | None:
    """The rows the enclosing `together` holds, as their INSERT and its parameters, no longer held:
    for a caller that sends it as a WITH of its own statement before the block ends (PostgreSQL;
    the idempotency record's insert at a keyed API request's end, one statement fewer). None, the
    rows staying held, when there are none, a savepoint is open since the block began, or the
    insert is not compiled yet (statements.Insert.unsent)."""
    held = _held.get()
    if (
        held is None
        or not held[0]
        or connection.vendor != "postgresql"
        or any(sid is not None for sid in connection.savepoint_ids[held[1] :])
    ):
        return None
    found = statements.inserter(ActivityLog).unsent(held[0], connection)
    if found is not None:
        held[0].clear()
    return found


def _hold(rows: list[dict]) -> bool:
    """Keep `rows` for the enclosing `together`, if there is one and no savepoint opened since."""
    held = _held.get()
    if held is None or any(sid is not None for sid in connection.savepoint_ids[held[1] :]):
        return False
    held[0].extend(rows)
    return True


def record(
    *, actor, verb: str, obj: models.Model, before: dict | None = None, after: dict | None = None
) -> None:
    values = _values(actor=actor, verb=verb, obj=obj, before=before, after=after, at=clock.now())
    if not _hold([values]):
        bulk.insert_rows(ActivityLog, [values])


def record_many(*, actor, verb: str, objs: list[models.Model]) -> None:
    """`record` with after=snapshot for many new objects in one insert (the billing job)."""
    at = clock.now()
    m2m: dict[type, dict] = {}
    for model in {type(o) for o in objs}:
        if model._meta.many_to_many:
            m2m[model] = _m2m_of([o for o in objs if type(o) is model and o.pk])
    rows = [
        _values(
            actor=actor,
            verb=verb,
            obj=o,
            before=None,
            at=at,
            after=snapshot(o, m2m=m2m[type(o)].get(o.pk) if type(o) in m2m else None),
        )
        for o in objs
    ]
    if not _hold(rows):
        bulk.insert_rows(ActivityLog, rows)
