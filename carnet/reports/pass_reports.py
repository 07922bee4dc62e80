"""Pass reports (SPEC 10, 9.8): pass sales, pass usage and the deferred revenue roll-forward.

Selectors only: nothing here writes. Each returns a reports.table.Table (plus, for the
roll-forward, its tie-out to the ledger), so the page, the CSV/XLSX and the API show the same rows
and totals. Access: `report_staff_scope(actor)` gives the whole clinic (None) or the staff id whose
own rows the actor may see; the roll-forward is whole-clinic only.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.db.models import (
    BigIntegerField,
    Case,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, TruncDate

from carnet.billing.models import Invoice
from carnet.clinic.models import Location
from carnet.clinic.selectors import clinic_get
from carnet.core.errors import ValidationFailed
from carnet.core.permissions import Action, require
from carnet.ledger import accounts
from carnet.ledger.models import Posting
from carnet.ledger.selectors import balance
from carnet.passes.models import (
    Kind,
    Pass,
    PassInvoice,
    PassTemplate,
    Redemption,
    value_left_expression,
)
from carnet.people.models import StaffMember

from .scope import Period, period_from, report_staff_scope
from .table import DATE, INT, MONEY, TEXT, Column, Table

KIND_LABELS = dict(Kind.choices)
SALES_STATUSES = {
    "active": "Active",
    "expired": "Expired",
    "used_up": "Used up",
    "refunded": "Refunded",
    "cancelled": "Cancelled",
    "transferred": "Transferred",
}
USAGE_FILTERS = {"remaining": "With uses remaining", "completed": "Completed"}


# ---------------------------------------------------------------- filters


def _id(value, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ValidationFailed(
            f"“{value}” is not a valid {name.replace('_id', '').replace('_', ' ')}.",
            fields={name: ["Choose one from the list."]},
        )
    return number


def _choice(value, name: str, choices) -> str | None:
    if value in (None, ""):
        return None
    if value not in choices:
        raise ValidationFailed(
            f"“{value}” is not a {name.replace('_', ' ')}; use one of {', '.join(choices)}.",
            fields={name: ["Choose one from the list."]},
        )
    return value


def _narrow(query, **lookups):
    """Apply each filter that was given (None = not filtered)."""
    for lookup, value in lookups.items():
        if value is not None:
            query = query.filter(**{lookup: value})
    return query


def _plain(filters: dict) -> dict:
    return {k: v for k, v in filters.items() if v not in (None, "")}


# ---------------------------------------------------------------- pass sales

SALES_COLUMNS = [
    Column("location", "Location"),
    Column("patient", "Patient"),
    Column("pass_name", "Pass"),
    Column("type", "Type"),
    Column("purchase_date", "Purchase date", DATE),
    Column("price", "Sale price", MONEY, total=True),
    Column("quantity", "Quantity", INT, total=True),
    Column("redeemed", "Redeemed", INT, total=True),
    Column("reserved", "Reserved", INT, total=True),
    Column("forfeited", "Forfeited", INT, total=True),
    Column("remaining", "Remaining", INT, total=True),
    # A value package (issue 23): the amount it holds, drawn by arrived visits,
    # held by bookings, and left.
    Column("value_held", "Value held", MONEY, total=True),
    Column("value_drawn", "Value drawn", MONEY, total=True),
    Column("value_reserved", "Value reserved", MONEY, total=True),
    Column("value_forfeited", "Value forfeited", MONEY, total=True),
    Column("value_left", "Value left", MONEY, total=True),
    Column("status", "Status"),
    Column("expiry", "Expiry", DATE),
    Column("last_used", "Last used", DATE),
    Column("outstanding", "Outstanding balance", MONEY, total=True),
]


def _sales_status(row: dict) -> str:
    status = row["status"]
    if status == Pass.Status.ACTIVE and row["quantity"] is not None and row["remaining"] <= 0:
        return "used_up"
    if (
        status == Pass.Status.ACTIVE
        and row["face_value_minor"] is not None
        and row["value_left"] <= 0
    ):
        return "used_up"
    return status


# What a pass sale's row is made from.
SALES_FIELDS = (
    "pk",
    "kind",
    "name",
    "status",
    "quantity",
    "left",
    "posted_count",
    "reserved_count",
    "forfeited_count",
    "price_minor",
    "sold_online",
    "purchase_date",
    "expires_on",
    "ends_after",
    "last_used",
    "outstanding",
    "where_id",
    "patient__first_name",
    "patient__last_name",
    "face_value_minor",
    "value_left",
    "value_posted_minor",
    "value_reserved_minor",
    "value_forfeited_minor",
    "value_before_import_minor",
)

SALES_NOTES = [
    "Redeemed + reserved + forfeited + remaining = quantity. Reserved: booked visits not yet "
    "arrived; forfeited: uses lost when the pass expired or was refunded.",
    "Sale price: the pass's price, taxes included (all instalments of a payment plan). "
    "For a membership it is the price of one cycle.",
    "Quantity and remaining are blank for memberships with unlimited uses.",
    "A package that holds a value counts money, not uses: value drawn (before the switch to "
    "Carnet too, for an imported one) + value reserved + value forfeited (when it ended) + value "
    "left = value held; Redeemed and Reserved count its visits.",
    "Outstanding balance: what is still owed on the pass's issued invoices (instalments, cycles).",
]


def _passes_sold(period: Period):
    """Passes bought in the period (deleted ones left out), with where they were sold, what is
    left of them, what is still owed on them and when they were last used."""
    first_invoice = PassInvoice.objects.filter(
        sold_pass=OuterRef("pk"), invoice__isnull=False
    ).order_by("seq")
    open_balance = (
        Invoice.objects.filter(pass_invoice__sold_pass=OuterRef("pk"), deleted_at__isnull=True)
        .order_by()
        .values("pass_invoice__sold_pass")
        .annotate(total=Sum(F("total_minor") - F("applied_minor")))
        .values("total")
    )
    last_used = (
        Redemption.objects.filter(sold_pass=OuterRef("pk"), status=Redemption.Status.POSTED)
        .order_by()
        .values("sold_pass")
        .annotate(last=Max("visit_date"))
        .values("last")
    )
    return (
        Pass.objects.exclude(status=Pass.Status.DELETED)
        .filter(purchase_date__gte=period.start, purchase_date__lte=period.end)
        .annotate(
            where_id=Coalesce(
                "location_id",
                Subquery(first_invoice.values("invoice__location_id")[:1]),
                output_field=BigIntegerField(),
            ),
            left=F("quantity")
            - F("reserved_count")
            - F("posted_count")
            - F("forfeited_count")
            - F("used_before_import"),
            value_left=value_left_expression(),
            outstanding=Coalesce(Subquery(open_balance), Value(0), output_field=BigIntegerField()),
            last_used=Subquery(last_used),
        )
    )


def _passes_by_use(passes, usage: str | None, status: str | None):
    """Narrowed to passes with uses (or value) remaining or completed, and to a status, where
    "used_up" is an active pass with none left and "active" one with some."""
    # Uses (or, for a value package, value) left: unlimited memberships always have some.
    # (Spelled out both ways: SQL's NOT over the NULL counts of the other kinds would drop rows.)
    left = (
        Q(quantity__isnull=True, face_value_minor__isnull=True)
        | Q(left__gt=0)
        | Q(value_left__gt=0)
    )
    none_left = Q(quantity__isnull=False, left__lte=0) | Q(
        face_value_minor__isnull=False, value_left__lte=0
    )
    has_uses = Q(status=Pass.Status.ACTIVE) & left
    if usage == "remaining":
        passes = passes.filter(has_uses)
    elif usage == "completed":
        passes = passes.filter(~Q(status=Pass.Status.ACTIVE) | none_left)
    if status == "used_up":
        passes = passes.filter(Q(status=Pass.Status.ACTIVE) & none_left)
    elif status == "active":
        passes = passes.filter(has_uses)
    elif status:
        passes = passes.filter(status=status)
    return passes


def _sales_row(p: dict, locations: dict) -> dict:
    """A pass sale's row; a value package shows its value columns (None for the others)."""
    value = p["face_value_minor"] is not None
    p["remaining"] = p["left"]
    return {
        "id": p["pk"],
        "location": locations.get(p["where_id"])
        or ("Online" if p["sold_online"] else "Not recorded"),
        "patient": f"{p['patient__first_name']} {p['patient__last_name']}",
        "pass_name": p["name"],
        "type": KIND_LABELS[p["kind"]],
        "purchase_date": p["purchase_date"],
        "price": p["price_minor"],
        "quantity": p["quantity"],
        "redeemed": p["posted_count"],
        "reserved": p["reserved_count"],
        "forfeited": p["forfeited_count"],
        "remaining": p["left"],
        "status": SALES_STATUSES.get(_sales_status(p), p["status"]),
        "expiry": p["expires_on"] or p["ends_after"],
        "last_used": p["last_used"],
        "outstanding": int(p["outstanding"] or 0),
        "value_held": p["face_value_minor"],
        "value_drawn": p["value_posted_minor"] + p["value_before_import_minor"] if value else None,
        "value_reserved": p["value_reserved_minor"] if value else None,
        "value_forfeited": p["value_forfeited_minor"] if value else None,
        "value_left": p["value_left"] if value else None,
    }


