"""Billing reports (SPEC 10, 5.6, 8): compensation, transactions, A/R aging, billing summary.

Selectors only: nothing here writes. Each returns a `Table`, so the page, the CSV/XLSX exports
and the API show the same rows and the same totals. `actor` decides the scope
(`report_staff_scope`): whole clinic for Administrative/All Billing and up, otherwise the actor's
own rows only (a staff member may not widen it with a filter).

Rules chosen (written on each page too):
- Compensation value of an ordinary line is its net (after discount, before tax). A visit a pass
  covers earns the pass item's staff compensation value instead, so that visit's own treatment
  line (the additional charge) is not counted a second time.
- Cash basis of a line: each allocation applied to its invoice pays the same share of every line
  (net × applied ÷ invoice total); an unapplied allocation takes its share back on the day it is
  unapplied. Shares are computed on the running total, so a fully paid line adds up to its net
  exactly, with no lost cent.
- Cash basis of a pass-covered visit: the day its invoice (the additional charge) became fully
  paid and stayed paid to the end of the period; the posting day when there is no charge.
- Commission = value × rate %, rounded half up to the minor unit; a missing rate is 0 %.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.db.models import Q, Sum

from carnet.billing.models import Allocation, Invoice, InvoiceLine, Payment, Refund
from carnet.clinic.models import IncomeCategory
from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core.errors import ValidationFailed
from carnet.core.money import round_minor
from carnet.ledger import accounts
from carnet.ledger.models import Posting
from carnet.ledger.selectors import balance
from carnet.passes.models import Redemption
from carnet.people.models import CommissionRate, StaffMember

from .scope import Period, date_param, report_staff_scope
from .table import DATE, INT, MONEY, TEXT, Column, Table

ACCRUAL, CASH = "accrual", "cash"
BASES = {ACCRUAL: "Accrual", CASH: "Cash"}
Kind = InvoiceLine.Kind
ORDINARY_KINDS = [Kind.TREATMENT, Kind.PRODUCT, Kind.FEE, Kind.MANUAL]
SALE_KINDS = [Kind.PACKAGE, Kind.MEMBERSHIP]  # pass sales: deferred revenue; upfront commission
DEFERRED_KINDS = [Kind.PACKAGE, Kind.MEMBERSHIP, Kind.PASS_CREDIT]
RECOGNISED_KINDS = ("pass_redeemed", "pass_redemption_undone", "membership_recognised")
SOURCES = {"line": "Sale", "visit": "Pass-covered visit", "upfront": "Upfront pass sale"}


def _zone() -> ZoneInfo:
    return ZoneInfo(clinic_get().time_zone)


def _start_of(day: dt.date, zone: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=zone)


def _bounds(period: Period) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) instants of a period of clinic days."""
    zone = _zone()
    return _start_of(period.start, zone), _start_of(period.end + dt.timedelta(days=1), zone)


def _local(instant: dt.datetime, zone: ZoneInfo) -> dt.date:
    return instant.astimezone(zone).date()


def _scope_staff(actor, staff_id) -> int | None:
    """The staff id to filter on: the actor's own when they see only their own rows."""
    own = report_staff_scope(actor)
    if own is not None:
        return own
    if staff_id in (None, ""):
        return None
    try:
        return int(staff_id)
    except (TypeError, ValueError):
        raise ValidationFailed(
            "Choose a staff member from the list.", fields={"staff": ["Unknown staff member."]}
        ) from None


# ---------------------------------------------------------------- compensation


def _commission(value: int, rate: Decimal) -> int:
    return round_minor(Decimal(value) * rate / 100)


def _rate_text(rate: Decimal) -> str:
    return f"{rate.normalize():f} %"


