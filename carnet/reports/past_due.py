"""The Past due report (issue 22 point 4): every membership owing a cycle past its due date —
patient, membership, cycles owed, amount, days past due, last decline reason, next retry — as a
page and CSV/XLSX, like the other reports. The amount is what those cycles' invoices still owe; the
page ties it to the ledger (`past_due_ar_check`): the listed patients' accounts receivable equal
it plus their other open invoices. Lower levels see the memberships they sold
(report_staff_scope), as in Pass sales, without the tie-out (it reads the patients' whole A/R)."""

from __future__ import annotations

import datetime as dt

from django.db.models import F, Sum
from django.shortcuts import render
from django.urls import reverse

from carnet.billing.models import Invoice
from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core.pages import staff_required
from carnet.core.permissions import Action
from carnet.ledger import accounts
from carnet.ledger.selectors import balances_by_patient
from carnet.passes.dunning import owed_late
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


def past_due_report(*, actor, today: dt.date | None = None) -> Table:
    staff_id = report_staff_scope(actor)
    today = today or clinic_today()
    rows = []
    for r in past_due_memberships(sold_by_id=staff_id, today=today):
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
    return Table(
        title="Past due memberships",
        columns=COLUMNS,
        rows=rows,
        notes=notes,
        filters={"as_of": today, "scope": "own" if staff_id is not None else "clinic"},
    )


def past_due_ar_check(table: Table) -> dict | None:
    """The listed patients' accounts receivable in the ledger against this report's amount owed
    plus their other open invoices (visits, products, cycles not yet past due): they must agree.
    Whole clinic only: the A/R read is each patient's, not only the memberships a person sold."""
    if table.filters.get("scope") != "clinic":
        return None
    patients = {r["patient_id"] for r in table.rows}
    ar = balances_by_patient(accounts.AR)
    ledger = sum(ar.get(pk, 0) for pk in patients)
    late = owed_late(table.filters["as_of"]).values("invoice_id")
    other = (
        Invoice.objects.filter(
            patient_id__in=patients, deleted_at__isnull=True, applied_minor__lt=F("total_minor")
        )
        .exclude(pk__in=late)
        .aggregate(owed=Sum(F("total_minor") - F("applied_minor")))["owed"]
    )
    report, other = table.totals.get("amount", 0), int(other or 0)
    return {
        "patients": len(patients),
        "ledger_minor": ledger,
        "report_minor": report,
        "other_minor": other,
        "difference_minor": ledger - report - other,
        "ties_out": ledger == report + other,
    }


@staff_required(Action.REPORTS_OWN)
def past_due(request):
    table = past_due_report(actor=request.user)
    exported = export_or_none(request, table)
    if exported is not None:
        return exported
    links = {"membership": lambda r: reverse("memberships:detail", args=[r["id"]])}
    check = past_due_ar_check(table)
    if check is not None:
        money = clinic_get().money
        check.update(
            {k[: -len("_minor")]: money(v) for k, v in check.items() if k.endswith("_minor")}
        )
    return render(
        request,
        "reports/past_due.html",
        {
            **page_context(table, links=links),
            "check": check,
            "hidden": 0,
            "exports": {"csv": "?format=csv", "xlsx": "?format=xlsx"},
        },
    )
