"""Online booking through the API: what a patient may book, and their own appointments."""

import datetime as dt

from ninja import Field, Router, Status

from carnet.clinic.models import Location, Treatment
from carnet.core.errors import NotAllowed, NotFound, ValidationFailed
from carnet.core.schemas import Schema
from carnet.people.models import StaffMember
from carnet.people.selectors import patients_managed_by

from . import online

router = Router(tags=["online booking"])


class TreatmentOut(Schema):
    id: int
    name: str
    duration_minutes: int
    price_minor: int


class SlotsOut(Schema):
    practitioner_id: int
    starts: list[dt.datetime]


class OnlineBookIn(Schema):
    location_id: int
    treatment_id: int
    practitioner_id: int
    start: dt.datetime = Field(..., description="One of the slot starts, with its UTC offset")
    patient_id: int | None = Field(
        None, description="A dependant; defaults to the logged-in patient"
    )


class MyAppointmentOut(Schema):
    id: int = Field(..., description="The booking (use it to cancel)")
    appointment_id: int
    patient_id: int
    treatment_name: str = Field(..., alias="appointment.treatment.name")
    practitioner_name: str = Field(..., alias="appointment.practitioner.display_name")
    location_id: int = Field(..., alias="appointment.location_id")
    start: dt.datetime = Field(..., alias="appointment.start")
    end: dt.datetime = Field(..., alias="appointment.end")
    status: str


def _patient(request):
    patient = getattr(request.auth, "patient", None)
    if patient is None:
        raise NotAllowed(
            "Only patients book online; staff book from the schedule (/api/v1/appointments)."
        )
    return patient


def _get(model, pk: int, label: str):
    found = model.objects.filter(pk=pk).first()
    if found is None:
        raise NotFound(f"No {label} with id {pk}.")
    return found


@router.get(
    "/locations/{pk}/online-treatments",
    response=list[TreatmentOut],
    operation_id="online_treatments",
)
def treatments(request, pk: int):
    return list(online.bookable_treatments(location=_get(Location, pk, "location")))


@router.get("/locations/{pk}/online-slots", response=list[SlotsOut], operation_id="online_slots")
def slots(request, pk: int, treatment_id: int, date: dt.date):
    location, treatment = _get(Location, pk, "location"), _get(Treatment, treatment_id, "treatment")
    return [
        {
            "practitioner_id": p.pk,
            "starts": online.bookable_slots(
                treatment=treatment, practitioner=p, location=location, day=date
            ),
        }
        for p in online.bookable_practitioners(location=location)
    ]


@router.get("/me/appointments", response=list[MyAppointmentOut], operation_id="my_appointments")
def my_appointments(request):
    upcoming, past = online.patient_appointments(patient=_patient(request))
    return upcoming + past


@router.post("/me/appointments", response={201: MyAppointmentOut}, operation_id="online_book")
def book(request, payload: OnlineBookIn):
    me = _patient(request)
    patient = me
    if payload.patient_id is not None:
        patient = next((p for p in patients_managed_by(me) if p.pk == payload.patient_id), None)
        if patient is None:
            raise ValidationFailed(
                "You can book only for yourself or your dependants.",
                fields={"patient_id": ["Unknown."]},
            )
    appointment = online.appointment_book_online(
        user=request.auth,
        patient=patient,
        treatment=_get(Treatment, payload.treatment_id, "treatment"),
        practitioner=_get(StaffMember, payload.practitioner_id, "practitioner"),
        location=_get(Location, payload.location_id, "location"),
        start=payload.start,
    )
    return Status(
        201,
        appointment.visits.select_related(
            "appointment__treatment", "appointment__practitioner"
        ).get(patient=patient),
    )


@router.post(
    "/me/appointments/{pk}/cancel", response=MyAppointmentOut, operation_id="online_cancel"
)
def cancel(request, pk: int):
    _patient(request)
    appointment = online.appointment_cancel_by_patient(user=request.auth, visit_pk=pk)
    return appointment.visits.select_related(
        "appointment__treatment", "appointment__practitioner"
    ).get(pk=pk)
