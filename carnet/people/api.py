"""Staff, patients, family links, API tokens."""

from django.conf import settings
from django.http import HttpResponse
from ninja import PatchDict, Router, Status

from carnet.core.errors import NotAllowed, NotFound
from carnet.core.idempotency import withhold_response
from carnet.core.permissions import AccessLevel, Action, require, staff_of
from carnet.core.schemas import patient_view

from . import invitations, selectors, services
from . import schemas as s
from .models import ApiToken, FamilyLink, Shift

router = Router()


@router.get("/me", response=s.MeOut, tags=["people"], operation_id="me_read")
def me(request):
    staff = staff_of(request.auth)
    if staff is not None:
        return {"kind": "staff", "name": staff.display_name, "staff": staff}
    patient = getattr(request.auth, "patient", None)
    if patient is None:
        raise NotAllowed("This login belongs to neither a staff member nor a patient.")
    return {
        "kind": "patient",
        "name": patient.full_name,
        "patient": s.PatientSelfOut.from_orm(patient),
    }


@router.get(
    "/access-levels",
    response=list[s.AccessLevelOut],
    tags=["staff"],
    operation_id="access_levels_list",
)
def access_levels(request):
    return [{"level": v, "label": label} for v, label in AccessLevel.choices]


@router.get("/staff", response=list[s.StaffOut], tags=["staff"], operation_id="staff_list")
def staff_list(request):
    require(request.auth, Action.STAFF_VIEW)
    return list(selectors.staff_list())


@router.post("/staff", response={201: s.StaffOut}, tags=["staff"], operation_id="staff_create")
def staff_create(request, payload: s.StaffIn):
    return Status(201, services.staff_create(actor=request.auth, **payload.dict()))


@router.get("/staff/{pk}", response=s.StaffOut, tags=["staff"], operation_id="staff_read")
def staff_read(request, pk: int):
    require(request.auth, Action.STAFF_VIEW)
    return selectors.staff_get(pk)


@router.patch("/staff/{pk}", response=s.StaffOut, tags=["staff"], operation_id="staff_update")
def staff_update(request, pk: int, payload: PatchDict[s.StaffPatch]):
    require(request.auth, Action.STAFF_MANAGE)
    return services.staff_update(
        actor=request.auth, staff=selectors.staff_get(pk), data=dict(payload)
    )


@router.get(
    "/staff/{pk}/commission-rates",
    response=list[s.CommissionRateOut],
    tags=["staff"],
    operation_id="commission_rates_list",
)
def commission_rates(request, pk: int):
    require(request.auth, Action.STAFF_VIEW)
    return list(selectors.staff_get(pk).commission_rates.all())


@router.post(
    "/staff/{pk}/commission-rates",
    response={201: s.CommissionRateOut},
    tags=["staff"],
    operation_id="commission_rate_set",
)
def commission_rate_set(request, pk: int, payload: s.CommissionRateIn):
    require(request.auth, Action.STAFF_MANAGE)
    staff = selectors.staff_get(pk)
    return Status(
        201, services.commission_rate_set(actor=request.auth, staff=staff, **payload.dict())
    )


@router.get(
    "/staff/{pk}/shifts", response=list[s.ShiftOut], tags=["staff"], operation_id="shifts_list"
)
def shifts(request, pk: int):
    require(request.auth, Action.SETUP_VIEW)
    return list(selectors.staff_get(pk).shifts.all())


@router.post(
    "/staff/{pk}/shifts", response={201: s.ShiftOut}, tags=["staff"], operation_id="shift_create"
)
def shift_create(request, pk: int, payload: s.ShiftIn):
    require(request.auth, Action.STAFF_MANAGE)
    return Status(
        201,
        services.shift_create(actor=request.auth, staff=selectors.staff_get(pk), **payload.dict()),
    )


@router.delete("/shifts/{pk}", response={204: None}, tags=["staff"], operation_id="shift_delete")
def shift_delete(request, pk: int):
    require(request.auth, Action.STAFF_MANAGE)
    shift = Shift.objects.filter(pk=pk).first()
    if shift is None:
        raise NotFound(f"No shift with id {pk}.")
    services.shift_delete(actor=request.auth, shift=shift)
    return Status(204, None)


@router.get("/tokens", response=list[s.TokenOut], tags=["staff"], operation_id="tokens_list")
def tokens(request):
    require(request.auth, Action.API_TOKEN_OWN)
    return list(ApiToken.objects.filter(staff=staff_of(request.auth)).order_by("-created_at"))