def pass_sales_report(
    *,
    actor,
    start=None,
    end=None,
    location_id=None,
    template_id=None,
    type=None,
    status=None,
    usage=None,
) -> Table:
    """SPEC 10 pass sales: one row per pass bought in the date range (purchase date), deleted
    passes left out. `usage`: remaining (active with uses left) / completed (the rest); `status`
    includes "used_up" (active, no uses left). Lower levels see the passes they sold (sold_by)."""
    staff_id = report_staff_scope(actor)
    period = period_from(start, end)
    location_id, template_id = _id(location_id, "location_id"), _id(template_id, "template_id")
    kind = _choice(type, "type", list(KIND_LABELS))
    status = _choice(status, "status", list(SALES_STATUSES))
    usage = _choice(usage, "usage", list(USAGE_FILTERS))

    passes = _narrow(
        _passes_sold(period),
        sold_by_id=staff_id,
        where_id=location_id,
        template_id=template_id,
        kind=kind,
    )
    passes = _passes_by_use(passes, usage, status)
    locations = dict(_location_names())
    rows = [
        _sales_row(p, locations)
        for p in passes.order_by("purchase_date", "pk").values(*SALES_FIELDS)
    ]
    notes = list(SALES_NOTES)
    if staff_id is not None:
        notes.insert(0, "Only the passes you sold are shown.")
    return Table(
        title="Pass sales",
        columns=SALES_COLUMNS,
        rows=rows,
        notes=notes,
        filters=_plain(
            {
                "start": period.start,
                "end": period.end,
                "location_id": location_id,
                "template_id": template_id,
                "type": kind,
                "status": status,
                "usage": usage,
            }
        ),
    )


