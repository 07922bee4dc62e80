"""Times a person reads on a page are in the clinic's time zone: a clinic in America/Vancouver and a
payment at 23:30 there (07:30 the next day in UTC) read 23:30 on that day, on the patient's Pay
Balance thank-you page (with the zone named) and on the staff billing tab."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.urls import reverse

from carnet.billing import emails
from carnet.billing.payments import payment_receive
from carnet.billing.tests.factories import manual_invoice
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db
LATE = dt.datetime(2026, 1, 15, 23, 30, tzinfo=ZoneInfo("America/Vancouver"))


def test_a_payment_at_half_past_eleven_in_vancouver_reads_so_on_the_pages(catalog, owner):
    clinic_set(time_zone="America/Vancouver")
    patient = make_patient(email="van@example.test")
    with clock.frozen(LATE):
        invoice = manual_invoice(owner, patient, 5000, category=catalog["income_category"])
        payment = payment_receive(
            actor=owner.user,
            patient=patient,
            method="cash",
            amount_minor=5000,
            allocations=[(invoice, 5000)],
        )
    assert payment.received_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") == "2026-01-16 07:30"
    token = emails.pay_link_token(patient)
    page = (
        Client().get(reverse("portal:pay_balance_paid", args=[token, payment.pk])).content.decode()
    )
    assert 'data-testid="paid-at">2026-01-15 23:30 PST<' in page
    staff = Client()
    staff.force_login(owner.user)
    tab = staff.get(reverse("billing:tab", args=[patient.pk])).content.decode()
    assert "2026-01-15 23:30" in tab and "07:30" not in tab
