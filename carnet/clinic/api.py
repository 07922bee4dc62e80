"""Set-up endpoints: the clinic, and list/create/read/update for each catalog object."""

from ninja import PatchDict, Router, Status

from carnet.core.permissions import Action, require

from . import schemas as s
from .selectors import SETUP_MODELS, clinic_get, setup_get, setup_list
from .services import clinic_update, setup_save

router = Router(tags=["set-up"])


@router.get("/clinic", response=s.ClinicOut, operation_id="clinic_read")
def clinic_read(request):
    require(request.auth, Action.SETUP_VIEW)
    return clinic_get()


@router.patch("/clinic", response=s.ClinicOut, operation_id="clinic_update")
def clinic_patch(request, payload: PatchDict[s.ClinicIn]):
    return clinic_update(actor=request.auth, data=payload)


def _register(kind: str, schema_in, schema_out) -> None:
    model = SETUP_MODELS[kind]
    op = kind.replace("-", "_")

    @router.get(
        f"/{kind}", response=list[schema_out], operation_id=f"{op}_list", summary=f"List {kind}"
    )
    def list_(request):
        require(request.auth, Action.SETUP_VIEW)
        return list(setup_list(kind))

    @router.post(
        f"/{kind}",
        response={201: schema_out},
        operation_id=f"{op}_create",
        summary=f"Create one of {kind}",
    )
    def create(request, payload: schema_in):
        return Status(201, setup_save(actor=request.auth, obj=model(), data=payload.dict()))

    @router.get(
        f"/{kind}/{{pk}}",
        response=schema_out,
        operation_id=f"{op}_read",
        summary=f"Read one of {kind}",
    )
    def read(request, pk: int):
        require(request.auth, Action.SETUP_VIEW)
        return setup_get(kind, pk)

    @router.patch(
        f"/{kind}/{{pk}}",
        response=schema_out,
        operation_id=f"{op}_update",
        summary=f"Update one of {kind}",
    )
    def update(request, pk: int, payload: PatchDict[schema_in]):
        require(request.auth, Action.SETUP_VIEW)
        return setup_save(actor=request.auth, obj=setup_get(kind, pk), data=dict(payload))


_register("locations", s.LocationIn, s.LocationOut)
_register("disciplines", s.NamedIn, s.NamedOut)
_register("income-categories", s.NamedIn, s.NamedOut)
_register("taxes", s.TaxIn, s.TaxOut)
_register("treatments", s.TreatmentIn, s.TreatmentOut)
_register("products", s.ProductIn, s.ProductOut)