def _payment_events(invoice_ids) -> dict[int, list[tuple[dt.datetime, int]]]:
    """invoice id -> [(instant, amount applied up to then)], in time order
    (unapplying lowers it)."""
    moves = defaultdict(list)
    for a in Allocation.objects.filter(invoice_id__in=list(invoice_ids)).order_by(
        "applied_at", "pk"
    ):
        moves[a.invoice_id].append((a.applied_at, a.amount_minor))
        if a.unapplied_at is not None:
            moves[a.invoice_id].append((a.unapplied_at, -a.amount_minor))
    out = {}
    for invoice_id, items in moves.items():
        running, events = 0, []
        for at, amount in sorted(items, key=lambda m: m[0]):
            running += amount
            events.append((at, running))
        out[invoice_id] = events
    return out


def _paid_between(start, end):
    """Ids of invoices with a payment applied or unapplied in [start, end) (a subquery)."""
    return Allocation.objects.filter(
        Q(applied_at__gte=start, applied_at__lt=end)
        | Q(unapplied_at__gte=start, unapplied_at__lt=end)
    ).values("invoice_id")


def _cash_shares(net: int, total: int, events, start, end, zone) -> dict[dt.date, int]:
    """Day -> the part of `net` paid that day within [start, end), pro rata of the invoice total."""
    shares, before = defaultdict(int), 0
    for at, applied in events:
        now = net * min(max(applied, 0), total) // total
        if start <= at < end and now != before:
            shares[_local(at, zone)] += now - before
        before = now
    return {day: v for day, v in shares.items() if v}


def _paid_at(invoice, events, end) -> dt.datetime | None:
    """When the invoice became fully paid and stayed so up to `end`; None if not paid at `end`."""
    became = None
    for at, applied in events:
        if at >= end:
            break
        if applied >= invoice.total_minor:
            became = became or at
        else:
            became = None
    return became


class _Earned(NamedTuple):
    """One thing a staff member earns commission on, before the rate is applied."""

    staff_id: int
    source: str  # a key of SOURCES
    category_id: int | None
    item: str
    day: dt.date
    invoice: int | None
    value: int


def compensation(*, actor, period: Period, basis: str = ACCRUAL, staff_id=None) -> Table:
    """Commission per staff member for a period (SPEC 5.6): sales lines, pass-covered visits and
    upfront-compensated pass sales, on the accrual or the cash basis."""
    if basis not in BASES:
        raise ValidationFailed(
            "Choose the accrual or the cash basis.", fields={"basis": ["Accrual or cash."]}
        )
    staff = _scope_staff(actor, staff_id)
    zone = _zone()
    start, end = _bounds(period)
    covered = Redemption.objects.filter(status=Redemption.Status.POSTED)
    lines = _compensated_lines(covered, staff)
    if basis == ACCRUAL:
        earned = _lines_accrued(lines, period)
    else:
        earned = _lines_paid(lines, start, end, zone)
    earned += _visits_earned(covered, staff, basis, start, end, zone)
    return _compensation_table(_commission_rows(earned, basis), period, basis, staff)


def _line_source(line: InvoiceLine) -> str:
    return "upfront" if line.kind in SALE_KINDS else "line"


def _compensated_lines(covered, staff: int | None):
    """Invoice lines assigned to a staff member: ordinary lines and pass sales, less the treatment
    line of a visit a pass covers (that visit earns the pass item's value instead)."""
    covered_invoices = covered.exclude(visit__invoice__isnull=True).values("visit__invoice_id")
    lines = (
        InvoiceLine.objects.filter(
            invoice__deleted_at__isnull=True,
            staff__isnull=False,
            kind__in=ORDINARY_KINDS + SALE_KINDS,
        )
        .exclude(kind=Kind.TREATMENT, invoice_id__in=covered_invoices)
        .select_related("invoice")
    )
    return lines if staff is None else lines.filter(staff_id=staff)


def _lines_accrued(lines, period: Period) -> list[_Earned]:
    """Accrual: each line's net on its invoice date."""
    return [
        _Earned(
            line.staff_id,
            _line_source(line),
            line.income_category_id,
            line.description,
            line.invoice.invoice_date,
            line.invoice.number,
            line.net_minor,
        )
        for line in lines.filter(invoice__invoice_date__range=(period.start, period.end))
    ]


