"""In a real browser: an Account Owner logs in, is held on the two-factor set-up page, scans (reads)
the QR code's key into an "app", confirms with its code, sees ten recovery codes, reaches the
dashboard; then logs in again and gives the app's code after the password."""

import base64

import pytest
from axe_playwright_python.sync_playwright import Axe
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from carnet.conftest import PASSWORD, make_staff
from carnet.core.permissions import AccessLevel

from .test_two_factor import code_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _accessible(page):
    results = Axe().run(page, context={"include": [["main"]], "exclude": [[".messages"]]})
    assert results.violations_count == 0, results.generate_report()


def _password_step(page, user):
    page.goto("/login/")
    page.get_by_label("Username or email").fill(user.username)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_an_owner_enrols_an_authenticator_and_logs_in_with_it(page, settings):
    settings.TWO_FACTOR_ENFORCED = True
    owner = make_staff(AccessLevel.ACCOUNT_OWNER, name="Olga Owner")
    _password_step(page, owner.user)
    expect(page.get_by_text("Your account needs two-factor log-in")).to_be_visible()
    expect(page.get_by_test_id("two-factor-qr").locator("svg")).to_be_visible()
    _accessible(page)
    page.goto("/patients/")  # held: nothing else until the second factor is set up
    expect(page.get_by_role("heading", name="Two-factor log-in")).to_be_visible()
    secret = page.get_by_test_id("two-factor-secret").inner_text()
    device = TOTPDevice.objects.get(user=owner.user, confirmed=False)
    assert base64.b32encode(device.bin_key).decode().rstrip("=") == secret.replace(
        " ", ""
    )  # what the app gets
    page.get_by_label("Code from the app").fill(code_for(device))
    page.get_by_role("button", name="Turn on two-factor log-in").click()
    expect(page.get_by_test_id("recovery-codes").locator("li")).to_have_count(10)
    _accessible(page)
    page.get_by_role("link", name="I have saved them, continue").click()
    expect(page).to_have_url(
        f"{page.url.split('/patients/')[0].rstrip('/')}/patients/"
    )  # back where she was going

    page.get_by_role("button", name="Log out").click()
    _password_step(page, owner.user)
    expect(page.get_by_role("heading", name="Your two-factor code")).to_be_visible()
    expect(page.get_by_label("Remember this browser")).not_to_be_checked()
    _accessible(page)
    device.refresh_from_db()
    page.locator("#id_code").fill(code_for(device, 1))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Your two-factor code")).not_to_be_visible()
    expect(page.get_by_text("Hello Olga Owner")).to_be_visible()  # the dashboard
