import hashlib
import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from carnet.conftest import PASSWORD, Api, make_patient, make_staff
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.people.models import ApiToken, CommissionRate, FamilyLink, Patient, Shift, StaffMember

User = get_user_model()


@pytest.fixture
def full_access(db):
    return make_staff(AccessLevel.FULL_ACCESS, name="Full")


def error_fields(response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def problem_code(response) -> str:
    assert response["Content-Type"] == "application/problem+json", response.content
    return response.json()["code"]


def assert_refused(response, needed: str | None = None):
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["code"] == "not_allowed"
    if needed:
        assert f"It needs {needed} or higher" in body["detail"]


def bearer(raw: str) -> dict:
    return {"Authorization": f"Bearer {raw}"}


def staff_payload(**overrides) -> dict:
    data = {
        "username": "jo",
        "email": "jo@example.test",
        "password": PASSWORD,
        "display_name": "Jo",
        "access_level": AccessLevel.FRONT_DESK,
    }
    data.update(overrides)
    return data


def portal_user(patient: Patient):
    user = User.objects.create_user(
        username=patient.email.lower(), email=patient.email, password=PASSWORD
    )
    patient.user = user
    patient.save()
    return user


# ---------------------------------------------------------------- /me and /access-levels


def test_me_for_staff(front_desk):
    body = Api(front_desk.user).get("/me").json()
    assert body["kind"] == "staff" and body["name"] == "Front Desk"
    assert body["staff"]["id"] == front_desk.pk
    assert body["staff"]["access_label"] == "Front Desk"
    assert body["patient"] is None


def test_me_for_a_patient(db):
    patient = make_patient(first_name="Ada", last_name="Lovelace", preferred_name="Addie")
    body = Api(portal_user(patient)).get("/me").json()
    assert body["kind"] == "patient" and body["name"] == "Ada (Addie) Lovelace"
    assert (
        body["patient"]["id"] == patient.pk and "notes" not in body["patient"]
    )  # PatientSelfOut (test_no_leaks)
    assert body["staff"] is None


def test_me_for_a_login_that_is_neither(db):
    user = User.objects.create_user(username="lonely", password=PASSWORD)
    assert problem_code(Api(user).get("/me")) == "not_allowed"


def test_me_for_deactivated_staff_is_not_staff(front_desk):
    front_desk.is_active = False
    front_desk.save()
    assert Api(front_desk.user).get("/me").status_code == 403


def test_access_levels(front_desk):
    body = Api(front_desk.user).get("/access-levels").json()
    assert body[0] == {"level": 0, "label": "No Access"}
    assert body[-1] == {"level": 70, "label": "Account Owner"}
    assert [row["level"] for row in body] == sorted(row["level"] for row in body)


# ---------------------------------------------------------------- staff


def test_staff_create_and_read(full_access, catalog):
    api = Api(full_access.user)
    created = api.post(
        "/staff", staff_payload(location_ids=[catalog["location"].pk], is_practitioner=True)
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["username"] == "jo" and body["email"] == "jo@example.test"
    assert body["access_label"] == "Front Desk" and body["is_practitioner"] is True
    assert body["location_ids"] == [catalog["location"].pk]
    assert "password" not in body
    assert api.get(f"/staff/{body['id']}").json() == body
    assert body["id"] in [row["id"] for row in api.get("/staff").json()]
    assert StaffMember.objects.get(pk=body["id"]).user.check_password(PASSWORD)


@pytest.mark.parametrize("password", ["short", "password123"])
def test_staff_create_weak_password_is_422(full_access, password):
    response = Api(full_access.user).post("/staff", staff_payload(password=password))
    assert response.status_code == 422
    assert error_fields(response) == {"password"}
    assert not User.objects.filter(username="jo").exists()


def test_staff_create_login_taken_is_409(full_access):
    api = Api(full_access.user)
    assert api.post("/staff", staff_payload()).status_code == 201
    response = api.post("/staff", staff_payload(username="Jo", display_name="Jo 2"))
    assert response.status_code == 409
    assert problem_code(response) == "login_taken"
    assert error_fields(response) == {"username"}


def test_staff_create_bad_email_and_location_are_422(full_access):
    api = Api(full_access.user)
    assert error_fields(api.post("/staff", staff_payload(email="jo-at-example"))) == {"email"}
    assert error_fields(api.post("/staff", staff_payload(location_ids=[424242]))) == {
        "location_ids"
    }
    assert not User.objects.filter(username="jo").exists()


def test_staff_create_needs_full_access(admin_staff):
    assert_refused(Api(admin_staff.user).post("/staff", staff_payload()), "Full Access")


def test_only_an_owner_grants_owner_through_the_api(full_access, owner):
    response = Api(full_access.user).post(
        "/staff", staff_payload(access_level=AccessLevel.ACCOUNT_OWNER)
    )
    assert_refused(response, "Account Owner")
    ok = Api(owner.user).post("/staff", staff_payload(access_level=AccessLevel.ACCOUNT_OWNER))
    assert ok.status_code == 201 and ok.json()["access_label"] == "Account Owner"


def test_staff_list_needs_admin(front_desk, admin_staff):
    assert_refused(Api(front_desk.user).get("/staff"), "Administrative/All Billing")
    assert Api(admin_staff.user).get("/staff").status_code == 200


def test_staff_patch(full_access, front_desk, catalog):
    response = Api(full_access.user).patch(
        f"/staff/{front_desk.pk}",
        {
            "display_name": "Sam",
            "access_level": AccessLevel.ADMIN_BILLING,
            "location_ids": [catalog["location"].pk],
            "email": "sam@example.test",
        },
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["display_name"], body["access_label"], body["email"]) == (
        "Sam",
        "Administrative/All Billing",
        "sam@example.test",
    )
    assert body["location_ids"] == [catalog["location"].pk]
    assert body["can_access_billing"] is True  # not sent, unchanged
    entry = ActivityLog.objects.filter(
        object_type="people.staffmember", object_id=str(front_desk.pk), verb="updated"
    ).get()
    assert entry.before["access_level"] == AccessLevel.FRONT_DESK
    assert entry.after["access_level"] == AccessLevel.ADMIN_BILLING


def test_staff_patch_cannot_lower_your_own_level(full_access):
    response = Api(full_access.user).patch(
        f"/staff/{full_access.pk}", {"access_level": AccessLevel.FRONT_DESK}
    )
    assert response.status_code == 403
    assert problem_code(response) == "own_access_level"
    full_access.refresh_from_db()
    assert full_access.access_level == AccessLevel.FULL_ACCESS


def test_staff_patch_cannot_touch_an_owner_without_being_one(full_access, owner):
    assert_refused(
        Api(full_access.user).patch(f"/staff/{owner.pk}", {"display_name": "x"}), "Account Owner"
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"location_ids": None}, "location_ids"),
        ({"access_level": None}, "access_level"),
        ({"access_level": 99}, "access_level"),
        ({"display_name": ""}, "display_name"),
        ({"email": "x"}, "email"),
    ],
)
def test_staff_patch_bad_values_are_422(full_access, payload, field):
    # Editing yourself exercises the own-level check with odd values too.
    for target in (full_access, make_staff()):
        response = Api(full_access.user).patch(f"/staff/{target.pk}", payload)
        assert response.status_code == 422, response.content
        assert error_fields(response) == {field}


