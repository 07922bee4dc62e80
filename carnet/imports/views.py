"""The import page (SPEC 15): upload, match the file's columns, see the dry run, then commit; the
list of past imports with undo. Thin: the steps are carnet.imports.services."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError
from carnet.core.pages import staff_required
from carnet.core.permissions import Action

from . import services
from .columns import COLUMNS, mapping_guess, template_csv
from .forms import UploadForm
from .models import ImportBatch, Kind
from .reading import sheet_read


def _recent():
    return ImportBatch.objects.select_related("created_by")[:50]


@staff_required(Action.DATA_IMPORT)
def import_index(request):
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            upload = services.import_file_store(
                actor=request.user, data=d["file"].read(), file_name=d["file"].name
            )
        except CarnetError as exc:
            form.add_error("file", exc.message)
        else:
            query = {
                "kind": d["kind"],
                "cut_over": d["cut_over"].isoformat() if d["cut_over"] else "",
            }
            return redirect(f"{reverse('imports:file', args=[upload.pk])}?{urlencode(query)}")
    return render(
        request,
        "imports/index.html",
        {
            "form": form,
            "batches": _recent(),
            "kinds": [(k, Kind(k).label, COLUMNS[k]) for k in COLUMNS],
            "clinic": clinic_get(),
        },
        status=400 if form.errors else 200,
    )


@staff_required(Action.DATA_IMPORT)
def import_template(request):
    kind = request.GET.get("kind", "")
    if kind not in COLUMNS:
        messages.error(request, "Choose one of the templates below.")
        return redirect("imports:index")
    # With a BOM, like every CSV download: Excel then opens it as UTF-8, so accented names typed
    # into it survive (the import reads UTF-8 with or without a BOM).
    response = HttpResponse("\ufeff" + template_csv(kind), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="carnet-import-{kind}.csv"'
    return response


def _choices(request):
    kind = request.GET.get("kind") or request.POST.get("kind", "")
    raw_date = request.GET.get("cut_over") or request.POST.get("cut_over", "")
    try:
        cut_over = dt.date.fromisoformat(raw_date) if raw_date else None
    except ValueError:
        cut_over = None
    source = request.POST if request.method == "POST" else request.GET
    mapping = {
        key.removeprefix("map_"): value for key, value in source.items() if key.startswith("map_")
    }
    return kind, cut_over, mapping


@staff_required(Action.DATA_IMPORT)
def import_file(request, pk: int):
    """The mapping step and the dry run."""
    upload = services.import_file_get(actor=request.user, pk=pk)
    if upload is None:
        messages.error(
            request,
            "That upload is no longer here (it was imported, or replaced by a newer one). "
            "Upload the file again.",
        )
        return redirect("imports:index")
    kind, cut_over, mapping = _choices(request)
    context = {
        "upload": upload,
        "kind": kind,
        "cut_over": cut_over,
        "preview": None,
        "error": None,
        "clinic": clinic_get(),
        "kind_label": Kind(kind).label if kind in Kind.values else kind,
    }
    try:
        context["preview"] = services.import_preview(
            actor=request.user,
            kind=kind,
            data=bytes(upload.data),
            file_name=upload.file_name,
            cut_over=cut_over,
            mapping=mapping,
        )
    except CarnetError as exc:
        context["error"] = exc.message
        context["headers"] = _headers(upload)
        # Show what could be matched: the obvious columns, then the choices made so far.
        guessed = (
            {k: str(v) for k, v in mapping_guess(kind, context["headers"]).items()}
            if kind in COLUMNS
            else {}
        )
        chosen = {k: _index(context["headers"], v) for k, v in mapping.items()}
        context["mapping"] = {k: v for k, v in {**guessed, **chosen}.items() if v not in ("", None)}
    if context["preview"]:
        context["headers"] = context["preview"].headers
        context["mapping"] = {k: str(v) for k, v in context["preview"].mapping.items()}
    context["column_rows"] = [(c, context["mapping"].get(c.key, "")) for c in COLUMNS.get(kind, [])]
    return render(
        request, "imports/preview.html", context, status=200 if context["preview"] else 400
    )


def _index(headers: list[str], chosen: str) -> str:
    """A chosen column as its position (the command line may name it by its header)."""
    return str(headers.index(chosen)) if chosen in headers and not chosen.isdigit() else chosen


def _headers(upload) -> list[str]:

    try:
        return sheet_read(data=bytes(upload.data), file_name=upload.file_name).headers
    except CarnetError:
        return []


@require_POST
@staff_required(Action.DATA_IMPORT)
def import_commit(request, pk: int):
    upload = services.import_file_get(actor=request.user, pk=pk)
    if upload is None:
        messages.info(
            request, "That upload has already been imported, or was replaced; see the list below."
        )
        return redirect("imports:index")
    kind, cut_over, mapping = _choices(request)
    try:
        batch = services.import_file_commit(
            actor=request.user, upload=upload, kind=kind, cut_over=cut_over, mapping=mapping
        )
    except CarnetError as exc:
        messages.error(request, exc.message)
        query = {
            "kind": kind,
            "cut_over": cut_over.isoformat() if cut_over else "",
            **{f"map_{k}": v for k, v in mapping.items()},
        }
        return redirect(f"{reverse('imports:file', args=[pk])}?{urlencode(query)}")
    messages.success(
        request,
        f"Imported: {batch.created} created, {batch.skipped} already there "
        f"({clinic_get().money(batch.money_minor)} of opening balances).",
    )
    return redirect("imports:index")


@require_POST
@staff_required(Action.DATA_IMPORT)
def import_undo(request, pk: int):
    batch = ImportBatch.objects.filter(pk=pk).first()
    if batch is None:
        messages.error(request, "There is no such import.")
        return redirect("imports:index")
    try:
        services.import_undo(actor=request.user, batch=batch)
    except CarnetError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"{batch} was undone: its opening balances are reversed in the ledger."
        )
    return redirect("imports:index")
