"""Password reset by email, change when logged in, the password rules (SPEC 14,
issue 18 points 1 and 5)."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from carnet.conftest import PASSWORD, make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import ValidationFailed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.people.services import password_validate, patient_portal_enable

pytestmark = pytest.mark.django_db
NEW = "a brand new passphrase 42"


def _link(message) -> str:
    return re.search(r"http://testserver(/\S+/)", message.body).group(1)


@pytest.fixture(autouse=True)
def _send_on_commit(monkeypatch):
    """Email leaves after the commit; the test client's requests run inside the
    test's transaction."""
    monkeypatch.setattr(
        "django.db.transaction.on_commit", lambda func, using=None, robust=False: func()
    )


def _patient_login(email="reset@example.test"):
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    patient = make_patient(email=email)
    patient_portal_enable(actor=owner.user, patient=patient, password=PASSWORD)
    patient.refresh_from_db()
    return patient


def test_reset_answers_the_same_whether_or_not_the_email_exists(client):
    staff = make_staff()
    known = client.post(reverse("staff:password_reset"), {"email": staff.user.email})
    unknown = client.post(reverse("staff:password_reset"), {"email": "nobody@example.test"})
    assert known.status_code == unknown.status_code == 200
    strip = lambda r: re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", r.content.decode())  # noqa: E731
    assert strip(known) == strip(unknown)
    assert "Check your email" in known.content.decode()
    [message] = mail.outbox  # only the real login got an email
    assert message.to == [staff.user.email] and "/password-reset/" in message.body


def test_reset_link_sets_the_password_once_and_ends_every_session(client):
    staff = make_staff()
    elsewhere = Client()
    elsewhere.force_login(staff.user)
    assert elsewhere.get(reverse("people:patients")).status_code == 200
    client.post(reverse("staff:password_reset"), {"email": staff.user.email.upper()})
    link = _link(mail.outbox[0])
    assert "Choose a new password" in client.get(link).content.decode()
    response = client.post(link, {"password": NEW, "confirm": NEW})
    assert response.status_code == 302 and response["Location"] == reverse("staff:login")
    staff.user.refresh_from_db()
    assert staff.user.check_password(NEW)
    # The other session ended: its next request goes to the log-in page.
    assert elsewhere.get(reverse("people:patients"))["Location"].startswith(reverse("staff:login"))
    # The link works once.
    again = client.get(link)
    assert again.status_code == 400 and "already been used" in again.content.decode()
    assert (
        client.post(
            link, {"password": "another passphrase 77", "confirm": "another passphrase 77"}
        ).status_code
        == 400
    )
    assert (
        ActivityLog.objects.filter(verb="password_reset", object_id=str(staff.user.pk)).count() == 1
    )


def test_reset_link_expires_after_an_hour(client):
    staff = make_staff()
    client.post(reverse("staff:password_reset"), {"email": staff.user.email})
    link = _link(mail.outbox[0])
    with clock.frozen(clock.now() + timedelta(minutes=61)):
        response = client.post(link, {"password": NEW, "confirm": NEW})
    assert response.status_code == 410 and "expired" in response.content.decode()
    staff.user.refresh_from_db()
    assert staff.user.check_password(PASSWORD)


def test_tampered_link_is_refused(client):
    staff = make_staff()
    client.post(reverse("staff:password_reset"), {"email": staff.user.email})
    link = _link(mail.outbox[0])
    assert client.get(link[:-3] + "xx/").status_code == 400
    assert (
        client.get(reverse("staff:password_reset_confirm", kwargs={"token": "junk"})).status_code
        == 400
    )


def test_reset_keeps_the_doors_apart(client):
    patient = _patient_login()
    client.post(reverse("staff:password_reset"), {"email": patient.email})
    assert mail.outbox == []  # a patient is not a staff login
    client.post(reverse("portal:password_reset"), {"email": patient.email})
    [message] = mail.outbox
    link = _link(message)
    assert link.startswith("/portal/password-reset/")
    # The patient's link is not valid at the staff door.
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert (
        client.get(reverse("staff:password_reset_confirm", kwargs={"token": token})).status_code
        == 400
    )
    response = client.post(link, {"password": NEW, "confirm": NEW})
    assert response["Location"] == reverse("portal:login")
    assert (
        client.post(reverse("portal:login"), {"login": patient.email, "password": NEW}).status_code
        == 302
    )


