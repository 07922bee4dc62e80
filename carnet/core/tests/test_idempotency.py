"""Idempotency-Key on POST /api/…, exercised through POST /api/v1/patients."""

import json

import pytest
from django.test import Client

from carnet.conftest import Api, make_staff, race
from carnet.core.models import ActivityLog, IdempotencyRecord
from carnet.core.permissions import AccessLevel
from carnet.people import services
from carnet.people.models import Patient

BODY = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.test"}


def key(value):
    return {"Idempotency-Key": value}


def test_same_key_and_body_creates_once_and_replays_the_first_response(front_desk):
    api = Api(front_desk.user)
    first = api.post("/patients", BODY, **key("k-1"))
    second = api.post("/patients", BODY, **key("k-1"))

    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert second["Content-Type"] == first["Content-Type"]
    assert Patient.objects.count() == 1
    assert first.json()["id"] == Patient.objects.get().pk


def test_same_key_with_a_different_body_is_a_409_problem(front_desk):
    api = Api(front_desk.user)
    assert api.post("/patients", BODY, **key("k-2")).status_code == 201
    other = api.post("/patients", {**BODY, "first_name": "Grace"}, **key("k-2"))

    assert other.status_code == 409
    assert other["Content-Type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_reused"
    assert Patient.objects.count() == 1


def test_same_key_on_another_endpoint_is_also_a_409(front_desk):
    api = Api(front_desk.user)
    created = api.post("/patients", BODY, **key("k-3"))
    assert created.status_code == 201
    response = api.post(f"/patients/{created.json()['id']}/portal-invitation", {}, **key("k-3"))
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"


def test_different_users_keys_do_not_collide(db):
    a, b = make_staff(name="A"), make_staff(name="B")
    first = Api(a.user).post("/patients", BODY, **key("shared"))
    second = Api(b.user).post("/patients", BODY, **key("shared"))

    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert Patient.objects.count() == 2


def test_a_validation_error_is_replayed_too(front_desk):
    api = Api(front_desk.user)
    bad = {"first_name": "Ada"}  # no last name
    first = api.post("/patients", bad, **key("k-4"))
    second = api.post("/patients", bad, **key("k-4"))

    assert first.status_code == 422
    assert second.status_code == 422
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    # The key is spent: a corrected body needs a new key.
    assert api.post("/patients", BODY, **key("k-4")).status_code == 409
    assert Patient.objects.count() == 0


def test_a_domain_conflict_is_replayed(admin_staff):
    api = Api(admin_staff.user)
    assert api.post("/disciplines", {"name": "Massage"}).status_code == 201
    first = api.post("/disciplines", {"name": "Massage"}, **key("dup"))
    second = api.post("/disciplines", {"name": "Massage"}, **key("dup"))
    assert first.status_code in (409, 422)
    assert (second.status_code, second.content) == (first.status_code, first.content)
    assert second.headers["Idempotent-Replayed"] == "true"


def test_requests_without_a_key_run_every_time(front_desk):
    api = Api(front_desk.user)
    assert api.post("/patients", BODY).status_code == 201
    assert api.post("/patients", BODY).status_code == 201
    assert Patient.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize("bad_key", ["x" * 256, ""])
def test_a_key_of_the_wrong_length_is_a_400(front_desk, bad_key):
    response = Api(front_desk.user).post("/patients", BODY, **key(bad_key))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "idempotency_key_invalid"
    assert Patient.objects.count() == 0


def test_a_key_of_255_characters_is_accepted(front_desk):
    api = Api(front_desk.user)
    assert api.post("/patients", BODY, **key("x" * 255)).status_code == 201
    assert api.post("/patients", BODY, **key("x" * 255)).headers["Idempotent-Replayed"] == "true"
    assert Patient.objects.count() == 1


def test_a_refusal_is_not_stored_so_a_retry_after_being_granted_access_runs(db):
    staff = make_staff(AccessLevel.PRACTITIONER_LIMITED)
    api = Api(staff.user)
    refused = api.post("/patients", BODY, **key("k-5"))
    assert refused.status_code == 403
    assert IdempotencyRecord.objects.count() == 0

    staff.access_level = AccessLevel.FRONT_DESK
    staff.save()
    retried = api.post("/patients", BODY, **key("k-5"))
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert Patient.objects.count() == 1


def test_an_unauthenticated_request_is_not_stored(db):
    response = Api().post("/patients", BODY, **key("anon"))
    assert response.status_code == 401
    assert IdempotencyRecord.objects.count() == 0


def test_a_server_error_leaves_nothing_behind_and_a_retry_runs(front_desk, monkeypatch):
    real = services.patient_create

    def create_then_crash(**kwargs):
        real(**kwargs)
        raise RuntimeError("crash after the write")

    monkeypatch.setattr(services, "patient_create", create_then_crash)
    api = Api(front_desk.user)
    crashed = api.post("/patients", BODY, **key("k-6"))
    assert crashed.status_code == 500
    assert crashed.json()["code"] == "internal_error"
    assert Patient.objects.count() == 0  # the half-done write was rolled back with the key
    assert IdempotencyRecord.objects.count() == 0
    assert not ActivityLog.objects.exists()  # and what it recorded

    monkeypatch.setattr(services, "patient_create", real)
    retried = api.post("/patients", BODY, **key("k-6"))
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers
    assert Patient.objects.count() == 1


def test_a_retry_that_runs_again_and_fails_replays_the_first_answer(front_desk, monkeypatch):
    """The key is kept after the work: a retry runs, meets the key, and its work is undone — even
    when that work failed on what the first request left (a unique row, here a crash)."""
    api = Api(front_desk.user)
    first = api.post("/patients", BODY, **key("k-8"))
    real = services.patient_create

    def create_then_crash(**kwargs):
        real(**kwargs)
        raise RuntimeError("the twin's work fails")

    monkeypatch.setattr(services, "patient_create", create_then_crash)
    retried = api.post("/patients", BODY, **key("k-8"))
    assert retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.content == first.content
    assert Patient.objects.count() == 1 and IdempotencyRecord.objects.count() == 1


def test_a_retry_that_runs_again_is_undone_before_the_replay(front_desk, monkeypatch):
    api = Api(front_desk.user)
    first = api.post("/patients", BODY, **key("k-9"))
    calls = []
    real = services.patient_create
    monkeypatch.setattr(
        services, "patient_create", lambda **kwargs: calls.append(1) or real(**kwargs)
    )
    retried = api.post("/patients", BODY, **key("k-9"))
    assert calls == [1]  # it ran, and what it wrote went with its transaction
    assert retried.content == first.content and retried.headers["Idempotent-Replayed"] == "true"
    assert list(Patient.objects.values_list("pk", flat=True)) == [first.json()["id"]]
    # Its activity row went with it too.
    assert list(ActivityLog.objects.values_list("object_id", flat=True)) == [
        str(first.json()["id"])
    ]


def test_get_requests_ignore_the_key(front_desk):
    api = Api(front_desk.user)
    assert api.get("/patients", **key("k-7")).status_code == 200
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_create_exactly_one_patient():
    staff = make_staff(AccessLevel.FRONT_DESK)
    threads_n = 8
    clients = []
    for _ in range(threads_n):
        client = Client()
        client.force_login(staff.user)
        clients.append(client)

    def post(i):
        response = clients[i].post(
            "/api/v1/patients",
            data=json.dumps(BODY),
            content_type="application/json",
            headers=key("race-key"),
        )
        return response.status_code, response.content, response.headers.get("Idempotent-Replayed")

    results = race(threads_n, post)
    assert all(isinstance(r, tuple) for r in results), results
    assert {(status, body) for status, body, _ in results} == {(201, results[0][1])}
    assert sorted(r[2] or "" for r in results) == [""] + ["true"] * (threads_n - 1)
    assert Patient.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1