def test_staff_unknown_id_is_404(full_access):
    assert Api(full_access.user).get("/staff/424242").status_code == 404
    assert Api(full_access.user).patch("/staff/424242", {"display_name": "x"}).status_code == 404


# ---------------------------------------------------------------- commission rates


def test_commission_rate_upsert_through_the_api(full_access, front_desk, catalog):
    api = Api(full_access.user)
    url = f"/staff/{front_desk.pk}/commission-rates"
    first = api.post(url, {"income_category_id": catalog["income_category"].pk, "rate": "40"})
    second = api.post(url, {"income_category_id": catalog["income_category"].pk, "rate": "42.5"})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert api.get(url).json() == [second.json()]
    assert CommissionRate.objects.get().rate == 42.5


def test_commission_rate_bad_values(full_access, front_desk, catalog):
    api = Api(full_access.user)
    url = f"/staff/{front_desk.pk}/commission-rates"
    assert error_fields(
        api.post(url, {"income_category_id": catalog["income_category"].pk, "rate": "101"})
    ) == {"rate"}
    assert error_fields(api.post(url, {"income_category_id": 424242, "rate": "10"})) == {
        "income_category_id"
    }
    assert (
        api.post(
            "/staff/424242/commission-rates", {"income_category_id": 1, "rate": "1"}
        ).status_code
        == 404
    )


