"""The dashboard's Today (issue 20): today's appointments per location and practitioner, who owes,
passes expiring or running low, declined autopay charges, in a fixed handful of queries."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from carnet.billing.models import CardAttempt
from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.passes.models import PassInvoice
from carnet.passes.tests.factories import package_template, sold_package
from carnet.scheduling import arrival
from carnet.scheduling.services import appointment_cancel
from carnet.scheduling.tests.factories import at, book, working_practitioner

pytestmark = pytest.mark.django_db
MONDAY = "2030-01-07"
NOW = at(MONDAY, "08:00")


@pytest.fixture(autouse=True)
def _monday():
    with clock.frozen(NOW):
        yield


def _prac(catalog, name):
    return working_practitioner(catalog["location"], name)


@pytest.fixture
def desk(client, front_desk):
    client.force_login(front_desk.user)
    return client


def _today(client):
    response = client.get(reverse("staff:dashboard"))
    assert response.status_code == 200
    return response, response.content.decode()


def test_today_lists_the_days_appointments_by_practitioner_with_status(desk, front_desk, catalog):
    ortega, brandt = _prac(catalog, "Dr Ines Ortega"), _prac(catalog, "Dr Kai Brandt")
    rosalind = make_patient(first_name="Rosalind", last_name="Achebe")
    first = book(front_desk, catalog, ortega, at(MONDAY, "10:00"), patients=[rosalind])
    second = book(front_desk, catalog, brandt, at(MONDAY, "11:00"))
    gone = book(front_desk, catalog, brandt, at(MONDAY, "13:00"))
    appointment_cancel(actor=front_desk.user, appointment=gone)
    tomorrow = book(front_desk, catalog, ortega, at("2030-01-08", "10:00"))
    arrival.appointment_arrive(actor=front_desk.user, appointment=second)

    response, html = _today(desk)
    board = response.context["locations"]
    [day] = board
    assert day.day == dt.date(2030, 1, 7)
    assert [(p.display_name, [a.pk for a in rows]) for p, rows in day.practitioners] == [
        ("Dr Ines Ortega", [first.pk]),
        ("Dr Kai Brandt", [second.pk]),
    ]  # not cancelled, not tomorrow's
    assert day.counts == {"booked": 1, "arrived": 1, "no_show": 0}
    assert "1 to arrive" in html and "1 arrived" in html
    assert "Rosalind Achebe" in html and "10:00–11:00" in html
    assert f'data-testid="today-appointment-{tomorrow.pk}"' not in html
    # One click from arriving: the schedule opens on that day with the appointment's panel.
    assert (
        f"{reverse('scheduling:schedule')}?location={catalog['location'].pk}&date={MONDAY}"
        f"&open={first.pk}"
    ) in html


def test_today_marks_who_owes_and_lists_balances(desk, front_desk, catalog):
    ortega = _prac(catalog, "Dr Ines Ortega")
    owes = make_patient(first_name="Owen", last_name="Debt")
    visit = book(front_desk, catalog, ortega, at(MONDAY, "09:00"), patients=[owes])
    arrival.appointment_arrive(actor=front_desk.user, appointment=visit)  # 90.00 + 13% tax, unpaid
    response, html = _today(desk)
    assert response.context["owing_today"] == [
        {"patient_id": owes.pk, "first_name": "Owen", "last_name": "Debt", "owing_minor": 10170}
    ]
    assert response.context["owing"][0]["patient_id"] == owes.pk
    assert f'data-testid="owes-{visit.pk}"' in html and "Owes $101.70" in html
    assert reverse("billing:tab", args=[owes.pk]) in html


def test_today_shows_passes_expiring_and_running_low(desk, front_desk, catalog):
    ortega = _prac(catalog, "Dr Ines Ortega")
    regular, other = make_patient(first_name="Rita", last_name="Regular"), make_patient()
    five = package_template(catalog, name="5 massages", quantity=5)
    one = package_template(catalog, name="1 massage", quantity=1)
    soon = sold_package(front_desk, other, five, expires_on=dt.date(2030, 1, 20))
    later = sold_package(front_desk, other, five, expires_on=dt.date(2030, 3, 1))
    low = sold_package(front_desk, regular, one)
    sold_package(front_desk, other, one)  # running low too, but not one of today's patients
    book(front_desk, catalog, ortega, at(MONDAY, "09:00"), patients=[regular])

    response, html = _today(desk)
    assert [p.pk for p in response.context["expiring"]] == [soon.pk]
    assert later.pk not in [p.pk for p in response.context["expiring"]]
    assert [p.pk for p in response.context["running_low"]] == [low.pk]
    assert reverse("passes:detail", args=[soon.pk]) in html and "ends 20 Jan" in html
    assert reverse("passes:sell", args=[regular.pk]) in html  # sell the renewal in one click


def test_today_lists_declined_autopay_charges(desk, front_desk, catalog):
    patient = make_patient(first_name="Dee", last_name="Clined")
    sold = sold_package(front_desk, patient, package_template(catalog), paid=False)
    PassInvoice.objects.filter(sold_pass=sold).update(
        charge_attempts=1, last_error="The card was declined."
    )
    response, html = _today(desk)
    assert [row.sold_pass_id for row in response.context["declined"]] == [sold.pk]
    assert "The card was declined." in html and reverse("billing:tab", args=[patient.pk]) in html


def test_today_shows_each_person_only_what_they_may_act_on(client, front_desk, catalog):
    ortega, brandt = _prac(catalog, "Dr Ines Ortega"), _prac(catalog, "Dr Kai Brandt")
    mine = book(front_desk, catalog, ortega, at(MONDAY, "10:00"))
    theirs = book(front_desk, catalog, brandt, at(MONDAY, "10:00"))
    arrival.appointment_arrive(actor=front_desk.user, appointment=mine)
    ortega.access_level = AccessLevel.PRACTITIONER_LIMITED
    ortega.save()
    client.force_login(ortega.user)
    response, html = _today(client)
    [day] = response.context["locations"]
    assert [a.pk for _, rows in day.practitioners for a in rows] == [mine.pk]
    assert f'data-testid="today-appointment-{theirs.pk}"' not in html
    assert response.context["owing"] is None and "Balances owing" not in html and "Owes" not in html

    no_billing = make_staff(AccessLevel.FRONT_DESK, billing=False)
    client.force_login(no_billing.user)
    response, html = _today(client)
    assert response.context["owing"] is None and "Declined autopay" not in html
    assert f'data-testid="today-appointment-{theirs.pk}"' in html


def _count_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        _today(client)
    return len(queries)


def test_today_costs_the_same_few_queries_however_busy_the_day(desk, front_desk, catalog):
    pracs = [_prac(catalog, f"Dr {n}") for n in ("A", "B")]
    template = package_template(catalog, quantity=2)

    def fill(hours):
        for i, hour in enumerate(hours):
            patient = make_patient()
            sold_package(front_desk, patient, template, expires_on=dt.date(2030, 1, 20))
            visit = book(
                front_desk, catalog, pracs[i % 2], at(MONDAY, f"{hour:02d}:00"), patients=[patient]
            )
            if i % 3 == 0:
                arrival.appointment_arrive(actor=front_desk.user, appointment=visit)

    fill([9, 10])
    _today(desk)  # the session's first request stores its log-in time: not part of the board
    few = _count_queries(desk)
    fill([11, 12, 13, 14, 15, 16])
    many = _count_queries(desk)
    assert few == many
    # Session, user and staff (and the session's save), then eleven for the board: clinic,
    # locations, the actor's locations, appointments with their rows and patients, two owing lists,
    # two pass lists, declined, past-due memberships (issue 22).
    assert many <= 20


def test_card_payments_to_review_are_counted_for_billing_administrators_only(client, desk, catalog):
    """Issue 20 point 5: one click from Today to the card payments whose outcome needs a look."""
    patient = make_patient()
    CardAttempt.objects.create(
        kind="charge",
        purpose="payment",
        request_key="r1",
        gateway_key="g1",
        status="unknown",
        patient=patient,
        amount_minor=5000,
        currency="CAD",
        created_at=at(MONDAY, "06:00"),
    )
    _, html = _today(desk)
    assert 'data-testid="today-review"' not in html  # Front Desk cannot open the review page
    client.force_login(make_staff(AccessLevel.ADMIN_BILLING, name="Admin").user)
    _, html = _today(client)
    assert "1 card payment to review" in html and reverse("billing:card_review") in html
