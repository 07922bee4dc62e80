"""Using a pass on an appointment in the JSON API (SPEC 5.3, 6.3, 9.9): explain, attach, remove.

Every POST accepts `Idempotency-Key` (core.middleware replays the first response). Domain errors
come back as problem details with the service's code: a pass that cannot cover a visit is a 409
whose `code` is the reason (used_up, expired, not_paid, …).
"""

from ninja import Router, Status

from carnet.core import statements
from carnet.core.errors import Conflict
from carnet.core.permissions import Action, require
from carnet.passes.models import Redemption
from carnet.scheduling.access import schedule_require
from carnet.scheduling.models import Visit

from . import schemas as s
from .redemption import explain, pass_attach, pass_remove, visit_missing

router = Router(tags=["passes"])


# Compiled once per process (core.statements): the front desk's busiest read.
_PATIENT_VISIT = statements.select(
    lambda appointment, patient: Visit.objects.select_related(
        "appointment__treatment", "appointment__location", "patient"
    ).filter(appointment_id=appointment, patient_id=patient),
    appointment=int,
    patient=int,
)


def _visit(request, pk: int, patient_id: int):
    """A patient's visit in an appointment the actor may work on (schedule scope; patient users
    refused)."""
    try:  # one visit per patient and appointment (a unique constraint): `.get()`, no ORDER BY
        visit = _PATIENT_VISIT.get(appointment=pk, patient=patient_id)
    except Visit.DoesNotExist:
        visit = None
    if visit is None:
        visit_missing(request.auth, pk, patient_id)
    schedule_require(
        request.auth,
        practitioner_id=visit.appointment.practitioner_id,
        location_id=visit.appointment.location_id,
    )
    require(request.auth, Action.PASS_USE)
    return visit


def _explained(entry) -> dict:
    sold = entry["pass"]
    return {
        "pass_id": sold.pk,
        "pass_name": sold.name,
        "owner_id": sold.patient_id,
        "status": sold.status,
        "remaining": sold.remaining,
        "expires_on": sold.expires_on,
        "code": entry["code"],
        "message": entry["message"],
        "can_cover": entry["can_cover"],
    }


@router.get(
    "/appointments/{pk}/patients/{patient_id}/explain",
    response=list[s.ExplainOut],
    operation_id="appointment_pass_explain",
    summary="Each of the patient's (and family's) packages: can it cover this visit, and why not",
)
def explain_visit(request, pk: int, patient_id: int):
    return [_explained(entry) for entry in explain(_visit(request, pk, patient_id))]


@router.post(
    "/appointments/{pk}/patients/{patient_id}/pass",
    response={201: s.RedemptionOut},
    operation_id="appointment_pass_attach",
    summary="Cover the visit with a package (`pass_id`, or null to auto-select); 409 says why not",
)
def attach(request, pk: int, patient_id: int, payload: s.AttachIn | None = None):
    redemption = pass_attach(
        actor=request.auth,
        appointment_id=pk,
        patient_id=patient_id,
        sold_pass_id=payload.pass_id if payload else None,
    )  # the visit and the pass are each read once, under their locks (an unknown pass is a 422)
    if redemption is None:
        visit = _visit(request, pk, patient_id)
        reasons = "; ".join(f"{e['pass'].name}: {e['message']}" for e in explain(visit))
        raise Conflict(
            f"No package can cover this visit{' (' + reasons + ')' if reasons else ''}.",
            code="no_pass_fits",
        )
    return Status(
        201, redemption
    )  # as the service left it: reading it back would cost a four-table join


@router.delete(
    "/appointments/{pk}/patients/{patient_id}/pass",
    response=s.RedemptionOut,
    operation_id="appointment_pass_remove",
    summary="Free the use a booked visit reserved",
)
def remove(request, pk: int, patient_id: int):
    voided = pass_remove(actor=request.auth, visit=_visit(request, pk, patient_id))
    return _redemption(voided.pk)


def _redemption(pk: int):
    return Redemption.objects.select_related("sold_pass", "item__treatment", "visit").get(pk=pk)