def test_commission_rate_needs_full_access(admin_staff, front_desk, catalog):
    assert_refused(
        Api(admin_staff.user).post(
            f"/staff/{front_desk.pk}/commission-rates",
            {"income_category_id": catalog["income_category"].pk, "rate": "4"},
        ),
        "Full Access",
    )


# ---------------------------------------------------------------- shifts


def test_shifts_through_the_api(full_access, front_desk, catalog):
    front_desk.locations.set([catalog["location"]])
    api = Api(full_access.user)
    url = f"/staff/{front_desk.pk}/shifts"
    monday = {
        "location_id": catalog["location"].pk,
        "weekday": 0,
        "start_time": "09:00",
        "end_time": "17:00",
    }
    created = api.post(url, monday)
    assert created.status_code == 201, created.content
    assert created.json()["start_time"] == "09:00:00"

    overlap = api.post(url, {**monday, "start_time": "16:00", "end_time": "18:00"})
    assert overlap.status_code == 409 and problem_code(overlap) == "shift_overlap"

    elsewhere = type(catalog["location"]).objects.create(
        name="Elsewhere", time_zone="America/Toronto"
    )
    wrong = api.post(url, {**monday, "weekday": 1, "location_id": elsewhere.pk})
    assert wrong.status_code == 422 and error_fields(wrong) == {"location_id"}

    backwards = api.post(url, {**monday, "weekday": 2, "start_time": "17:00", "end_time": "09:00"})
    assert backwards.status_code == 422 and error_fields(backwards) == {"end_time"}

    bad_day = api.post(url, {**monday, "weekday": 7})
    assert bad_day.status_code == 422 and error_fields(bad_day) == {"weekday"}

    # Found by the API fuzzer: a time with a UTC offset was a 500 (SQLite refuses aware times,
    # PostgreSQL's overlap check compared aware and naive times). Shift times are wall-clock times.
    for offset in ("09:00:00+05:00", "09:00Z"):
        aware = api.post(url, {**monday, "weekday": 3, "start_time": offset})
        assert aware.status_code == 422 and error_fields(aware) == {"start_time"}, aware.content

    assert [s["id"] for s in api.get(url).json()] == [created.json()["id"]]
    assert api.delete(f"/shifts/{created.json()['id']}").status_code == 204
    assert not Shift.objects.exists()
    assert api.delete(f"/shifts/{created.json()['id']}").status_code == 404


# ---------------------------------------------------------------- API tokens


def test_token_create_shows_the_secret_once(front_desk):
    api = Api(front_desk.user)
    created = api.post("/tokens", {"name": "Zapier"})
    assert created.status_code == 201
    raw = created.json()["token"]
    assert ApiToken.objects.get().token_hash == hashlib.sha256(raw.encode()).hexdigest()
    listed = api.get("/tokens").json()
    assert [t["id"] for t in listed] == [created.json()["id"]]
    assert "token" not in listed[0]
    assert raw not in json.dumps(listed)


