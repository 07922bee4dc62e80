"""core.bulk.insert: big batches go in by COPY on PostgreSQL (bulk_create elsewhere) and come back
exactly as bulk_create would have written them, ids included."""

import datetime as dt

import pytest
from django.db import connection

from carnet.core import bulk, clock
from carnet.core.models import ActivityLog

pytestmark = pytest.mark.django_db


# One instant for every call: two calls a second apart (a loaded machine) must
# still write the same rows.
AT = clock.now().replace(microsecond=123456)


def _rows(n: int, start: int) -> list[ActivityLog]:
    at = AT
    return [
        ActivityLog(
            at=at + dt.timedelta(seconds=i),
            actor=None,
            actor_name=f"job é{i}",
            verb="created",
            object_type="billing.invoice",
            object_id=str(start + i),
            object_repr=f"Invoice #{i}\ttab",
            before=None if i % 2 else {"n": i},
            after={"total_minor": i * 100, "notes": "a \\ b\nc"},
        )
        for i in range(n)
    ]


def _read(ids):
    return list(ActivityLog.objects.filter(pk__in=ids).order_by("pk").values())


@pytest.mark.parametrize("size", [3, bulk.COPY_FROM + 50])
def test_insert_writes_what_bulk_create_writes(size):
    mine = bulk.insert(ActivityLog, _rows(size, 0))
    theirs = ActivityLog.objects.bulk_create(_rows(size, 0))
    assert all(row.pk and not row._state.adding for row in mine)
    assert [row.pk for row in mine] == [
        r["id"] for r in _read([row.pk for row in mine])
    ]  # ids as the table has them
    strip = [{k: v for k, v in r.items() if k != "id"} for r in _read([row.pk for row in theirs])]
    assert [
        {k: v for k, v in r.items() if k != "id"} for r in _read([row.pk for row in mine])
    ] == strip
    assert (
        len(set(row.pk for row in mine + theirs)) == 2 * size
    )  # the sequence is shared, never reused
    if connection.vendor == "postgresql" and size >= bulk.COPY_FROM:
        later = ActivityLog.objects.create(
            **{k: v for k, v in _read([mine[0].pk])[0].items() if k != "id"}
        )
        assert later.pk > max(row.pk for row in mine + theirs)


@pytest.mark.parametrize("size", [3, bulk.COPY_FROM + 50])
def test_insert_rows_writes_what_bulk_create_writes(size):
    fields = [
        "at",
        "actor_id",
        "actor_name",
        "verb",
        "object_type",
        "object_id",
        "object_repr",
        "before",
        "after",
    ]
    marker = f"rows-{size}"
    bulk.insert_rows(
        ActivityLog,
        (
            {name: getattr(row, name) for name in fields} | {"verb": marker}
            for row in _rows(size, 0)
        ),
    )
    ActivityLog.objects.bulk_create(_rows(size, 0))
    mine = list(ActivityLog.objects.filter(verb=marker).order_by("pk").values(*fields))
    theirs = list(ActivityLog.objects.filter(verb="created").order_by("pk").values(*fields))[-size:]
    assert len(mine) == size and [r | {"verb": "created"} for r in mine] == theirs
