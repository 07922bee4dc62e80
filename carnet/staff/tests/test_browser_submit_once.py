"""In a real browser: a second click on a button that moves money, while its request runs, sends
nothing (carnet.js disables a `data-submit-once` form meanwhile), so one payment, one card charge,
one no-show fee; and a repeat that gets through anyway is caught by the form's key on the server."""

import time

import pytest
from playwright.sync_api import expect

from carnet.billing import payments
from carnet.billing.models import Invoice, Payment
from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.scheduling import arrival
from carnet.scheduling.models import Status
from carnet.scheduling.tests.factories import at, book, clinic_set, practitioner

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _slow(monkeypatch, module, name: str, seconds: float = 1.5):
    """The live server runs in this process: its service takes `seconds`,
    so a second click lands mid-request."""
    real = getattr(module, name)

    def slow(**kwargs):
        time.sleep(seconds)
        return real(**kwargs)

    monkeypatch.setattr(module, name, slow)


def _posts(page, fragment: str) -> list:
    sent = []
    page.on(
        "request",
        lambda r: sent.append(r.url) if r.method == "POST" and fragment in r.url else None,
    )
    return sent


@pytest.mark.parametrize(
    "viewport", [{"width": 390, "height": 844}, {"width": 1366, "height": 900}]
)
def test_a_second_click_on_record_payment_by_card_sends_nothing(page, monkeypatch, viewport):
    page.set_viewport_size(viewport)
    make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    patient = make_patient(first_name="Marguerite", last_name="Okafor")
    card_store(
        actor=desk.user,
        patient=patient,
        number="4242424242424242",
        exp_month=12,
        exp_year=2099,
        cvc="123",
        holder="Marguerite Okafor",
    )
    _slow(monkeypatch, payments, "payment_receive")
    log_in(page, desk.user)
    page.goto(f"/patients/{patient.pk}/billing/payment/")
    page.get_by_label("Method").select_option("card_gateway")
    page.get_by_label("Amount received").fill("43.21")
    page.get_by_label("Card on file").select_option(index=1)
    sent = _posts(page, "/payment/")

    # In the page, not through Playwright (which would wait for the navigation the click starts):
    # click, then click again 0.3 s later while the request runs, noting whether the
    # button was disabled then.
    page.get_by_role("button", name="Record payment").evaluate("""b => {
        b.click();
        setTimeout(() => {
            sessionStorage.setItem("disabled", String(b.disabled)); b.click(); }, 300); }""")
    expect(page.get_by_text("Received $43.21")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('disabled')") == "true"
    assert len(sent) == 1, sent
    assert Payment.objects.count() == 1 and TestGatewayCharge.objects.count() == 1


def test_a_double_click_on_a_no_show_fee_button_marks_once_and_never_undoes(page, monkeypatch):
    clinic_set(no_show_fee_minor=2500)
    catalog = make_catalog()
    desk = make_staff(AccessLevel.FRONT_DESK, name="Dana Desk")
    patient = make_patient(first_name="Marguerite", last_name="Okafor")
    appointment = book(
        desk,
        catalog,
        practitioner(catalog["location"]),
        at("2030-01-07", "09:00"),
        patients=[patient],
    )
    _slow(monkeypatch, arrival, "appointment_no_show")
    log_in(page, desk.user)
    page.goto(f"/appointments/{appointment.pk}/")
    button = page.get_by_role("button", name="No-show (charge $25.00 fee)")
    form = button.locator("xpath=ancestor::form")
    first_submit = form.evaluate("f => [f.action, new URLSearchParams(new FormData(f)).toString()]")
    sent = _posts(page, "/no-show/")

    button.dblclick()
    expect(button).to_be_disabled()
    expect(page.get_by_test_id("appointment-status")).to_have_text("No-show")
    assert len(sent) == 1, sent
    assert appointment.visits.get().status == Status.NO_SHOW
    assert Invoice.objects.filter(patient=patient, deleted_at__isnull=True).count() == 1

    # The same submit arriving again anyway (a resend from a stale tab):
    # the form key makes it a no-op.
    again = page.evaluate(
        """([action, body]) => fetch(action, {method: "POST", body: body,
        headers: {"Content-Type": "application/x-www-form-urlencoded", "HX-Request": "true"}})
        .then(r => r.text())""",
        first_submit,
    )
    assert "already done" in again
    assert appointment.visits.get().status == Status.NO_SHOW
    assert Invoice.objects.filter(patient=patient, deleted_at__isnull=True).count() == 1
