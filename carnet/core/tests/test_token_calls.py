"""Bearer-token API calls skip the session, authentication, second-factor and message
middleware (core.token_calls); every other request still goes through each of them."""

import pytest
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django_otp.middleware import OTPMiddleware

from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.services import api_token_create

pytestmark = pytest.mark.django_db

# Django's own middleware, each by the method that does its work.
WATCHED = [
    (SessionMiddleware, "process_request"),
    (SessionMiddleware, "process_response"),
    (AuthenticationMiddleware, "process_request"),
    (OTPMiddleware, "__call__"),
    (MessageMiddleware, "process_request"),
    (MessageMiddleware, "process_response"),
]


@pytest.fixture
def ran(monkeypatch):
    """The watched methods that ran, by name."""
    seen = []
    for cls, name in WATCHED:
        original = getattr(cls, name)

        def spy(self, *args, _original=original, _name=f"{cls.__name__}.{name}", **kwargs):
            seen.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)
    return seen


def _token() -> str:
    return api_token_create(actor=make_staff(AccessLevel.ACCOUNT_OWNER).user, name="sync")[1]


def test_a_token_call_goes_through_none_of_them(client, ran):
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {_token()}"}
    assert client.get("/api/v1/me", **bearer).status_code == 200
    patient = {"first_name": "Ada", "last_name": "Token", "email": "ada@example.test"}
    created = client.post("/api/v1/patients", patient, content_type="application/json", **bearer)
    assert created.status_code == 201, created.content
    assert ran == []
    assert "sessionid" not in created.cookies


def test_a_wrong_token_is_refused_without_them(client, ran):
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION="Bearer crn_not-a-token")
    assert response.status_code == 401 and ran == []


def test_a_session_call_and_a_page_go_through_each_of_them(client, ran):
    staff = make_staff()
    client.force_login(staff.user)
    assert client.get("/api/v1/me").status_code == 200
    assert sorted(set(ran)) == sorted({f"{c.__name__}.{n}" for c, n in WATCHED})
    ran.clear()
    patient = make_patient()
    assert client.get(f"/patients/{patient.pk}/").status_code == 200
    assert sorted(set(ran)) == sorted({f"{c.__name__}.{n}" for c, n in WATCHED})


def test_a_bearer_header_off_the_api_is_no_token_call(client, ran):
    """Only the API takes tokens: a page with one still goes through the session's middleware
    (and, without a session, to the log-in)."""
    response = client.get("/patients/", HTTP_AUTHORIZATION=f"Bearer {_token()}")
    assert response.status_code == 302
    assert "SessionMiddleware.process_request" in ran
