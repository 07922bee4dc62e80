"""The practitioner's private iCalendar feed, parsed back with the icalendar library."""

import re

import pytest
from icalendar import Calendar

from carnet.conftest import make_patient
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.people.services import calendar_feed_token_reset, patient_sign_up
from carnet.scheduling.services import appointment_cancel

from .factories import at, book, practitioner


@pytest.fixture
def prac(catalog):
    return practitioner(catalog["location"], level=AccessLevel.PRACTITIONER_LIMITED)


def _feed_url(client, prac):
    client.force_login(prac.user)
    page = client.post("/calendar/").content.decode()
    return re.search(r'data-testid="feed-url">https?://[^/]+(/calendar/[^<]+\.ics)<', page).group(1)


def test_the_feed_lists_the_practitioners_appointments_in_utc_instants(
    client, catalog, prac, owner
):
    with clock.frozen(at("2026-03-01", "12:00")):
        mine = book(
            owner,
            catalog,
            prac,
            at("2026-03-10", "09:00"),
            patients=[make_patient(first_name="Ana")],
        )
        gone = book(owner, catalog, prac, at("2026-03-11", "09:00"))
        appointment_cancel(actor=owner.user, appointment=gone)
        book(
            owner, catalog, practitioner(catalog["location"]), at("2026-03-10", "09:00")
        )  # someone else's
        url = _feed_url(client, prac)
        client.logout()  # the secret in the URL is the only credential
        response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/calendar")
    events = Calendar.from_ical(response.content).walk("VEVENT")
    assert [str(e["uid"]) for e in events] == [
        f"appointment-{mine.pk}@carnet",
        f"appointment-{gone.pk}@carnet",
    ]
    first = events[0]
    assert first.decoded("dtstart") == mine.start and first.decoded("dtend") == mine.end
    assert "Ana" in str(first["summary"]) and str(first["location"]) == catalog["location"].name
    assert [str(e["status"]) for e in events] == ["CONFIRMED", "CANCELLED"]


def test_regenerating_retires_the_old_url_and_a_wrong_token_is_not_found(client, catalog, prac):
    old = _feed_url(client, prac)
    new = _feed_url(client, prac)
    assert old != new
    assert client.get(old).status_code == 404 and client.get(new).status_code == 200
    assert client.get("/calendar/not-a-token.ics").status_code == 404


def test_the_secret_is_stored_only_as_a_digest(catalog, prac):
    raw = calendar_feed_token_reset(actor=prac.user)
    prac.refresh_from_db()
    assert raw not in prac.calendar_feed_digest and len(prac.calendar_feed_digest) == 64


def test_the_settings_page_needs_a_staff_login(client, catalog):
    assert client.get("/calendar/").status_code == 302
    patient = patient_sign_up(
        first_name="P", last_name="Q", email="pq@example.test", password="a long pass phrase 42"
    )
    client.force_login(patient.user)
    assert client.post("/calendar/").status_code == 302
