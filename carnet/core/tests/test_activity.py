"""The activity log: record_many gives the same snapshots as one record per object, in few queries;
`together` inserts what it holds in one statement."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from carnet.clinic.models import Tax, Treatment
from carnet.core import activity
from carnet.core.models import ActivityLog

pytestmark = pytest.mark.django_db


def test_record_many_reads_many_to_many_once_per_field_and_logs_what_snapshot_gives(catalog):
    other = Tax.objects.create(name="QST test", rate="9.975")
    treatments = [catalog["treatment"]]
    for n in range(5):
        t = Treatment.objects.create(
            name=f"T{n}",
            discipline=catalog["discipline"],
            duration_minutes=30,
            income_category=catalog["income_category"],
            price_minor=1000 * n,
        )
        t.taxes.set([other, catalog["tax"]][: n % 3])
        treatments.append(t)
    with CaptureQueriesContext(connection) as queries:
        activity.record_many(actor=None, verb="imported", objs=treatments)
    assert len(queries) <= 3  # the taxes once, the log rows in one insert
    logged = {int(a.object_id): a.after for a in ActivityLog.objects.filter(verb="imported")}
    assert logged == {t.pk: activity.snapshot(t) for t in treatments}
    assert logged[treatments[3].pk]["taxes"] == sorted([other.pk, catalog["tax"].pk])


def test_together_inserts_its_rows_in_one_statement_in_order_and_none_when_it_raises(catalog):
    place, treatment = catalog["location"], catalog["treatment"]
    with CaptureQueriesContext(connection) as queries:
        with activity.together():
            activity.record(actor=None, verb="first", obj=place)
            with activity.together():  # inside another: that one's end inserts
                activity.record_many(actor=None, verb="second", objs=[treatment])
            activity.record(actor=None, verb="third", obj=place)
            assert not ActivityLog.objects.exists()
    inserts = [q for q in queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1
    assert list(ActivityLog.objects.order_by("pk").values_list("verb", flat=True)) == [
        "first",
        "second",
        "third",
    ]
    with pytest.raises(ZeroDivisionError), activity.together():
        activity.record(actor=None, verb="lost", obj=place)
        1 / 0
    assert not ActivityLog.objects.filter(verb="lost").exists()


def test_a_row_recorded_below_a_savepoint_goes_back_with_it(catalog):
    with activity.together():
        activity.record(actor=None, verb="kept", obj=catalog["location"])
        with pytest.raises(ZeroDivisionError), transaction.atomic():  # someone's savepoint
            activity.record(actor=None, verb="undone", obj=catalog["location"])
            assert ActivityLog.objects.filter(verb="undone").exists()  # inserted at once
            1 / 0
    assert list(ActivityLog.objects.values_list("verb", flat=True)) == ["kept"]


def test_held_rows_are_handed_over_as_one_insert_only_when_they_can_be(catalog):
    place = catalog["location"]
    assert activity.held_unsent() is None  # nothing holds them
    with activity.together():
        activity.record(actor=None, verb="compiles", obj=place)  # the first one-row insert
    with activity.together():
        assert activity.held_unsent() is None  # nothing held
        activity.record(actor=None, verb="handed", obj=place)
        with transaction.atomic():  # a savepoint since the block began: kept for its end
            assert activity.held_unsent() is None
        found = activity.held_unsent()
        if connection.vendor != "postgresql":
            assert found is None  # SQLite has no INSERT in a WITH: inserted at the block's end
        else:
            sql, params = found
            assert sql.startswith('INSERT INTO "core_activitylog"') and "handed" in params
            assert activity.held_unsent() is None  # handed over once, no longer held
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
    assert list(ActivityLog.objects.order_by("pk").values_list("verb", flat=True)) == [
        "compiles",
        "handed",
    ]


def test_nothing_is_inserted_at_the_end_of_a_block_marked_for_rollback(catalog):
    with transaction.atomic():
        with activity.together():
            activity.record(actor=None, verb="refused", obj=catalog["location"])
            transaction.set_rollback(True)  # a keyed API request refused after writing
        assert connection.needs_rollback
    assert not ActivityLog.objects.filter(verb="refused").exists()
