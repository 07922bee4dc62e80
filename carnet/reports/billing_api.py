"""Billing reports as JSON (SPEC 10, 12): the same Table as the pages and the exports.

GET only. Scope as on the pages: whole clinic for Administrative/All Billing and up, otherwise the
caller's own rows; patients and No Access are refused (403)."""

from ninja import Router

from . import billing_reports as reports
from .scope import period_from

router = Router(tags=["reports"])


@router.get("/reports/billing/compensation", response=dict)
def compensation(
    request,
    start: str | None = None,
    end: str | None = None,
    basis: str = reports.ACCRUAL,
    staff_id: int | None = None,
):
    return reports.compensation(
        actor=request.auth, period=period_from(start, end), basis=basis, staff_id=staff_id
    ).as_json()


@router.get("/reports/billing/transactions", response=dict)
def transactions(request, start: str | None = None, end: str | None = None):
    return reports.transactions(actor=request.auth, period=period_from(start, end)).as_json()


@router.get("/reports/billing/ar-aging", response=dict)
def ar_aging(request, as_of: str | None = None):
    day = reports.as_of_from(as_of)
    table = reports.ar_aging(actor=request.auth, as_of=day)
    return {**table.as_json(), "ledger_check": reports.ar_ledger_check(table, day)}


@router.get("/reports/billing/summary", response=dict)
def billing_summary(request, start: str | None = None, end: str | None = None):
    return reports.billing_summary(actor=request.auth, period=period_from(start, end)).as_json()