# ---------------------------------------------------------------- pass usage

USAGE_COLUMNS = [
    Column("service_date", "Service date", DATE),
    Column("type", "Pass type"),
    Column("pass_name", "Pass name"),
    Column("patient", "Patient"),
    Column("redeemed_for", "Redeemed for"),
    Column("staff", "Staff member"),
    Column("invoice", "Invoice number", TEXT),
    Column("original", "Original value", MONEY, total=True),
    Column("discount", "Discount", MONEY, total=True),
    Column("covered", "Covered value", MONEY, total=True),
]


# What a use's row is made from (by position in _usage_row).
USAGE_FIELDS = (
    "visit_date",
    "sold_pass__kind",
    "sold_pass__name",
    "patient__first_name",
    "patient__last_name",
    "item__treatment__name",
    "item__treatment__price_minor",
    "practitioner__display_name",
    "visit__invoice__number",
    "value_minor",
)


def _usage_row(r: tuple) -> dict:
    """A posted use's row: discount = original (the treatment's price) - covered (its value)."""
    original, covered = r[6], r[9]
    return {
        "service_date": r[0],
        "type": KIND_LABELS[r[1]],
        "pass_name": r[2],
        "patient": f"{r[3]} {r[4]}",
        "redeemed_for": r[5],
        "staff": r[7] or "",
        "invoice": "" if r[8] is None else str(r[8]),
        "original": original,
        "discount": original - covered,
        "covered": covered,
    }


