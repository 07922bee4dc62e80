"""A transaction the database aborts for another's sake (PostgreSQL's deadlock_detected) is never a
500: a keyed API request runs again by itself, an unkeyed one answers 503 "send it again", a page
says the same; nothing of the aborted attempt stays."""

import psycopg
import pytest
from django.db import OperationalError, transaction
from django.urls import reverse

from carnet.billing.models import Invoice
from carnet.conftest import Api, make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import is_contention
from carnet.core.permissions import AccessLevel
from carnet.scheduling import arrival
from carnet.scheduling.models import Status
from carnet.scheduling.tests.factories import at, book, working_practitioner

MONDAY = "2030-01-07"


def _deadlock():
    """What Django raises when PostgreSQL picks this transaction as a deadlock's victim."""
    try:
        raise psycopg.errors.DeadlockDetected("deadlock detected")
    except psycopg.Error as cause:
        raise OperationalError("deadlock detected") from cause


@pytest.fixture
def visit(catalog):
    desk = make_staff(AccessLevel.FRONT_DESK)
    prac = working_practitioner(catalog["location"], "Dr Lock")
    with clock.frozen(at(MONDAY, "08:00")):
        appointment = book(desk, catalog, prac, at(MONDAY, "09:00"), patients=[make_patient()])
    return desk, appointment


@pytest.fixture
def deadlocks(monkeypatch):
    """The next `times` arrivals do all their writes, then lose a deadlock inside
    their transaction."""
    real, left = arrival.appointment_arrive, []

    def arm(times=1):
        left.extend([1] * times)

        def arrive(**kwargs):
            with transaction.atomic():
                done = real(**kwargs)
                if left:
                    left.pop()
                    _deadlock()
                return done

        monkeypatch.setattr(arrival, "appointment_arrive", arrive)

    return arm


def test_contention_is_told_apart_from_other_database_errors():
    with pytest.raises(OperationalError) as deadlock:
        _deadlock()
    assert is_contention(deadlock.value)
    assert is_contention(OperationalError("database is locked"))
    assert not is_contention(OperationalError("no such table: x"))
    assert not is_contention(ValueError("deadlock detected"))


def test_a_keyed_api_request_that_lost_a_deadlock_runs_again_and_acts_once(visit, deadlocks):
    desk, appointment = visit
    deadlocks(times=1)
    with clock.frozen(at(MONDAY, "09:05")):
        reply = Api(desk.user).post(
            f"/appointments/{appointment.pk}/arrive", {}, **{"Idempotency-Key": "k-1"}
        )
    assert reply.status_code == 200, reply.content
    appointment.refresh_from_db()
    assert appointment.status == Status.ARRIVED
    assert Invoice.objects.filter(patient__in=appointment.visits.values("patient")).count() == 1


def test_a_keyed_api_request_that_keeps_losing_answers_503_and_changes_nothing(visit, deadlocks):
    desk, appointment = visit
    deadlocks(times=3)
    with clock.frozen(at(MONDAY, "09:05")):
        reply = Api(desk.user).post(
            f"/appointments/{appointment.pk}/arrive", {}, **{"Idempotency-Key": "k-2"}
        )
        assert reply.status_code == 503 and reply["Retry-After"] == "1"
        assert reply.json()["code"] == "busy" and "nothing was changed" in reply.json()["detail"]
        appointment.refresh_from_db()
        assert appointment.status == Status.BOOKED and not Invoice.objects.exists()
        again = Api(desk.user).post(
            f"/appointments/{appointment.pk}/arrive", {}, **{"Idempotency-Key": "k-2"}
        )
    assert again.status_code == 200  # the 503 was not stored as the key's answer


def test_an_unkeyed_api_request_that_lost_a_deadlock_answers_503(visit, deadlocks):
    desk, appointment = visit
    deadlocks(times=1)
    with clock.frozen(at(MONDAY, "09:05")):
        reply = Api(desk.user).post(f"/appointments/{appointment.pk}/arrive", {})
    assert reply.status_code == 503 and reply.json()["code"] == "busy"
    appointment.refresh_from_db()
    assert appointment.status == Status.BOOKED and not Invoice.objects.exists()


def test_a_page_whose_write_lost_a_deadlock_says_to_send_it_again(visit, deadlocks, client):
    desk, appointment = visit
    deadlocks(times=1)
    client.force_login(desk.user)
    with clock.frozen(at(MONDAY, "09:05")):
        page = client.post(reverse("scheduling:appointment_arrive", args=[appointment.pk]))
    assert page.status_code == 503 and b"send the form again" in page.content
    appointment.refresh_from_db()
    assert appointment.status == Status.BOOKED and not Invoice.objects.exists()
