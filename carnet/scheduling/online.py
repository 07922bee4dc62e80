"""Online booking (SPEC 4, 11): what the public may book, booking by the patient, and cancelling
from the portal within the clinic's cancellation window. The patient is the actor here, so these
services check ownership and policy instead of staff access levels."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction

from carnet.clinic.models import Location, Treatment
from carnet.clinic.selectors import clinic_get
from carnet.core import activity, clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.idempotency import claim_form_key
from carnet.core.mail import mail_queue
from carnet.people.models import Patient, Shift, StaffMember
from carnet.people.selectors import patients_managed_by

from .coverage import passes
from .locks import lock_appointment, lock_practitioners
from .models import Appointment, Status, Visit
from .selectors import free_intervals, treatments_offered
from .services import booking_validate, slot_check_free

Kind = Treatment.Kind


def bookable_treatments(*, location: Location):
    """Individual treatments offered online (groups and classes are booked by the front desk)."""
    return Treatment.objects.filter(
        online_bookable=True, is_active=True, kind=Kind.INDIVIDUAL
    ).order_by("name")


def bookable_practitioners(*, location: Location):
    """Active practitioners with a shift at this location."""
    ids = Shift.objects.filter(location=location).values_list("staff_id", flat=True)
    return StaffMember.objects.filter(pk__in=ids, is_active=True, is_practitioner=True).order_by(
        "display_name"
    )


def location_hours(*, location: Location) -> list[tuple[str, dt.time, dt.time]]:
    """Opening hours as a patient reads them: for each weekday someone bookable works at the
    location, from the first shift's start to the last one's end (Monday first)."""
    days: dict[int, tuple[dt.time, dt.time]] = {}
    for shift in Shift.objects.filter(
        location=location, staff__in=bookable_practitioners(location=location)
    ):
        opens, closes = days.get(shift.weekday, (shift.start_time, shift.end_time))
        days[shift.weekday] = (min(opens, shift.start_time), max(closes, shift.end_time))
    names = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    return [(names[day], *days[day]) for day in sorted(days)]


def bookable_slots(
    *,
    treatment: Treatment,
    practitioner: StaffMember,
    location: Location,
    day: dt.date,
    now: dt.datetime | None = None,
) -> list[dt.datetime]:
    """Start times (aware, in the location's time zone) on `day` where the treatment fits in the
    practitioner's free time at this location, one treatment length apart, none in the past."""
    if not treatments_offered(practitioner).filter(pk=treatment.pk).exists():
        return []  # not theirs to give (their profile's treatments): no time is offered for it
    now = now or clock.now()
    length = dt.timedelta(minutes=treatment.duration_minutes)
    shifts = Shift.objects.filter(staff=practitioner, location=location).select_related("location")
    slots = []
    for _location, (start, end) in free_intervals(
        practitioner=practitioner, day=day, shifts=shifts
    ):
        at = start
        while at + length <= end:
            if at > now:
                slots.append(at)
            # Step in UTC so a daylight-saving day still yields evenly spaced real instants.
            at = (at.astimezone(dt.UTC) + length).astimezone(start.tzinfo)
    return sorted(slots)


def bookable_times(
    *,
    treatment: Treatment,
    location: Location,
    day: dt.date,
    practitioner: StaffMember | None = None,
    now: dt.datetime | None = None,
) -> list[tuple[dt.datetime, StaffMember]]:
    """Free start times on `day` with who is free then: of one practitioner, or of any practitioner
    at the location ("any": each time once, with the first of them by name who is free)."""
    practitioners = (
        [practitioner] if practitioner else list(bookable_practitioners(location=location))
    )
    times: dict[dt.datetime, StaffMember] = {}
    for person in practitioners:
        for start in bookable_slots(
            treatment=treatment, practitioner=person, location=location, day=day, now=now
        ):
            times.setdefault(start, person)
    return sorted(times.items(), key=lambda pair: pair[0])


FIRST_AVAILABLE_WEEKS = 8


def first_available_day(
    *,
    treatment: Treatment,
    location: Location,
    start: dt.date,
    practitioner: StaffMember | None = None,
) -> dt.date | None:
    """The first day from `start` with a free time, looking FIRST_AVAILABLE_WEEKS ahead (within the
    booking horizon); days nobody works at this location are skipped without a query."""

    staff = [practitioner] if practitioner else list(bookable_practitioners(location=location))
    weekdays = set(
        Shift.objects.filter(location=location, staff__in=staff).values_list("weekday", flat=True)
    )
    last = min(
        start + dt.timedelta(weeks=FIRST_AVAILABLE_WEEKS),
        clock.today(ZoneInfo(location.time_zone))
        + dt.timedelta(days=settings.ONLINE_BOOKING_HORIZON_DAYS),
    )
    day = start
    while day <= last:
        if day.weekday() in weekdays and bookable_times(
            treatment=treatment, location=location, day=day, practitioner=practitioner
        ):
            return day
        day += dt.timedelta(days=1)
    return None


def horizon_check(*, day: dt.date, location: Location) -> dt.date:
    """Patients book online at most ONLINE_BOOKING_HORIZON_DAYS ahead (the clinic's schedule is not
    planned further, and a date in year 9999 would only overflow later)."""

    days = settings.ONLINE_BOOKING_HORIZON_DAYS
    last = clock.today(ZoneInfo(location.time_zone)) + dt.timedelta(days=days)
    if day > last:
        raise ValidationFailed(
            f"Online booking is open up to {last:%-d %B %Y} ({days} days ahead). Choose an "
            "earlier day, or call the clinic.",
            fields={"day": [f"At most {days} days ahead."]},
        )
    return day


def _when(appointment: Appointment) -> str:
    local = appointment.start.astimezone(ZoneInfo(appointment.location.time_zone))
    return local.strftime("%A %-d %B %Y at %H:%M")


@transaction.atomic
def appointment_book_online(
    *,
    user,
    patient: Patient,
    treatment: Treatment,
    practitioner: StaffMember,
    location: Location,
    start: dt.datetime,
    idempotency_key: str = "",
) -> Appointment | None:
    """Book an individual visit for `patient` (the logged-in patient or a dependant) at a bookable
    slot. Returns None when this form was already submitted (a double click books once)."""
    if patient not in patients_managed_by(user.patient):
        raise NotFound("No such patient.")
    if not (treatment.online_bookable and treatment.kind == Kind.INDIVIDUAL):
        raise ValidationFailed(
            f"{treatment} cannot be booked online.", fields={"treatment": ["Not bookable online."]}
        )
    booking_validate(treatment, practitioner, location)
    if not claim_form_key(user=user, key=idempotency_key):
        return None
    lock_practitioners([practitioner.pk])
    _online_limit_check(patient)
    end = start + dt.timedelta(minutes=treatment.duration_minutes)
    taken = Conflict(
        f"Sorry, {_local(start, location)} with {practitioner} was just taken. "
        "Please choose another time.",
        code="double_booked",
    )
    try:
        slot_check_free(practitioner=practitioner, location=location, start=start, end=end)
    except Conflict:
        raise taken from None
    day = horizon_check(
        day=start.astimezone(ZoneInfo(location.time_zone)).date(), location=location
    )
    if start not in bookable_slots(
        treatment=treatment, practitioner=practitioner, location=location, day=day
    ):
        raise taken  # overlapping a break or another booking, outside the shift, or in the past
    appointment = Appointment.objects.create(
        treatment=treatment,
        practitioner=practitioner,
        location=location,
        start=start,
        end=end,
        booked_by=Appointment.BookedBy.ONLINE,
        created_at=clock.now(),
    )
    Visit.objects.create(
        appointment=appointment,
        patient=patient,
        booked_at=clock.now(),
        role=Visit.Role.PRIMARY,
    )
    activity.record(
        actor=user, verb="booked online", obj=appointment, after=activity.snapshot(appointment)
    )
    passes.after_booking(
        actor=user, appointment=appointment, online=True
    )  # only passes allowed online (SPEC 5.3)
    # What the visit costs, from the use actually reserved (if any), for the email.
    quote = passes.visit_quote(
        patient=patient,
        treatment=treatment,
        booked=True,
        reserved=passes.reservation(appointment.visits.get()),
        visit_date=start.astimezone(ZoneInfo(location.time_zone)).date(),
    )
    clinic = clinic_get()
    if patient.email or user.patient.email:
        mail_queue(
            to=patient.email or user.patient.email,
            subject=f"Your appointment at {clinic.name}",
            template="scheduling/booking_confirmation.txt",
            context={
                "clinic": clinic,
                "patient": patient,
                "appointment": appointment,
                "cost": quote.sentence,
                "when": _when(appointment),
                "window": clinic.cancellation_window_hours,
            },
        )
    return appointment


def _online_limit_check(patient: Patient) -> None:
    """At most the clinic's number of upcoming online bookings per patient (SPEC 14): one patient
    cannot hold every free slot. The patient's row is locked first, so two bookings racing for the
    last place cannot both take it (on SQLite the write lock serialises them)."""
    Patient.objects.select_for_update().filter(pk=patient.pk).first()
    limit = clinic_get().online_bookings_per_patient
    held = Visit.objects.filter(
        patient=patient,
        status=Status.BOOKED,
        appointment__status=Status.BOOKED,
        appointment__booked_by=Appointment.BookedBy.ONLINE,
        appointment__start__gt=clock.now(),
    ).count()
    if held >= limit:
        raise Conflict(
            f"{patient.full_name} already has {held} upcoming "
            f"appointment{'s' if held != 1 else ''} booked online, the most this clinic takes "
            f"online ({limit}). Cancel one from My Account or call the clinic to book more.",
            code="online_booking_limit",
        )


def _local(when: dt.datetime, location: Location) -> str:
    return when.astimezone(ZoneInfo(location.time_zone)).strftime("%Y-%m-%d %H:%M")


def patient_appointments(*, patient: Patient):
    """(upcoming, past) visits of the patient and their dependants,
    upcoming soonest first."""
    visits = Visit.objects.filter(patient__in=patients_managed_by(patient)).select_related(
        "appointment__treatment", "appointment__practitioner", "appointment__location", "patient"
    )
    now = clock.now()
    upcoming = visits.filter(appointment__start__gte=now).order_by("appointment__start", "pk")
    past = visits.filter(appointment__start__lt=now).order_by("-appointment__start", "-pk")[:50]
    return list(upcoming), list(past)


def cancel_deadline(appointment: Appointment) -> dt.datetime:
    return appointment.start - dt.timedelta(hours=clinic_get().cancellation_window_hours)


@transaction.atomic
def appointment_cancel_by_patient(
    *, user, visit_pk: int, now: dt.datetime | None = None
) -> Appointment:
    """The patient cancels their own (or a dependant's) booked visit, no later than the clinic's
    cancellation window before it starts."""
    now = now or clock.now()
    visit = Visit.objects.filter(pk=visit_pk, patient__in=patients_managed_by(user.patient)).first()
    if visit is None:
        raise NotFound("No such appointment.")
    appointment = lock_appointment(visit.appointment_id)
    visit.refresh_from_db()
    if visit.status != Status.BOOKED:
        raise Conflict(
            f"This appointment is {visit.get_status_display().lower()}; only a booked one can "
            "be cancelled.",
            code="not_booked",
        )
    hours = clinic_get().cancellation_window_hours
    if now > cancel_deadline(appointment):
        raise Conflict(
            f"Appointments can be cancelled online up to {hours} hours before they start. "
            "Please call the clinic to cancel this one.",
            code="cancellation_window",
        )
    before = activity.snapshot(appointment)
    visit.status = Status.CANCELLED
    visit.save(update_fields=["status"])
    # The only (or primary) patient cancelling frees the whole slot.
    if visit.role == Visit.Role.PRIMARY or appointment.kind == Kind.INDIVIDUAL:
        appointment.visits.filter(status=Status.BOOKED).update(status=Status.CANCELLED)
        appointment.status = Status.CANCELLED
        appointment.save(update_fields=["status"])
    activity.record(
        actor=user,
        verb="cancelled online",
        obj=appointment,
        before=before,
        after={**activity.snapshot(appointment), "patient_id": visit.patient_id},
    )
    return appointment