@router.post(
    "/tokens", response={201: s.TokenCreatedOut}, tags=["staff"], operation_id="token_create"
)
def token_create(request, response: HttpResponse, payload: s.TokenIn):
    token, raw = services.api_token_create(actor=request.auth, name=payload.name)
    token.token = raw
    # The secret is shown once: no cache keeps it, nor does the Idempotency-Key's stored answer.
    response["Cache-Control"] = "no-store"
    withhold_response(request)
    return Status(201, token)


@router.post(
    "/tokens/{pk}/revoke", response=s.TokenOut, tags=["staff"], operation_id="token_revoke"
)
def token_revoke(request, pk: int):
    require(request.auth, Action.API_TOKEN_OWN)
    token = ApiToken.objects.filter(pk=pk).first()
    if token is None:
        raise NotFound(f"No API token with id {pk}.")
    return services.api_token_revoke(actor=request.auth, token=token)


@router.get(
    "/patients", response=list[s.PatientOut], tags=["patients"], operation_id="patients_list"
)
def patients(request, q: str = "", limit: int = 50):
    require(request.auth, Action.PATIENT_VIEW)
    return list(selectors.patient_search(query=q, limit=max(1, min(limit, 200))))


@router.post(
    "/patients", response={201: s.PatientOut}, tags=["patients"], operation_id="patient_create"
)
def patient_create(request, payload: s.PatientIn):
    return Status(201, services.patient_create(actor=request.auth, data=payload.dict()))


@router.get(
    "/patients/{pk}",
    response=s.PatientOut | s.PatientSelfOut,
    tags=["patients"],
    operation_id="patient_read",
    description=(
        "Staff get the whole record (PatientOut); a patient, their own or a dependant's without "
        "staff notes (PatientSelfOut)."
    ),
)
def patient_read(request, pk: int):
    patient = selectors.patient_for(request.auth, pk, action=Action.PATIENT_VIEW)
    return (
        patient if staff_of(request.auth) is not None else patient_view(s.PatientSelfOut, patient)
    )


@router.patch(
    "/patients/{pk}", response=s.PatientOut, tags=["patients"], operation_id="patient_update"
)
def patient_update(request, pk: int, payload: PatchDict[s.PatientIn]):
    require(request.auth, Action.PATIENT_EDIT)
    return services.patient_update(
        actor=request.auth, patient=selectors.patient_get(pk), data=dict(payload)
    )


@router.get(
    "/patients/{pk}/family",
    response=list[s.FamilyLinkOut],
    tags=["patients"],
    operation_id="family_list",
)
def family(request, pk: int):
    patient = selectors.patient_for(request.auth, pk, action=Action.PATIENT_VIEW)
    return [
        {
            "id": link.pk,
            "relation": label,
            "relative_id": other.pk,
            "relative_name": other.full_name,
        }
        for label, other, link in selectors.patient_family(patient)
    ]


@router.post(
    "/patients/{pk}/family",
    response={201: s.FamilyLinkOut},
    tags=["patients"],
    operation_id="family_link_add",
)
def family_add(request, pk: int, payload: s.FamilyLinkIn):
    require(request.auth, Action.PATIENT_EDIT)
    patient = selectors.patient_get(pk)
    relative = selectors.patient_get(payload.relative_id)
    link = services.family_link_add(
        actor=request.auth, patient=patient, relative=relative, kind=payload.kind
    )
    label = "Spouse" if link.kind == FamilyLink.Kind.SPOUSE else "Dependant"
    return Status(
        201,
        {
            "id": link.pk,
            "relation": label,
            "relative_id": relative.pk,
            "relative_name": relative.full_name,
        },
    )


@router.delete(
    "/family-links/{pk}", response={204: None}, tags=["patients"], operation_id="family_link_remove"
)
def family_remove(request, pk: int):
    require(request.auth, Action.PATIENT_EDIT)
    link = FamilyLink.objects.filter(pk=pk).first()
    if link is None:
        raise NotFound(f"No family link with id {pk}.")
    services.family_link_remove(actor=request.auth, link=link)
    return Status(204, None)


@router.post(
    "/patients/{pk}/portal-invitation",
    response={202: s.PortalInvitationOut},
    tags=["patients"],
    operation_id="patient_portal_invite",
)
def portal_invite(request, pk: int):
    """Email the patient a signed link to choose their own portal password
    (the patient's email is the login)."""
    require(request.auth, Action.PATIENT_EDIT)
    patient = selectors.patient_get(pk)
    invitations.patient_portal_invite(
        actor=request.auth,
        patient=patient,
        base_url=settings.SITE_URL or request.build_absolute_uri("/"),
    )
    return Status(202, {"sent_to": patient.email, "valid_days": settings.PORTAL_INVITATION_DAYS})
