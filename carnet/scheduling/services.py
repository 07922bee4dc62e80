"""Booking services: book, join, cancel, copy, reschedule, duplicate a group as a class.

Every write locks the practitioner before its overlap check (see locks.py), so two requests
racing for one slot cannot both pass it. Arrival billing lives in arrival.py.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.db import transaction

from carnet.clinic.models import Location, Treatment
from carnet.clinic.selectors import clinic_get
from carnet.core import activity, clock
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.permissions import staff_of
from carnet.people.models import Patient, StaffMember

from .access import schedule_require
from .coverage import passes
from .locks import lock_appointment, lock_practitioners
from .models import Appointment, Break, Status, Visit
from .selectors import treatments_offered

Kind = Treatment.Kind
Role = Visit.Role


def _local(when: dt.datetime, location: Location) -> str:
    return when.astimezone(ZoneInfo(location.time_zone)).strftime("%Y-%m-%d %H:%M")


def slot_check_free(
    *,
    practitioner: StaffMember,
    location: Location,
    start: dt.datetime,
    end: dt.datetime,
    exclude_pk: int | None = None,
) -> None:
    """Refuse an overlapping appointment unless the clinic allows double-booking.
    Callers hold the practitioner's lock (lock_practitioners) so this check cannot race."""
    if clinic_get().allow_double_booking:
        return
    clash = (
        Appointment.objects.filter(practitioner=practitioner, start__lt=end, end__gt=start)
        .exclude(status=Status.CANCELLED)
        .exclude(pk=exclude_pk)
        .select_related("treatment")
        .first()
    )
    pause = Break.objects.filter(practitioner=practitioner, start__lt=end, end__gt=start).first()
    if pause is not None:
        raise Conflict(
            f"{practitioner} is on a break from {_local(pause.start, location)} to "
            f"{_local(pause.end, location)}. Choose another time or practitioner.",
            code="on_break",
        )
    if clash is not None:
        raise Conflict(
            f"{practitioner} is already booked from {_local(clash.start, location)} to "
            f"{_local(clash.end, location)} ({clash.treatment}). Choose another time or "
            "practitioner, or turn on double-booking in clinic settings.",
            code="double_booked",
        )


def _aware(start: dt.datetime) -> dt.datetime:
    if start.tzinfo is None:
        raise ValidationFailed(
            "Give the start time with its UTC offset (e.g. 2026-03-08T09:00:00-05:00).",
            fields={"start": ["Include a UTC offset."]},
        )
    return start


def _role(treatment: Treatment, first: bool) -> str:
    if treatment.kind == Kind.CLASS:
        return Role.PARTICIPANT
    return Role.PRIMARY if first else Role.SECONDARY


def _check_headcount(treatment: Treatment, count: int) -> None:
    if treatment.kind == Kind.INDIVIDUAL and count != 1:
        raise ValidationFailed(
            f"{treatment} is an individual treatment: book exactly one patient.",
            fields={"patient_ids": ["Exactly one patient."]},
        )
    if treatment.kind == Kind.GROUP and count < 1:
        raise ValidationFailed(
            f"{treatment} is a group treatment: book at least the primary client.",
            fields={"patient_ids": ["At least one patient."]},
        )
    if treatment.capacity and count > treatment.capacity:
        raise Conflict(
            f"{treatment} has {treatment.capacity} places and this would make {count}. "
            "Book another session.",
            code="full",
        )


def _add(appointment: Appointment, patients: list[Patient], *, first: bool) -> None:
    now = clock.now()
    for i, patient in enumerate(patients):
        Visit.objects.create(
            appointment=appointment,
            patient=patient,
            booked_at=now,
            role=_role(appointment.treatment, first and i == 0),
        )


def booking_validate(treatment: Treatment, practitioner: StaffMember, location: Location) -> None:
    problems = {}
    if not treatment.is_active:
        problems["treatment_id"] = [f"{treatment} is no longer offered."]
    if not (practitioner.is_practitioner and practitioner.is_active):
        problems["practitioner_id"] = [f"{practitioner} is not an active practitioner."]
    if not location.is_active:
        problems["location_id"] = [f"{location} is closed."]
    if not problems and not treatments_offered(practitioner).filter(pk=treatment.pk).exists():
        # The practitioner's profile says what they offer (every treatment when none is ticked):
        # the desk's form, the API and online booking all refuse the others.
        problems["treatment_id"] = [
            f"{practitioner} does not offer {treatment}; choose one of their treatments "
            "or another practitioner."
        ]
    if problems:
        raise ValidationFailed(next(iter(problems.values()))[0], fields=problems)


