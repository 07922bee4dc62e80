"""Online booking: bookable slots, booking by the patient, sign-up, double submits, taken slots,
the confirmation email, and cancelling from the portal within the clinic's cancellation window."""

import datetime as dt
import re

import pytest
from django.core import mail

from carnet.conftest import make_patient
from carnet.core import clock
from carnet.core.errors import Conflict
from carnet.people.models import Patient, Shift
from carnet.people.services import patient_sign_up
from carnet.people.signups import sign_up_request
from carnet.scheduling import online
from carnet.scheduling.models import Appointment, Break

from .factories import at, book, clinic_set, practitioner, treatment_of

DAY = "2026-03-10"  # a Tuesday
NOW = at("2026-03-09", "12:00")


@pytest.fixture
def setup(catalog, owner):
    catalog["treatment"].online_bookable = True
    catalog["treatment"].save()
    prac = practitioner(catalog["location"])
    Shift.objects.create(
        staff=prac,
        location=catalog["location"],
        weekday=1,
        start_time=dt.time(9),
        end_time=dt.time(12),
    )
    with clock.frozen(NOW):
        yield {**catalog, "prac": prac, "owner": owner}


def slots(s, day=DAY):
    return online.bookable_slots(
        treatment=s["treatment"],
        practitioner=s["prac"],
        location=s["location"],
        day=dt.date.fromisoformat(day),
    )


def signed_up(email="new@example.test"):
    return patient_sign_up(
        first_name="Nora", last_name="New", email=email, password="a long pass phrase 42"
    )


def test_slots_are_the_shift_minus_appointments_and_breaks_in_the_location_time_zone(setup):
    assert slots(setup) == [at(DAY, "09:00"), at(DAY, "10:00"), at(DAY, "11:00")]
    book(setup["owner"], setup, setup["prac"], at(DAY, "10:00"))
    Break.objects.create(
        practitioner=setup["prac"],
        location=setup["location"],
        start=at(DAY, "11:30"),
        end=at(DAY, "11:45"),
    )
    assert slots(setup) == [at(DAY, "09:00")]
    assert str(slots(setup)[0].tzinfo) == "America/Toronto"


def test_slots_on_a_daylight_saving_day_are_real_instants(setup):
    Shift.objects.create(
        staff=setup["prac"],
        location=setup["location"],
        weekday=6,
        start_time=dt.time(1),
        end_time=dt.time(4),
    )
    # 2026-03-08: 02:00 does not exist in Toronto; 01:00-04:00 wall time is two real hours.
    with clock.frozen(at("2026-03-07", "12:00")):
        got = slots(setup, "2026-03-08")
    assert [s.astimezone(dt.UTC).hour for s in got] == [6, 7]


def test_only_online_bookable_treatments_and_practitioners_with_shifts_are_offered(setup):
    assert list(online.bookable_treatments(location=setup["location"])) == [setup["treatment"]]
    assert list(online.bookable_practitioners(location=setup["location"])) == [setup["prac"]]
    setup["treatment"].online_bookable = False
    setup["treatment"].save()
    assert not online.bookable_treatments(location=setup["location"]).exists()


def test_sign_up_creates_the_patient_and_a_portal_login_by_email(setup):
    patient = signed_up()
    assert patient.user.username == "new@example.test" and patient.user.check_password(
        "a long pass phrase 42"
    )
    with pytest.raises(Conflict, match="log in instead"):
        signed_up()


def test_booking_online_books_once_per_form_key_and_emails_the_patient(
    setup, django_capture_on_commit_callbacks
):
    patient = signed_up()
    kw = {
        "user": patient.user,
        "patient": patient,
        "treatment": setup["treatment"],
        "practitioner": setup["prac"],
        "location": setup["location"],
        "start": at(DAY, "09:00"),
        "idempotency_key": "k1",
    }
    with django_capture_on_commit_callbacks(execute=True):
        appointment = online.appointment_book_online(**kw)
        assert online.appointment_book_online(**kw) is None
    assert appointment.booked_by == Appointment.BookedBy.ONLINE and Appointment.objects.count() == 1
    assert [r.patient for r in appointment.visits.all()] == [patient]
    [message] = mail.outbox
    assert message.to == ["new@example.test"] and "Tuesday 10 March 2026 at 09:00" in message.body


def test_a_slot_just_taken_is_refused_with_a_clear_message(setup):
    patient = signed_up()
    book(setup["owner"], setup, setup["prac"], at(DAY, "09:30"))
    for start in (
        at(DAY, "09:00"),
        at(DAY, "08:00"),
        at("2026-03-09", "09:00"),
    ):  # taken, off shift, past
        with pytest.raises(Conflict, match="was just taken") as exc:
            online.appointment_book_online(
                user=patient.user,
                patient=patient,
                treatment=setup["treatment"],
                practitioner=setup["prac"],
                location=setup["location"],
                start=start,
            )
        assert exc.value.code == "double_booked"


