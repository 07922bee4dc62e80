"""Logging in: argon2 hashes, separate staff and patient doors, idle expiry, activity log page."""

from datetime import timedelta
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from carnet.conftest import PASSWORD, make_patient, make_staff
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.people.services import family_link_add, patient_portal_enable, patient_update

pytestmark = pytest.mark.django_db


def test_passwords_are_hashed_with_argon2(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.Argon2PasswordHasher"]
    encoded = make_password("s3cret-enough")
    assert encoded.startswith("argon2$") and check_password("s3cret-enough", encoded)


def test_argon2_is_the_configured_default():
    assert import_module("carnet.settings").PASSWORD_HASHERS[0].endswith("Argon2PasswordHasher")


def test_staff_log_in_by_username_or_email(client):
    staff = make_staff(AccessLevel.FRONT_DESK)
    response = client.post(
        reverse("staff:login"), {"login": staff.user.username, "password": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == reverse("staff:dashboard")
    client.post(reverse("staff:logout"))
    response = client.post(
        reverse("staff:login"), {"login": staff.user.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 302


def test_wrong_password_shows_a_clear_message(client):
    staff = make_staff()
    response = client.post(
        reverse("staff:login"), {"login": staff.user.username, "password": "nope"}
    )
    assert response.status_code == 200
    assert "do not match" in response.content.decode()


def _portal_patient():
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    patient = make_patient(email="door@example.test")
    patient_portal_enable(actor=owner.user, patient=patient, password=PASSWORD)
    patient.refresh_from_db()
    return patient


def test_patients_cannot_use_the_staff_door_and_staff_cannot_use_the_portal_door(client):
    patient = _portal_patient()
    response = client.post(
        reverse("staff:login"), {"login": "door@example.test", "password": PASSWORD}
    )
    assert response.status_code == 200 and "do not match" in response.content.decode()
    response = client.post(
        reverse("portal:login"), {"login": "door@example.test", "password": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == reverse("portal:home")
    home = client.get(reverse("portal:home")).content.decode()
    assert patient.first_name in home
    staff = make_staff()
    client.post(reverse("staff:logout"))
    response = client.post(
        reverse("portal:login"), {"login": staff.user.username, "password": PASSWORD}
    )
    assert response.status_code == 200


def test_portal_shows_only_own_family(client):
    patient = _portal_patient()
    child = make_patient(first_name="Kiddo")
    make_patient(first_name="Stranger")

    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    family_link_add(actor=owner.user, patient=patient, relative=child, kind="guardian")
    client.force_login(patient.user)
    page = client.get(reverse("portal:home")).content.decode()
    assert "Kiddo" in page and "Stranger" not in page


# Throttling of failed log-ins: carnet/people/tests/test_login_throttle.py


def test_sessions_expire_after_the_idle_time():
    assert settings.SESSION_COOKIE_AGE == settings.SESSION_IDLE_MINUTES * 60 == 30 * 60
    assert settings.SESSION_SAVE_EVERY_REQUEST  # each request renews the idle window


def test_idle_session_is_refused(client):
    staff = make_staff()
    client.force_login(staff.user)
    assert client.get(reverse("people:patients")).status_code == 200
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(reverse("people:patients"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("staff:login"))


def test_login_redirect_refuses_other_hosts(client):
    staff = make_staff()
    response = client.post(
        reverse("staff:login") + "?next=https://evil.example/",
        {"login": staff.user.username, "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert response["Location"] == reverse("staff:dashboard")


def test_full_access_browses_the_activity_log_with_before_and_after(client):
    owner = make_staff(AccessLevel.FULL_ACCESS)
    patient = make_patient(phone="555-0000")
    patient_update(actor=owner.user, patient=patient, data={"phone": "555-9999"})
    entry = ActivityLog.objects.get(object_type="people.patient", verb="updated")
    assert ("phone", "555-0000", "555-9999") in entry.changes()
    client.force_login(owner.user)
    page = client.get(reverse("staff:activity")).content.decode()
    assert "555-9999" in page and "555-0000" in page
    client.force_login(make_staff(AccessLevel.ADMIN_BILLING).user)
    assert client.get(reverse("staff:activity")).status_code == 403


def test_pages_send_security_headers(client):
    client.force_login(make_staff().user)
    response = client.get(reverse("staff:dashboard"))
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_a_no_access_login_is_told_why_and_whom_to_ask_with_no_way_round_in_a_circle(client):
    make_staff(AccessLevel.FULL_ACCESS, name="Olive Owner")
    make_staff(AccessLevel.ACCOUNT_OWNER, name="Abe Admin")
    make_staff(AccessLevel.ADMIN_BILLING, name="Not Asked")  # cannot change access levels
    nobody = make_staff(AccessLevel.NO_ACCESS, name="Nora New")
    response = client.post(
        reverse("staff:login"), {"login": nobody.user.username, "password": PASSWORD}
    )
    response = client.get(response["Location"])
    html = response.content.decode()
    assert response.status_code == 403 and 'data-testid="no-access"' in html
    assert "Nora New" in html and "“No Access”" in html
    assert "Ask Abe Admin or Olive Owner" in html and "Not Asked" not in html
    # Its way out is Log out: no link to the dashboard (itself) or to the account pages it refuses.
    assert f'action="{reverse("staff:logout")}"' in html
    for name in ("staff:dashboard", "staff:password_change", "staff:sessions", "staff:tokens"):
        assert f'href="{reverse(name)}"' not in html, name


def test_a_refusal_names_who_can_change_access(client):
    make_staff(AccessLevel.FULL_ACCESS, name="Olive Owner")
    desk = make_staff(AccessLevel.FRONT_DESK)
    client.force_login(desk.user)
    response = client.get(reverse("staff:activity"))
    html = response.content.decode()
    assert response.status_code == 403 and "It needs Full Access or higher" in html
    assert "change access levels and billing access here: Olive Owner." in html
    assert (
        f'href="{reverse("staff:dashboard")}"' in html
    )  # Back to the dashboard, which it may open
