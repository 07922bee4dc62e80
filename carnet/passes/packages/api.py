"""Sold packages in the JSON API (SPEC 5.2, 5.4, 9.4–9.5, 9.12): a patient's packages, selling,
expiry, refund, transfer, sharing. Reading and deleting one pass of either kind is
`carnet.passes.api`; using a pass on an appointment is `carnet.passes.redeeming.api`.

Every POST accepts `Idempotency-Key` (core.middleware replays the first response), so a retried
sale sells once. Domain errors come back as problem details with the service's code.
"""

from django.db.models import Prefetch
from ninja import Router, Status

from carnet.clinic.models import Location
from carnet.core.errors import NotAllowed, NotFound, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.core.schemas import one_in_body  # an id in a body: unknown is a 422 naming the field
from carnet.gateway.models import CardOnFile
from carnet.passes.models import Pass, PassInvoice, PassTemplate
from carnet.passes.selectors import passes_for_patient
from carnet.passes.setup.expiry_rules import small_balance_offer
from carnet.people.models import Patient, StaffMember
from carnet.people.selectors import patient_for, patient_get, patients_managed_by

from . import schemas as s
from .ending import (
    pass_expiry_set,
    pass_refund,
    pass_shares_set,
    pass_transfer,
    refund_suggestions,
)
from .selling import package_sell

router = Router(tags=["passes"])

_PASSES = Pass.objects.select_related("patient").prefetch_related(
    "items__treatment",
    "shares",
    Prefetch("pass_invoices", queryset=PassInvoice.objects.select_related("invoice")),
)


def pass_out(pk: int) -> Pass:
    """The pass with what PassOut reads, in a few queries."""
    return _PASSES.get(pk=pk)


def pass_for(request, pk: int, *, action: Action = Action.INVOICE_VIEW) -> Pass:
    """The pass `request.auth` may see: staff allowed `action`; a patient only their own and
    their dependants' (any other is "not found", so ids cannot be probed)."""
    sold, missing = _PASSES.filter(pk=pk).first(), NotFound(f"No pass with id {pk}.")
    if sold is None:
        raise missing
    patient_for(request.auth, sold.patient_id, action=action, not_found=missing)
    return sold


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
    template = one_in_body(PassTemplate, payload.template_id, "template_id", "package template")
    expires_on = payload.expires_on if "expires_on" in payload.model_fields_set else "default"
    sold = package_sell(
        actor=request.auth,
        patient=patient,
        template=template,
        sold_by=one_in_body(StaffMember, payload.sold_by_id, "sold_by_id", "staff member"),
        expires_on=expires_on,
        card=one_in_body(CardOnFile, payload.card_id, "card_id", "card on file"),
        location=one_in_body(Location, payload.location_id, "location_id", "location"),
        intro_override=payload.intro_override,
    )
    return Status(201, pass_out(sold.pk))


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


@router.post("/passes/{pk}/expiry", response=s.PassOut, operation_id="pass_expiry_set")
def expiry(request, pk: int, payload: s.ExpiryIn):
    require(request.auth, Action.PASS_EXPIRY_EDIT)
    pass_expiry_set(
        actor=request.auth, sold_pass=pass_for(request, pk), expires_on=payload.expires_on
    )
    return pass_out(pk)


@router.get(
    "/passes/{pk}/refund-suggestion",
    response=s.RefundSuggestionOut,
    operation_id="pass_refund_suggestion",
    summary="The suggested refund (price ÷ quantity × uses left) next to the clinic rule's "
    "(used sessions at full price)",
)
def refund_suggestion(request, pk: int):
    require(request.auth, Action.REFUND)
    sold = pass_for(request, pk)
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
        sold_pass=pass_for(request, pk),
        amount_minor=payload.amount_minor,
        detach_future=payload.detach_future,
        reason=payload.reason,
    )
    return pass_out(pk)


@router.post(
    "/passes/{pk}/transfer",
    response={201: s.PassOut},
    operation_id="pass_transfer",
    summary="Move the remaining uses to another patient: returns their new pass",
)
def transfer(request, pk: int, payload: s.PassTransferIn):
    require(request.auth, Action.PASS_TRANSFER)
    sold = pass_for(request, pk)
    to_patient = one_in_body(Patient, payload.to_patient_id, "to_patient_id", "patient")
    new = pass_transfer(actor=request.auth, sold_pass=sold, to_patient=to_patient)
    return Status(201, pass_out(new.pk))


@router.post(
    "/passes/{pk}/shares",
    response=s.PassOut,
    operation_id="pass_shares_set",
    summary="Family members who may use the pass (replaces the list)",
)
def shares(request, pk: int, payload: s.SharesIn):
    require(request.auth, Action.SELL)
    sold = pass_for(request, pk)
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
    return pass_out(pk)
