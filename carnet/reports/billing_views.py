"""Billing reports' pages (SPEC 10): compensation, transactions, A/R aging, billing summary.

Thin: read the filters, call the selector in billing_reports, then either export the table
(`?format=csv|xlsx`) or render it with its filters, totals, notes and chart."""

from urllib.parse import urlencode

from django.shortcuts import render

from carnet.clinic.selectors import clinic_get
from carnet.core.errors import CarnetError
from carnet.core.pages import staff_required
from carnet.core.permissions import Action, can
from carnet.people.models import StaffMember

from . import billing_reports as reports
from .charts import bar_chart, in_currency
from .exports import export_or_none
from .render import page_context
from .scope import period_from

# (url name, label, one line about it) for the Reports page
REPORTS: list[tuple[str, str, str]] = [
    (
        "reports:billing_compensation",
        "Compensation",
        "commission per staff member, accrual or cash basis, including pass-covered visits",
    ),
    (
        "reports:billing_transactions",
        "Transactions",
        "money received and refunded per day and payment method",
    ),
    (
        "reports:billing_ar_aging",
        "Accounts receivable aging",
        "open invoice balances by age, tied out to the ledger",
    ),
    (
        "reports:billing_summary",
        "Billing summary",
        "invoiced, deferred and earned revenue by income category",
    ),
]


def _money_bars(points: list[tuple[str, int]], title: str) -> str:
    """A bar chart of amounts in minor units, drawn in the clinic's currency."""
    currency = clinic_get().currency
    return bar_chart(in_currency(points, currency), y_title=currency, title=title)


def report_field(name, label, value, kind="date", options=None):
    return {
        "name": name,
        "label": label,
        "value": "" if value is None else str(value),
        "kind": kind,
        "options": options or [],
    }


def _exports(request) -> dict:
    query = {k: v for k, v in request.GET.items() if k != "format"}
    return {f: "?" + urlencode({**query, "format": f}) for f in ("csv", "xlsx")}


def report_page(request, title, build, fields, *, chart=None, extra=None, links=None):
    """Build the table (a domain error becomes a message above the filters), export or render it.
    `links`: column key -> function(row) -> URL, for cells that link somewhere
    (render.page_context)."""
    context = {
        "title": title,
        "fields": fields,
        "exports": _exports(request),
        "error": None,
        "table": None,
        "whole_clinic": can(request.user, Action.REPORTS_CLINIC),
    }
    try:
        table = build()
    except CarnetError as exc:
        context["error"] = exc.message
        return render(request, "reports/billing_report.html", context, status=400)
    exported = export_or_none(request, table)
    if exported is not None:
        return exported
    context.update(page_context(table, links=links))
    context["chart"] = chart(table) if chart else ""
    context.update(extra(table) if extra else {})
    return render(request, "reports/billing_report.html", context)


@staff_required(Action.REPORTS_OWN)
def compensation(request):
    g = request.GET
    fields = [
        report_field("start", "From", g.get("start")),
        report_field("end", "To", g.get("end")),
        report_field(
            "basis", "Basis", g.get("basis", reports.ACCRUAL), "select", list(reports.BASES.items())
        ),
    ]
    if can(request.user, Action.REPORTS_CLINIC):
        staff = [("", "Everyone")] + [
            (str(s.pk), s.display_name) for s in StaffMember.objects.all()
        ]
        fields.append(report_field("staff", "Staff member", g.get("staff", ""), "select", staff))

    def chart(table):
        per_staff = {}
        for row in table.rows:
            per_staff[row["staff"]] = per_staff.get(row["staff"], 0) + row["commission"]
        return _money_bars(
            sorted(per_staff.items()),
            "Commission per staff member",
        )

    return report_page(
        request,
        "Compensation",
        lambda: reports.compensation(
            actor=request.user,
            period=period_from(g.get("start"), g.get("end")),
            basis=g.get("basis") or reports.ACCRUAL,
            staff_id=g.get("staff"),
        ),
        fields,
        chart=chart,
    )


@staff_required(Action.REPORTS_OWN)
def transactions(request):
    g = request.GET
    fields = [
        report_field("start", "From", g.get("start")),
        report_field("end", "To", g.get("end")),
    ]

    def chart(table):
        return _money_bars(
            reports.transactions_chart_points(table),
            "Net received per day",
        )

    return report_page(
        request,
        "Transactions",
        lambda: reports.transactions(
            actor=request.user, period=period_from(g.get("start"), g.get("end"))
        ),
        fields,
        chart=chart,
    )


@staff_required(Action.REPORTS_OWN)
def ar_aging(request):
    g = request.GET
    fields = [report_field("as_of", "As of", g.get("as_of"))]
    holder = {}

    def build():
        holder["as_of"] = reports.as_of_from(g.get("as_of"))
        return reports.ar_aging(actor=request.user, as_of=holder["as_of"])

    def chart(table):
        totals = table.totals
        return _money_bars(
            [(label, totals.get(key, 0)) for key, label, *_ in reports.BUCKETS],
            "Balance owing by age",
        )

    def extra(table):
        check = reports.ar_ledger_check(table, holder["as_of"])
        clinic = clinic_get()
        if check is None:
            return {"check": None}
        return {
            "check": {
                **check,
                "ledger": clinic.money(check["ledger_minor"]),
                "report": clinic.money(check["report_minor"]),
                "difference": clinic.money(check["difference_minor"]),
            }
        }

    return report_page(
        request, "Accounts receivable aging", build, fields, chart=chart, extra=extra
    )


@staff_required(Action.REPORTS_OWN)
def billing_summary(request):
    g = request.GET
    fields = [
        report_field("start", "From", g.get("start")),
        report_field("end", "To", g.get("end")),
    ]

    def chart(table):
        return _money_bars(
            [(r["income_category"], r["earned"]) for r in table.rows],
            "Earned revenue by income category",
        )

    return report_page(
        request,
        "Billing summary",
        lambda: reports.billing_summary(
            actor=request.user, period=period_from(g.get("start"), g.get("end"))
        ),
        fields,
        chart=chart,
    )