def test_bearer_token_authenticates_api_calls(front_desk, django_capture_on_commit_callbacks):
    raw = Api(front_desk.user).post("/tokens", {"name": "Zapier"}).json()["token"]
    api = Api()
    with django_capture_on_commit_callbacks(execute=True):  # last_used_at is written after commit
        me = api.get("/me", **bearer(raw))
    assert me.status_code == 200 and me.json()["staff"]["id"] == front_desk.pk
    assert ApiToken.objects.get().last_used_at is not None
    created = api.post("/patients", {"first_name": "Ada", "last_name": "Lovelace"}, **bearer(raw))
    assert created.status_code == 201
    # The token acts with its staff member's access level.
    assert_refused(api.get("/staff", **bearer(raw)))


def test_revoked_and_unknown_tokens_are_401(front_desk):
    api = Api(front_desk.user)
    created = api.post("/tokens", {"name": "Zapier"}).json()
    revoked = api.post(f"/tokens/{created['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    for raw in (created["token"], "crn_nonsense", ""):
        response = Api().get("/me", **bearer(raw))
        assert response.status_code == 401
        assert problem_code(response) == "not_authenticated"


def test_a_deactivated_staff_members_token_stops_working(front_desk):
    raw = Api(front_desk.user).post("/tokens", {"name": "Zapier"}).json()["token"]
    front_desk.is_active = False
    front_desk.save()
    assert Api().get("/me", **bearer(raw)).status_code == 401


def test_revoking_someone_elses_token_needs_full_access(front_desk, full_access):
    token = Api(front_desk.user).post("/tokens", {"name": "Zapier"}).json()
    assert_refused(Api(make_staff().user).post(f"/tokens/{token['id']}/revoke"), "Full Access")
    assert Api(full_access.user).post(f"/tokens/{token['id']}/revoke").status_code == 200
    assert Api(front_desk.user).post("/tokens/424242/revoke").status_code == 404


def test_token_name_is_required(front_desk):
    assert error_fields(Api(front_desk.user).post("/tokens", {"name": ""})) == {"name"}


def test_patients_cannot_create_tokens(db):
    patient = make_patient()
    assert Api(portal_user(patient)).post("/tokens", {"name": "x"}).status_code == 403


def test_bearer_token_post_needs_no_csrf_token(front_desk):
    raw = Api(front_desk.user).post("/tokens", {"name": "Zapier"}).json()["token"]
    client = Client(enforce_csrf_checks=True)  # a real integrator: no session, no CSRF cookie
    response = client.post(
        "/api/v1/patients",
        data=json.dumps({"first_name": "A", "last_name": "B"}),
        content_type="application/json",
        headers=bearer(raw),
    )
    assert response.status_code == 201, response.content


def test_session_post_still_needs_the_csrf_token(front_desk):
    client = Client(enforce_csrf_checks=True)
    client.force_login(front_desk.user)
    response = client.post(
        "/api/v1/patients",
        data=json.dumps({"first_name": "A", "last_name": "B"}),
        content_type="application/json",
    )
    assert response.status_code == 403
    assert not Patient.objects.exists()


# ---------------------------------------------------------------- patients (staff side)


def test_patient_create_read_update(front_desk):
    api = Api(front_desk.user)
    created = api.post(
        "/patients",
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "phone": "555-0101",
            "date_of_birth": "1990-12-10",
        },
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["full_name"] == "Ada Lovelace" and body["has_portal_login"] is False
    assert api.get(f"/patients/{body['id']}").json() == body
    updated = api.patch(f"/patients/{body['id']}", {"preferred_name": "Addie"})
    assert updated.status_code == 200
    assert updated.json()["full_name"] == "Ada (Addie) Lovelace"
    assert updated.json()["phone"] == "555-0101"
    verbs = list(
        ActivityLog.objects.filter(object_type="people.patient", object_id=str(body["id"]))
        .order_by("id")
        .values_list("verb", flat=True)
    )
    assert verbs == ["created", "updated"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"first_name": "Ada"}, "last_name"),
        ({"first_name": "", "last_name": "L"}, "first_name"),
        ({"first_name": "Ada", "last_name": "L", "email": "nope"}, "email"),
        ({"first_name": "Ada", "last_name": "L", "date_of_birth": "1990-13-45"}, "date_of_birth"),
    ],
)
def test_patient_create_bad_values_are_422(front_desk, payload, field):
    response = Api(front_desk.user).post("/patients", payload)
    assert response.status_code == 422
    assert error_fields(response) == {field}


