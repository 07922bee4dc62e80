"""Pass reports as JSON (SPEC 10): the same Table the page and the exports show.

GET only; filters are query parameters (dates as YYYY-MM-DD, ids as numbers). Access is the
selector's: whole clinic for Administrative/All Billing and up, lower levels their own rows;
the roll-forward is whole-clinic only (403 otherwise)."""

from ninja import Router

from . import pass_reports as reports

router = Router(tags=["reports"])


@router.get("/pass-sales", summary="Pass sales report")
def pass_sales(
    request,
    start: str = "",
    end: str = "",
    location_id: str = "",
    template_id: str = "",
    type: str = "",
    status: str = "",
    usage: str = "",
):
    """Passes bought in the range (purchase date): uses redeemed and remaining, status, expiry,
    last used and outstanding balance. `usage`: remaining | completed; `status`: active | expired |
    used_up | refunded | cancelled | transferred; `type`: package | membership."""
    return reports.pass_sales_report(
        actor=request.auth,
        start=start,
        end=end,
        location_id=location_id,
        template_id=template_id,
        type=type,
        status=status,
        usage=usage,
    ).as_json()


@router.get("/pass-usage", summary="Pass usage report")
def pass_usage(
    request,
    start: str = "",
    end: str = "",
    location_id: str = "",
    staff_id: str = "",
    template_id: str = "",
    type: str = "",
):
    """Visits covered by a pass with a service date in the range: original value,
    discount, covered value."""
    return reports.pass_usage_report(
        actor=request.auth,
        start=start,
        end=end,
        location_id=location_id,
        staff_id=staff_id,
        template_id=template_id,
        type=type,
    ).as_json()


@router.get("/deferred-revenue", summary="Deferred revenue roll-forward")
def deferred_revenue(
    request, start: str = "", end: str = "", type: str = "", template_id: str = ""
):
    """Opening, sold, redeemed, refunded, expired and closing per pass type and template, with each
    type's closing balance checked against the ledger (`ties_out`, `mismatches`)."""
    return reports.deferred_revenue_rollforward(
        actor=request.auth, start=start, end=end, type=type, template_id=template_id
    ).as_json()
