"""The staff schedule pages: grid, booking form, the htmx appointment panel and the patient tab."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from carnet.billing.models import Invoice
from carnet.billing.payments import payment_receive
from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.passes.tests.factories import package_template, sold_package
from carnet.people.models import Shift
from carnet.scheduling.models import Appointment, Status

from .factories import at, book, clinic_set, practitioner, treatment_of

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}
MONDAY = "2030-01-07"


@pytest.fixture
def prac(catalog):
    staff = practitioner(catalog["location"])
    staff.display_name = "Dr Ines Ortega"
    staff.save()
    Shift.objects.create(
        staff=staff,
        location=catalog["location"],
        weekday=0,
        start_time=dt.time(9),
        end_time=dt.time(17),
    )
    return staff


@pytest.fixture
def desk(client, front_desk):
    client.force_login(front_desk.user)
    return client


def _booked(front_desk, catalog, prac, hhmm="10:00", **kw):
    return book(front_desk, catalog, prac, at(MONDAY, hhmm), **kw)


def _panel(client, appointment, action, data=None):
    return client.post(
        reverse(f"scheduling:appointment_{action}", args=[appointment.pk]), data or {}, headers=HX
    )


def test_day_view_draws_practitioners_appointments_and_free_slots(desk, front_desk, catalog, prac):
    patient = make_patient(first_name="Rosalind", last_name="Achebe")
    appt = _booked(front_desk, catalog, prac, patients=[patient])
    page = desk.get(
        reverse("scheduling:schedule"), {"location": catalog["location"].pk, "date": MONDAY}
    )
    html = page.content.decode()
    assert page.status_code == 200
    assert (
        "Dr Ines Ortega" in html
        and "Rosalind Achebe" in html
        and "Massage 60" in html
        and "Booked" in html
    )
    assert reverse("scheduling:appointment", args=[appt.pk]) in html
    assert (
        f"practitioner={prac.pk}&amp;start=2030-01-07T09:00" in html
    )  # a free slot links to booking
    assert "start=2030-01-07T10:15" not in html  # inside the appointment: not bookable
    assert ">Schedule</a>" in html  # main navigation


def test_week_view_and_navigation(desk, front_desk, catalog, prac):
    _booked(front_desk, catalog, prac)
    page = desk.get(
        reverse("scheduling:schedule"),
        {"location": catalog["location"].pk, "date": "2030-01-09", "view": "week"},
    )
    html = page.content.decode()
    assert (
        "Week of Mon 7 Jan 2030" in html and "date=2030-01-16" in html and "date=2030-01-02" in html
    )
    assert html.count("Dr Ines Ortega") >= 1 and "Massage 60" in html


def test_schedule_without_shifts_says_so(desk, catalog):
    page = desk.get(
        reverse("scheduling:schedule"), {"location": catalog["location"].pk, "date": MONDAY}
    )
    assert page.status_code == 200 and b"Nobody is working here" in page.content


def test_book_from_a_slot(desk, catalog, prac):
    patient = make_patient(first_name="Tomasz", last_name="Wren")
    url = (
        reverse("scheduling:book") + f"?location={catalog['location'].pk}&practitioner={prac.pk}"
        f"&start={MONDAY}T11:00"
    )
    form = desk.get(url + "&q=wren")
    html = form.content.decode()
    assert "autofocus" in html and "Tomasz Wren" in html and 'value="2030-01-07T11:00"' in html
    data = {
        "treatment": catalog["treatment"].pk,
        "patient": patient.pk,
        "practitioner": prac.pk,
        "start": f"{MONDAY}T11:00",
        "form_key": "k1",
    }
    response = desk.post(url, data)
    appt = Appointment.objects.get()
    assert response.status_code == 302 and f"open={appt.pk}" in response["Location"]
    assert appt.start == at(MONDAY, "11:00") and list(
        appt.visits.values_list("patient", flat=True)
    ) == [patient.pk]
    assert (
        desk.post(url, data).status_code == 302 and Appointment.objects.count() == 1
    )  # a resubmit books once


def test_double_booking_shows_on_the_form(desk, front_desk, catalog, prac):
    _booked(front_desk, catalog, prac, "11:00")
    url = reverse("scheduling:book") + f"?location={catalog['location'].pk}"
    response = desk.post(
        url,
        {
            "treatment": catalog["treatment"].pk,
            "patient": make_patient().pk,
            "practitioner": prac.pk,
            "start": f"{MONDAY}T11:30",
            "form_key": "k2",
        },
    )
    assert (
        response.status_code == 200
        and b"is already booked from 2030-01-07 11:00" in response.content
    )
    assert Appointment.objects.count() == 1


def test_panel_is_a_fragment_for_htmx_and_a_page_otherwise(desk, front_desk, catalog, prac):
    appt = _booked(front_desk, catalog, prac)
    fragment = desk.get(reverse("scheduling:appointment", args=[appt.pk]), headers=HX)
    assert b"<html" not in fragment.content and b"Arrive" in fragment.content
    assert b"No invoice yet" in fragment.content
    page = desk.get(reverse("scheduling:appointment", args=[appt.pk]))
    assert b"<html" in page.content and b"Dr Ines Ortega" in page.content


def test_arrive_shows_the_invoice_and_unarrive_reverses_it(desk, front_desk, catalog, prac):
    appt = _booked(front_desk, catalog, prac)
    arrived = _panel(desk, appt, "arrive")
    visit = appt.visits.get()
    assert arrived.status_code == 200 and b"<html" not in arrived.content
    assert (
        f'id="appt-{appt.pk}"'.encode() in arrived.content
        and b'hx-swap-oob="true"' in arrived.content
    )
    html = arrived.content.decode()
    assert "Arrived; the invoice is created." in html and f"#{visit.invoice.number}" in html
    assert "$101.70" in html  # 90.00 + 13 % tax, total and balance
    assert (
        reverse("billing:receipt", args=[visit.invoice_id]) in html
        and reverse("billing:tab", args=[visit.patient_id]) in html
    )
    back = _panel(desk, appt, "unarrive")
    appt.refresh_from_db()
    assert appt.status == Status.BOOKED and b"Un-arrived" in back.content


def test_unarrive_with_a_payment_is_a_message_not_an_error(desk, front_desk, owner, catalog, prac):
    appt = _booked(front_desk, catalog, prac)
    _panel(desk, appt, "arrive")
    visit = appt.visits.get()
    payment_receive(
        actor=owner.user,
        patient=visit.patient,
        method="cash",
        amount_minor=1000,
        allocations=[(visit.invoice, 1000)],
    )
    response = _panel(desk, appt, "unarrive")
    appt.refresh_from_db()
    assert response.status_code == 200 and b"msg-error" in response.content
    assert appt.status == Status.ARRIVED


def test_no_show_with_and_without_fee_and_undo(desk, front_desk, catalog, prac):
    clinic_set(no_show_fee_minor=2500)
    appt = _booked(front_desk, catalog, prac)
    _panel(desk, appt, "no_show", {"charge_fee": "1"})
    visit = appt.visits.get()
    assert visit.status == Status.NO_SHOW and visit.invoice.total_minor == 2500
    assert (
        b"Undo no-show" in _panel(desk, appt, "no_show", {"charge_fee": "1"}).content
    )  # again: no change
    undo = _panel(desk, appt, "no_show_undo")
    assert appt.visits.get().status == Status.BOOKED and b"Arrive" in undo.content
    _panel(desk, appt, "no_show", {"charge_fee": "0"})
    visit = appt.visits.get()
    assert visit.status == Status.NO_SHOW and visit.invoice is None


def test_a_panel_button_sent_twice_with_its_form_key_acts_once(desk, front_desk, catalog, prac):
    clinic_set(no_show_fee_minor=2500)
    appt = _booked(front_desk, catalog, prac)
    key = (
        re.search(
            rb'name="form_key" value="(\w+)"',
            desk.get(reverse("scheduling:appointment", args=[appt.pk]), headers=HX).content,
        )
        .group(1)
        .decode()
    )
    mark = {"charge_fee": "1", "form_key": key}
    first, second = _panel(desk, appt, "no_show", mark), _panel(desk, appt, "no_show", mark)
    assert first.status_code == second.status_code == 200
    assert b"already done" in second.content
    assert (
        Invoice.objects.filter(patient=appt.visits.get().patient, deleted_at__isnull=True).count()
        == 1
    )
    # The same panel's Undo button (same key, another submit) still works, once.
    _panel(desk, appt, "no_show_undo", {"form_key": key})
    again = _panel(desk, appt, "no_show_undo", {"form_key": key})
    assert appt.visits.get().status == Status.BOOKED and b"already done" in again.content


def test_cancel_and_a_second_cancel_is_a_message(desk, front_desk, catalog, prac):
    appt = _booked(front_desk, catalog, prac)
    _panel(desk, appt, "cancel")
    appt.refresh_from_db()
    assert appt.status == Status.CANCELLED
    again = _panel(desk, appt, "cancel")
    assert again.status_code == 200 and b"already cancelled" in again.content


def test_copy_and_reschedule(desk, front_desk, catalog, prac):
    appt = _booked(front_desk, catalog, prac)
    copied = _panel(desk, appt, "copy", {"start": f"{MONDAY}T14:00"})
    assert Appointment.objects.count() == 2 and b"Copied" in copied.content
    moved = _panel(desk, appt, "reschedule", {"start": f"{MONDAY}T12:00"})
    appt.refresh_from_db()
    assert appt.start == at(MONDAY, "12:00") and b"Rescheduled" in moved.content
    clash = _panel(desk, appt, "reschedule", {"start": f"{MONDAY}T14:30"})
    assert clash.status_code == 200 and b"is already booked" in clash.content
    bad = _panel(desk, appt, "copy", {"start": "soon"})
    assert bad.status_code == 200 and b"Check the form" in bad.content


def test_group_add_client_capacity_and_duplicate_as_class(desk, front_desk, catalog, prac):
    group = treatment_of(catalog, "group", capacity=2)
    klass = treatment_of(catalog, "class", capacity=5, name="Pilates class")
    appt = _booked(front_desk, catalog, prac, treatment=group)
    second, third = make_patient(), make_patient()
    added = _panel(desk, appt, "join", {"patient": second.pk})
    assert b"Patient added" in added.content and b"Duplicate as class" in added.content
    full = _panel(desk, appt, "join", {"patient": third.pk})
    assert full.status_code == 200 and b"has 2 places" in full.content
    dup = _panel(desk, appt, "duplicate_as_class", {"treatment": klass.pk})
    session = Appointment.objects.exclude(pk=appt.pk).get()
    assert session.treatment == klass and session.visits.count() == 2
    assert b"Pilates class" in dup.content and b"Duplicated as a class" in dup.content
    # A class participant arrives on their own.
    one = session.visits.first()
    _panel(desk, session, "arrive", {"patient": one.patient_id})
    assert list(session.visits.values_list("status", flat=True)) == [
        Status.ARRIVED,
        Status.BOOKED,
    ]


def test_a_practitioner_cannot_open_another_practitioners_appointment(
    client, front_desk, catalog, prac
):
    appt = _booked(front_desk, catalog, prac)
    limited = make_staff(AccessLevel.PRACTITIONER_LIMITED, practitioner=True)
    client.force_login(limited.user)
    response = client.get(reverse("scheduling:appointment", args=[appt.pk]))
    assert response.status_code == 403 and b"own schedule" in response.content
    assert client.post(reverse("scheduling:appointment_arrive", args=[appt.pk])).status_code == 403
    page = client.get(
        reverse("scheduling:schedule"), {"location": catalog["location"].pk, "date": MONDAY}
    )
    assert page.status_code == 200 and b"Massage 60" not in page.content


def test_patient_appointments_tab(desk, front_desk, catalog, prac):
    patient = make_patient()
    _booked(front_desk, catalog, prac, patients=[patient])
    book(front_desk, catalog, prac, at("2020-01-06", "10:00"), patients=[patient])
    page = desk.get(reverse("scheduling:patient_appointments", args=[patient.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and 'aria-current="page">Appointments' in html
    upcoming, past = html.split("<h2>Past</h2>")
    assert "2030-01-07 10:00" in upcoming and "2020-01-06 10:00" in past
    profile = desk.get(reverse("people:patient", args=[patient.pk]))
    assert reverse("scheduling:patient_appointments", args=[patient.pk]).encode() in profile.content


def test_booking_in_the_panel_offers_the_practitioners_treatments_a_type_ahead_and_a_quote(
    desk, front_desk, catalog, prac
):
    """Issue 20 point 3: the slot's form is a panel fragment; only what the practitioner offers; the
    type-ahead keeps the patient chosen; end time, price and the package auto-select will use."""
    other = treatment_of(catalog, "individual", name="Acupuncture 45")
    prac.treatments.add(catalog["treatment"])
    chosen = make_patient(first_name="Tomasz", last_name="Wren", phone="416-555-0142")
    make_patient(first_name="Wanda", last_name="Wrenfield")
    sold_package(front_desk, chosen, package_template(catalog, name="5 massages", quantity=5))
    loc = catalog["location"].pk
    fragment = desk.get(
        reverse("scheduling:book"),
        {"location": loc, "practitioner": prac.pk, "start": f"{MONDAY}T11:00"},
        headers=HX,
    ).content.decode()
    assert 'data-testid="book-panel"' in fragment and "<html" not in fragment
    assert "Massage 60" in fragment and "Acupuncture 45" not in fragment
    found = desk.get(reverse("scheduling:book_patients"), {"q": "416-555-0142"}).content.decode()
    assert "Tomasz Wren" in found and "Wrenfield" not in found and "416-555-0142" in found
    kept = desk.get(
        reverse("scheduling:book_patients"), {"q": "wanda", "patient": chosen.pk}
    ).content.decode()
    assert re.search(rf'value="{chosen.pk}" checked', kept) and "Wanda Wrenfield" in kept
    quote = desk.get(
        reverse("scheduling:book_quote"),
        {
            "location": loc,
            "practitioner": prac.pk,
            "treatment": catalog["treatment"].pk,
            "start": f"{MONDAY}T11:00",
            "patient": chosen.pk,
        },
    ).content.decode()
    assert (
        "12:00 (60 min)" in quote
        and "$101.70" in quote
        and "5 massages — 4 left after this visit" in quote
    )
    refused = desk.get(
        reverse("scheduling:book_quote"),
        {"location": loc, "practitioner": prac.pk, "treatment": other.pk, "start": "nonsense"},
    )
    assert refused.status_code == 200 and b"Choose a treatment and a start" in refused.content
    data = {
        "treatment": other.pk,
        "patient": chosen.pk,
        "practitioner": prac.pk,
        "start": f"{MONDAY}T11:00",
        "form_key": "k-offer",
    }
    response = desk.post(reverse("scheduling:book") + f"?location={loc}", data, headers=HX)
    assert response.status_code == 200 and not Appointment.objects.exists()
    assert "choose one of their treatments" in response.content.decode()


def test_booking_from_the_panel_answers_with_the_appointment_and_its_redrawn_column(
    desk, catalog, prac
):
    patient = make_patient(first_name="Tomasz", last_name="Wren")
    data = {
        "treatment": catalog["treatment"].pk,
        "patient": patient.pk,
        "practitioner": prac.pk,
        "start": f"{MONDAY}T11:00",
        "form_key": "k-panel",
    }
    response = desk.post(
        reverse("scheduling:book") + f"?location={catalog['location'].pk}", data, headers=HX
    )
    html = response.content.decode()
    appt = Appointment.objects.get()
    assert response.status_code == 200 and 'data-testid="appointment-panel"' in html
    assert (
        f'id="col-{prac.pk}-{MONDAY}" hx-swap-oob="true"' in html and f'id="appt-{appt.pk}"' in html
    )
    assert (
        "start=2030-01-07T11:15" not in html and "start=2030-01-07T12:00" in html
    )  # busy now; free after
    again = desk.post(
        reverse("scheduling:book") + f"?location={catalog['location'].pk}", data, headers=HX
    )
    assert again.status_code == 302 and Appointment.objects.count() == 1  # a resubmit books once


def test_staff_profile_sets_the_treatments_offered(client, owner, catalog, prac):
    client.force_login(owner.user)
    page = client.get(reverse("people:staff_edit", args=[prac.pk])).content.decode()
    assert "Treatments offered" in page
    client.post(
        reverse("people:staff_edit", args=[prac.pk]),
        {
            "display_name": prac.display_name,
            "access_level": prac.access_level,
            "is_practitioner": "on",
            "is_active": "on",
            "treatment_ids": [catalog["treatment"].pk],
        },
    )
    assert list(prac.treatments.all()) == [catalog["treatment"]]
