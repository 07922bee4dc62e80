"""Scheduling endpoints. POSTs accept `Idempotency-Key` (core.middleware), so a retried booking
or arrival runs once. Access is checked in the services (access.schedule_require)."""

import datetime as dt

from ninja import Router, Status

from carnet.clinic.models import Location, Treatment
from carnet.core.errors import ValidationFailed
from carnet.core.limits import date_check
from carnet.core.moved import moved
from carnet.core.schemas import one_in_body
from carnet.people.models import Patient, StaffMember
from carnet.people.selectors import patient_get

from . import arrival, selectors, services
from . import schemas as s
from .access import schedule_require
from .breaks import break_create, break_delete
from .coverage import passes
from .models import Appointment, Break

router = Router(tags=["scheduling"])


def _patients(ids: list[int]) -> list[Patient]:
    found = {p.pk: p for p in Patient.objects.filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed(
            f"No patient with id {missing[0]}.", fields={"patient_ids": ["Unknown patient."]}
        )
    return [found[i] for i in ids]


def _fresh(request, pk: int):
    return selectors.appointment_get(actor=request.auth, pk=pk)


def _bare(pk: int) -> Appointment:
    """For the arrival services, which read the row under its lock and check the caller's scope
    themselves (scheduling.arrival._start): a read here would be the same row read twice."""
    return Appointment(pk=pk)


def _pass_choice(choice):
    if choice in ("auto", "none"):
        return None if choice == "none" else "auto"
    return one_in_body(passes.Pass, choice, "pass_choice", "pass")


@router.post("/appointments", response={201: s.AppointmentOut}, operation_id="appointment_book")
def book(request, payload: s.BookIn):
    practitioner = one_in_body(
        StaffMember, payload.practitioner_id, "practitioner_id", "practitioner"
    )
    location = one_in_body(Location, payload.location_id, "location_id", "location")
    schedule_require(
        request.auth, practitioner_id=practitioner.pk, location_id=location.pk
    )  # before probing patients
    appointment = services.appointment_book(
        actor=request.auth,
        treatment=one_in_body(Treatment, payload.treatment_id, "treatment_id", "treatment"),
        practitioner=practitioner,
        location=location,
        start=payload.start,
        patients=_patients(payload.patient_ids),
        notes=payload.notes,
        pass_choice=_pass_choice(payload.pass_choice),
    )
    return Status(201, _fresh(request, appointment.pk))


@router.get(
    "/appointments",
    response=list[s.AppointmentOut],
    operation_id="appointments_list",
    summary="Appointments starting on a day (the location's day, else the clinic's; default today)",
)
def appointments(
    request,
    date: dt.date | None = None,
    location_id: int | None = None,
    practitioner_id: int | None = None,
):
    return list(
        selectors.appointments_list(
            actor=request.auth,
            day=date_check(date, field="date"),
            location=one_in_body(Location, location_id, "location_id", "location"),
            practitioner=one_in_body(
                StaffMember, practitioner_id, "practitioner_id", "practitioner"
            ),
        )
    )


@router.get("/appointments/{pk}", response=s.AppointmentOut, operation_id="appointment_read")
def read(request, pk: int):
    return _fresh(request, pk)


@router.post(
    "/appointments/{pk}/visits",
    response={201: s.AppointmentOut},
    operation_id="appointment_join",
)
def join(request, pk: int, payload: s.JoinIn):
    appointment = _fresh(request, pk)
    services.appointment_join(
        actor=request.auth, appointment=appointment, patient=patient_get(payload.patient_id)
    )
    return Status(201, _fresh(request, pk))


@router.post("/appointments/{pk}/participants", include_in_schema=False)
def join_moved(request, pk: int):
    """The join's address before issue 24, answering 308 to /visits for one release."""
    return moved(request, "/participants", "/visits")


@router.post(
    "/appointments/{pk}/arrive", response=s.AppointmentOut, operation_id="appointment_arrive"
)
def arrive(request, pk: int, payload: s.PatientsIn = None):
    ids = payload.patient_ids if payload else None
    done = arrival.appointment_arrive(actor=request.auth, appointment=_bare(pk), patient_ids=ids)
    return selectors.with_visits(done)


@router.post(
    "/appointments/{pk}/unarrive", response=s.AppointmentOut, operation_id="appointment_unarrive"
)
def unarrive(request, pk: int, payload: s.PatientsIn = None):
    ids = payload.patient_ids if payload else None
    done = arrival.appointment_unarrive(actor=request.auth, appointment=_bare(pk), patient_ids=ids)
    return selectors.with_visits(done)


@router.post(
    "/appointments/{pk}/no-show",
    response=s.AppointmentOut,
    operation_id="appointment_no_show",
    summary="Mark a no-show (charging the clinic's fee); marking it again changes nothing",
)
def no_show(request, pk: int, payload: s.NoShowIn = None):
    payload = payload or s.NoShowIn()
    return selectors.with_visits(
        arrival.appointment_no_show(
            actor=request.auth,
            appointment=_bare(pk),
            charge_fee=payload.charge_fee,
            use_pass=payload.use_pass,
            patient_ids=payload.patient_ids,
        )
    )


@router.post(
    "/appointments/{pk}/no-show/undo",
    response=s.AppointmentOut,
    operation_id="appointment_no_show_undo",
    summary=(
        "Undo a no-show: back to booked, its fee invoice deleted; undoing again changes nothing"
    ),
)
def no_show_undo(request, pk: int, payload: s.PatientsIn = None):
    ids = payload.patient_ids if payload else None
    return selectors.with_visits(
        arrival.appointment_no_show_undo(actor=request.auth, appointment=_bare(pk), patient_ids=ids)
    )


@router.post(
    "/appointments/{pk}/cancel", response=s.AppointmentOut, operation_id="appointment_cancel"
)
def cancel(request, pk: int, payload: s.CancelIn = None):
    patient = (
        patient_get(payload.patient_id) if payload and payload.patient_id is not None else None
    )
    services.appointment_cancel(
        actor=request.auth, appointment=_fresh(request, pk), patient=patient
    )
    return _fresh(request, pk)


@router.post(
    "/appointments/{pk}/copy", response={201: s.AppointmentOut}, operation_id="appointment_copy"
)
def copy(request, pk: int, payload: s.StartIn):
    new = services.appointment_copy(
        actor=request.auth, appointment=_fresh(request, pk), start=payload.start
    )
    return Status(201, _fresh(request, new.pk))


@router.post(
    "/appointments/{pk}/reschedule",
    response=s.AppointmentOut,
    operation_id="appointment_reschedule",
)
def reschedule(request, pk: int, payload: s.StartIn):
    services.appointment_reschedule(
        actor=request.auth, appointment=_fresh(request, pk), start=payload.start
    )
    return _fresh(request, pk)


@router.post(
    "/appointments/{pk}/duplicate-as-class",
    response={201: s.AppointmentOut},
    operation_id="appointment_duplicate_as_class",
)
def duplicate_as_class(request, pk: int, payload: s.ClassIn):
    appointment = _fresh(request, pk)
    treatment = one_in_body(Treatment, payload.treatment_id, "treatment_id", "treatment")
    new = services.appointment_duplicate_as_class(
        actor=request.auth, appointment=appointment, treatment=treatment
    )
    return Status(201, _fresh(request, new.pk))


@router.get(
    "/practitioners/{pk}/availability",
    response=list[s.FreeOut],
    operation_id="availability",
    summary="Free time from shifts minus appointments, in each location's time zone",
)
def free_time(request, pk: int, date: dt.date | None = None, location_id: int | None = None):
    practitioner = one_in_body(StaffMember, pk, "pk", "practitioner")
    free = selectors.availability(
        actor=request.auth,
        practitioner=practitioner,
        day=date_check(date, field="date"),
        location=one_in_body(Location, location_id, "location_id", "location"),
    )
    return [{"location_id": loc.pk, "start": a, "end": b} for loc, (a, b) in free]


@router.get("/practitioners/{pk}/breaks", response=list[s.BreakOut], operation_id="breaks_list")
def breaks(request, pk: int, date: dt.date | None = None):
    practitioner = one_in_body(StaffMember, pk, "pk", "practitioner")
    return selectors.breaks_for(
        actor=request.auth, practitioner=practitioner, day=date_check(date, field="date")
    )


@router.post("/practitioners/{pk}/breaks", response={201: s.BreakOut}, operation_id="break_create")
def break_add(request, pk: int, payload: s.BreakIn):
    practitioner = one_in_body(StaffMember, pk, "pk", "practitioner")
    location = one_in_body(Location, payload.location_id, "location_id", "location")
    return Status(
        201,
        break_create(
            actor=request.auth,
            practitioner=practitioner,
            location=location,
            start=payload.start,
            end=payload.end,
            reason=payload.reason,
        ),
    )


@router.delete("/breaks/{pk}", response={204: None}, operation_id="break_delete")
def break_remove(request, pk: int):
    item = one_in_body(Break, pk, "pk", "break")
    break_delete(actor=request.auth, item=item)
    return Status(204, None)