def _lines_paid(lines, start, end, zone) -> list[_Earned]:
    """Cash: each line's share of every payment applied (or unapplied) to its invoice, by day."""
    lines = [
        line
        for line in lines.filter(invoice_id__in=_paid_between(start, end))
        if line.invoice.total_minor > 0
    ]
    events = _payment_events({line.invoice_id for line in lines})
    earned = []
    for line in lines:
        shares = _cash_shares(
            line.net_minor,
            line.invoice.total_minor,
            events.get(line.invoice_id, []),
            start,
            end,
            zone,
        )
        for day, value in sorted(shares.items()):
            earned.append(
                _Earned(
                    line.staff_id,
                    _line_source(line),
                    line.income_category_id,
                    line.description,
                    day,
                    line.invoice.number,
                    value,
                )
            )
    return earned


def _visits_earned(covered, staff: int | None, basis: str, start, end, zone) -> list[_Earned]:
    """Pass-covered visits: the pass item's compensation value, on the day the use was posted
    (accrual) or the day its additional charge was fully paid (cash; posting day if none)."""
    visits = covered.filter(practitioner__isnull=False).select_related(
        "sold_pass", "item__treatment", "visit__invoice"
    )
    if staff is not None:
        visits = visits.filter(practitioner_id=staff)
    if basis == ACCRUAL:
        visits = visits.filter(posted_at__gte=start, posted_at__lt=end)
    else:
        visits = visits.filter(
            Q(posted_at__gte=start) | Q(visit__invoice_id__in=_paid_between(start, end)),
            posted_at__lt=end,
        )
    visits = list(visits)
    events = (
        _payment_events({r.visit.invoice_id for r in visits if r.visit.invoice_id})
        if basis == CASH
        else {}
    )
    earned = []
    for r in visits:
        when = _visit_counted_at(r, basis, events, start, end)
        if when is None:
            continue
        invoice = r.visit.invoice
        label = f"{r.sold_pass.name}: {r.item.treatment.name}" + (
            " (paid upfront)" if r.compensated_upfront else ""
        )
        earned.append(
            _Earned(
                r.practitioner_id,
                "visit",
                r.sold_pass.income_category_id,
                label,
                _local(when, zone),
                invoice.number if invoice else None,
                r.compensation_minor,
            )
        )
    return earned


def _visit_counted_at(r: Redemption, basis: str, events, start, end) -> dt.datetime | None:
    """When a pass-covered visit counts within [start, end), or None: its posting, or on the cash
    basis the moment its additional charge became fully paid (and stayed so)."""
    invoice = r.visit.invoice
    if basis == CASH and invoice is not None and invoice.total_minor > 0:
        when = _paid_at(invoice, events.get(invoice.pk, []), end)
        return None if when is None or when < start else when
    return r.posted_at if start <= r.posted_at < end else None


def _commission_rows(earned: list[_Earned], basis: str) -> list[dict]:
    """One row per thing earned, with the staff member's rate for its income category applied."""
    staff_ids = {e.staff_id for e in earned}
    names = dict(StaffMember.objects.filter(pk__in=staff_ids).values_list("pk", "display_name"))
    categories = dict(IncomeCategory.objects.values_list("pk", "name"))
    rates = {
        (r.staff_id, r.income_category_id): r.rate
        for r in CommissionRate.objects.filter(staff_id__in=staff_ids)
    }
    rows = []
    for e in earned:
        rate = rates.get((e.staff_id, e.category_id), Decimal(0))
        rows.append(
            {
                "staff": names.get(e.staff_id, ""),
                "staff_id": e.staff_id,
                "basis": BASES[basis],
                "source": SOURCES[e.source],
                "income_category": categories.get(e.category_id, ""),
                "item": e.item,
                "date": e.day,
                "invoice": e.invoice,
                "value": e.value,
                "rate": _rate_text(rate),
                "commission": _commission(e.value, rate),
            }
        )
    rows.sort(key=lambda r: (r["staff"], r["date"], r["source"], r["item"]))
    return rows