def pass_usage_report(
    *, actor, start=None, end=None, location_id=None, staff_id=None, template_id=None, type=None
) -> Table:
    """SPEC 10 pass usage: posted redemptions whose service date is in the range. Original value =
    the treatment's price; covered value = the pass value recognised for the visit; discount =
    original − covered. One query (the Redemption(status, visit_date) index, joins for the names).
    Lower levels see only visits where they were the staff member."""
    own = report_staff_scope(actor)
    period = period_from(start, end)
    location_id, template_id = _id(location_id, "location_id"), _id(template_id, "template_id")
    staff_id = _id(staff_id, "staff_id")
    kind = _choice(type, "type", list(KIND_LABELS))
    uses = Redemption.objects.filter(
        status=Redemption.Status.POSTED, visit_date__gte=period.start, visit_date__lte=period.end
    )
    if own is not None:
        uses = uses.filter(practitioner_id=own)
    uses = _narrow(
        uses,
        practitioner_id=staff_id,
        visit__appointment__location_id=location_id,
        sold_pass__template_id=template_id,
        sold_pass__kind=kind,
    )
    rows = [_usage_row(r) for r in uses.order_by("visit_date", "pk").values_list(*USAGE_FIELDS)]
    notes = [
        (
            "Covered value is the pass value recognised for the visit (a package's price ÷ uses); "
            "a membership's fee is recognised day by day over its cycle, so its visits show 0 "
            "here."
        )
    ]
    if own is not None:
        notes.insert(0, "Only visits where you were the staff member are shown.")
    return Table(
        title="Pass usage",
        columns=USAGE_COLUMNS,
        rows=rows,
        notes=notes,
        filters=_plain(
            {
                "start": period.start,
                "end": period.end,
                "location_id": location_id,
                "staff_id": staff_id,
                "template_id": template_id,
                "type": kind,
            }
        ),
    )


def redemptions_per_week(table: Table) -> list[tuple[str, int]]:
    """(Monday of the week, redemptions) for the usage chart, weeks without any included."""
    counts: dict[dt.date, int] = defaultdict(int)
    for row in table.rows:
        day = row["service_date"]
        counts[day - dt.timedelta(days=day.weekday())] += 1
    if not counts:
        return []
    week, last, out = min(counts), max(counts), []
    while week <= last:
        out.append((week.isoformat(), counts.get(week, 0)))
        week += dt.timedelta(days=7)
    return out


# ---------------------------------------------------------------- deferred revenue roll-forward

ACCOUNT_KIND = {
    accounts.DEFERRED_PACKAGES: Kind.PACKAGE,
    accounts.DEFERRED_MEMBERSHIPS: Kind.MEMBERSHIP,
    # Breakage recognised ahead (issue 23, passes/redeeming/breakage.py):
    # a contra account, read with packages.
    accounts.EXPECTED_BREAKAGE: Kind.PACKAGE,
}
# On the contra account: a redemption's share is "breakage expected"; its settling when a package
# ends is a correction of the breakage at expiry.
CONTRA_MOVEMENTS = {
    "pass_redeemed": ("breakage_expected", 1),
    "pass_redemption_undone": ("breakage_expected", 1),
    "pass_breakage_settled": ("expired", 1),
}
# Journal transaction kind -> (movement, sign applied to the posting amount so the
# movement reads positive).
MOVEMENTS = {
    "invoice_issued": ("sold", -1),
    "invoice_deleted": ("sold", -1),
    "pass_redeemed": ("redeemed", 1),
    "pass_redemption_undone": ("redeemed", 1),
    "membership_recognised": ("redeemed", 1),
    "membership_recognition_reversed": ("redeemed", 1),
    "pass_taken_back": ("refunded", 1),
    "pass_expired": ("expired", 1),
    "pass_refund_kept": ("expired", 1),
    "pass_transferred": ("transferred", -1),
    # Brought in from the clinic's previous system (carnet.imports), and such an import undone.
    "opening_balance": ("imported", -1),
    "opening_balance_undone": ("imported", -1),
}
# closing = opening + imported + sold - redeemed - breakage expected - refunded -
# expired + transferred
EFFECT = {
    "imported": 1,
    "sold": 1,
    "redeemed": -1,
    "breakage_expected": -1,
    "refunded": -1,
    "expired": -1,
    "transferred": 1,
}
# The movements, in the order the report shows them.
MOVES = ["imported", "sold", "redeemed", "breakage_expected", "refunded", "expired", "transferred"]
SHOWN_WHEN_USED = ("imported", "transferred")
UNTRACED = "(not traced to a pass)"