def test_a_patient_cannot_book_for_someone_else(setup):
    patient, stranger = signed_up(), make_patient()
    with pytest.raises(Exception, match="No such patient"):
        online.appointment_book_online(
            user=patient.user,
            patient=stranger,
            treatment=setup["treatment"],
            practitioner=setup["prac"],
            location=setup["location"],
            start=at(DAY, "09:00"),
        )


def _booked(setup):
    patient = signed_up()
    appointment = online.appointment_book_online(
        user=patient.user,
        patient=patient,
        treatment=setup["treatment"],
        practitioner=setup["prac"],
        location=setup["location"],
        start=at(DAY, "10:00"),
    )
    return patient, appointment.visits.get()


def test_cancel_within_the_window_is_refused_and_outside_it_frees_the_slot(setup):
    clinic_set(cancellation_window_hours=24)
    patient, visit = _booked(setup)
    with pytest.raises(Conflict, match="up to 24 hours before") as exc:
        online.appointment_cancel_by_patient(
            user=patient.user, visit_pk=visit.pk, now=at("2026-03-09", "10:01")
        )
    assert exc.value.code == "cancellation_window"
    appointment = online.appointment_cancel_by_patient(
        user=patient.user, visit_pk=visit.pk, now=at("2026-03-09", "10:00")
    )
    visit.refresh_from_db()
    assert appointment.status == visit.status == "cancelled"
    assert at(DAY, "10:00") in slots(setup)
    with pytest.raises(Conflict, match="only a booked one"):
        online.appointment_cancel_by_patient(user=patient.user, visit_pk=visit.pk)


def test_a_patient_cannot_cancel_someone_elses_appointment(setup):
    _patient, visit = _booked(setup)
    other = signed_up("other@example.test")
    with pytest.raises(Exception, match="No such appointment"):
        online.appointment_cancel_by_patient(user=other.user, visit_pk=visit.pk)


# ------------------------------------------------------------------ pages


def form_key_of(html):
    return re.search(r'name="form_key" value="([0-9a-f]+)"', html).group(1)


def _link(message) -> str:
    return re.search(r"https?://\S+", message.body.split("open this link:")[1]).group(0)


def test_booking_pages_sign_up_by_email_confirm_and_double_submit(
    setup, client, django_capture_on_commit_callbacks
):
    loc, t, p = setup["location"], setup["treatment"], setup["prac"]
    page = client.get(
        f"/book/{loc.pk}/", {"treatment": t.pk, "practitioner": p.pk, "day": DAY}
    ).content.decode()
    assert "Massage 60" in page and "09:00" in page and "11:00" in page
    confirm = re.search(r'href="(/book/\d+/confirm/\?[^"]+)"', page).group(1).replace("&amp;", "&")
    page = client.get(confirm).content.decode()
    assert "Sign up" in page and "Log in to book" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            confirm,
            {
                "action": "signup",
                "first_name": "Nora",
                "last_name": "New",
                "email": "nora@example.test",
            },
            follow=True,
        )
    assert "Check your email" in response.content.decode()
    assert not Patient.objects.filter(
        email="nora@example.test"
    ).exists()  # nothing until the address is proven
    [message] = mail.outbox
    assert message.to == ["nora@example.test"] and "Finish signing up" in message.subject
    link = _link(message)
    assert "Nora" in client.get(link).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            link, {"password": "a long pass phrase 42", "confirm": "a long pass phrase 42"}
        )
    assert response["Location"] == confirm  # back to the chosen time, logged in
    assert Patient.objects.get(email="nora@example.test").user.username == "nora@example.test"
    data = {"action": "confirm", "form_key": form_key_of(client.get(confirm).content.decode())}
    with django_capture_on_commit_callbacks(execute=True):
        first, second = client.post(confirm, data), client.post(confirm, data)
    assert first["Location"] == second["Location"] == "/portal/"
    assert Appointment.objects.filter(booked_by="online").count() == 1 and len(mail.outbox) == 2
    home = client.get("/portal/").content.decode()
    assert "Massage 60" in home and "Tue 2026-03-10 09:00" in home
    # The link was used: a second use says to log in and makes nothing.
    client.logout()
    again = client.post(
        link, {"password": "a long pass phrase 42", "confirm": "a long pass phrase 42"}, follow=True
    )
    assert "already set up; log in" in again.content.decode() and Patient.objects.count() == 1


