"""Online booking limits (issue 18 point 7): at most the clinic's number of upcoming online
bookings per patient."""

import datetime as dt
from urllib.parse import quote

import pytest
from django.core import mail
from django.test import Client

from carnet.clinic.selectors import clinic_get
from carnet.clinic.services import clinic_update
from carnet.conftest import Api
from carnet.core import clock
from carnet.core.errors import Conflict
from carnet.people.models import Shift
from carnet.scheduling import online
from carnet.scheduling.models import Appointment

from .factories import at, book, clinic_set
from .test_online import DAY, form_key_of, setup, signed_up  # noqa: F401  (setup is a fixture)

pytestmark = pytest.mark.django_db
WEDNESDAY = "2026-03-11"


def _book(s, patient, day, time, key=""):
    return online.appointment_book_online(
        user=patient.user,
        patient=patient,
        treatment=s["treatment"],
        practitioner=s["prac"],
        location=s["location"],
        start=at(day, time),
        idempotency_key=key,
    )


def test_the_default_is_three_upcoming_online_bookings(setup):  # noqa: F811
    Shift.objects.create(
        staff=setup["prac"],
        location=setup["location"],
        weekday=2,
        start_time=dt.time(9),
        end_time=dt.time(12),
    )
    patient = signed_up()
    for time in ("09:00", "10:00", "11:00"):
        _book(setup, patient, DAY, time)
    with pytest.raises(Conflict) as exc:
        _book(setup, patient, WEDNESDAY, "09:00")
    assert exc.value.code == "online_booking_limit"
    assert "already has 3 upcoming appointments booked online" in exc.value.message
    assert "Cancel one from My Account or call the clinic" in exc.value.message
    assert Appointment.objects.count() == 3
    # Another patient still finds the free slots.
    assert _book(setup, signed_up("other@example.test"), WEDNESDAY, "09:00") is not None


def test_cancelled_past_and_staff_bookings_do_not_count(setup):  # noqa: F811
    clinic_set(online_bookings_per_patient=1)
    patient = signed_up()
    first = _book(setup, patient, DAY, "09:00")
    with pytest.raises(Conflict):
        _book(setup, patient, DAY, "10:00")
    online.appointment_cancel_by_patient(
        user=patient.user, visit_pk=first.visits.get().pk, now=at("2026-03-08", "09:00")
    )
    assert _book(setup, patient, DAY, "10:00") is not None  # the cancelled one freed its place
    book(
        setup["owner"], setup, setup["prac"], at(DAY, "11:00"), patients=[patient]
    )  # the front desk books freely
    with clock.frozen(
        at(DAY, "10:30")
    ):  # once the online visit has started it no longer holds a place
        assert (
            online.appointment_book_online(
                user=patient.user,
                patient=patient,
                treatment=setup["treatment"],
                practitioner=setup["prac"],
                location=setup["location"],
                start=at("2026-03-17", "09:00"),
            )
            is not None
        )


def test_the_api_answers_409_with_the_reason(setup):  # noqa: F811
    clinic_set(online_bookings_per_patient=1)
    patient = signed_up()
    _book(setup, patient, DAY, "09:00")
    body = {
        "location_id": setup["location"].pk,
        "treatment_id": setup["treatment"].pk,
        "practitioner_id": setup["prac"].pk,
        "start": at(DAY, "10:00").isoformat(),
    }
    response = Api(patient.user).post("/me/appointments", body)
    assert response.status_code == 409 and response.json()["code"] == "online_booking_limit"


def test_the_clinic_sets_the_limit(setup):  # noqa: F811
    clinic_update(actor=setup["owner"].user, data={"online_bookings_per_patient": 5})
    assert clinic_get().online_bookings_per_patient == 5


def test_the_booking_page_shows_the_limit_and_what_to_do(setup, client):  # noqa: F811

    clinic_set(online_bookings_per_patient=1)
    patient = signed_up()
    _book(setup, patient, DAY, "09:00")
    client.force_login(patient.user)
    loc, t, p = setup["location"], setup["treatment"], setup["prac"]
    confirm = (
        f"/book/{loc.pk}/confirm/?treatment={t.pk}&practitioner={p.pk}"
        f"&start={quote(at(DAY, '10:00').isoformat())}"
    )
    key = form_key_of(client.get(confirm).content.decode())
    page = client.post(confirm, {"action": "confirm", "form_key": key})
    assert page.status_code == 200
    assert (
        "the most this clinic takes online (1). Cancel one from My Account" in page.content.decode()
    )
    assert Appointment.objects.filter(booked_by="online").count() == 1


def test_online_sign_ups_are_limited_per_ip_address(setup):  # noqa: F811
    loc, t, p = setup["location"], setup["treatment"], setup["prac"]
    confirm = (
        f"/book/{loc.pk}/confirm/?treatment={t.pk}&practitioner={p.pk}"
        f"&start={quote(at(DAY, '09:00').isoformat())}"
    )

    def sign_up(n, ip, client):
        return client.post(
            confirm,
            {
                "action": "signup",
                "first_name": "Nora",
                "last_name": f"New{n}",
                "email": f"nora{n}@example.test",
            },
            REMOTE_ADDR=ip,
        )

    for n in range(5):
        assert sign_up(n, "192.0.2.7", Client()).status_code == 302
    refused = sign_up(5, "192.0.2.7", Client())
    assert refused.status_code == 200
    assert (
        "Too many sign-ups from your network in the last hour. Try again in 60 minutes"
        in refused.content.decode()
    )
    assert not [m for m in mail.outbox if m.to == ["nora5@example.test"]]  # no link sent
    assert sign_up(6, "192.0.2.8", Client()).status_code == 302  # another address is not held
    with clock.frozen(clock.now() + dt.timedelta(hours=1, seconds=1)):
        assert sign_up(7, "192.0.2.7", Client()).status_code == 302
