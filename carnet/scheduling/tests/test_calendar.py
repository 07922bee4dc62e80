"""The schedule as a calendar (issue 20): blocks placed on 5-minute rows from local midnight, so a
block's height is proportional to its duration; free 15-minute slots, breaks and a legend shown."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from carnet.conftest import make_patient
from carnet.scheduling import calendar
from carnet.scheduling.models import Break

from .factories import TORONTO, at, book, treatment_of, working_practitioner

MONDAY = "2030-01-07"
DAY = dt.date(2030, 1, 7)


def test_a_block_starts_at_its_minute_and_spans_its_duration():
    assert calendar.place(at(MONDAY, "10:00"), at(MONDAY, "11:00"), DAY, TORONTO) == {
        "row": 121,
        "span": 12,
    }
    assert calendar.place(at(MONDAY, "10:00"), at(MONDAY, "10:30"), DAY, TORONTO) == {
        "row": 121,
        "span": 6,
    }
    # Off the 5-minute grid: from the row it starts in to the row it ends in.
    assert calendar.place(at(MONDAY, "10:02"), at(MONDAY, "10:13"), DAY, TORONTO) == {
        "row": 121,
        "span": 3,
    }
    # Past midnight: cut at the end of the day.
    assert calendar.place(at(MONDAY, "23:30"), at("2030-01-08", "00:30"), DAY, TORONTO) == {
        "row": 283,
        "span": 6,
    }


def test_free_slots_are_whole_quarter_hours_inside_free_time():
    slots = calendar.free_slots([(at(MONDAY, "09:10"), at(MONDAY, "10:00"))], DAY, TORONTO)
    assert [s["start"].strftime("%H:%M") for s in slots] == ["09:15", "09:30", "09:45"]
    assert [(s["row"], s["span"]) for s in slots] == [(112, 3), (115, 3), (118, 3)]


def test_the_window_covers_every_block_on_half_hours():
    assert (
        calendar.window([])["first"] == 97 and calendar.window([])["last"] == 217
    )  # 08:00 to 18:00
    early = calendar.window([{"blocks": [{"row": 87, "span": 12}]}])  # 07:10
    assert early["first"] == 85 and early["labels"][0] == {"time": dt.time(7), "row": 85}
    late = calendar.window([{"blocks": [{"row": 280, "span": 9}]}])  # to 24:00
    assert late["last"] == 289


@pytest.mark.django_db
def test_the_day_view_places_blocks_by_duration_with_free_slots_breaks_and_a_legend(
    client, front_desk, catalog
):
    client.force_login(front_desk.user)
    prac = working_practitioner(catalog["location"])
    short = treatment_of(catalog, "individual", name="Check-up 30")
    short.duration_minutes = 30
    short.save()
    hour = book(front_desk, catalog, prac, at(MONDAY, "10:00"), patients=[make_patient()])
    half = book(
        front_desk, catalog, prac, at(MONDAY, "13:00"), patients=[make_patient()], treatment=short
    )
    Break.objects.create(
        practitioner=prac,
        location=catalog["location"],
        start=at(MONDAY, "12:00"),
        end=at(MONDAY, "12:30"),
        reason="Lunch",
    )
    html = client.get(
        reverse("scheduling:schedule"), {"location": catalog["location"].pk, "date": MONDAY}
    ).content.decode()
    assert re.search(rf'id="appt-{hour.pk}"[^>]*data-row="121" data-span="12"', html)
    assert re.search(rf'id="appt-{half.pk}"[^>]*data-row="157" data-span="6"', html)
    assert 'class="cal-break" data-row="145" data-span="6">Break 12:00–12:30: Lunch' in html
    assert (
        f"practitioner={prac.pk}&amp;start=2030-01-07T09:00" in html and ">09:00</a>" in html
    )  # visible free time
    assert (
        "start=2030-01-07T10:15" not in html and "start=2030-01-07T12:15" not in html
    )  # busy, on a break
    assert 'data-first="97" data-last="217"' in html  # 08:00 to 18:00
    for words in (
        "Booked",
        "Arrived",
        "No-show",
        "covered by a package or membership",
        "Free: click a time to book",
        "Break",
        "Not working",
    ):
        assert words in html