@dataclass
class RollForward:
    period: Period
    table: Table  # per pass type and template
    types: Table  # per pass type, with the ledger balance at the period end
    mismatches: list[str] = field(default_factory=list)
    unclassified: dict = field(default_factory=dict)  # kind -> net amount (liability direction)
    liability: list[tuple[str, int]] = field(
        default_factory=list
    )  # (date, closing of both accounts)

    @property
    def ties_out(self) -> bool:
        return not self.mismatches

    def as_json(self) -> dict:
        return {
            "period": {"start": self.period.start.isoformat(), "end": self.period.end.isoformat()},
            "by_template": self.table.as_json(),
            "by_type": self.types.as_json(),
            "ties_out": self.ties_out,
            "mismatches": self.mismatches,
            "unclassified": self.unclassified,
            "liability": [{"date": d, "balance_minor": v} for d, v in self.liability],
        }


def _bounds(period: Period, zone: str) -> tuple[dt.datetime, dt.datetime]:
    """[start of the first day, start of the day after the last) in the clinic's time zone."""
    tz = ZoneInfo(zone)
    return (
        dt.datetime.combine(period.start, dt.time.min, tz),
        dt.datetime.combine(period.end + dt.timedelta(days=1), dt.time.min, tz),
    )


def _template_of_source():
    """The pass template a deferred-revenue posting came from,
    traced through its source document."""
    source = Cast(OuterRef("transaction__source_id"), BigIntegerField())
    by = {
        "passes.redemption": Redemption.objects.filter(pk=source).values("sold_pass__template_id"),
        "passes.pass": Pass.objects.filter(pk=source).values("template_id"),
        "passes.passtemplate": PassTemplate.objects.filter(pk=source).values("pk"),
        "passes.passinvoice": PassInvoice.objects.filter(pk=source).values(
            "sold_pass__template_id"
        ),
        "billing.invoice": PassInvoice.objects.filter(invoice_id=source).values(
            "sold_pass__template_id"
        ),
    }
    return Case(
        *[
            When(transaction__source_type=label, then=Subquery(query[:1]))
            for label, query in by.items()
        ],
        default=None,
        output_field=BigIntegerField(),
    )


def _money_columns(names: list[str]) -> list[Column]:
    return [Column(n, n.replace("_", " ").capitalize(), MONEY, total=True) for n in names]


def deferred_revenue_rollforward(
    *, actor, start=None, end=None, type=None, template_id=None
) -> RollForward:
    """SPEC 9.8: per pass type and template, opening balance, sold, redeemed (recognised), refunded,
    expired (breakage) and closing, read from the ledger's postings on the two deferred revenue
    accounts and classified by journal transaction kind. The closing balance of each type must
    equal the ledger's balance at the end of the period (clinic time zone); any difference, or a
    posting of a kind this report does not know, is listed in `mismatches`."""
    require(actor, Action.REPORTS_CLINIC)
    period = period_from(start, end)
    kind = _choice(type, "type", list(KIND_LABELS))
    template_id = _id(template_id, "template_id")
    clinic = clinic_get()
    start_dt, end_dt = _bounds(period, clinic.time_zone)
    codes = [code for code, k in ACCOUNT_KIND.items() if kind is None or k == kind]
    cells, unclassified = _rollforward_cells(codes, start_dt, end_dt, template_id)
    shown = [m for m in MOVES if m not in SHOWN_WHEN_USED or any(c[m] for c in cells.values())]
    filters = _plain(
        {"start": period.start, "end": period.end, "type": kind, "template_id": template_id}
    )
    by_type = _rollforward_types(cells, codes, end_dt)
    type_rows = [row for _, row in by_type]
    mismatches = [] if template_id else _ledger_mismatches(by_type, period, clinic)
    mismatches += [
        f"Postings of kind “{name}” ({clinic.money(amount)} in the period) are not classified "
        "by this report."
        for name, amount in sorted(unclassified.items())
    ]
    liability = (
        []
        if template_id
        else _liability_over_time(
            codes, period, start_dt, end_dt, clinic.time_zone, sum(r["opening"] for r in type_rows)
        )
    )
    return RollForward(
        period=period,
        table=_rollforward_table(cells, shown, filters),
        types=_rollforward_types_table(type_rows, shown, filters, template_id),
        mismatches=mismatches,
        unclassified=dict(unclassified),
        liability=liability,
    )


