"""The scheduling API: the full flow, idempotent booking, access by scope, and no 500s."""

import datetime as dt

import pytest

from carnet.billing.models import Invoice
from carnet.clinic.models import Location
from carnet.conftest import Api, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.models import Shift
from carnet.scheduling.models import Appointment

from .factories import at, book, practitioner, treatment_of

pytestmark = pytest.mark.django_db

L = AccessLevel


def _body(catalog, prac, patients, start="2026-05-12T09:00:00-04:00", treatment=None):
    return {
        "treatment_id": (treatment or catalog["treatment"]).pk,
        "practitioner_id": prac.pk,
        "location_id": catalog["location"].pk,
        "start": start,
        "patient_ids": [p.pk for p in patients],
    }


def test_book_read_list_arrive_unarrive_cancel_through_the_api(front_desk, catalog):
    api, prac, patient = Api(front_desk.user), practitioner(catalog["location"]), make_patient()
    created = api.post("/appointments", _body(catalog, prac, [patient]))
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["status"] == "booked" and data["visits"][0]["role"] == "primary"
    # The old field name answers too, for one release (CHANGELOG), with the same visits.
    assert data["participants"] == data["visits"]
    pk = data["id"]
    assert api.get(f"/appointments/{pk}").json()["end"].startswith("2026-05-12T14:00:00")
    listed = api.get(
        f"/appointments?date=2026-05-12&location_id={catalog['location'].pk}&practitioner_id={prac.pk}"
    )
    assert [a["id"] for a in listed.json()] == [pk]
    arrived = api.post(f"/appointments/{pk}/arrive").json()
    assert arrived["status"] == "arrived" and arrived["visits"][0]["invoice_id"]
    assert api.post(f"/appointments/{pk}/unarrive").json()["status"] == "booked"
    assert api.post(f"/appointments/{pk}/cancel").json()["status"] == "cancelled"


def test_a_retried_booking_with_the_same_idempotency_key_books_once(front_desk, catalog):
    api, prac = Api(front_desk.user), practitioner(catalog["location"])
    body = _body(catalog, prac, [make_patient()])
    first = api.post("/appointments", body, **{"Idempotency-Key": "book-1"})
    again = api.post("/appointments", body, **{"Idempotency-Key": "book-1"})
    assert (
        first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
    )
    assert Appointment.objects.count() == 1


def test_a_retried_arrival_with_the_same_idempotency_key_bills_once(front_desk, catalog):
    api, patient = Api(front_desk.user), make_patient()
    appt = book(
        front_desk, catalog, practitioner(catalog["location"]), at("2026-05-12", "09:00"), [patient]
    )
    for _ in range(2):
        assert (
            api.post(f"/appointments/{appt.pk}/arrive", **{"Idempotency-Key": "arr-1"}).status_code
            == 200
        )
    assert Invoice.objects.filter(patient=patient).count() == 1


def test_the_old_join_path_answers_308_to_visits_and_the_followed_request_joins_once(
    front_desk, catalog
):
    """/appointments/{id}/participants was renamed /visits (issue 24): for one release it answers
    308, which a client follows with the same method, body and Idempotency-Key."""
    api = Api(front_desk.user)
    group = book(
        front_desk,
        catalog,
        practitioner(catalog["location"]),
        at("2026-05-13", "09:00"),
        [make_patient()],
        treatment=treatment_of(catalog, "group", capacity=3),
    )
    body, key = {"patient_id": make_patient().pk}, {"Idempotency-Key": "join-1"}
    old = api.post(f"/appointments/{group.pk}/participants?x=1", body, **key)
    assert old.status_code == 308
    assert old["Location"] == f"/api/v1/appointments/{group.pk}/visits?x=1"
    assert group.visits.count() == 1  # the redirect itself changes nothing
    followed = api.post(old["Location"].removeprefix("/api/v1"), body, **key)
    again = api.post(f"/appointments/{group.pk}/visits?x=1", body, **key)
    assert followed.status_code == again.status_code == 201
    assert [p["role"] for p in again.json()["visits"]] == ["primary", "secondary"]
    assert group.visits.count() == 2
    assert Api().post(f"/appointments/{group.pk}/participants", body).status_code == 401


def test_double_booking_through_the_api_is_a_409_with_a_sentence(front_desk, catalog):
    api, prac = Api(front_desk.user), practitioner(catalog["location"])
    api.post("/appointments", _body(catalog, prac, [make_patient()]))
    clash = api.post(
        "/appointments", _body(catalog, prac, [make_patient()], start="2026-05-12T09:30:00-04:00")
    )
    assert clash.status_code == 409 and clash.json()["code"] == "double_booked"
    assert "already booked" in clash.json()["detail"]


def test_user_mistakes_are_problems_not_500s(front_desk, catalog):
    api, prac = Api(front_desk.user), practitioner(catalog["location"])
    naive = api.post(
        "/appointments", _body(catalog, prac, [make_patient()], start="2026-05-12T09:00:00")
    )
    assert naive.status_code == 422 and "UTC offset" in naive.json()["detail"]
    unknown = api.post("/appointments", {**_body(catalog, prac, []), "patient_ids": [999999]})
    assert unknown.status_code == 422
    assert api.get("/appointments/999999").status_code == 404
    appt = book(front_desk, catalog, prac, at("2026-05-12", "11:00"))
    assert api.post(f"/appointments/{appt.pk}/unarrive").status_code == 409
    assert api.post(f"/appointments/{appt.pk}/arrive", {"patient_ids": [999999]}).status_code == 422


