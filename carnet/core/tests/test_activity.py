"""The activity log's record_many: the same snapshots as one record per object, in few queries."""

import pytest
from django.db import connection
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
