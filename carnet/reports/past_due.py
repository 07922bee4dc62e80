"""The Past due report (issue 22 point 4): every membership owing a cycle past its due date —
patient, membership, cycles owed, amount, days past due, last decline reason, next retry — as a
page and CSV/XLSX, like the other reports. The amount is what those cycles' invoices still owe, so
for patients who owe nothing else it ties to their accounts receivable. Lower levels see the
memberships they sold (report_staff_scope), as in Pass sales."""

from __future__ import annotations

from django.shortcuts import render
from django.urls import reverse

from carnet.core.pages import staff_required
from carnet.core.permissions import Action
from carnet.passes.memberships.overdue import past_due_memberships

from .exports import export_or_none
from .render import page_context
from .scope import report_staff_scope
from .table import DATE, INT, MONEY, TEXT, Column, Table

COLUMNS = [
    Column("patient", "Patient"),
    Column("membership", "Membership"),
    Column("status", "Status"),
    Column("cycles", "Cycles owed", INT, total=True),
    Column("amount", "Amount owed", MONEY, total=True),
    Column("since", "Past due since", DATE),
    Column("days", "Days past due", INT),
    Column("last_reason", "Last decline reason", TEXT),
    Column("next_retry", "Next retry"),
]


def past_due_report(*, actor) -> Table:
    staff_id = report_staff_scope(actor)
    rows = []
    for r in past_due_memberships(sold_by_id=staff_id):
        sold = r["sold"]
        status = (
            "Cancelled"
            if sold.status == sold.Status.CANCELLED
            else ("Not covering new bookings" if r["suspended"] else "Active")
        )
        next_retry = (
            "New card needed"
            if r["needs_new_card"]
            else r["next_try"].isoformat()
            if r["next_try"]
            else "None (retries over)"
        )
        rows.append(
            {
                "id": sold.pk,
                "patient": r["patient"].full_name,
                "patient_id": r["patient"].pk,
                "membership": sold.name,
                "status": status,
                "cycles": r["cycles"],
                "amount": r["amount_minor"],
                "since": r["since"],
                "days": r["days"],
                "last_reason": r["last_reason"] or "Not paid at the desk",
                "next_retry": next_retry,
            }
        )
    notes = [
        "A membership is past due when a cycle's invoice is still owed after its due date (cycles "
        "written off are not owed). Amount owed: what those invoices still owe."
    ]
    if staff_id is not None:
        notes.insert(0, "Only the memberships you sold are shown.")
    return Table(title="Past due memberships", columns=COLUMNS, rows=rows, notes=notes)


@staff_required(Action.REPORTS_OWN)
def past_due(request):
    table = past_due_report(actor=request.user)
    exported = export_or_none(request, table)
    if exported is not None:
        return exported
    links = {"membership": lambda r: reverse("memberships:detail", args=[r["id"]])}
    return render(
        request,
        "reports/past_due.html",
        {
            **page_context(table, links=links),
            "hidden": 0,
            "exports": {"csv": "?format=csv", "xlsx": "?format=xlsx"},
        },
    )