def test_copy_reschedule_no_show_join_and_duplicate_as_class_endpoints(front_desk, catalog):
    api, prac = Api(front_desk.user), practitioner(catalog["location"])
    appt = book(front_desk, catalog, prac, at("2026-05-12", "09:00"))
    copied = api.post(f"/appointments/{appt.pk}/copy", {"start": "2026-05-19T09:00:00-04:00"})
    assert copied.status_code == 201 and copied.json()["id"] != appt.pk
    moved = api.post(f"/appointments/{appt.pk}/reschedule", {"start": "2026-05-12T15:00:00-04:00"})
    assert moved.json()["start"].startswith("2026-05-12T19:00:00")
    assert (
        api.post(f"/appointments/{appt.pk}/no-show", {"charge_fee": False}).json()["status"]
        == "no_show"
    )
    assert (
        api.post(f"/appointments/{appt.pk}/no-show").json()["status"] == "no_show"
    )  # marking again: no change
    assert api.post(f"/appointments/{appt.pk}/no-show/undo").json()["status"] == "booked"
    assert api.post(f"/appointments/{appt.pk}/no-show/undo").json()["status"] == "booked"
    group = book(
        front_desk,
        catalog,
        prac,
        at("2026-05-13", "09:00"),
        [make_patient()],
        treatment=treatment_of(catalog, "group", capacity=3),
    )
    joined = api.post(f"/appointments/{group.pk}/visits", {"patient_id": make_patient().pk})
    assert [p["role"] for p in joined.json()["visits"]] == ["primary", "secondary"]
    session = api.post(
        f"/appointments/{group.pk}/duplicate-as-class",
        {"treatment_id": treatment_of(catalog, "class", capacity=5, name="C").pk},
    )
    assert session.status_code == 201 and session.json()["kind"] == "class"
    assert len(session.json()["visits"]) == 2


def test_availability_endpoint_returns_free_time_with_offsets(front_desk, catalog):
    prac = practitioner(catalog["location"])
    Shift.objects.create(
        staff=prac,
        location=catalog["location"],
        weekday=6,
        start_time=dt.time(9),
        end_time=dt.time(12),
    )
    free = Api(front_desk.user).get(f"/practitioners/{prac.pk}/availability?date=2026-03-08").json()
    assert free == [
        {
            "location_id": catalog["location"].pk,
            "start": "2026-03-08T09:00:00-04:00",
            "end": "2026-03-08T12:00:00-04:00",
        }
    ]


def test_a_limited_practitioner_works_only_on_their_own_schedule(front_desk, catalog):
    me = practitioner(catalog["location"], level=L.PRACTITIONER_LIMITED)
    colleague = practitioner(catalog["location"])
    api = Api(me.user)
    assert api.post("/appointments", _body(catalog, me, [make_patient()])).status_code == 201
    refused = api.post("/appointments", _body(catalog, colleague, [make_patient()]))
    assert refused.status_code == 403 and "only on your own schedule" in refused.json()["detail"]
    theirs = book(front_desk, catalog, colleague, at("2026-05-12", "09:00"))
    assert api.post(f"/appointments/{theirs.pk}/arrive").status_code == 403
    assert api.get(f"/appointments/{theirs.pk}").status_code == 403
    assert [a["practitioner_id"] for a in api.get("/appointments?date=2026-05-12").json()] == [
        me.pk
    ]


def test_location_staff_book_only_at_their_locations(catalog):
    elsewhere = Location.objects.create(name="Elsewhere", time_zone="America/Toronto")
    desk = make_staff(L.PRACTITIONER_FRONT_DESK)
    desk.locations.add(catalog["location"])
    prac = practitioner(catalog["location"])
    prac.locations.add(elsewhere)
    api = Api(desk.user)
    assert api.post("/appointments", _body(catalog, prac, [make_patient()])).status_code == 201
    refused = api.post(
        "/appointments", {**_body(catalog, prac, [make_patient()]), "location_id": elsewhere.pk}
    )
    assert refused.status_code == 403 and "only at your own locations" in refused.json()["detail"]
    everywhere = Api(make_staff(L.PRACTITIONER_FRONT_DESK_ALL).user)
    allowed = everywhere.post(
        "/appointments",
        {
            **_body(catalog, prac, [make_patient()], start="2026-05-12T15:00:00-04:00"),
            "location_id": elsewhere.pk,
        },
    )
    assert allowed.status_code == 201


def test_no_access_staff_and_patients_are_refused_with_a_sentence(catalog):
    refused = Api(make_staff(L.NO_ACCESS).user).get("/appointments")
    assert refused.status_code == 403 and refused.json()["code"] == "not_allowed"
    assert "access level" in refused.json()["detail"]


def test_the_api_refuses_a_treatment_the_practitioner_does_not_offer(front_desk, catalog):
    """Issue 20: what a practitioner offers holds for the API too, not only for the desk's form."""
    api, prac = Api(front_desk.user), practitioner(catalog["location"])
    other = treatment_of(catalog, "individual", name="Acupuncture 45")
    prac.treatments.add(catalog["treatment"])
    refused = api.post("/appointments", _body(catalog, prac, [make_patient()], treatment=other))
    assert refused.status_code == 422, refused.content
    assert "does not offer Acupuncture 45" in refused.json()["detail"]
    assert refused.json()["code"] == "invalid" and not Appointment.objects.exists()
    assert api.post("/appointments", _body(catalog, prac, [make_patient()])).status_code == 201