def test_sign_up_answers_the_same_for_an_existing_email_and_tells_its_holder(
    setup, client, django_capture_on_commit_callbacks
):
    existing = signed_up("taken@example.test")
    loc, t, p = setup["location"], setup["treatment"], setup["prac"]
    confirm = (
        f"/book/{loc.pk}/confirm/?treatment={t.pk}&practitioner={p.pk}"
        f"&start={at(DAY, '09:00').isoformat()}"
    )
    pages = []
    for email in ("taken@example.test", "fresh@example.test"):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                confirm,
                {"action": "signup", "first_name": "Eve", "last_name": "Else", "email": email},
                follow=True,
            )
        pages.append(
            (
                response.status_code,
                response.redirect_chain,
                response.content.decode().replace(email, "EMAIL"),
            )
        )
    assert pages[0] == pages[1]  # nothing on the page tells the two apart
    assert "Already registered" not in pages[0][2]
    to_holder, to_new = mail.outbox
    assert to_holder.to == ["taken@example.test"] and "tried to sign up" in to_holder.subject
    assert "/portal/password-reset/" in to_holder.body  # a working reset link for the holder
    reset = re.search(r"https?://\S+/portal/password-reset/\S+", to_holder.body).group(0)
    assert "New password" in client.get(reset).content.decode()
    assert Patient.objects.filter(email="taken@example.test").count() == 1
    existing.refresh_from_db()
    assert existing.first_name == "Nora"  # untouched
    assert "Finish signing up" in to_new.subject


def test_a_tampered_or_old_sign_up_link_says_so(setup, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        sign_up_request(
            first_name="Nora", last_name="New", email="n@example.test", base_url="http://testserver"
        )
    link = _link(mail.outbox[0])
    assert client.get(link[:-4] + "xyz/").status_code == 400
    with clock.frozen(NOW + dt.timedelta(hours=24, seconds=1)):
        response = client.get(link)
    assert response.status_code == 410 and "expired" in response.content.decode()


def test_confirming_a_slot_just_taken_sends_back_to_the_times_with_a_message(setup, client):
    loc, t, p = setup["location"], setup["treatment"], setup["prac"]
    patient = signed_up()
    client.force_login(patient.user)
    confirm = (
        f"/book/{loc.pk}/confirm/?treatment={t.pk}&practitioner={p.pk}"
        f"&start={at(DAY, '09:00').isoformat()}"
    )
    key = form_key_of(client.get(confirm).content.decode())
    book(setup["owner"], setup, p, at(DAY, "09:00"))
    response = client.post(confirm, {"action": "confirm", "form_key": key}, follow=True)
    assert "was just taken" in response.content.decode() and "10:00" in response.content.decode()
    assert not Appointment.objects.filter(booked_by="online").exists()


def test_portal_cancel_inside_the_window_shows_the_refusal(setup, client):
    clinic_set(cancellation_window_hours=48)
    patient, visit = _booked(setup)
    client.force_login(patient.user)
    page = client.post(f"/portal/appointments/{visit.pk}/cancel/", follow=True).content.decode()
    assert "up to 48 hours before" in page
    clinic_set(cancellation_window_hours=2)
    page = client.post(f"/portal/appointments/{visit.pk}/cancel/", follow=True).content.decode()
    assert "Cancelled: Massage 60" in page


def test_online_booking_pages_say_the_practitioner_does_not_offer_it_and_refuse_it(setup, client):
    """Issue 20: treatments offered hold online too: no times, a sentence saying why, and a confirm
    sent anyway (an old link, a crafted URL) refused with the reason on the page."""
    loc, t, p = setup["location"], setup["treatment"], setup["prac"]
    p.treatments.add(treatment_of(setup, "individual", name="Acupuncture 45"))
    page = client.get(
        f"/book/{loc.pk}/", {"treatment": t.pk, "practitioner": p.pk, "day": DAY}
    ).content.decode()
    assert f"{p.display_name} does not offer Massage 60. Choose another practitioner" in page
    assert "/confirm/?" not in page
    patient = signed_up()
    client.force_login(patient.user)
    confirm = (
        f"/book/{loc.pk}/confirm/?treatment={t.pk}&practitioner={p.pk}"
        f"&start={at(DAY, '09:00').isoformat()}"
    )
    key = form_key_of(client.get(confirm).content.decode())
    response = client.post(confirm, {"action": "confirm", "form_key": key}, follow=True)
    assert response.status_code == 200 and "does not offer Massage 60" in response.content.decode()
    assert not Appointment.objects.exists()