# What each source means, shown under the table.
COMPENSATION_NOTES = [
    "Sale: a treatment, product, fee or other line assigned to the staff member; "
    "value = the line's net (after discount, before tax). Accrual: the invoice date (the "
    "visit arrived). Cash: each payment applied to the invoice pays the same share of "
    "every line (net × applied ÷ invoice total), on the day it is applied; "
    "unapplying takes that share back on the day it is unapplied.",
    "Pass-covered visit: value = the pass item's staff compensation value (0 when the "
    "sale was compensated upfront); the visit's own additional-charge line is not counted "
    "again. Accrual: the day the use was posted (arrived). Cash: "
    "the day the visit's additional charge was fully paid, or the posting day when there "
    "is no charge.",
    "Upfront pass sale: the package or membership sale line assigned to the seller, "
    "at the seller's rate; accrual by invoice date, cash when paid, as for a sale.",
    "Commission = value × the staff member's rate for the income category, "
    "rounded to the cent; no rate set counts as 0 %.",
]


def _compensation_table(rows: list[dict], period: Period, basis: str, staff) -> Table:
    return Table(
        title="Compensation",
        rows=rows,
        columns=[
            Column("staff", "Staff member"),
            Column("basis", "Basis"),
            Column("source", "From"),
            Column("income_category", "Income category"),
            Column("item", "Item"),
            Column("date", "Date", DATE),
            Column("invoice", "Invoice", INT),
            Column("value", "Value", MONEY, total=True),
            Column("rate", "Rate", TEXT),
            Column("commission", "Commission", MONEY, total=True),
        ],
        filters={"start": period.start, "end": period.end, "basis": basis, "staff": staff},
        notes=list(COMPENSATION_NOTES),
    )


# ---------------------------------------------------------------- transactions (cash-out)


def transactions(*, actor, period: Period) -> Table:
    """Money received and refunded per day and payment method."""
    own = report_staff_scope(actor)
    zone = _zone()
    start, end = _bounds(period)
    payments = Payment.objects.filter(received_at__gte=start, received_at__lt=end)
    refunds = Refund.objects.filter(refunded_at__gte=start, refunded_at__lt=end)
    if own is not None:
        user_id = StaffMember.objects.filter(pk=own).values_list("user_id", flat=True).first()
        payments = payments.filter(created_by_id=user_id)
        refunds = refunds.filter(payment__created_by_id=user_id)
    cells = defaultdict(lambda: {"received": 0, "refunded": 0, "count": 0})
    for received_at, method, amount in payments.values_list(
        "received_at", "method", "amount_minor"
    ):
        cell = cells[(_local(received_at, zone), method)]
        cell["received"] += amount
        cell["count"] += 1
    for refunded_at, method, amount in refunds.values_list("refunded_at", "method", "amount_minor"):
        cells[(_local(refunded_at, zone), method)]["refunded"] += amount
    labels = dict(Payment.Method.choices)
    rows = [
        {
            "date": day,
            "method": labels.get(method, method),
            "payments": c["count"],
            "received": c["received"],
            "refunded": c["refunded"],
            "net": c["received"] - c["refunded"],
        }
        for (day, method), c in sorted(cells.items())
    ]
    return Table(
        title="Transactions",
        rows=rows,
        columns=[
            Column("date", "Date", DATE),
            Column("method", "Payment method"),
            Column("payments", "Payments", INT, total=True),
            Column("received", "Received", MONEY, total=True),
            Column("refunded", "Refunded", MONEY, total=True),
            Column("net", "Net", MONEY, total=True),
        ],
        filters={
            "start": period.start,
            "end": period.end,
            "scope": "own" if own is not None else "clinic",
        },
        notes=[
            "Received: payments by the day they were received (clinic time), "
            "whether applied to invoices or kept as credit; gift-card redemptions appear under "
            "“Gift card”. Refunded: refunds by the day made, under the method they were paid out "
            "by. Net = received − refunded."
            + (" You see the payments you recorded and their refunds." if own is not None else "")
        ],
    )


