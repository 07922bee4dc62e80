"""Portal invitations: staff send a link, the patient chooses the password (issue 18 point 2)."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse

from carnet.conftest import Api, make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import Conflict, NotAllowed, ValidationFailed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.people import invitations

pytestmark = pytest.mark.django_db
CHOSEN = "my own secret passphrase"


@pytest.fixture(autouse=True)
def _send_on_commit(monkeypatch):
    """Email leaves after the commit; the test client's requests run inside the
    test's transaction."""
    monkeypatch.setattr(
        "django.db.transaction.on_commit", lambda func, using=None, robust=False: func()
    )


@pytest.fixture
def desk(db):
    return make_staff(AccessLevel.PRACTITIONER_FRONT_DESK)


def _link() -> str:
    return re.search(r"http://testserver(/\S+/)", mail.outbox[-1].body).group(1)


def test_staff_send_an_invitation_from_the_profile_and_never_type_a_password(client, desk):
    patient = make_patient(email="Ana@Example.test")
    client.force_login(desk.user)
    profile = client.get(reverse("people:patient", kwargs={"pk": patient.pk})).content.decode()
    assert "Send portal invitation" in profile and 'type="password"' not in profile
    response = client.post(reverse("people:portal_invite", kwargs={"pk": patient.pk}), follow=True)
    assert "Invitation sent to Ana@Example.test" in response.content.decode()
    [message] = mail.outbox
    assert message.to == ["Ana@Example.test"] and "/portal/invitation/" in message.body
    patient.refresh_from_db()
    assert patient.user is None  # no login until the patient chooses a password
    entry = ActivityLog.objects.get(verb="portal_invited")
    assert entry.actor_id == desk.user.pk and entry.object_id == str(patient.pk)


def test_the_patient_chooses_the_password_once(client, desk):
    patient = make_patient(email="Ana@Example.test")
    invitations.patient_portal_invite(
        actor=desk.user, patient=patient, base_url="http://testserver"
    )
    link = _link()
    page = client.get(link).content.decode()
    assert "Ana@Example.test" in page and "Choose a password" in page
    mistyped = client.post(link, {"password": CHOSEN, "confirm": CHOSEN + "!"}).content.decode()
    assert "not the same" in mistyped.lower()
    weak = client.post(link, {"password": "short", "confirm": "short"}).content.decode()
    assert "at least 12 characters" in weak
    response = client.post(link, {"password": CHOSEN, "confirm": CHOSEN})
    assert response["Location"] == reverse("portal:login")
    patient.refresh_from_db()
    assert patient.user.username == "ana@example.test" and patient.user.check_password(CHOSEN)
    assert (
        client.post(
            reverse("portal:login"), {"login": "ana@example.test", "password": CHOSEN}
        ).status_code
        == 302
    )
    # Used up: the link cannot set another password.
    client.logout()
    again = client.post(link, {"password": "someone else's pass", "confirm": "someone else's pass"})
    assert again.status_code == 400 and "already been used" in again.content.decode()
    patient.user.refresh_from_db()
    assert patient.user.check_password(CHOSEN)


def test_an_invitation_expires(client, desk):
    patient = make_patient()
    invitations.patient_portal_invite(
        actor=desk.user, patient=patient, base_url="http://testserver"
    )
    link = _link()
    with clock.frozen(clock.now() + timedelta(days=7, minutes=1)):
        response = client.post(link, {"password": CHOSEN, "confirm": CHOSEN})
    assert response.status_code == 410 and "expired" in response.content.decode()
    patient.refresh_from_db()
    assert patient.user is None


def test_changing_the_email_retires_the_invitation(client, desk):
    patient = make_patient(email="old@example.test")
    invitations.patient_portal_invite(
        actor=desk.user, patient=patient, base_url="http://testserver"
    )
    link = _link()
    patient.email = "new@example.test"
    patient.save()
    assert client.get(link).status_code == 400


def test_a_tampered_invitation_is_refused(client):
    assert (
        client.get(reverse("portal:invitation", kwargs={"token": "1.abc:xyz:123"})).status_code
        == 400
    )


def test_invitation_rules(desk):
    with pytest.raises(ValidationFailed):
        invitations.patient_portal_invite(
            actor=desk.user, patient=make_patient(email=""), base_url="http://testserver"
        )
    taken = make_patient(email="same@example.test")
    invitations.patient_portal_invite(actor=desk.user, patient=taken, base_url="http://testserver")
    invitations.portal_invitation_accept(
        token=_link().rstrip("/").rsplit("/", 1)[1], password=CHOSEN, confirm=CHOSEN
    )
    taken.refresh_from_db()
    with pytest.raises(Conflict) as exc:
        invitations.patient_portal_invite(
            actor=desk.user, patient=taken, base_url="http://testserver"
        )
    assert exc.value.code == "portal_login_exists"
    with pytest.raises(
        Conflict
    ) as exc:  # another patient record with the same email cannot take that login
        invitations.patient_portal_invite(
            actor=desk.user,
            patient=make_patient(email="SAME@example.test"),
            base_url="http://testserver",
        )
    assert exc.value.code == "login_taken"
    with pytest.raises(NotAllowed):
        invitations.patient_portal_invite(
            actor=make_staff(AccessLevel.PRACTITIONER_LIMITED).user,
            patient=make_patient(),
            base_url="http://testserver",
        )


def test_invitation_through_the_api(desk):
    patient = make_patient(email="api@example.test")
    api = Api(desk.user)
    response = api.post(f"/patients/{patient.pk}/portal-invitation", {})
    assert response.status_code == 202 and response.json() == {
        "sent_to": "api@example.test",
        "valid_days": 7,
    }
    assert mail.outbox[-1].to == ["api@example.test"]
    no_email = make_patient(email="")
    response = api.post(f"/patients/{no_email.pk}/portal-invitation", {})
    assert response.status_code == 422 and "email" in response.json()["detail"]
    assert api.post("/patients/424242/portal-invitation", {}).status_code == 404