def test_reset_refuses_a_weak_or_mistyped_password_with_a_message(client):
    staff = make_staff()
    client.post(reverse("staff:password_reset"), {"email": staff.user.email})
    link = _link(mail.outbox[0])
    page = client.post(link, {"password": "short", "confirm": "short"}).content.decode()
    assert "at least 12 characters" in page
    page = client.post(link, {"password": NEW, "confirm": NEW + "x"}).content.decode()
    assert "not the same" in page.lower()
    staff.user.refresh_from_db()
    assert staff.user.check_password(PASSWORD)  # and the link still works
    assert client.post(link, {"password": NEW, "confirm": NEW}).status_code == 302


@pytest.mark.parametrize("password", ["short pass", "{email}", "123456789012345", "password1234"])
def test_password_rules(password):
    staff = make_staff()
    with pytest.raises(ValidationFailed):
        password_validate(password.format(email=staff.user.email), staff.user)


def test_a_password_like_the_email_is_refused():
    staff = make_staff()
    staff.user.email = "margaret.whitfield@clinic.example"
    with pytest.raises(ValidationFailed, match="too similar"):
        password_validate("margaret.whitfield", staff.user)


def test_change_password_needs_the_current_one_and_ends_other_sessions(client):
    staff = make_staff()
    elsewhere = Client()
    elsewhere.force_login(staff.user)
    client.force_login(staff.user)
    url = reverse("staff:password_change")
    page = client.post(
        url, {"current_password": "wrong one", "password": NEW, "confirm": NEW}
    ).content.decode()
    assert "not your current password" in page
    response = client.post(url, {"current_password": PASSWORD, "password": NEW, "confirm": NEW})
    assert response.status_code == 302
    assert client.get(reverse("staff:dashboard")).status_code == 200  # this session stays
    assert elsewhere.get(reverse("people:patients")).status_code == 302  # the other one ended
    assert ActivityLog.objects.filter(verb="password_changed").count() == 1


def test_patient_changes_own_password_in_the_portal(client):
    patient = _patient_login()
    client.force_login(patient.user)
    url = reverse("portal:password_change")
    assert "Change your password" in client.get(url).content.decode()
    response = client.post(url, {"current_password": PASSWORD, "password": NEW, "confirm": NEW})
    assert response["Location"] == reverse("portal:home")
    patient.user.refresh_from_db()
    assert patient.user.check_password(NEW)


def test_password_pages_keep_their_door(client):
    patient = _patient_login()
    client.force_login(patient.user)
    assert client.get(reverse("staff:password_change"))["Location"] == reverse("portal:home")
    client.logout()
    assert client.get(reverse("staff:password_change"))["Location"].startswith(
        reverse("staff:login")
    )
    assert client.get(reverse("portal:password_change"))["Location"].startswith(
        reverse("portal:login")
    )
    client.force_login(make_staff().user)
    assert client.get(reverse("portal:password_change"))["Location"].startswith(
        reverse("portal:login")
    )


def test_a_login_whose_password_fails_the_rules_must_change_it(client):
    staff = make_staff()
    staff.user.set_password("tiny")  # set before the rules, as an older account would be
    staff.user.save()
    response = client.post(
        reverse("staff:login"), {"login": staff.user.username, "password": "tiny"}
    )
    assert response["Location"] == reverse("staff:password_change")
    assert client.get(reverse("staff:dashboard"))["Location"] == reverse("staff:password_change")
    assert client.get("/api/v1/me").status_code == 403
    assert "no longer meets" in client.get(reverse("staff:password_change")).content.decode()
    client.post(
        reverse("staff:password_change"),
        {"current_password": "tiny", "password": NEW, "confirm": NEW},
    )
    assert client.get(reverse("staff:dashboard")).status_code == 200


def test_a_login_that_meets_the_rules_goes_straight_in(client):
    staff = make_staff()
    response = client.post(
        reverse("staff:login"), {"login": staff.user.username, "password": PASSWORD}
    )
    assert response["Location"] == reverse("staff:dashboard")