def transactions_chart_points(table: Table) -> list[tuple[str, int]]:
    by_day = defaultdict(int)
    for row in table.rows:
        by_day[row["date"].isoformat()] += row["net"]
    return sorted(by_day.items())


# ---------------------------------------------------------------- accounts receivable aging

BUCKETS = (
    ("b0_30", "0–30 days", 0, 30),
    ("b31_60", "31–60 days", 31, 60),
    ("b61_90", "61–90 days", 61, 90),
    ("b90", "Over 90 days", 91, None),
)


def as_of_from(value) -> dt.date:
    return date_param(value, "as_of") or clinic_today()


def _bucket(age: int) -> str:
    for key, _, low, high in BUCKETS:
        if age >= low and (high is None or age <= high):
            return key
    return BUCKETS[0][0]  # dated after as_of cannot happen (filtered); keep it in "current"


def ar_aging(*, actor, as_of: dt.date) -> Table:
    """Open invoice balances at the end of `as_of`, per patient, by invoice age in days."""
    own = report_staff_scope(actor)
    end = _start_of(as_of + dt.timedelta(days=1), _zone())
    invoices = (
        Invoice.objects.filter(created_at__lt=end, invoice_date__lte=as_of)
        .filter(Q(deleted_at__isnull=True) | Q(deleted_at__gte=end))
        .select_related("patient")
    )
    if own is not None:
        invoices = invoices.filter(staff_id=own)
    invoices = list(invoices)
    applied = dict(
        Allocation.objects.filter(invoice_id__in=[i.pk for i in invoices], applied_at__lt=end)
        .filter(Q(unapplied_at__isnull=True) | Q(unapplied_at__gte=end))
        .values("invoice_id")
        .annotate(total=Sum("amount_minor"))
        .values_list("invoice_id", "total")
    )
    per_patient = {}
    for invoice in invoices:
        owed = invoice.total_minor - int(applied.get(invoice.pk) or 0)
        if owed <= 0:
            continue
        row = per_patient.setdefault(
            invoice.patient_id,
            {
                "patient": invoice.patient.full_name,
                "patient_id": invoice.patient_id,
                "invoices": 0,
                **{key: 0 for key, *_ in BUCKETS},
                "total": 0,
            },
        )
        row[_bucket((as_of - invoice.invoice_date).days)] += owed
        row["invoices"] += 1
        row["total"] += owed
    rows = sorted(per_patient.values(), key=lambda r: (r["patient"], r["patient_id"]))
    table = Table(
        title="Accounts receivable aging",
        rows=rows,
        columns=[
            Column("patient", "Patient"),
            Column("invoices", "Open invoices", INT, total=True),
            *[Column(key, label, MONEY, total=True) for key, label, *_ in BUCKETS],
            Column("total", "Balance", MONEY, total=True),
        ],
        filters={"as_of": as_of, "scope": "own" if own is not None else "clinic"},
        notes=[
            "Each invoice's balance at the end of the “as of” day (its total less the payments "
            "applied by then), in the column of its age: days from the invoice date to the “as "
            "of” day."
        ],
    )
    if own is not None:
        table.notes.append("You see invoices assigned to you.")
    return table


def ar_ledger_check(table: Table, as_of: dt.date) -> dict | None:
    """The A/R ledger balance at the end of `as_of` against the report's total
    (whole clinic only)."""
    if table.filters.get("scope") != "clinic":
        return None
    end = _start_of(as_of + dt.timedelta(days=1), _zone())
    ledger = balance(accounts.AR, as_of=end - dt.timedelta(microseconds=1))
    report = table.totals.get("total", 0)
    return {
        "ledger_minor": ledger,
        "report_minor": report,
        "difference_minor": ledger - report,
        "ties_out": ledger == report,
    }


