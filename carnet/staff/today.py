"""The dashboard's "Today" (issue 20): what the front desk needs at a glance, each line one click
from its action.

Today's appointments per location and practitioner with their arrival status, who owes money
(today's patients first), passes expiring soon or running low and declined autopay charges. Each
part is one or two grouped queries whatever the size of the clinic (test_today counts them), and
each is shown only to staff allowed to act on it (schedule scope for appointments, billing access
for amounts and passes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from itertools import groupby
from zoneinfo import ZoneInfo

from carnet.billing.card_attempts import attempts_to_review
from carnet.billing.selectors import patients_owing
from carnet.clinic.selectors import clinic_get, clinic_today, locations_active
from carnet.core import clock
from carnet.core.permissions import Action, can, staff_of
from carnet.passes.memberships.overdue import past_due_memberships
from carnet.passes.selectors import autopay_declined, passes_expiring, passes_running_low
from carnet.scheduling.models import Status
from carnet.scheduling.selectors import appointments_today

EXPIRING_WITHIN_DAYS = 30


@dataclass
class LocationDay:
    location: object
    day: dt.date
    practitioners: list = field(default_factory=list)  # (practitioner, [appointments])
    counts: dict = field(default_factory=dict)  # status -> number of appointments

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _by_location(appointments, locations) -> list[LocationDay]:
    days = []
    for location in locations:
        zone = ZoneInfo(location.time_zone)
        mine = [a for a in appointments if a.location_id == location.pk]
        for (
            a
        ) in mine:  # naive wall-clock times: the template's time filter would convert aware ones
            a.local_start = a.start.astimezone(zone).replace(tzinfo=None)
            a.local_end = a.end.astimezone(zone).replace(tzinfo=None)
        day = LocationDay(location=location, day=clock.today(zone))
        day.counts = {
            s: sum(1 for a in mine if a.status == s)
            for s in (Status.BOOKED, Status.ARRIVED, Status.NO_SHOW)
        }
        day.practitioners = [
            (p, list(rows)) for p, rows in groupby(mine, key=lambda a: a.practitioner)
        ]
        days.append(day)
    return days


def today_board(*, actor) -> dict:
    """Everything the dashboard's Today shows to `actor`; parts they may not see are None."""
    clinic = clinic_get()
    board = {
        "clinic": clinic,
        "locations": None,
        "owing_today": None,
        "owing": None,
        "expiring": None,
        "running_low": None,
        "declined": None,
        "past_due": None,
        "to_review": None,
        "expiring_days": EXPIRING_WITHIN_DAYS,
    }
    appointments: list = []
    if can(actor, Action.SCHEDULE_OWN):
        locations = list(locations_active())
        appointments = appointments_today(actor=actor, locations=locations)
        staff = staff_of(actor)
        own = {loc.pk for loc in staff.locations.all()} if staff else set()
        busy = {a.location_id for a in appointments}
        # A location shows when it has appointments today, or it is one of the actor's own.
        shown = [loc for loc in locations if loc.pk in busy or loc.pk in own] or locations[:1]
        board["locations"] = _by_location(appointments, shown)
    today_ids = sorted(
        {r.patient_id for a in appointments for r in a.visits.all() if r.status != Status.CANCELLED}
    )
    if can(actor, Action.INVOICE_VIEW):
        owing_today = (
            patients_owing(patient_ids=today_ids, limit=len(today_ids)) if today_ids else []
        )
        board["owing_today"] = owing_today
        owes = {row["patient_id"]: row["owing_minor"] for row in owing_today}
        for a in appointments:  # the appointment list marks who owes
            a.owing_minor = sum(owes.get(r.patient_id, 0) for r in a.visits.all())
        board["owing"] = patients_owing(limit=10)
        board["expiring"] = passes_expiring(
            today=clinic_today(clinic), within_days=EXPIRING_WITHIN_DAYS
        )
        board["running_low"] = passes_running_low(patient_ids=today_ids) if today_ids else []
        board["declined"] = autopay_declined()
        board["past_due"] = past_due_memberships(limit=20, clinic=clinic)
    if can(
        actor, Action.CARD_REVIEW
    ):  # card payments whose outcome came late or became credit: one count
        board["to_review"] = attempts_to_review().count()
    return board
