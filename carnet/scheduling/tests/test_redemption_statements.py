"""The redemption's statements through the API as the benchmark sends it (issue 25 point 4): a
bearer token, an Idempotency-Key on each POST, attach a package to a booked visit, then arrive it.
Each is bounded, on SQLite and on PostgreSQL, so the front desk's busiest path cannot drift back.

The counts include the request's own transaction boundary, which inside a test is a SAVEPOINT and
its RELEASE (in production a BEGIN and COMMIT, which Django does not capture)."""

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from carnet.conftest import make_patient
from carnet.core import clock
from carnet.core.models import ActivityLog
from carnet.passes.models import Redemption
from carnet.passes.tests.factories import package_template, sold_package
from carnet.people.services import api_token_create
from carnet.scheduling.tests.factories import at, clinic_set, practitioner

pytestmark = pytest.mark.django_db

# PostgreSQL puts what SQLite sends apart in one statement (a WITH): each request's activity rows
# with its Idempotency-Key's record; attach's two use counters; arrive's ledger transaction, its
# postings and the liability guard's read; the visit's invoice, its number, its line, the line's
# tax and the visit's and appointment's statuses.
ATTACH_MAX = {"postgresql": 10, "sqlite": 12}
ARRIVE_MAX = {"postgresql": 10, "sqlite": 19}


class _Bearer:
    def __init__(self, raw: str):
        self.client, self.auth = Client(), f"Bearer {raw}"

    def post(self, path: str, body: dict | None, key: str):
        return self.client.post(
            f"/api/v1{path}",
            data=json.dumps(body) if body is not None else None,
            content_type="application/json",
            headers={"Authorization": self.auth, "Idempotency-Key": key},
        )


def _listing(captured) -> str:
    return "\n".join(q["sql"][:160] for q in captured.captured_queries)


def test_attach_and_arrive_through_the_api_take_a_bounded_number_of_statements(
    front_desk, admin_staff, catalog
):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        patient = make_patient()
        prac = practitioner(catalog["location"])
        sold = sold_package(admin_staff, patient, package_template(catalog))
        api = _Bearer(api_token_create(actor=front_desk.user, name="till")[1])
        visits = []
        for n in range(2):
            booked = api.post(
                "/appointments",
                {
                    "treatment_id": catalog["treatment"].pk,
                    "practitioner_id": prac.pk,
                    "location_id": catalog["location"].pk,
                    "start": at("2026-05-12", f"{9 + n:02d}:00").isoformat(),
                    "patient_ids": [patient.pk],
                    "pass_choice": "none",
                },
                key=f"book-{n}",
            )
            assert booked.status_code == 201, booked.content
            visits.append(booked.json()["id"])
        # The first redemption makes the income category's revenue account; the second is the
        # steady state, which is measured.
        for n, appointment in enumerate(visits):
            with CaptureQueriesContext(connection) as attach:
                attached = api.post(
                    f"/appointments/{appointment}/patients/{patient.pk}/pass",
                    {"pass_id": sold.pk},
                    key=f"attach-{n}",
                )
            assert attached.status_code == 201, attached.content
            assert attached.json()["status"] == "reserved"
            with CaptureQueriesContext(connection) as arrive:
                arrived = api.post(f"/appointments/{appointment}/arrive", None, key=f"arrive-{n}")
            assert arrived.status_code == 200, arrived.content
            assert arrived.json()["visits"][0]["status"] == "arrived"
        live = Redemption.objects.get(visit__appointment_id=visits[1])
        assert live.status == "posted" and live.visit.invoice_id is not None
    assert len(attach.captured_queries) <= ATTACH_MAX[connection.vendor], _listing(attach)
    assert len(arrive.captured_queries) <= ARRIVE_MAX[connection.vendor], _listing(arrive)
    assert ActivityLog.objects.filter(object_id=str(live.pk), verb="pass attached").exists()
    assert ActivityLog.objects.filter(object_id=str(visits[1]), verb="arrived").exists()
    if connection.vendor == "postgresql":  # each request's activity rows, with its key's record
        for captured in (attach, arrive):
            (last,) = [
                q["sql"] for q in captured.captured_queries if "core_activitylog" in q["sql"]
            ]
            assert last.startswith('WITH activity AS (INSERT INTO "core_activitylog"'), last
