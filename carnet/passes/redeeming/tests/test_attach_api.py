"""POST /appointments/{id}/patients/{patient_id}/pass when the visit is not there: the answer says
which part is wrong, with or without an Idempotency-Key (inside a keyed request nothing can be
read after the service refuses, so the service says it before refusing)."""

import json

import pytest
from django.test import Client

from carnet.conftest import make_patient
from carnet.core import clock
from carnet.people.services import api_token_create
from carnet.scheduling.tests.factories import at, clinic_set, practitioner

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("keyed", [True, False])
def test_a_missing_visit_is_a_404_naming_what_is_missing(front_desk, catalog, keyed):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        patient, other = make_patient(), make_patient()
        client = Client()
        bearer = {"Authorization": f"Bearer {api_token_create(actor=front_desk.user, name='t')[1]}"}

        def post(path, body, key):
            headers = {**bearer, "Idempotency-Key": key} if keyed else bearer
            return client.post(
                f"/api/v1{path}", json.dumps(body), content_type="application/json", headers=headers
            )

        booked = post(
            "/appointments",
            {
                "treatment_id": catalog["treatment"].pk,
                "practitioner_id": practitioner(catalog["location"]).pk,
                "location_id": catalog["location"].pk,
                "start": at("2026-05-12", "09:00").isoformat(),
                "patient_ids": [patient.pk],
                "pass_choice": "none",
            },
            "book",
        )
        assert booked.status_code == 201, booked.content
        appointment = booked.json()["id"]
        cases = [
            (appointment, other.pk, f"Patient {other.pk} is not in appointment {appointment}."),
            (appointment + 1000, patient.pk, f"No appointment with id {appointment + 1000}."),
        ]
        for n, (pk, patient_id, detail) in enumerate(cases):
            answer = post(f"/appointments/{pk}/patients/{patient_id}/pass", {"pass_id": 1}, f"k{n}")
            assert answer.status_code == 404, answer.content
            assert answer.json()["detail"] == detail