# --------------------------------------------------------------- billing summary by income category


def _recognised(start, end, staff) -> dict[int, int]:
    """Income category id -> pass revenue recognised in [start, end)."""
    out = defaultdict(int)
    if staff is not None:  # a staff member's own: the sessions they gave
        rows = (
            Redemption.objects.filter(
                status=Redemption.Status.POSTED,
                practitioner_id=staff,
                posted_at__gte=start,
                posted_at__lt=end,
            )
            .values("sold_pass__income_category_id")
            .annotate(total=Sum("value_minor"))
        )
        for row in rows:
            out[row["sold_pass__income_category_id"]] += int(row["total"] or 0)
        return out
    rows = (
        Posting.objects.filter(
            account__code__startswith="revenue:",
            transaction__kind__in=RECOGNISED_KINDS,
            transaction__at__gte=start,
            transaction__at__lt=end,
        )
        .values("account__code")
        .annotate(total=Sum("amount"))
    )
    for row in rows:
        out[int(row["account__code"].split(":", 1)[1])] -= int(
            row["total"] or 0
        )  # credits are negative
    return out


def billing_summary(*, actor, period: Period) -> Table:
    """Invoiced and earned revenue per income category for a period."""
    own = report_staff_scope(actor)
    start, end = _bounds(period)
    lines = InvoiceLine.objects.filter(
        invoice__deleted_at__isnull=True, invoice__invoice_date__range=(period.start, period.end)
    )
    if own is not None:
        lines = lines.filter(staff_id=own)
    cells = defaultdict(lambda: {"sales": 0, "deferred": 0, "tax": 0, "total": 0, "recognised": 0})
    for category, kind, net, tax, total in lines.values_list(
        "income_category_id", "kind", "net_minor", "tax_minor", "total_minor"
    ):
        cell = cells[category]
        cell["deferred" if kind in DEFERRED_KINDS else "sales"] += net
        cell["tax"] += tax
        cell["total"] += total
    for category, amount in _recognised(start, end, own).items():
        cells[category]["recognised"] += amount
    names = dict(IncomeCategory.objects.filter(pk__in=list(cells)).values_list("pk", "name"))
    rows = [
        {
            "income_category": names.get(category, str(category)),
            "income_category_id": category,
            **c,
            "earned": c["sales"] + c["recognised"],
        }
        for category, c in cells.items()
        if any(c.values())
    ]
    rows.sort(key=lambda r: r["income_category"])
    table = Table(
        title="Billing summary",
        rows=rows,
        columns=[
            Column("income_category", "Income category"),
            Column("sales", "Invoiced net (sales)", MONEY, total=True),
            Column("deferred", "Deferred (passes)", MONEY, total=True),
            Column("tax", "Tax", MONEY, total=True),
            Column("total", "Invoiced total", MONEY, total=True),
            Column("recognised", "Pass revenue recognised", MONEY, total=True),
            Column("earned", "Earned revenue", MONEY, total=True),
        ],
        filters={
            "start": period.start,
            "end": period.end,
            "scope": "own" if own is not None else "clinic",
        },
        notes=[
            "Invoiced net (sales): treatments, products, fees and other lines on invoices dated "
            "in the period, after discounts, before tax.",
            "Deferred (passes): package and membership sales (less pass refunds taken back on "
            "their invoices); paid up front for services not yet given, so not earned yet.",
            "Tax and Invoiced total: all lines of those invoices (Invoiced total = sales + "
            "deferred + tax).",
            "Pass revenue recognised: package sessions used and membership fees earned in the "
            "period, read from the ledger (revenue postings of pass redemptions, "
            "undone redemptions and membership recognition).",
            "Earned revenue = invoiced net (sales) + pass revenue recognised. "
            "Deleted invoices are left out.",
        ],
    )
    if own is not None:
        table.notes.append(
            "You see lines assigned to you, and the pass sessions you gave (at their recognised "
            "value); membership fees are not attributed to a staff member."
        )
    return table