def _rollforward_cells(codes, start_dt, end_dt, template_id) -> tuple[dict, dict[str, int]]:
    """(pass kind, template id) -> opening and each movement; and the net of postings whose
    journal transaction kind the report does not classify, by kind."""
    grouped = (
        Posting.objects.filter(account__code__in=codes, transaction__at__lt=end_dt)
        .annotate(
            tpl=_template_of_source(),
            before=Case(
                When(transaction__at__lt=start_dt, then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            ),
        )
        .values("account__code", "transaction__kind", "tpl", "before")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    cells: dict[tuple[str, int | None], dict] = defaultdict(
        lambda: dict.fromkeys(["opening", *MOVES], 0)
    )
    unclassified: dict[str, int] = defaultdict(int)
    for g in grouped:
        if template_id and g["tpl"] != template_id:
            continue
        amount, key = int(g["total"]), (ACCOUNT_KIND[g["account__code"]], g["tpl"])
        if g["before"]:
            cells[key]["opening"] -= amount  # a liability: credits - debits
            continue
        move = (
            CONTRA_MOVEMENTS if g["account__code"] == accounts.EXPECTED_BREAKAGE else MOVEMENTS
        ).get(g["transaction__kind"])
        if move is None:
            unclassified[g["transaction__kind"]] -= amount
            cells[key]  # the row still shows
            continue
        cells[key][move[0]] += move[1] * amount
    return cells, unclassified


def _closing(c: dict) -> int:
    return c["opening"] + sum(EFFECT[m] * c[m] for m in MOVES)


def _rollforward_table(cells: dict, shown: list[str], filters: dict) -> Table:
    """One row per pass type and template."""
    names = dict(
        PassTemplate.objects.filter(pk__in=[t for _, t in cells if t]).values_list("pk", "name")
    )
    rows = [
        {
            "type": KIND_LABELS[k],
            "template": names.get(tpl, UNTRACED) if tpl else UNTRACED,
            "template_id": tpl,
            **c,
            "closing": _closing(c),
        }
        for (k, tpl), c in sorted(
            cells.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, names.get(kv[0][1], ""))
        )
    ]
    table = Table(
        title="Deferred revenue roll-forward",
        filters=filters,
        rows=rows,
        columns=[
            Column("type", "Pass type"),
            Column("template", "Template"),
            *_money_columns(["opening", *shown]),
            *_money_columns(["closing"]),
        ],
    )
    table.notes = list(ROLLFORWARD_NOTES)
    return table


ROLLFORWARD_NOTES = [
    (
        "Read from the ledger's deferred revenue accounts, by journal transaction: "
        "imported = opening balances brought in from the clinic's previous system (net of "
        "imports undone); sold = sale invoices net of deleted ones; redeemed = package uses "
        "(net of un-arrivals) and membership fees earned; breakage expected = breakage "
        "recognised in proportion to redemptions (ASC 606-10-55-48, for packages sold under "
        "that method; net of catch-ups and un-arrivals); refunded = value taken back from "
        "refunded passes and cycles; expired = breakage at expiry (and value kept on a "
        "refund), less the breakage expected of packages that ended. "
        "Packages' deferred revenue is read net of the expected-breakage contra account."
    ),
    (
        "Membership fees earned by the daily job are posted once per membership template, "
        "so they show under their template."
    ),
]


def _rollforward_types(cells: dict, codes: list[str], end_dt) -> list[tuple[str, dict]]:
    """Per pass type, its (first) ledger account and its row: the templates' sums, and the ledger's
    balance at the period's end."""
    out = []
    end_instant = end_dt - dt.timedelta(microseconds=1)
    for k in dict.fromkeys(ACCOUNT_KIND[code] for code in codes):
        total = dict.fromkeys(["opening", *MOVES], 0)
        for (kk, _), c in cells.items():
            if kk == k:
                for m in total:
                    total[m] += c[m]
        own = [code for code in codes if ACCOUNT_KIND[code] == k]
        # Liabilities read credits - debits; the contra account (an asset) the other way round.
        in_ledger = sum(
            balance(code, as_of=end_instant) * (-1 if code == accounts.EXPECTED_BREAKAGE else 1)
            for code in own
        )
        computed = _closing(total)
        row = {
            "type": KIND_LABELS[k],
            **total,
            "closing": computed,
            "ledger": in_ledger,
            "difference": computed - in_ledger,
        }
        out.append((own[0], row))
    return out


def _ledger_mismatches(by_type: list[tuple[str, dict]], period: Period, clinic) -> list[str]:
    """Each pass type whose roll-forward does not close at the ledger's balance."""
    return [
        f"{row['type']}s: the roll-forward closes at {clinic.money(row['closing'])} but the "
        f"ledger's {accounts.describe(code)[1]} balance on {period.end:%Y-%m-%d} is "
        f"{clinic.money(row['ledger'])} (difference {clinic.money(row['difference'])})."
        for code, row in by_type
        if row["difference"]
    ]


def _rollforward_types_table(type_rows, shown, filters, template_id) -> Table:
    types = Table(
        title="Deferred revenue by pass type",
        filters=filters,
        rows=type_rows,
        columns=[
            Column("type", "Pass type"),
            *_money_columns(["opening", *shown]),
            *_money_columns(["closing"]),
            Column("ledger", "Ledger balance at period end", MONEY, True),
            Column("difference", "Difference", MONEY, True),
        ],
    )
    if template_id:
        types.notes = [
            "Filtered to one template: the tie-out to the ledger is checked on the unfiltered "
            "report."
        ]
    return types


def _liability_over_time(
    codes, period: Period, start_dt, end_dt, zone: str, opening: int
) -> list[tuple[str, int]]:
    """The deferred revenue balance at the end of each day (at most ~60 points:
    later days sampled)."""
    daily = dict(
        Posting.objects.filter(
            account__code__in=codes, transaction__at__gte=start_dt, transaction__at__lt=end_dt
        )
        .annotate(day=TruncDate("transaction__at", tzinfo=ZoneInfo(zone)))
        .values("day")
        .annotate(total=Sum("amount"))
        .order_by()
        .values_list("day", "total")
    )
    step = max(1, period.days // 60)
    running, out, day = opening, [], period.start
    while day <= period.end:
        running -= int(daily.get(day) or 0)
        if (day - period.start).days % step == 0 or day == period.end:
            out.append((day.isoformat(), running))
        day += dt.timedelta(days=1)
    return out


# ---------------------------------------------------------------- for the filter forms


def _location_names():

    return Location.objects.order_by("name").values_list("pk", "name")


def filter_choices() -> dict:
    """Lists for the filter forms: locations, templates, staff who can be on a visit."""

    return {
        "locations": list(_location_names()),
        "templates": list(
            PassTemplate.objects.order_by("kind", "name").values_list("pk", "name", "kind")
        ),
        "staff": list(
            StaffMember.objects.filter(is_practitioner=True)
            .order_by("display_name")
            .values_list("pk", "display_name")
        ),
        "types": list(KIND_LABELS.items()),
        "statuses": list(SALES_STATUSES.items()),
        "usages": list(USAGE_FILTERS.items()),
    }
