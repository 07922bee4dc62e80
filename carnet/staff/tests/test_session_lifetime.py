"""Sessions end a fixed time after their log-in, however active (issue 18 point 8,
absolute lifetime)."""

import time

import pytest
from django.conf import settings
from django.urls import reverse

from carnet.conftest import PASSWORD, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.services import api_token_create, patient_portal_enable
from carnet.staff.account_views import CHANGE_REQUIRED
from carnet.staff.middleware import LOGGED_IN_AT

pytestmark = pytest.mark.django_db


def _age(client, hours: float):
    session = client.session
    session[LOGGED_IN_AT] = time.time() - hours * 3600
    session.save()


def test_the_default_lifetime_is_twelve_hours_besides_the_idle_timeout():
    assert settings.SESSION_MAX_HOURS == 12 and settings.SESSION_IDLE_MINUTES == 30


def test_a_busy_staff_session_ends_twelve_hours_after_log_in(client):
    staff = make_staff()
    assert (
        client.post(
            reverse("staff:login"), {"login": staff.user.username, "password": PASSWORD}
        ).status_code
        == 302
    )
    started = client.session[LOGGED_IN_AT]
    assert client.get(reverse("staff:dashboard")).status_code == 200
    assert (
        client.session[LOGGED_IN_AT] == started
    )  # activity renews the idle window, not the lifetime
    _age(client, 11.9)
    assert client.get(reverse("staff:dashboard")).status_code == 200
    _age(client, 12.1)
    response = client.get(reverse("people:patients"), follow=True)
    assert response.redirect_chain[0][0].startswith(reverse("staff:login"))
    assert "Your session ended 12 hours after you logged in" in response.content.decode()
    assert client.get(reverse("people:patients"))["Location"].startswith(
        reverse("staff:login")
    )  # logged out


def test_the_api_answers_401_once_the_session_is_over(client):
    client.force_login(make_staff().user)
    assert client.get("/api/v1/me").status_code == 200
    _age(client, 13)
    response = client.get("/api/v1/me")
    assert response.status_code == 401 and response.json()["code"] == "session_expired"


def test_a_token_call_is_the_tokens_whatever_the_session_it_carries(client):
    """A bearer call is never the session's (carnet.api): an ended session riding along, or one
    held on the password-change page, neither refuses it nor is touched by it."""
    staff = make_staff()
    _, secret = api_token_create(actor=make_staff(AccessLevel.ACCOUNT_OWNER).user, name="sync")
    client.force_login(staff.user)
    _age(client, 13)
    session = client.session
    session[CHANGE_REQUIRED] = True
    session.save()
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    assert client.get("/api/v1/me", **bearer).status_code == 200
    assert client.session[CHANGE_REQUIRED] is True  # the session was left as it was
    assert client.get("/api/v1/me").json()["code"] == "session_expired"  # the session's own call


def test_a_patient_session_ends_too_and_goes_to_the_portal_log_in(client):
    patient = make_patient(email="life@example.test")
    patient_portal_enable(
        actor=make_staff(AccessLevel.ACCOUNT_OWNER).user, patient=patient, password=PASSWORD
    )
    patient.refresh_from_db()
    client.force_login(patient.user)
    assert client.get(reverse("portal:home")).status_code == 200
    _age(client, 12.5)
    assert client.get(reverse("portal:home"))["Location"].startswith(reverse("portal:login"))
