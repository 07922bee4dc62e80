"""Breaks: availability leaves them out, booking into one is refused,
and a break cannot cover a booking."""

import datetime as dt

import pytest

from carnet.conftest import Api, make_staff
from carnet.core.errors import Conflict, NotAllowed
from carnet.core.permissions import AccessLevel
from carnet.people.models import Shift
from carnet.scheduling.breaks import break_create, break_delete
from carnet.scheduling.selectors import availability

from .factories import at, book, practitioner

pytestmark = pytest.mark.django_db


def test_availability_is_shifts_minus_appointments_and_breaks(front_desk, catalog):
    prac = practitioner(catalog["location"])
    Shift.objects.create(
        staff=prac,
        location=catalog["location"],
        weekday=1,
        start_time=dt.time(9),
        end_time=dt.time(17),
    )
    book(front_desk, catalog, prac, at("2026-05-12", "09:00"))
    break_create(
        actor=front_desk.user,
        practitioner=prac,
        location=catalog["location"],
        start=at("2026-05-12", "12:00"),
        end=at("2026-05-12", "13:00"),
        reason="Lunch",
    )
    free = availability(actor=front_desk.user, practitioner=prac, day=dt.date(2026, 5, 12))
    assert [(a, b) for _, (a, b) in free] == [
        (at("2026-05-12", "10:00"), at("2026-05-12", "12:00")),
        (at("2026-05-12", "13:00"), at("2026-05-12", "17:00")),
    ]


def test_booking_into_a_break_is_refused_and_a_break_over_a_booking_too(front_desk, catalog):
    prac = practitioner(catalog["location"])
    break_create(
        actor=front_desk.user,
        practitioner=prac,
        location=catalog["location"],
        start=at("2026-05-12", "12:00"),
        end=at("2026-05-12", "13:00"),
    )
    with pytest.raises(Conflict) as exc:
        book(front_desk, catalog, prac, at("2026-05-12", "12:30"))
    assert exc.value.code == "on_break" and "break" in exc.value.message
    book(front_desk, catalog, prac, at("2026-05-12", "15:00"))
    with pytest.raises(Conflict) as exc:
        break_create(
            actor=front_desk.user,
            practitioner=prac,
            location=catalog["location"],
            start=at("2026-05-12", "15:30"),
            end=at("2026-05-12", "16:30"),
        )
    assert exc.value.code == "break_overlaps_appointment"


def test_breaks_follow_schedule_access(catalog):
    prac = practitioner(catalog["location"])
    outsider = make_staff(AccessLevel.PRACTITIONER_LIMITED)
    with pytest.raises(NotAllowed):
        break_create(
            actor=outsider.user,
            practitioner=prac,
            location=catalog["location"],
            start=at("2026-05-12", "12:00"),
            end=at("2026-05-12", "13:00"),
        )
    item = break_create(
        actor=prac.user,
        practitioner=prac,
        location=catalog["location"],  # their own schedule
        start=at("2026-05-12", "12:00"),
        end=at("2026-05-12", "13:00"),
    )
    break_delete(actor=prac.user, item=item)


def test_breaks_through_the_api(front_desk, catalog):
    prac = practitioner(catalog["location"])
    api = Api(front_desk.user)
    body = {
        "location_id": catalog["location"].pk,
        "start": "2026-05-12T12:00:00-04:00",
        "end": "2026-05-12T13:00:00-04:00",
        "reason": "Lunch",
    }
    created = api.post(f"/practitioners/{prac.pk}/breaks", body)
    assert created.status_code == 201
    assert [
        b["reason"] for b in api.get(f"/practitioners/{prac.pk}/breaks?date=2026-05-12").json()
    ] == ["Lunch"]
    backwards = api.post(
        f"/practitioners/{prac.pk}/breaks", {**body, "end": "2026-05-12T11:00:00-04:00"}
    )
    assert backwards.status_code == 422
    assert api.delete(f"/breaks/{created.json()['id']}").status_code == 204