def test_patient_patch_bad_values_are_422(front_desk):
    patient = make_patient()
    api = Api(front_desk.user)
    for payload, field in [
        ({"first_name": None}, "first_name"),
        ({"email": "nope"}, "email"),
        ({"last_name": "  "}, "last_name"),
    ]:
        response = api.patch(f"/patients/{patient.pk}", payload)
        assert response.status_code == 422, response.content
        assert error_fields(response) == {field}


def test_patient_search_through_the_api(front_desk):
    ada = make_patient(
        first_name="Ada",
        last_name="Lovelace",
        preferred_name="Addie",
        email="ada@math.test",
        phone="555-0101",
    )
    grace = make_patient(
        first_name="Grace", last_name="Hopper", email="grace@navy.test", phone="555-0202"
    )
    api = Api(front_desk.user)

    def ids(q):
        response = api.get(f"/patients?q={q}")
        assert response.status_code == 200
        return [p["id"] for p in response.json()]

    assert ids("lovelace") == [ada.pk]
    assert ids("Addie") == [ada.pk]
    assert ids("grace%40navy") == [grace.pk]
    assert ids("555%200101") == [ada.pk]
    assert ids("5550202") == [grace.pk]
    assert ids("") == [grace.pk, ada.pk]
    assert len(api.get("/patients?limit=1").json()) == 1
    assert len(api.get("/patients?limit=0").json()) == 1  # clamped to at least one


def test_patient_endpoints_need_practitioner_front_desk(db):
    api = Api(make_staff(AccessLevel.PRACTITIONER_LIMITED).user)
    patient = make_patient()
    assert_refused(api.get("/patients"), "Practitioner/Front Desk")
    assert_refused(api.get(f"/patients/{patient.pk}"), "Practitioner/Front Desk")
    assert_refused(
        api.post("/patients", {"first_name": "A", "last_name": "B"}), "Practitioner/Front Desk"
    )
    assert_refused(
        api.patch(f"/patients/{patient.pk}", {"first_name": "X"}), "Practitioner/Front Desk"
    )


def test_unknown_patient_is_404_for_staff(front_desk):
    assert Api(front_desk.user).get("/patients/424242").status_code == 404


# ---------------------------------------------------------------- family links


def test_family_links_through_the_api(front_desk):
    parent, child, spouse = (
        make_patient(first_name="Parent"),
        make_patient(first_name="Child"),
        make_patient(),
    )
    api = Api(front_desk.user)
    link = api.post(f"/patients/{parent.pk}/family", {"relative_id": child.pk, "kind": "guardian"})
    assert link.status_code == 201, link.content
    assert link.json()["relation"] == "Dependant" and link.json()["relative_id"] == child.pk
    assert (
        api.post(
            f"/patients/{parent.pk}/family", {"relative_id": spouse.pk, "kind": "spouse"}
        ).status_code
        == 201
    )

    relations = {
        r["relative_id"]: r["relation"] for r in api.get(f"/patients/{parent.pk}/family").json()
    }
    assert relations == {child.pk: "Dependant", spouse.pk: "Spouse"}
    assert [r["relation"] for r in api.get(f"/patients/{child.pk}/family").json()] == ["Guardian"]

    again = api.post(f"/patients/{child.pk}/family", {"relative_id": parent.pk, "kind": "spouse"})
    assert again.status_code == 409 and problem_code(again) == "already_linked"

    self_link = api.post(
        f"/patients/{parent.pk}/family", {"relative_id": parent.pk, "kind": "spouse"}
    )
    assert self_link.status_code == 422 and error_fields(self_link) == {"relative_id"}

    bad_kind = api.post(
        f"/patients/{parent.pk}/family", {"relative_id": spouse.pk, "kind": "cousin"}
    )
    assert bad_kind.status_code == 422 and error_fields(bad_kind) == {"kind"}

    assert (
        api.post(
            f"/patients/{parent.pk}/family", {"relative_id": 424242, "kind": "spouse"}
        ).status_code
        == 404
    )

    assert api.delete(f"/family-links/{link.json()['id']}").status_code == 204
    assert FamilyLink.objects.count() == 1
    assert api.delete(f"/family-links/{link.json()['id']}").status_code == 404


