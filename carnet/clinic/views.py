"""Settings pages: the clinic, and list/create/edit for each catalog object."""

from zoneinfo import available_timezones

from django.http import Http404
from django.shortcuts import redirect, render

from carnet.core.errors import NotAllowed
from carnet.core.pages import not_allowed, save_form, staff_required
from carnet.core.permissions import Action, can, require

from .forms import form_for
from .models import Clinic, Location
from .selectors import SETUP_MODELS, clinic_get, setup_get, setup_list
from .services import clinic_update, setup_save

# What each settings list shows, as (heading, attribute or callable).
COLUMNS = {
    "locations": [("Name", "name"), ("Time zone", "time_zone"), ("Active", "is_active")],
    "disciplines": [("Name", "name")],
    "income-categories": [("Name", "name")],
    "taxes": [("Name", "name"), ("Rate %", "rate"), ("Registration", "registration_number")],
    "treatments": [
        ("Name", "name"),
        ("Discipline", "discipline"),
        ("Kind", "get_kind_display"),
        ("Minutes", "duration_minutes"),
        ("Price", "price"),
        ("Online", "online_bookable"),
        ("Active", "is_active"),
    ],
    "products": [("Name", "name"), ("Price", "price"), ("Stock", "stock"), ("Active", "is_active")],
}


def _kind_or_404(kind: str):
    if kind not in SETUP_MODELS:
        raise Http404("No such settings page.")
    return SETUP_MODELS[kind]


def _manage_action(model) -> Action:
    return Action.CLINIC_SETTINGS if model is Location else Action.SETUP_MANAGE


def _rows(kind, objects, clinic):
    for obj in objects:
        cells = []
        for _, attr in COLUMNS[kind]:
            if attr == "price":
                value = clinic.money(obj.price_minor)
            else:
                value = getattr(obj, attr)
                value = value() if callable(value) else value
            cells.append(value)
        yield obj, cells


@staff_required(Action.SETUP_VIEW)
def settings_index(request):
    return render(
        request, "clinic/settings_index.html", {"kinds": SETUP_MODELS, "clinic": clinic_get()}
    )


@staff_required(Action.SETUP_VIEW)
def setup_list_view(request, kind: str):
    model = _kind_or_404(kind)
    return render(
        request,
        "clinic/setup_list.html",
        {
            "kind": kind,
            "names": model._meta,
            "headings": [h for h, _ in COLUMNS[kind]],
            "rows": list(_rows(kind, setup_list(kind), clinic_get())),
            "can_manage": can(request.user, _manage_action(model)),
        },
    )


@staff_required(Action.SETUP_MANAGE)
def setup_edit_view(request, kind: str, pk: int | None = None):
    model = _kind_or_404(kind)
    try:  # locations need more (clinic settings) than the decorator's set-up level
        require(request.user, _manage_action(model))
    except NotAllowed as exc:
        return not_allowed(request, exc.message)
    obj = setup_get(kind, pk) if pk else model()
    Form = form_for(model)
    form = Form(request.POST or None, instance=obj)
    saved, denied = save_form(
        request,
        form,
        lambda data: setup_save(actor=request.user, obj=obj, data=data),
        success=lambda s: f"Saved {model._meta.verbose_name} “{s}”.",
    )
    if denied:
        return denied
    if saved:
        return redirect("clinic:setup_list", kind=kind)
    return render(
        request,
        "clinic/setup_form.html",
        {
            "kind": kind,
            "names": model._meta,
            "form": form,
            "obj": obj,
            "time_zones": sorted(available_timezones()),
        },
    )


@staff_required(Action.CLINIC_SETTINGS)
def clinic_settings_view(request):
    clinic = clinic_get()
    form = form_for(Clinic)(request.POST or None, instance=clinic)
    saved, denied = save_form(
        request,
        form,
        lambda data: clinic_update(actor=request.user, data=data),
        success=lambda _: "Clinic settings saved.",
    )
    if denied:
        return denied
    if saved:
        return redirect("clinic:settings")
    return render(
        request,
        "clinic/setup_form.html",
        {
            "kind": "clinic",
            "names": Clinic._meta,
            "form": form,
            "obj": clinic,
            "time_zones": sorted(available_timezones()),
        },
    )
