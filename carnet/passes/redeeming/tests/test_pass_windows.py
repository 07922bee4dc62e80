"""When and where a pass applies (issue 23 point 2): allowed locations, days and a time window in
the location's time zone (also across midnight, with the clinic in another zone), and a use cap
per week or day; auto-select, attaching, Explain (also through the API), the online quote and an
online booking all follow them."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse

from carnet.clinic.models import Location
from carnet.conftest import PASSWORD, Api, make_patient
from carnet.core import clock
from carnet.core.errors import Conflict
from carnet.passes.models import PassTemplate, Redemption
from carnet.passes.redeeming.quotes import visit_quote
from carnet.passes.redeeming.redemption import explain, pass_attach
from carnet.passes.setup.tests.test_setup_views import form_data
from carnet.passes.tests.factories import at, package_template, practitioner, sold_package
from carnet.people.models import Shift
from carnet.people.services import patient_portal_enable
from carnet.scheduling.online import appointment_book_online
from carnet.scheduling.services import appointment_book, appointment_cancel, appointment_reschedule
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(front_desk, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        other = Location.objects.create(name="Uptown", time_zone="America/Toronto")
        prac = practitioner(catalog["location"])
        prac.locations.add(other)
        yield {
            "fd": front_desk,
            "cat": catalog,
            "prac": prac,
            "patient": make_patient(),
            "other": other,
        }


def _book(s, day, hhmm, location=None, zone=None):
    start = (
        at(day, hhmm)
        if zone is None
        else dt.datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=ZoneInfo(zone))
    )
    return appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=s["prac"],
        location=location or s["cat"]["location"],
        start=start,
        patients=[s["patient"]],
    )


def _live(appointment):
    return Redemption.objects.filter(
        visit__appointment=appointment, status__in=["reserved", "posted"]
    ).first()


def _why(appointment, sold):
    [row] = [r for r in explain(appointment.visits.get()) if r["pass"].pk == sold.pk]
    return row["code"], row["message"]


def _sold(s, **rules):
    locations = rules.pop("locations", ())
    template = package_template(s["cat"], **rules)
    template.allowed_locations.set(locations)
    return sold_package(s["fd"], s["patient"], template)


def test_a_pass_for_one_location_is_not_used_at_another_and_explain_names_where(s):
    sold = _sold(s, locations=[s["other"]])
    main = _book(s, "2026-05-12", "09:00")
    assert _live(main) is None
    assert _why(main, sold) == (
        "wrong_location",
        f"Used only at Uptown; this visit is at {s['cat']['location'].name}.",
    )
    with pytest.raises(Conflict) as refused:
        pass_attach(actor=s["fd"].user, visit=main.visits.get(), sold_pass=sold)
    assert refused.value.code == "wrong_location"
    assert _live(_book(s, "2026-05-13", "09:00", location=s["other"])).sold_pass == sold


def test_a_sold_pass_keeps_the_templates_place_and_hours_from_its_sale(s):
    """SPEC 5.2: the template's rules changed after the sale do not reach the pass already sold;
    the next sale takes the new ones."""
    sold = _sold(s, locations=[s["other"]], window_start=dt.time(6), window_end=dt.time(9))
    template = sold.template
    template.allowed_locations.set([])
    template.window_start = template.window_end = None
    template.save()
    afternoon = _book(s, "2026-05-12", "14:00")
    assert _why(afternoon, sold)[0] == "wrong_location"  # still Uptown only, 06:00-09:00
    later = sold_package(s["fd"], s["patient"], template)
    assert _why(afternoon, later)[0] == "ok"


def test_days_and_hours_are_honoured_and_the_sentence_names_the_window(s):
    sold = _sold(
        s, allowed_days="01234", window_start=dt.time(6), window_end=dt.time(9)
    )  # early weekdays
    late = _book(s, "2026-05-12", "09:30")  # a Tuesday, after the window
    saturday = _book(s, "2026-05-16", "07:00")
    assert _live(late) is None and _live(saturday) is None
    assert _why(late, sold) == (
        "outside_hours",
        (
            "Used only Mon, Tue, Wed, Thu, Fri 06:00–09:00 "
            "(America/Toronto time); this visit is on Tue 09:30."
        ),
    )
    assert _why(saturday, sold)[1].endswith("this visit is on Sat 07:00.")
    assert _live(_book(s, "2026-05-13", "08:00")).sold_pass == sold


def test_rescheduling_outside_the_hours_is_refused_with_the_window(s):
    sold = _sold(s, window_start=dt.time(6), window_end=dt.time(9))
    early = _book(s, "2026-05-12", "07:00")
    assert _live(early).sold_pass == sold
    with pytest.raises(Conflict) as refused:
        appointment_reschedule(
            actor=s["fd"].user, appointment=early, start=at("2026-05-12", "10:00")
        )
    assert refused.value.code == "outside_hours" and "06:00–09:00" in refused.value.message
    appointment_reschedule(actor=s["fd"].user, appointment=early, start=at("2026-05-13", "08:00"))
    assert _live(early).sold_pass == sold


def test_a_weekly_cap_counts_live_uses_monday_to_sunday(s):
    sold = _sold(s, cap_uses=1, cap_period="week")
    tuesday = _book(s, "2026-05-12", "09:00")
    assert _live(tuesday).sold_pass == sold
    thursday = _book(s, "2026-05-14", "09:00")
    assert _live(thursday) is None
    assert _why(thursday, sold) == (
        "weekly_cap",
        (
            "Used at most once a week: 1 already booked in the week of "
            "Mon 2026-05-11 to Sun 2026-05-17."
        ),
    )
    assert _why(tuesday, sold)[0] == "attached"
    assert _live(_book(s, "2026-05-18", "09:00")).sold_pass == sold  # next Monday: a new week
    appointment_cancel(
        actor=s["fd"].user, appointment=tuesday
    )  # voids its use: the week has room again
    assert (
        pass_attach(actor=s["fd"].user, visit=thursday.visits.get(), sold_pass=sold).sold_pass
        == sold
    )


def test_a_daily_cap(s):
    sold = _sold(s, cap_uses=1, cap_period="day")
    assert _live(_book(s, "2026-05-12", "09:00")).sold_pass == sold
    second = _book(s, "2026-05-12", "11:00")
    assert _live(second) is None and _why(second, sold)[0] == "daily_cap"
    assert "on Tue 2026-05-12" in _why(second, sold)[1]
    assert _live(_book(s, "2026-05-13", "09:00")).sold_pass == sold


def test_the_window_is_read_in_the_locations_zone_and_may_cross_midnight(s):
    """A clinic in Vancouver, a location in Toronto, a Friday-night window
    22:00–02:00 (Toronto time)."""
    clinic_set(time_zone="America/Vancouver")
    sold = _sold(s, allowed_days="4", window_start=dt.time(22), window_end=dt.time(2))
    toronto = "America/Toronto"
    # 2026-05-15 is a Friday. Sat 01:00 in Toronto is still Friday's window
    # (and Fri 22:00 in Vancouver).
    after_midnight = _book(s, "2026-05-16", "01:00", zone=toronto)
    assert _live(after_midnight).sold_pass == sold
    # Fri 20:00 in Vancouver is Fri 23:00 in Toronto: inside, though the clinic's clock reads 20:00.
    assert _live(_book(s, "2026-05-15", "20:00", zone="America/Vancouver")).sold_pass == sold
    early = _book(s, "2026-05-15", "21:30", zone=toronto)
    saturday_night = _book(s, "2026-05-16", "22:30", zone=toronto)
    sat_late = _book(s, "2026-05-16", "02:30", zone=toronto)
    for appointment in (early, saturday_night, sat_late):
        assert _live(appointment) is None
        assert _why(appointment, sold)[0] == "outside_hours"
    assert (
        _why(early, sold)[1]
        == "Used only Fri 22:00–02:00 (America/Toronto time); this visit is on Fri 21:30."
    )


def test_the_online_quote_follows_the_window(s):
    _sold(s, window_start=dt.time(6), window_end=dt.time(9), redeem_online=True)
    location = s["cat"]["location"]
    inside = visit_quote(
        patient=s["patient"],
        treatment=s["cat"]["treatment"],
        visit_date=dt.date(2026, 5, 12),
        location=location,
        start=at("2026-05-12", "07:00"),
    )
    outside = visit_quote(
        patient=s["patient"],
        treatment=s["cat"]["treatment"],
        visit_date=dt.date(2026, 5, 12),
        location=location,
        start=at("2026-05-12", "10:00"),
    )
    assert inside.sentence.startswith("Covered by") and outside.sentence.startswith("You pay")


def test_settings_save_the_rules_and_refuse_half_a_window(s, admin_staff):
    api = Api(admin_staff.user)
    body = {
        "name": "Off-peak 5",
        "price_minor": 20000,
        "income_category_id": s["cat"]["income_category"].pk,
        "quantity": 5,
        "items": [{"treatment_id": s["cat"]["treatment"].pk}],
        "location_ids": [s["other"].pk],
        "allowed_days": "40",
        "window_start": "22:00",
        "window_end": "02:00",
        "cap_uses": 2,
        "cap_period": "day",
    }
    made = api.post("/pass-templates", body)
    assert made.status_code == 201, made.content
    out = made.json()
    assert (
        out["location_ids"],
        out["allowed_days"],
        out["window_start"],
        out["window_end"],
        out["cap_uses"],
        out["cap_period"],
    ) == ([s["other"].pk], "04", "22:00:00", "02:00:00", 2, "day")
    half = api.post("/pass-templates", {**body, "name": "Half", "window_end": None})
    assert half.status_code == 422 and "both the start and the end" in half.content.decode()
    bad_day = api.post("/pass-templates", {**body, "name": "Bad", "allowed_days": "7"})
    assert bad_day.status_code == 422 and "Monday" in bad_day.content.decode()
    nowhere = api.post("/pass-templates", {**body, "name": "Nowhere", "location_ids": [999999]})
    assert nowhere.status_code == 422 and "No location with id 999999" in nowhere.content.decode()


def test_an_online_booking_uses_the_pass_only_inside_its_window(s, owner):
    """The patient's own booking at /book/ attaches the pass only where and when it applies."""
    treatment = s["cat"]["treatment"]
    treatment.online_bookable = True
    treatment.save()
    Shift.objects.create(
        staff=s["prac"],
        location=s["cat"]["location"],
        weekday=1,
        start_time=dt.time(9),
        end_time=dt.time(13),
    )
    patient_portal_enable(actor=owner.user, patient=s["patient"], password=PASSWORD)
    s["patient"].refresh_from_db()
    sold = _sold(s, window_start=dt.time(8), window_end=dt.time(11), redeem_online=True)

    def book_online(hhmm, key):
        return appointment_book_online(
            user=s["patient"].user,
            patient=s["patient"],
            treatment=treatment,
            practitioner=s["prac"],
            location=s["cat"]["location"],
            start=at("2026-05-12", hhmm),
            idempotency_key=key,
        )

    inside, outside = book_online("09:00", "o1"), book_online("11:00", "o2")
    assert _live(inside).sold_pass == sold and _live(outside) is None
    assert _why(outside, sold) == (
        "outside_hours",
        "Used only 08:00–11:00 (America/Toronto time); this visit is on Tue 11:00.",
    )