# ------------------------------------------------------------- portal login and what a patient sees


# Portal invitations (the patient chooses the password): carnet/people/tests/test_invitations.py


@pytest.fixture
def family(front_desk):
    """A guardian with a portal login, their dependant, their spouse and a stranger."""
    guardian = make_patient(first_name="Guardian")
    child = make_patient(first_name="Child")
    spouse = make_patient(first_name="Spouse")
    stranger = make_patient(first_name="Stranger")
    FamilyLink.objects.create(patient=guardian, relative=child, kind="guardian")
    FamilyLink.objects.create(patient=guardian, relative=spouse, kind="spouse")
    return {
        "guardian": guardian,
        "child": child,
        "spouse": spouse,
        "stranger": stranger,
        "api": Api(portal_user(guardian)),
    }


def test_a_patient_reads_their_own_record_and_their_dependants(family):
    api = family["api"]
    for who in ("guardian", "child"):
        response = api.get(f"/patients/{family[who].pk}")
        assert response.status_code == 200, who
        assert response.json()["id"] == family[who].pk
    relations = {
        r["relative_id"]: r["relation"]
        for r in api.get(f"/patients/{family['guardian'].pk}/family").json()
    }
    assert relations == {family["child"].pk: "Dependant", family["spouse"].pk: "Spouse"}


def test_a_patient_gets_404_for_anyone_else(family):
    api = family["api"]
    not_found = [api.get(f"/patients/{family[who].pk}") for who in ("spouse", "stranger")]
    not_found.append(api.get("/patients/424242"))
    for response in not_found:
        assert response.status_code == 404
        assert problem_code(response) == "not_found"
    assert api.get(f"/patients/{family['stranger'].pk}/family").status_code == 404
    # An existing id and a missing one look alike (no probing).
    assert {r.json()["title"] for r in not_found} == {"NotFound"}


def test_a_dependant_cannot_read_their_guardian(family):
    api = Api(portal_user(family["child"]))
    assert api.get(f"/patients/{family['child'].pk}").status_code == 200
    assert api.get(f"/patients/{family['guardian'].pk}").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/patients"),
        ("get", "/staff"),
        ("get", "/tokens"),
        ("get", "/clinic"),
        ("get", "/treatments"),
        ("get", "/locations"),
        ("get", f"/staff/{1}/shifts"),
    ],
)
def test_list_endpoints_are_403_for_patients(family, method, path):
    response = getattr(family["api"], method)(path)
    assert response.status_code == 403, response.content
    assert problem_code(response) == "not_allowed"


def test_a_patient_cannot_write_patient_records(family):
    api = family["api"]
    assert (
        api.patch(f"/patients/{family['guardian'].pk}", {"first_name": "Changed"}).status_code
        == 403
    )
    assert api.post("/patients", {"first_name": "A", "last_name": "B"}).status_code == 403
    assert (
        api.post(
            f"/patients/{family['guardian'].pk}/family",
            {"relative_id": family["stranger"].pk, "kind": "guardian"},
        ).status_code
        == 403
    )
    family["guardian"].refresh_from_db()
    assert family["guardian"].first_name == "Guardian"
    assert FamilyLink.objects.count() == 2
