"""A practitioner's schedule as an iCalendar feed (RFC 5545) at a private URL, and the staff page
that (re)generates that URL. The secret in the URL is the only credential, so only its digest is
stored and regenerating it makes every older URL stop working."""

from __future__ import annotations

import datetime as dt

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_http_methods
from icalendar import Calendar, Event

from carnet.clinic.selectors import clinic_get
from carnet.core import clock
from carnet.core.pages import run_action, staff_required
from carnet.core.permissions import Action
from carnet.people.models import StaffMember
from carnet.people.services import calendar_feed_token_reset, staff_by_calendar_token

from .models import Appointment, Status

PAST_DAYS = 30  # how far back the feed reaches; everything ahead is included


def schedule_calendar(*, practitioner: StaffMember, now: dt.datetime | None = None) -> bytes:
    """The practitioner's appointments from PAST_DAYS ago on, cancelled ones marked CANCELLED."""
    now = now or clock.now()
    clinic = clinic_get()
    cal = Calendar()
    cal.add("prodid", "-//Carnet//Schedule//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"{practitioner} · {clinic.name}")
    appointments = (
        Appointment.objects.filter(
            practitioner=practitioner, end__gte=now - dt.timedelta(days=PAST_DAYS)
        )
        .select_related("treatment", "location")
        .prefetch_related("visits__patient")
    )
    for appointment in appointments:
        people = [
            r.patient.full_name for r in appointment.visits.all() if r.status != Status.CANCELLED
        ]
        event = Event()
        event.add("uid", f"appointment-{appointment.pk}@carnet")
        event.add("dtstamp", now)
        event.add("dtstart", appointment.start)
        event.add("dtend", appointment.end)
        event.add("summary", f"{appointment.treatment.name}: {', '.join(people) or 'no patients'}")
        event.add("location", appointment.location.name)
        event.add("status", "CANCELLED" if appointment.status == Status.CANCELLED else "CONFIRMED")
        cal.add_component(event)
    return cal.to_ical()


def feed(request, token: str):
    practitioner = staff_by_calendar_token(token)
    if practitioner is None:
        raise Http404("No calendar at this address; it may have been regenerated.")
    response = HttpResponse(
        schedule_calendar(practitioner=practitioner), content_type="text/calendar; charset=utf-8"
    )
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "POST"])
@staff_required(Action.SCHEDULE_OWN)
def feed_settings(request):
    """Show how to subscribe; POST makes a new private URL (shown once) and retires the old one."""
    url = None
    if request.method == "POST":
        raw, denied = run_action(request, lambda: calendar_feed_token_reset(actor=request.user))
        if denied:
            return denied
        if raw:
            url = request.build_absolute_uri(reverse("calendar:feed", args=[raw]))
    return render(
        request,
        "scheduling/booking_calendar_feed.html",
        {"url": url, "has_feed": bool(request.user.staff.calendar_feed_digest) or url is not None},
    )


app_name = "calendar"
urlpatterns = [
    path("", feed_settings, name="feed_settings"),
    path("<str:token>.ics", feed, name="feed"),
]