def test_the_explain_endpoint_returns_the_window_reasons(s, admin_staff):
    sold = _sold(s, locations=[s["other"]])
    appointment = _book(s, "2026-05-12", "09:00")
    answer = Api(admin_staff.user).get(
        f"/appointments/{appointment.pk}/patients/{s['patient'].pk}/explain"
    )
    assert answer.status_code == 200, answer.content
    [row] = [r for r in answer.json() if r["pass_id"] == sold.pk]
    assert row["code"] == "wrong_location" and "Used only at Uptown" in row["message"]


def test_the_template_page_sets_the_place_days_hours_and_cap(s, admin_staff, client):
    client.force_login(admin_staff.user)
    page = client.get(reverse("pass_templates:new")).content.decode()
    for label in ("Used only at", "Used only on", "Used from", "Used until", "At most this many"):
        assert label in page
    data = form_data(
        s["cat"],
        name="Friday nights",
        allowed_locations=[s["other"].pk],
        allowed_days=["4"],
        window_start="22:00",
        window_end="02:00",
        cap_uses="1",
        cap_period="day",
    )
    response = client.post(reverse("pass_templates:new"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    template = PassTemplate.objects.get(name="Friday nights")
    assert (
        list(template.allowed_locations.all()),
        template.allowed_days,
        template.window_start,
        template.window_end,
        template.cap_uses,
        template.cap_period,
    ) == ([s["other"]], "4", dt.time(22), dt.time(2), 1, "day")
    half = client.post(reverse("pass_templates:new"), {**data, "name": "Half", "window_end": ""})
    assert half.status_code == 200 and "both the start and the end" in half.content.decode()
    assert not PassTemplate.objects.filter(name="Half").exists()
