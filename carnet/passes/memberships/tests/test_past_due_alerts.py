"""Front-desk alerts (issue 22 point 4): past-due memberships on the patient's profile, the
appointment panel (with "Retry now" through the card attempt path and "Take another payment") and
Today; the Past due report with CSV/XLSX, whose totals tie to A/R for those patients."""

import csv
import datetime as dt
import io
import re

import pytest
from django.urls import reverse

from carnet.billing.models import CardAttempt
from carnet.billing.payments import payment_receive
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import Api, make_patient, make_staff, race
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import services as memberships
from carnet.passes.memberships.card_requests import card_update_request
from carnet.passes.memberships.retry import membership_retry_now
from carnet.passes.models import Pass, PassInvoice
from carnet.passes.tests.factories import at, membership_template, practitioner
from carnet.reports.past_due import past_due_ar_check, past_due_report
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db

DECLINES, GOOD = "4000000000009995", "4242424242424242"


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "prac": practitioner(catalog["location"]),
        }


def _card(s, patient, number):
    return card_store(
        actor=s["fd"].user,
        patient=patient,
        number=number,
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="P",
    )


def _automatic(s, number=DECLINES, start=None):
    patient = make_patient()
    return memberships.membership_sell(
        actor=s["fd"].user,
        patient=patient,
        template=membership_template(s["cat"]),
        payment_mode="automatic",
        card=_card(s, patient, number),
        start_date=start,
    )


def _world(s):
    """Two automatic memberships declined since 1 May (one owing two cycles), one manual unpaid
    since 1 May, and one in good standing; the job has run every day to 20 May."""
    declined = _automatic(
        s, start=dt.date(2026, 4, 1)
    )  # April's cycle invoiced at once, May's declined
    manual = memberships.membership_sell(
        actor=s["fd"].user,
        patient=make_patient(),
        template=membership_template(s["cat"], name="Yoga monthly"),
    )
    good = _automatic(s, GOOD)
    for day in range(1, 21):
        passes_daily(today=dt.date(2026, 5, day))
    return declined, manual, good


def test_the_report_lists_what_is_owed_and_ties_to_ar(s, client):
    declined, manual, good = _world(s)
    with clock.frozen(at("2026-05-20", "10:00")):
        table = past_due_report(actor=s["admin"].user)
    rows = {r["id"]: r for r in table.rows}
    assert set(rows) == {declined.pk, manual.pk}
    assert (rows[declined.pk]["cycles"], rows[declined.pk]["amount"]) == (2, 12000)
    assert (
        rows[declined.pk]["days"] == 49
        and rows[declined.pk]["status"] == "Not covering new bookings"
    )
    assert "insufficient funds" in rows[declined.pk]["last_reason"]
    assert rows[declined.pk]["next_retry"] == "None (retries over)"
    assert rows[manual.pk]["last_reason"] == "Not paid at the desk"
    patients = [declined.patient_id, manual.patient_id]
    assert (
        table.totals["amount"] == sum(balance(accounts.AR, patient_id=p) for p in patients) == 18000
    )
    client.force_login(s["admin"].user)
    with clock.frozen(at("2026-05-20", "10:00")):
        page = client.get(reverse("reports:past_due")).content.decode()
        assert declined.patient.full_name in page and "Past due memberships" in page
        answer = client.get(reverse("reports:past_due") + "?format=csv")
        lines = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
        assert any(declined.patient.full_name in line for line in lines)
        xlsx = client.get(reverse("reports:past_due") + "?format=xlsx")
        assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
        assert "Past due memberships" in client.get(reverse("reports:index")).content.decode()

        # Patients who owe other things too: the page ties the amount to their A/R in the ledger.
        # A visit owed by one, part of a past-due cycle paid at the desk by the other, and a
        # patient with no membership past due owing a visit (not listed, not counted).
        category = s["cat"]["income_category"]
        manual_invoice(s["fd"], declined.patient, 4550, category=category)
        manual_invoice(s["fd"], good.patient, 999, category=category)
        owed = PassInvoice.objects.select_related("invoice").get(sold_pass=manual, seq=1).invoice
        payment_receive(
            actor=s["fd"].user,
            patient=manual.patient,
            method="cash",
            amount_minor=1000,
            allocations=[(owed, 1000)],
        )
        table = past_due_report(actor=s["admin"].user)
        assert table.totals["amount"] == 17000
        check = past_due_ar_check(table)
        assert (check["ledger_minor"], check["report_minor"], check["other_minor"]) == (
            sum(balance(accounts.AR, patient_id=p) for p in patients),
            17000,
            4550,
        )
        assert check["ledger_minor"] == 21550 and check["ties_out"]
        page = client.get(reverse("reports:past_due")).content.decode()
        assert "accounts receivable of these 2 patients in the ledger $215.50" in page
        assert "past due here $170.00 and their other open invoices $45.50;\nthey agree." in page
        assert past_due_ar_check(past_due_report(actor=s["fd"].user)) is None  # own scope


