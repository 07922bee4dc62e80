"""In a real browser: a forgotten password reset by email, and a patient accepting a
portal invitation."""

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.core import mail
from playwright.sync_api import expect

from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.invitations import patient_portal_invite

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
NEW = "a brand new passphrase 42"


def _accessible(page):
    results = Axe().run(page, context={"include": [["main"]], "exclude": [[".messages"]]})
    assert results.violations_count == 0, results.generate_report()


def _link() -> str:
    return re.search(r"https?://[^/\s]+(/\S+/)", mail.outbox[-1].body).group(1)


def test_staff_reset_a_forgotten_password_by_email(page, live_server):
    staff = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    page.goto("/login/")
    page.get_by_role("link", name="Forgotten your password?").click()
    _accessible(page)
    page.get_by_label("Your email address").fill(staff.user.email)
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    page.goto(_link())
    _accessible(page)
    page.locator("#id_password").fill(NEW)
    page.get_by_label("New password again").fill(NEW)
    page.get_by_role("button", name="Save the new password").click()
    expect(page.get_by_text("Your password is changed")).to_be_visible()
    page.get_by_label("Username or email").fill(staff.user.username)
    page.get_by_label("Password").fill(NEW)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Hello Dana Desk")).to_be_visible()


def test_patient_accepts_a_portal_invitation_and_logs_in(page, live_server):
    desk = make_staff(AccessLevel.FRONT_DESK)
    patient = make_patient(first_name="Marguerite", email="m.okafor@example.test")

    patient_portal_invite(actor=desk.user, patient=patient, base_url=live_server.url)
    page.goto(_link())
    expect(page.get_by_text("m.okafor@example.test")).to_be_visible()
    _accessible(page)
    page.locator("#id_password").fill(NEW)
    page.get_by_label("New password again").fill(NEW)
    page.get_by_role("button", name="Save my password").click()
    expect(page.get_by_text("Your password is set")).to_be_visible()
    page.get_by_label("Username or email").fill("m.okafor@example.test")
    page.get_by_label("Password").fill(NEW)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Hello Marguerite")).to_be_visible()
