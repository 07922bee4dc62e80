"""Pass reports' pages (SPEC 10): pass sales, pass usage, deferred revenue roll-forward.

Thin: read the filters from the query string, call the selector, render (or export) its Table.
`?format=csv|xlsx` downloads the same table; the page shows at most PAGE_ROWS rows with the
totals of all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.shortcuts import render

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError, NotAllowed
from carnet.core.pages import not_allowed, staff_required
from carnet.core.permissions import Action, can

from . import pass_reports as reports
from .charts import bar_chart, in_currency, line_chart
from .exports import export_or_none
from .render import page_context
from .table import Table

# (url name, label, one line about it) for the Reports page
REPORTS: list[tuple[str, str, str]] = [
    (
        "reports:pass_sales",
        "Pass sales",
        "packages and memberships sold: uses, status, expiry, balance owed",
    ),
    ("reports:pass_usage", "Pass usage", "visits covered by a pass: value, discount, staff member"),
    (
        "reports:pass_rollforward",
        "Deferred revenue roll-forward",
        "opening, sold, redeemed, refunded, expired and closing, tied to the ledger (whole clinic)",
    ),
    (
        "reports:past_due",
        "Past due memberships",
        "memberships owing a cycle: cycles and amount owed, last decline reason, next retry",
    ),
]
PAGE_ROWS = 1000


@dataclass
class _Shown(Table):
    """The first rows of a table, carrying the totals of all of its rows."""

    all_totals: dict = field(default_factory=dict)

    @property
    def totals(self) -> dict:
        return self.all_totals


def _page(table: Table) -> dict:
    if len(table.rows) <= PAGE_ROWS:
        return {**page_context(table), "hidden": 0}
    shown = _Shown(
        title=table.title,
        columns=table.columns,
        rows=table.rows[:PAGE_ROWS],
        filters=table.filters,
        notes=table.notes,
        all_totals=table.totals,
    )
    return {**page_context(shown), "hidden": len(table.rows) - PAGE_ROWS}


def _filters(request, names: list[str]) -> dict:
    return {n: request.GET.get(n, "") for n in names}


def _export_links(request) -> dict:
    query = {k: v for k, v in request.GET.items() if k != "format" and v}
    return {fmt: "?" + urlencode({**query, "format": fmt}) for fmt in ("csv", "xlsx")}


def _report_page(request, template: str, build, names: list[str], extra=None):
    values = _filters(request, names)
    context = {
        "values": values,
        "choices": reports.filter_choices(),
        "exports": _export_links(request),
        "whole_clinic": can(request.user, Action.REPORTS_CLINIC),
    }
    try:
        table = build(**values)
    except NotAllowed as exc:
        return not_allowed(request, exc.message)
    except CarnetError as exc:
        return render(request, template, {**context, "error": exc.message}, status=exc.status)
    exported = export_or_none(request, table)
    if exported is not None:
        return exported
    context.update(_page(table))
    if extra:
        context.update(extra(table))
    return render(request, template, context)


SALES_FILTERS = ["start", "end", "location_id", "template_id", "type", "status", "usage"]
USAGE_FILTERS = ["start", "end", "location_id", "staff_id", "template_id", "type"]
ROLLFORWARD_FILTERS = ["start", "end", "type", "template_id"]


@staff_required(Action.REPORTS_OWN)
def pass_sales(request):
    return _report_page(
        request,
        "reports/pass_sales.html",
        lambda **f: reports.pass_sales_report(actor=request.user, **f),
        SALES_FILTERS,
    )


@staff_required(Action.REPORTS_OWN)
def pass_usage(request):
    def chart(table):
        return {
            "chart": bar_chart(
                reports.redemptions_per_week(table),
                title="Redemptions per week",
                y_title="Redemptions",
            )
        }

    return _report_page(
        request,
        "reports/pass_usage.html",
        lambda **f: reports.pass_usage_report(actor=request.user, **f),
        USAGE_FILTERS,
        chart,
    )


@staff_required(Action.REPORTS_CLINIC)
def pass_rollforward(request):
    """Both tables on one page; `?table=types` exports the per-type tie-out instead of the
    per-template rows."""
    found = {}

    def build(**f):
        found["rf"] = reports.deferred_revenue_rollforward(actor=request.user, **f)
        return found["rf"].types if request.GET.get("table") == "types" else found["rf"].table

    def extra(_table):
        rf = found["rf"]
        currency = clinic_get().currency
        return {
            **_page(rf.table),
            "rf": rf,
            "types": page_context(rf.types),
            "chart": line_chart(
                in_currency(rf.liability, currency),
                title="Deferred revenue at the end of each day",
                y_title=currency,
            ),
            "type_exports": {k: v + "&table=types" for k, v in _export_links(request).items()},
        }

    return _report_page(request, "reports/pass_rollforward.html", build, ROLLFORWARD_FILTERS, extra)