@transaction.atomic
def appointment_book(
    *,
    actor,
    treatment: Treatment,
    practitioner: StaffMember,
    location: Location,
    start: dt.datetime,
    patients: list[Patient],
    notes: str = "",
    booked_by: str = Appointment.BookedBy.STAFF,
    pass_choice="auto",
) -> Appointment:
    """Book an individual visit (one patient), a group (first patient is the primary) or a class
    session. `pass_choice`: "auto" attaches auto-selected passes, a Pass attaches that one,
    None none (SPEC 5.3)."""
    schedule_require(actor, practitioner_id=practitioner.pk, location_id=location.pk)
    booking_validate(treatment, practitioner, location)
    if len({p.pk for p in patients}) != len(patients):
        raise ValidationFailed(
            "A patient is listed twice.", fields={"patient_ids": ["Listed twice."]}
        )
    _check_headcount(treatment, len(patients))
    start = _aware(start)
    end = start + dt.timedelta(minutes=treatment.duration_minutes)
    lock_practitioners([practitioner.pk])
    slot_check_free(practitioner=practitioner, location=location, start=start, end=end)
    appointment = Appointment.objects.create(
        treatment=treatment,
        practitioner=practitioner,
        location=location,
        start=start,
        end=end,
        notes=notes,
        booked_by=booked_by,
        booked_by_staff=staff_of(actor),
        created_at=clock.now(),
    )
    _add(appointment, patients, first=True)
    activity.record(
        actor=actor, verb="booked", obj=appointment, after=activity.snapshot(appointment)
    )
    passes.after_booking(actor=actor, appointment=appointment, choice=pass_choice)
    return appointment


@transaction.atomic
def appointment_join(*, actor, appointment: Appointment, patient: Patient) -> Visit:
    """Add a secondary client to a group or a participant to a class, within its capacity."""
    schedule_require(
        actor, practitioner_id=appointment.practitioner_id, location_id=appointment.location_id
    )
    appointment = lock_appointment(appointment.pk)  # concurrent joins count one after another
    if appointment.kind == Kind.INDIVIDUAL:
        raise Conflict(
            "An individual appointment has one patient. Book a separate appointment instead.",
            code="individual_appointment",
        )
    if appointment.status != Status.BOOKED:
        raise Conflict(
            f"This appointment is {appointment.get_status_display().lower()}; only a booked one "
            "takes more patients.",
            code="not_booked",
        )
    visits = appointment.visits.exclude(status=Status.CANCELLED)
    if (
        visits.filter(patient=patient).exists()
        or appointment.visits.filter(patient=patient).exists()
    ):
        raise Conflict(f"{patient} is already in this appointment.", code="already_booked")
    _check_headcount(appointment.treatment, visits.count() + 1)
    first = appointment.kind == Kind.GROUP and not visits.filter(role=Role.PRIMARY).exists()
    visit = Visit.objects.create(
        appointment=appointment,
        patient=patient,
        booked_at=clock.now(),
        role=_role(appointment.treatment, first),
    )
    activity.record(actor=actor, verb="joined", obj=visit, after=activity.snapshot(visit))
    passes.after_booking(actor=actor, appointment=appointment, visits=[visit])
    return visit


@transaction.atomic
def appointment_cancel(
    *, actor, appointment: Appointment, patient: Patient | None = None
) -> Appointment:
    """Cancel the appointment, or one class participant or group secondary client. Arrived or
    no-show visits must be un-arrived (or the no-show undone) first."""
    schedule_require(
        actor, practitioner_id=appointment.practitioner_id, location_id=appointment.location_id
    )
    appointment = lock_appointment(appointment.pk)
    if appointment.status == Status.CANCELLED:
        raise Conflict("This appointment is already cancelled.", code="already_cancelled")
    visits = appointment.visits.exclude(status=Status.CANCELLED)
    if patient is not None:
        visits = visits.filter(patient=patient)
        if not visits.exists():
            raise ValidationFailed(
                f"{patient} is not booked in this appointment.",
                fields={"patient_id": ["Not booked."]},
            )
    # Cancelling the primary (or the only patient) cancels the whole appointment.
    whole = (
        patient is None
        or visits.filter(role=Role.PRIMARY).exists()
        or appointment.kind == Kind.INDIVIDUAL
    )
    if whole:
        visits = appointment.visits.exclude(status=Status.CANCELLED)
    if visits.exclude(status=Status.BOOKED).exists():
        raise Conflict(
            "Only booked visits can be cancelled. Un-arrive them, or undo the no-show, first.",
            code="not_booked",
        )
    before = activity.snapshot(appointment)
    passes.voided(list(visits))
    visits.update(status=Status.CANCELLED)
    if whole:
        appointment.status = Status.CANCELLED
        appointment.save(update_fields=["status"])
    activity.record(
        actor=actor,
        verb="cancelled",
        obj=appointment,
        before=before,
        after={**activity.snapshot(appointment), "patient_id": getattr(patient, "pk", None)},
    )
    return appointment


