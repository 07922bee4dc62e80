"""Settings → Packages & Memberships: the template list, the package or membership form with its
eligible items, archive, and "update sold packages" / "update all memberships" (preview, then
confirm once)."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError, NotAllowed
from carnet.core.idempotency import new_form_key
from carnet.core.pages import not_allowed, run_action, save_once, staff_required
from carnet.core.permissions import Action, can
from carnet.passes.models import PassTemplate

from .forms import ConfirmForm, item_formset, template_form
from .services import template_archive, template_get, template_save
from .sold_update import sold_update, sold_update_preview

CHANGED_LABELS = {
    "name": "name",
    "quantity": "quantity",
    "income_category_id": "income category",
    "auto_select": "auto-select",
    "items": "eligible items",
    "uses_per_cycle": "uses per cycle",
    "cycle_price_minor": "amount",
    "cancellable_after_cycles": "cancellable after",
}
Kind = PassTemplate.Kind


def _sold_noun(template: PassTemplate, count: int | None = None) -> str:
    """ "sold packages" / "memberships" (singular when count is 1)."""
    noun = "membership" if template.kind == Kind.MEMBERSHIP else "sold package"
    return noun if count == 1 else noun + "s"


@staff_required(Action.SETUP_VIEW)
def template_list(request):
    templates = PassTemplate.objects.select_related("income_category").prefetch_related(
        "items__treatment"
    )
    return render(
        request,
        "passes/setup_list.html",
        {
            "templates": templates,
            "can_manage": can(request.user, Action.SETUP_MANAGE),
            "clinic": clinic_get(),
        },
    )


def _place_errors(form, items, rows: list[int], exc: CarnetError) -> None:
    """A service error on the field it names: `items.<n>.<field>` on that table row,
    others on the form."""
    placed = False
    for key, msgs in exc.fields.items():
        parts = key.split(".")
        for msg in msgs:
            if (
                len(parts) == 3
                and parts[0] == "items"
                and parts[1].isdigit()
                and int(parts[1]) < len(rows)
            ):
                row = items.forms[rows[int(parts[1])]]
                row.add_error(parts[2] if parts[2] in row.fields else None, msg)
            elif key in form.fields:
                form.add_error(key, msg)
            else:
                form.add_error(None, msg)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


@staff_required(Action.SETUP_MANAGE)
def template_edit(request, pk: int | None = None):
    clinic = clinic_get()
    template = template_get(pk) if pk else None
    kind = (
        template.kind
        if template
        else (Kind.MEMBERSHIP if request.GET.get("kind") == Kind.MEMBERSHIP else Kind.PACKAGE)
    )
    data = request.POST if request.method == "POST" else None
    form = template_form(data, template or PassTemplate(kind=kind), currency=clinic.currency)
    items = item_formset(data, template, currency=clinic.currency)
    if data is not None and form.is_valid() and items.is_valid():
        rows = [n for n, row in enumerate(items.forms) if not row.is_blank()]
        try:
            saved = template_save(
                actor=request.user,
                template=template,
                data=form.cleaned_data | {"kind": kind},
                items=[items.forms[n].cleaned_data for n in rows],
            )
        except NotAllowed as exc:
            return not_allowed(request, exc.message)
        except CarnetError as exc:
            _place_errors(form, items, rows, exc)
        else:
            messages.success(request, f"Saved “{saved}”.")
            if template is not None and sold_update_preview(template=saved):
                messages.info(
                    request,
                    f"{_sold_noun(saved).capitalize()} still have the earlier terms: review them "
                    "below, then choose whether to update them.",
                )
                return redirect("pass_templates:sold_update", pk=saved.pk)
            return redirect("pass_templates:list")
    return render(
        request,
        "passes/setup_form.html",
        {
            "form": form,
            "items": items,
            "template": template,
            "clinic": clinic,
            "membership": kind == Kind.MEMBERSHIP,
            "kind_name": "membership" if kind == Kind.MEMBERSHIP else "package",
            "sold_count": template.sold.count() if template else 0,
        },
    )


@require_POST
@staff_required(Action.SETUP_MANAGE)
def template_archive_view(request, pk: int):
    template = template_get(pk)
    archived = request.POST.get("archived", "1") != "0"
    _, denied = run_action(
        request,
        lambda: template_archive(actor=request.user, template=template, archived=archived),
        success=f"“{template}” {'archived' if archived else 'is sold again'}.",
    )
    return denied or redirect("pass_templates:list")


@staff_required(Action.SETUP_MANAGE)
def sold_update_view(request, pk: int):
    """Preview what "update sold packages" / "update all memberships" changes (before → after,
    problems, and for memberships when the amount and uses apply); confirm once."""
    template = template_get(pk)
    form = ConfirmForm(request.POST or None, initial={"form_key": new_form_key()})
    if request.method == "POST" and form.is_valid():
        outcome, result = save_once(
            request, form, lambda: sold_update(actor=request.user, template=template)
        )
        if outcome == "denied":
            return result
        if outcome == "ok":
            messages.success(
                request, f"Updated {result} {_sold_noun(template, result)} of “{template}”."
            )
        if outcome in ("ok", "repeat"):
            return redirect("pass_templates:list")
    preview = sold_update_preview(template=template)
    for entry in preview:
        entry["changed_labels"] = ", ".join(CHANGED_LABELS[f] for f in entry["changed"])
    return render(
        request,
        "passes/setup_sold_update.html",
        {
            "template": template,
            "preview": preview,
            "form": form,
            "clinic": clinic_get(),
            "membership": template.kind == Kind.MEMBERSHIP,
            "noun": _sold_noun(template),
            "blocked": any(p["problems"] for p in preview),
        },
    )
