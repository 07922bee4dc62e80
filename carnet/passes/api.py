"""Sold packages and their use on appointments (SPEC 5.2–5.4, 9.4–9.5, 9.12).

Every POST accepts `Idempotency-Key` (core.middleware replays the first response), so a retried
sale sells once. Domain errors come back as problem details with the service's code: a pass that
cannot cover a visit is a 409 whose `code` is the reason (used_up, expired, not_paid, …).
"""

from django.db.models import Prefetch
from ninja import Router, Status

from carnet.clinic.models import Location
from carnet.core.errors import Conflict, NotAllowed, NotFound, ValidationFailed
from carnet.core.permissions import Action, require, staff_of
from carnet.core.schemas import (
    one_in_body as _one,  # an id in a body: unknown is a 422 naming the field
)
from carnet.core.schemas import patient_view
from carnet.gateway.models import CardOnFile
from carnet.people.models import Patient, StaffMember
from carnet.people.selectors import patient_for, patient_get, patients_managed_by
from carnet.scheduling.access import schedule_require
from carnet.scheduling.models import Visit
from carnet.scheduling.selectors import appointment_get

from . import api_schemas as s
from .ending import (
    pass_delete,
    pass_expiry_set,
    pass_refund,
    pass_shares_set,
    pass_transfer,
    refund_suggestions,
)
from .expiry_rules import small_balance_offer
from .models import Pass, PassInvoice, PassTemplate, Redemption
from .redemption import explain, pass_attach, pass_remove
from .selectors import passes_for_patient
from .selling import package_sell

router = Router(tags=["passes"])

_PASSES = Pass.objects.select_related("patient").prefetch_related(
    "items__treatment",
    "shares",
    Prefetch("instalment_rows", queryset=PassInvoice.objects.select_related("invoice")),
)


def _out(pk: int) -> Pass:
    return _PASSES.get(pk=pk)


def _pass(request, pk: int, *, action: Action = Action.INVOICE_VIEW) -> Pass:
    """The pass `request.auth` may see: staff allowed `action`; a patient only their own and
    their dependants' (any other is "not found", so ids cannot be probed)."""
    sold, missing = _PASSES.filter(pk=pk).first(), NotFound(f"No pass with id {pk}.")
    if sold is None:
        raise missing
    patient_for(request.auth, sold.patient_id, action=action, not_found=missing)
    return sold


def _visit(request, pk: int, patient_id: int):
    """A patient's visit in an appointment the actor may work on (schedule scope; patient users
    refused)."""
    visit = (
        Visit.objects.select_related("appointment__treatment", "appointment__location", "patient")
        .filter(appointment_id=pk, patient_id=patient_id)
        .first()
    )
    if visit is None:
        appointment_get(
            actor=request.auth, pk=pk, bare=True
        )  # an unknown or out-of-scope appointment first
    else:
        schedule_require(
            request.auth,
            practitioner_id=visit.appointment.practitioner_id,
            location_id=visit.appointment.location_id,
        )
    require(request.auth, Action.PASS_USE)
    if visit is None:
        raise NotFound(f"Patient {patient_id} is not in appointment {pk}.")
    return visit


# ---------------------------------------------------------------- a patient's packages


@router.get(
    "/patients/{pk}/passes",
    response=list[s.PassSummaryOut],
    operation_id="passes_list",
    summary="A patient's packages with their usage (deleted ones left out)",
)
def passes(request, pk: int, active: bool = False):
    patient = patient_for(request.auth, pk, action=Action.INVOICE_VIEW)
    return list(passes_for_patient(patient, include_ended=not active))


@router.post(
    "/patients/{pk}/passes",
    response={201: s.PassOut},
    operation_id="pass_sell",
    summary="Sell a package: the patient's copy of the template and the invoice for its price",
)
def sell(request, pk: int, payload: s.SellIn):
    require(request.auth, Action.SELL)
    patient = patient_get(pk)
    template = _one(PassTemplate, payload.template_id, "template_id", "package template")
    expires_on = payload.expires_on if "expires_on" in payload.model_fields_set else "default"
    sold = package_sell(
        actor=request.auth,
        patient=patient,
        template=template,
        sold_by=_one(StaffMember, payload.sold_by_id, "sold_by_id", "staff member"),
        expires_on=expires_on,
        card=_one(CardOnFile, payload.card_id, "card_id", "card on file"),
        location=_one(Location, payload.location_id, "location_id", "location"),
        intro_override=payload.intro_override,
    )
    return Status(201, _out(sold.pk))


