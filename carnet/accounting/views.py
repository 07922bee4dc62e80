"""The accountant's pages (SPEC 15): journal export with its history, the account mapping, the
trial balance and general ledger. Thin: services and selectors do the work."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError
from carnet.core.pages import staff_required
from carnet.core.permissions import Action
from carnet.ledger.models import Account
from carnet.reports.billing_views import report_field, report_page
from carnet.reports.scope import period_from

from . import services
from .forms import ExportForm
from .models import AccountMapping, JournalExport
from .reports import general_ledger_table, trial_balance_table
from .selectors import changed_since_export


def _download(files: list[tuple[str, str]]) -> HttpResponse:
    if len(files) == 1:
        name, text = files[0]
        kind = "text/csv" if name.endswith(".csv") else "text/plain"
        response = HttpResponse(text.encode("utf-8"), content_type=f"{kind}; charset=utf-8")
    else:  # Xero's 300-line files, together
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in files:
                archive.writestr(name, text)
        name = files[0][0].rsplit("-part", 1)[0] + ".zip"
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@staff_required(Action.ACCOUNTING_EXPORT)
def accounting_index(request):
    form = ExportForm(request.POST or None)
    overlap = False
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            export = services.journal_export(
                actor=request.user,
                fmt=d["format"],
                start=d["start"],
                end=d["end"],
                detailed=d["detailed"],
                allow_overlap=d["allow_overlap"],
            )
        except CarnetError as exc:
            form.add_error(None, exc.message)
            overlap = exc.code == "overlapping_export"
        else:
            return _download(export.files)
    exports = [
        (e, len(changed_since_export(e)))
        for e in JournalExport.objects.select_related("created_by")[:50]
    ]
    return render(
        request,
        "accounting/index.html",
        {"form": form, "exports": exports, "overlap": overlap, "clinic": clinic_get()},
        status=400 if form.errors else 200,
    )


@staff_required(Action.ACCOUNTING_EXPORT)
def export_detail(request, pk: int):
    export = JournalExport.objects.filter(pk=pk).first()
    if export is None:
        messages.error(request, "There is no such export.")
        return redirect("accounting:index")
    return render(
        request,
        "accounting/export.html",
        {"export": export, "changed": changed_since_export(export)},
    )


@staff_required(Action.ACCOUNTING_EXPORT)
def account_mapping(request):
    accounts = list(Account.objects.order_by("code"))
    mappings = {m.account_id: m for m in AccountMapping.objects.all()}
    errors = {}
    if request.method == "POST":
        for account in accounts:
            old = mappings.get(account.pk)
            values = [
                request.POST.get(f"{field}:{account.code}", "").strip()
                for field in ("name", "code", "tax")
            ]
            if values == [getattr(old, f, "") for f in ("name", "code", "tax_rate")] or (
                old is None and not any(values)
            ):
                continue
            try:
                mappings[account.pk] = services.account_mapping_set(
                    actor=request.user,
                    account_code=account.code,
                    name=values[0],
                    code=values[1],
                    tax_rate=values[2],
                )
            except CarnetError as exc:
                errors[account.code] = exc.message
        if not errors:
            messages.success(request, "Account mapping saved.")
            return redirect("accounting:mapping")

    def shown(account) -> dict:  # what was typed, when the page comes back with an error
        m = mappings.get(account.pk)
        if errors:
            return {f: request.POST.get(f"{f}:{account.code}", "") for f in ("name", "code", "tax")}
        return {
            "name": getattr(m, "name", ""),
            "code": getattr(m, "code", ""),
            "tax": getattr(m, "tax_rate", ""),
        }

    rows = [{"account": a, "values": shown(a), "error": errors.get(a.code)} for a in accounts]
    return render(request, "accounting/mapping.html", {"rows": rows}, status=400 if errors else 200)


def _dates(request) -> tuple[dt.date, dt.date]:

    period = period_from(request.GET.get("start"), request.GET.get("end"))
    return period.start, period.end


def _fields(request, *, with_account: bool) -> list[dict]:
    fields = [
        report_field("start", "From", request.GET.get("start")),
        report_field("end", "To", request.GET.get("end")),
    ]
    if with_account:
        options = [("", "Every account")] + [
            (a.code, a.name) for a in Account.objects.order_by("code")
        ]
        fields.append(
            report_field("account", "Account", request.GET.get("account", ""), "select", options)
        )
    return fields


@staff_required(Action.ACCOUNTING_EXPORT)
def trial_balance_page(request):
    def build():
        start, end = _dates(request)
        return trial_balance_table(start=start, end=end)

    def drill(row):  # the account's postings in the same period
        query = {k: v for k, v in request.GET.items() if k in ("start", "end")}
        return (
            f"{reverse('accounting:general_ledger')}?{urlencode({**query, 'account': row['code']})}"
        )

    return report_page(
        request,
        "Trial balance",
        build,
        _fields(request, with_account=False),
        links={"account": drill},
    )


@staff_required(Action.ACCOUNTING_EXPORT)
def general_ledger_page(request):
    def build():
        start, end = _dates(request)
        return general_ledger_table(
            start=start, end=end, account=request.GET.get("account") or None
        )

    return report_page(request, "General ledger", build, _fields(request, with_account=True))