@transaction.atomic
def appointment_copy(*, actor, appointment: Appointment, start: dt.datetime) -> Appointment:
    """A new booked appointment like this one (same treatment, practitioner, place,
    patients) at `start`."""
    visits = appointment.visits.select_related("patient").order_by("booked_at", "pk")
    # A cancelled appointment copies with everyone who was in it.
    patients = [r.patient for r in visits if r.status != Status.CANCELLED] or [
        r.patient for r in visits
    ]
    copy = appointment_book(
        actor=actor,
        treatment=appointment.treatment,
        practitioner=appointment.practitioner,
        location=appointment.location,
        start=start,
        patients=patients,
        notes=appointment.notes,
        pass_choice=None,
    )
    passes.carry_over(actor=actor, source=appointment, copy=copy)
    activity.record(
        actor=actor, verb="copied", obj=copy, after={"from_appointment": appointment.pk}
    )
    return copy


@transaction.atomic
def appointment_reschedule(*, actor, appointment: Appointment, start: dt.datetime) -> Appointment:
    """Move a booked appointment to `start`, keeping its length."""
    schedule_require(
        actor, practitioner_id=appointment.practitioner_id, location_id=appointment.location_id
    )
    start = _aware(start)
    lock_practitioners([appointment.practitioner_id])
    appointment = lock_appointment(appointment.pk)
    if (
        appointment.status != Status.BOOKED
        or appointment.visits.exclude(status__in=[Status.BOOKED, Status.CANCELLED]).exists()
    ):
        raise Conflict(
            "Only a booked appointment nobody has arrived for (or missed) can be rescheduled. "
            "Copy it to the new time instead.",
            code="not_booked",
        )
    end = start + (appointment.end - appointment.start)
    slot_check_free(
        practitioner=appointment.practitioner,
        location=appointment.location,
        start=start,
        end=end,
        exclude_pk=appointment.pk,
    )
    passes.check_move(
        appointment,
        new_date=start.astimezone(ZoneInfo(appointment.location.time_zone)).date(),
        new_start=start,
    )
    before = activity.snapshot(appointment)
    appointment.start, appointment.end = start, end
    appointment.save(update_fields=["start", "end"])
    activity.record(
        actor=actor,
        verb="rescheduled",
        obj=appointment,
        before=before,
        after=activity.snapshot(appointment),
    )
    return appointment


@transaction.atomic
def appointment_duplicate_as_class(
    *, actor, appointment: Appointment, treatment: Treatment
) -> Appointment:
    """Replace a booked group appointment by a class at the same time with the same patients, so
    each can arrive, be billed and use a pass on their own. The group is
    cancelled in the same step."""
    if appointment.kind != Kind.GROUP:
        raise ValidationFailed(
            "Only a group appointment can be duplicated as a class.",
            fields={"appointment": ["Not a group."]},
        )
    if treatment.kind != Kind.CLASS:
        raise ValidationFailed(
            f"{treatment} is not a class; choose a class treatment.",
            fields={"treatment_id": ["Not a class."]},
        )
    lock_practitioners(
        [appointment.practitioner_id]
    )  # the fixed lock order: practitioner, then appointment
    patients = [
        r.patient
        for r in appointment.visits.exclude(status=Status.CANCELLED).select_related("patient")
    ]
    appointment_cancel(actor=actor, appointment=appointment)  # frees the slot for the class below
    session = appointment_book(
        actor=actor,
        treatment=treatment,
        practitioner=appointment.practitioner,
        location=appointment.location,
        start=appointment.start,
        patients=patients,
        notes=appointment.notes,
    )
    activity.record(
        actor=actor,
        verb="duplicated as class",
        obj=session,
        after={"from_appointment": appointment.pk},
    )
    return session
