"""Package and membership templates (Settings → Packages & Memberships), mounted at /pass-templates.

POSTs accept `Idempotency-Key` (core.middleware replays the first response)."""

from ninja import PatchDict, Router, Status

from carnet.core.permissions import Action, require
from carnet.passes.models import PassTemplate

from . import schemas as s
from .services import template_archive, template_get, template_save
from .sold_update import sold_update, sold_update_preview

router = Router(tags=["pass templates"])


def _out(pk: int) -> PassTemplate:
    return (
        PassTemplate.objects.select_related("income_category")
        .prefetch_related("taxes", "items__treatment")
        .get(pk=pk)
    )


def _items(items) -> list[dict]:
    return [i if isinstance(i, dict) else i.dict() for i in items]


@router.get("", response=list[s.PassTemplateOut], operation_id="pass_templates_list")
def templates(request, archived: bool | None = None):
    """Every template, archived last; `archived=false` for those still sold."""
    require(request.auth, Action.SETUP_VIEW)
    qs = PassTemplate.objects.prefetch_related("taxes", "items__treatment")
    if archived is not None:
        qs = qs.filter(archived=archived)
    return list(qs)


@router.post("", response={201: s.PassTemplateOut}, operation_id="pass_template_create")
def create(request, payload: s.PassTemplateIn):
    data = payload.dict()
    items = data.pop("items")
    t = template_save(actor=request.auth, template=None, data=data, items=items)
    return Status(201, _out(t.pk))


@router.get("/{pk}", response=s.PassTemplateOut, operation_id="pass_template_read")
def read(request, pk: int):
    require(request.auth, Action.SETUP_VIEW)
    return _out(template_get(pk).pk)


@router.patch("/{pk}", response=s.PassTemplateOut, operation_id="pass_template_update")
def update(request, pk: int, payload: PatchDict[s.PassTemplateIn]):
    require(
        request.auth, Action.SETUP_VIEW
    )  # the service needs set-up access; a lower level learns nothing here
    data = dict(
        payload
    )  # only the fields sent; `kind` cannot change; `items`, when sent, replaces the list
    items = data.pop("items", None)
    items = None if items is None else _items(items)  # null or left out: the items stay
    t = template_save(actor=request.auth, template=template_get(pk), data=data, items=items)
    return _out(t.pk)


@router.post("/{pk}/archive", response=s.PassTemplateOut, operation_id="pass_template_archive")
def archive(request, pk: int, payload: s.ArchiveIn | None = None):
    """Archive (`{"archived": true}`, the default) or bring back a template."""
    archived = True if payload is None else payload.archived
    t = template_archive(actor=request.auth, template=template_get(pk), archived=archived)
    return _out(t.pk)


@router.get(
    "/{pk}/sold-update-preview",
    response=list[s.SoldUpdatePreviewOut],
    operation_id="pass_template_sold_update_preview",
)
def preview(request, pk: int):
    """The sold packages (or active memberships) the update would change, before → after, with any
    problem that refuses it; for memberships, notes and the cycles not yet invoiced that take the
    new amount and uses."""
    require(request.auth, Action.SETUP_MANAGE)
    return sold_update_preview(template=template_get(pk))


@router.post(
    "/{pk}/sold-update", response=s.SoldUpdateOut, operation_id="pass_template_sold_update"
)
def apply(request, pk: int):
    """Carry the template's terms to the sold packages (name, quantity, income category,
    auto-select, eligible items) or to the active memberships (name, uses per cycle, amount from the
    next cycle, income category, auto-select, cancellable after, eligible items); all or none."""
    return {"updated": sold_update(actor=request.auth, template=template_get(pk))}
