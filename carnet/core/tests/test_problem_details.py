"""API errors are RFC 9457 problem details with a stable code; bad input is never a 500."""

import pytest
from django.test import Client

from carnet.conftest import Api, make_patient, make_staff
from carnet.core.permissions import AccessLevel

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert PROBLEM_KEYS <= set(body)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:carnet:problem:{code}"
    assert body["title"] and body["detail"]
    return body


def fields(body: dict) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


def test_missing_field_is_a_422_naming_it(front_desk):
    body = problem(Api(front_desk.user).post("/patients", {"first_name": "Ada"}), 422, "invalid")
    assert fields(body) == {"last_name"}
    assert "last_name" in body["detail"]
    assert all(e["message"] for e in body["errors"])


def test_wrong_type_is_a_422_naming_the_field(admin_staff, catalog):
    body = problem(
        Api(admin_staff.user).post(
            "/treatments",
            {
                "name": "Hot stone",
                "price_minor": "a lot",
                "income_category_id": catalog["income_category"].pk,
                "discipline_id": catalog["discipline"].pk,
                "duration_minutes": 60,
            },
        ),
        422,
        "invalid",
    )
    assert fields(body) == {"price_minor"}


def test_negative_price_is_a_422_naming_the_field(admin_staff, catalog):
    body = problem(
        Api(admin_staff.user).post(
            "/products",
            {
                "name": "Oil",
                "price_minor": -100,
                "income_category_id": catalog["income_category"].pk,
            },
        ),
        422,
        "invalid",
    )
    assert fields(body) == {"price_minor"}


def test_several_invalid_fields_are_all_listed(admin_staff):
    body = problem(Api(admin_staff.user).post("/taxes", {"rate": 150}), 422, "invalid")
    assert fields(body) == {"name", "rate"}


def test_a_domain_validation_error_lists_its_fields(owner):
    body = problem(
        Api(owner.user).post("/locations", {"name": "Main", "time_zone": "Mars/Olympus"}),
        422,
        "invalid",
    )
    assert fields(body) == {"time_zone"}


@pytest.mark.parametrize("path", ["/patients", "/clinic", "/me", "/staff", "/treatments"])
def test_unauthenticated_is_401_not_authenticated(db, path):
    problem(Api().get(path), 401, "not_authenticated")


def test_unauthenticated_post_is_401(db):
    problem(
        Api().post("/patients", {"first_name": "A", "last_name": "B"}), 401, "not_authenticated"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/patients/999999",
        "/staff/999999",
        "/treatments/999999",
        "/locations/999999",
        "/taxes/999999",
    ],
)
def test_unknown_ids_are_404(owner, path):
    body = problem(Api(owner.user).get(path), 404, "not_found")
    assert "999999" in body["detail"]


def test_unknown_id_on_update_is_404(owner):
    problem(Api(owner.user).patch("/patients/999999", {"first_name": "X"}), 404, "not_found")
    problem(Api(owner.user).patch("/disciplines/999999", {"name": "X"}), 404, "not_found")


def test_unknown_address_under_the_api_is_404(owner):
    response = Api(owner.user).get("/no-such-thing")
    assert response.status_code == 404


def test_a_non_integer_id_is_a_4xx_problem(owner):
    body = problem(Api(owner.user).get("/patients/abc"), 422, "invalid")
    assert fields(body) == {"pk"}


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b"null", b'"text"', b"\xff\xfe"])
def test_a_bad_json_body_is_a_4xx_never_a_500(front_desk, raw):
    client = Client()
    client.force_login(front_desk.user)
    response = client.post("/api/v1/patients", data=raw, content_type="application/json")
    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"]


def test_a_bad_json_body_on_patch_is_a_4xx(owner):
    client = Client()
    client.force_login(owner.user)
    patient = make_patient()
    response = client.patch(
        f"/api/v1/patients/{patient.pk}", data=b"{oops", content_type="application/json"
    )
    assert 400 <= response.status_code < 500
    assert response["Content-Type"] == "application/problem+json"


def test_permission_refusal_is_a_403_problem_naming_the_needed_level(db):
    staff = make_staff(AccessLevel.FRONT_DESK)
    body = problem(Api(staff.user).post("/disciplines", {"name": "Yoga"}), 403, "not_allowed")
    assert "Administrative/All Billing" in body["detail"]
    assert "Front Desk" in body["detail"]


def test_a_domain_conflict_is_a_409_problem(owner):
    api = Api(owner.user)
    api.post(
        "/staff",
        {
            "username": "sam",
            "password": "a long passphrase",
            "display_name": "Sam",
            "access_level": AccessLevel.FRONT_DESK,
        },
    )
    problem(
        api.post(
            "/staff",
            {
                "username": "SAM",
                "password": "a long passphrase",
                "display_name": "Sam 2",
                "access_level": AccessLevel.FRONT_DESK,
            },
        ),
        409,
        "login_taken",
    )


def test_unknown_api_address_is_a_problem_not_an_html_page(client):
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
