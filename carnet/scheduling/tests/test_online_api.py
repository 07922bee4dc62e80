"""Online booking through the API: a patient lists treatments and slots, books,
lists and cancels."""

import pytest

from carnet.conftest import Api, make_patient
from carnet.scheduling.models import Appointment

from .factories import clinic_set, treatment_of
from .test_online import DAY, setup, signed_up  # noqa: F401  (setup is a fixture)

pytestmark = pytest.mark.django_db


def test_a_patient_books_lists_and_cancels_through_the_api(setup):  # noqa: F811
    patient = signed_up()
    api = Api(patient.user)
    loc = setup["location"].pk
    assert [t["id"] for t in api.get(f"/locations/{loc}/online-treatments").json()] == [
        setup["treatment"].pk
    ]
    offered = api.get(
        f"/locations/{loc}/online-slots?treatment_id={setup['treatment'].pk}&date={DAY}"
    ).json()
    start = offered[0]["starts"][0]
    body = {
        "location_id": loc,
        "treatment_id": setup["treatment"].pk,
        "practitioner_id": offered[0]["practitioner_id"],
        "start": start,
    }
    booked = api.post("/me/appointments", body, **{"Idempotency-Key": "book-1"})
    again = api.post("/me/appointments", body, **{"Idempotency-Key": "book-1"})
    assert booked.status_code == again.status_code == 201 and Appointment.objects.count() == 1
    taken = api.post("/me/appointments", body)
    assert taken.status_code == 409 and "just taken" in taken.json()["detail"]
    mine = api.get("/me/appointments").json()
    assert [m["id"] for m in mine] == [booked.json()["id"]]
    inside = api.post(f"/me/appointments/{mine[0]['id']}/cancel")  # 21 h ahead, the window is 24 h
    assert inside.status_code == 409 and "call the clinic" in inside.json()["detail"]
    clinic_set(cancellation_window_hours=2)
    assert api.post(f"/me/appointments/{mine[0]['id']}/cancel").json()["status"] == "cancelled"


def test_staff_and_other_patients_cannot_use_a_patients_booking(setup):  # noqa: F811
    patient = signed_up()
    staff_api = Api(setup["owner"].user)
    assert staff_api.get("/me/appointments").status_code == 403
    other = signed_up("other@example.test")
    for_stranger = Api(other.user).post(
        "/me/appointments",
        {
            "location_id": setup["location"].pk,
            "treatment_id": setup["treatment"].pk,
            "practitioner_id": setup["prac"].pk,
            "start": "2026-03-10T09:00:00-04:00",
            "patient_id": patient.pk,
        },
    )
    assert for_stranger.status_code == 422
    assert Api(other.user).post("/me/appointments/999999/cancel").status_code == 404
    assert make_patient()  # a patient without a login has no API access at all


def test_online_booking_refuses_and_hides_a_treatment_the_practitioner_does_not_offer(setup):  # noqa: F811
    """Issue 20: a practitioner who does not offer the treatment has no times for it online, and
    booking it anyway is a 422 naming what to do."""
    other = treatment_of(setup, "individual", name="Acupuncture 45")
    setup["prac"].treatments.add(other)
    api, loc = Api(signed_up().user), setup["location"].pk
    offered = api.get(
        f"/locations/{loc}/online-slots?treatment_id={setup['treatment'].pk}&date={DAY}"
    ).json()
    assert offered == [] or all(not o["starts"] for o in offered)
    refused = api.post(
        "/me/appointments",
        {
            "location_id": loc,
            "treatment_id": setup["treatment"].pk,
            "practitioner_id": setup["prac"].pk,
            "start": "2026-03-10T09:00:00-04:00",
        },
    )
    assert refused.status_code == 422 and "does not offer Massage 60" in refused.json()["detail"]
    assert (
        "choose one of their treatments" in refused.json()["detail"]
        and not Appointment.objects.exists()
    )