def test_profile_panel_and_today_show_the_alert(s, client):
    declined, _, good = _world(s)
    client.force_login(s["fd"].user)
    with clock.frozen(at("2026-05-20", "10:00")):
        profile = client.get(reverse("people:patient", args=[declined.patient_id])).content.decode()
        assert 'data-testid="past-due-alert"' in profile and "owes $120.00 for 2 cycles" in profile
        assert ">Retry now</button>" in profile and "Take another payment" in profile
        assert (
            'data-testid="past-due-alert"'
            not in client.get(reverse("people:patient", args=[good.patient_id])).content.decode()
        )
        appointment = appointment_book(
            actor=s["fd"].user,
            treatment=s["cat"]["treatment"],
            practitioner=s["prac"],
            location=s["cat"]["location"],
            start=at("2026-05-21", "09:00"),
            patients=[declined.patient],
        )
        panel = client.get(
            reverse("scheduling:appointment", args=[appointment.pk])
        ).content.decode()
        assert 'data-testid="past-due-alert"' in panel and "no longer covers new bookings" in panel
        assert reverse("billing:payment_new", args=[declined.patient_id]) in panel
        today = client.get(reverse("staff:dashboard")).content.decode()
        assert 'data-testid="today-past-due"' in today and declined.patient.full_name in today
        assert ">Retry now</button>" in panel
        # Point 3: once a new card is asked for, the desk sees it where it works (the profile lists
        # open requests in its own notice, once).
        pages = [
            reverse("scheduling:appointment", args=[appointment.pk]),
            reverse("people:patient", args=[declined.patient_id]),
            reverse("staff:dashboard"),
        ]
        assert not any("Card update requested" in page for page in (panel, profile, today))
        card_update_request(
            sold_pass=declined, actor=s["fd"].user, base_url="https://clinic.example"
        )
        for url in pages:
            page = client.get(url).content.decode()
            assert page.count("Card update requested (sent 2026-05-20)") == 1, url


def test_retry_now_charges_through_the_attempt_path_and_clears_the_alert(s, client):
    declined, _, _ = _world(s)
    good_card = _card(s, declined.patient, GOOD)
    Pass.objects.filter(pk=declined.pk).update(
        card=good_card
    )  # the patient fixed their card with the bank
    client.force_login(s["fd"].user)
    with clock.frozen(at("2026-05-20", "10:00")):
        back = reverse("people:patient", args=[declined.patient_id])
        answer = client.post(
            reverse("memberships:retry_now", args=[declined.pk]), {"next": back}, follow=True
        )
        assert answer.redirect_chain[-1][0] == back
        assert "the card was charged" in answer.content.decode()
        assert (
            TestGatewayCharge.objects.count() == 1 + 2
        )  # the good membership's May cycle, then the two owed
        assert balance(accounts.AR, patient_id=declined.patient_id) == 0
        declined.refresh_from_db()
        assert declined.past_due_since is None
        assert 'data-testid="past-due-alert"' not in client.get(back).content.decode()
        again = client.post(
            reverse("memberships:retry_now", args=[declined.pk]),
            {"next": "https://evil.test/"},
            follow=True,
        )
        assert "owes nothing past due" in again.content.decode()
        assert again.redirect_chain[-1][0] == reverse("memberships:detail", args=[declined.pk])
    assert_ledger_ok()


def test_retry_now_clicked_twice_tries_the_card_once(s, client):
    declined, _, _ = _world(s)
    client.force_login(s["fd"].user)
    with clock.frozen(at("2026-05-20", "10:00")):
        profile = client.get(reverse("people:patient", args=[declined.patient_id])).content
        key = re.search(rb'name="form_key" value="([0-9a-f]{32})"', profile).group(1).decode()
        tries = CardAttempt.objects.filter(patient_id=declined.patient_id)
        before = tries.count()
        url = reverse("memberships:retry_now", args=[declined.pk])
        first = client.post(url, {"form_key": key}, follow=True).content.decode()
        assert "declined again" in first
        assert tries.count() > before  # the click tried the card
        once = tries.count()
        second = client.post(url, {"form_key": key}, follow=True).content.decode()
        assert "the card was not tried twice" in second
        assert tries.count() == once
        client.post(url, {"form_key": "f" * 32}, follow=True)  # a fresh page's button
        assert tries.count() > once


def test_retry_now_declined_again_says_so_and_the_api_replays_with_its_key(s):
    declined, _, _ = _world(s)
    api = Api(s["fd"].user)
    with clock.frozen(at("2026-05-20", "10:00")):
        headers = {"Idempotency-Key": "retry-1"}
        first = api.post(f"/passes/{declined.pk}/retry-now", None, **headers)
        assert first.status_code == 200, first.content
        assert first.json()["outcome"] == "declined"
        tries = PassInvoice.objects.filter(sold_pass=declined).values_list(
            "charge_attempts", flat=True
        )
        before = sorted(tries)
        assert api.post(f"/passes/{declined.pk}/retry-now", None, **headers).json() == first.json()
        assert sorted(tries) == before  # the replay tried nothing

        practitioner_api = Api(make_staff(AccessLevel.PRACTITIONER_LIMITED, practitioner=True).user)
        assert practitioner_api.post(f"/passes/{declined.pk}/retry-now", None).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_two_desks_retrying_at_once_and_the_job_charge_each_owed_cycle_once(s):
    declined = _automatic(s)
    passes_daily(today=dt.date(2026, 5, 1))
    Pass.objects.filter(pk=declined.pk).update(card=_card(s, declined.patient, GOOD))
    PassInvoice.objects.filter(sold_pass=declined).update(next_attempt_on=dt.date(2026, 5, 2))

    def work(i):
        with clock.frozen(at("2026-05-02", "10:00")):
            if i == 2:
                return passes_daily(today=dt.date(2026, 5, 2))
            return membership_retry_now(actor=s["fd"].user, sold_pass=declined)

    results = race(3, work)
    assert not [
        r for r in results if isinstance(r, Exception) and getattr(r, "code", "") != "nothing_owed"
    ], results
    assert TestGatewayCharge.objects.count() == 1
    assert balance(accounts.AR, patient_id=declined.patient_id) == 0
    assert_ledger_ok()