@router.get(
    "/me/passes",
    response=list[s.MyPassOut],
    operation_id="my_passes",
    summary="The signed-in patient's packages and their dependants'",
)
def my_passes(request):
    me = getattr(request.auth, "patient", None)
    if me is None:
        raise NotAllowed(
            "Only patients have their own packages; staff see a patient's at /patients/{id}/passes."
        )
    return list(
        Pass.objects.filter(patient__in=patients_managed_by(me))
        .exclude(status=Pass.Status.DELETED)
        .select_related("patient")
        .order_by("-purchased_at", "-pk")
    )


# ---------------------------------------------------------------- one package


@router.get(
    "/passes/{pk}",
    response=s.PassOut | s.MyPassDetailOut,
    operation_id="pass_read",
    summary="A package with its items, instalments and use history",
    description="Staff get PassOut; a patient, their own or a dependant's package as MyPassDetailOut "
    "(no compensation values, payments or internal counters).",
)
def read(request, pk: int):
    sold = _pass(request, pk)
    return sold if staff_of(request.auth) is not None else patient_view(s.MyPassDetailOut, sold)


@router.post("/passes/{pk}/expiry", response=s.PassOut, operation_id="pass_expiry_set")
def expiry(request, pk: int, payload: s.ExpiryIn):
    require(request.auth, Action.PASS_EXPIRY_EDIT)
    pass_expiry_set(actor=request.auth, sold_pass=_pass(request, pk), expires_on=payload.expires_on)
    return _out(pk)


@router.get(
    "/passes/{pk}/refund-suggestion",
    response=s.RefundSuggestionOut,
    operation_id="pass_refund_suggestion",
    summary="SPEC 5.4's suggested refund next to the clinic rule's (used sessions at full price)",
)
def refund_suggestion(request, pk: int):
    require(request.auth, Action.REFUND)
    sold = _pass(request, pk)
    suggestions = refund_suggestions(sold)
    return {**suggestions, "small_balance": small_balance_offer(sold, suggestions["suggested"])}


@router.post(
    "/passes/{pk}/refund",
    response=s.PassOut,
    operation_id="pass_refund",
    summary="Step one of a refund: the amount becomes the patient's credit and the pass ends",
)
def refund(request, pk: int, payload: s.PassRefundIn):
    require(request.auth, Action.REFUND)
    pass_refund(
        actor=request.auth,
        sold_pass=_pass(request, pk),
        amount_minor=payload.amount_minor,
        detach_future=payload.detach_future,
        reason=payload.reason,
    )
    return _out(pk)


@router.delete(
    "/passes/{pk}",
    response=s.PassOut,
    operation_id="pass_delete",
    summary="Delete an unpaid, unused purchase and its invoices",
)
def delete(request, pk: int):
    require(request.auth, Action.INVOICE_DELETE)
    pass_delete(actor=request.auth, sold_pass=_pass(request, pk))
    return _out(pk)


@router.post(
    "/passes/{pk}/transfer",
    response={201: s.PassOut},
    operation_id="pass_transfer",
    summary="Move the remaining uses to another patient: returns their new pass",
)
def transfer(request, pk: int, payload: s.PassTransferIn):
    require(request.auth, Action.PASS_TRANSFER)
    sold = _pass(request, pk)
    to_patient = _one(Patient, payload.to_patient_id, "to_patient_id", "patient")
    new = pass_transfer(actor=request.auth, sold_pass=sold, to_patient=to_patient)
    return Status(201, _out(new.pk))


@router.post(
    "/passes/{pk}/shares",
    response=s.PassOut,
    operation_id="pass_shares_set",
    summary="Family members who may use the pass (replaces the list)",
)
def shares(request, pk: int, payload: s.SharesIn):
    require(request.auth, Action.SELL)
    sold = _pass(request, pk)
    found = {p.pk: p for p in Patient.objects.filter(pk__in=payload.patient_ids)}
    missing = [i for i in payload.patient_ids if i not in found]
    if missing:
        raise ValidationFailed(
            f"No patient with id {missing[0]}.", fields={"patient_ids": ["Unknown patient."]}
        )
    pass_shares_set(
        actor=request.auth,
        sold_pass=sold,
        patients=[found[i] for i in dict.fromkeys(payload.patient_ids)],
    )
    return _out(pk)


# ---------------------------------------------------------------- on appointments


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
    visit = _visit(request, pk, patient_id)
    chosen = _one(Pass, payload.pass_id if payload else None, "pass_id", "pass")
    redemption = pass_attach(actor=request.auth, visit=visit, sold_pass=chosen)
    if redemption is None:
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
    released = pass_remove(actor=request.auth, visit=_visit(request, pk, patient_id))
    return _redemption(released.pk)


def _redemption(pk: int):
    return Redemption.objects.select_related("sold_pass", "item__treatment", "visit").get(pk=pk)
