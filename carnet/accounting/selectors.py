"""Reading the ledger for the accountant (SPEC 15): trial balance, general ledger and the period's
journals, over days in the clinic's time zone. Amounts are signed minor units, + debit, - credit."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.db.models import Q, Sum

from carnet.clinic.selectors import clinic_get
from carnet.core.bulk import chunks
from carnet.ledger.models import Account, JournalTransaction, Posting

from .models import JournalExport


def period_bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start of `start`, start of the day after `end`) in the clinic's time zone."""
    zone = ZoneInfo(clinic_get().time_zone)
    return (
        dt.datetime.combine(start, dt.time.min, zone),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, zone),
    )


def _names() -> dict[str, tuple[str, str]]:
    return {a.code: (a.name, a.type) for a in Account.objects.all()}


def trial_balance(*, start: dt.date, end: dt.date) -> list[dict]:
    """Per account with postings up to the period's end: opening, debits, credits and closing
    (signed: + is a debit balance). Debits and credits count each posting in the period, patients'
    sub-ledgers summed into their account."""
    since, until = period_bounds(start, end)
    rows = (
        Posting.objects.filter(transaction__at__lt=until)
        .values("account__code")
        .order_by("account__code")
        .annotate(
            opening=Sum("amount", filter=Q(transaction__at__lt=since)),
            debits=Sum("amount", filter=Q(transaction__at__gte=since, amount__gt=0)),
            credits=Sum("amount", filter=Q(transaction__at__gte=since, amount__lt=0)),
        )
    )
    names = _names()
    out = []
    for r in rows:
        opening, debits, credits = (
            int(r["opening"] or 0),
            int(r["debits"] or 0),
            -int(r["credits"] or 0),
        )
        name, kind = names.get(r["account__code"], (r["account__code"], ""))
        out.append(
            {
                "code": r["account__code"],
                "account": name,
                "type": kind,
                "opening": opening,
                "debits": debits,
                "credits": credits,
                "closing": opening + debits - credits,
            }
        )
    return out


def general_ledger(
    *, start: dt.date, end: dt.date, account: str | None = None, limit: int = 20000
) -> list[dict]:
    """Every posting of the period (of one account, if given), account by account in time order,
    with each account's running balance from its opening."""
    since, until = period_bounds(start, end)
    postings = Posting.objects.filter(transaction__at__gte=since, transaction__at__lt=until)
    openings = Posting.objects.filter(transaction__at__lt=since)
    if account:
        postings, openings = (
            postings.filter(account__code=account),
            openings.filter(account__code=account),
        )
    running = {
        r["account__code"]: int(r["total"])
        for r in openings.values("account__code").order_by().annotate(total=Sum("amount"))
    }
    names = _names()
    zone = ZoneInfo(clinic_get().time_zone)
    out = []
    for p in postings.select_related("transaction", "account").order_by(
        "account__code", "transaction__at", "transaction_id", "pk"
    )[:limit]:
        code = p.account.code
        running[code] = running.get(code, 0) + p.amount
        t = p.transaction
        out.append(
            {
                "account": names.get(code, (code, ""))[0],
                "code": code,
                "date": t.at.astimezone(zone).date(),
                "transaction": t.pk,
                "kind": t.kind,
                "memo": t.memo,
                "patient": p.patient_id,
                "debit": p.debit,
                "credit": p.credit,
                "balance": running[code],
            }
        )
    return out


@dataclass
class Journal:
    number: str
    date: dt.date
    narration: str
    lines: list[tuple[str, int]] = field(
        default_factory=list
    )  # (account code, signed amount), never 0

    @property
    def debits(self) -> int:
        return sum(a for _, a in self.lines if a > 0)


@dataclass
class PeriodJournals:
    journals: list[Journal]
    txn_count: int
    last_txn_id: int
    accounts: set[str]  # every account posted to in the period, even where it nets to 0

    def net_by_account(self) -> dict[str, int]:
        """Account -> the period's net movement (debits - credits);
        accounts netting to 0 left out."""
        net: dict[str, int] = defaultdict(int)
        for j in self.journals:
            for code, amount in j.lines:
                net[code] += amount
        return {code: amount for code, amount in net.items() if amount}


def period_journals(*, start: dt.date, end: dt.date, detailed: bool = False) -> PeriodJournals:
    """The period as balanced journals: by default one per day with one line per account (the day's
    net), or, detailed, one per journal transaction. A line that nets to 0 is left out, and so is a
    journal left with no lines (e.g. a transfer between two passes)."""
    since, until = period_bounds(start, end)
    zone = ZoneInfo(clinic_get().time_zone)
    per_txn = (
        Posting.objects.filter(transaction__at__gte=since, transaction__at__lt=until)
        .values("transaction_id", "transaction__at", "account__code")
        .order_by()
        .annotate(total=Sum("amount"))
    )
    grouped: dict[object, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    days: dict[object, dt.date] = {}
    txns, used = set(), set()
    for row in per_txn:
        day = row["transaction__at"].astimezone(zone).date()
        key = row["transaction_id"] if detailed else day
        grouped[key][row["account__code"]] += int(row["total"])
        days[key] = day
        txns.add(row["transaction_id"])
        used.add(row["account__code"])
    memos = {}
    if detailed:
        for chunk in chunks(sorted(txns)):
            memos.update(
                {
                    t.pk: f"{t.kind.replace('_', ' ')}: {t.memo}".strip(": ")
                    for t in JournalTransaction.objects.filter(pk__in=chunk).only(
                        "pk", "kind", "memo"
                    )
                }
            )
    journals = []
    for key in sorted(grouped, key=lambda k: (days[k], k if detailed else 0)):
        lines = sorted(
            ((code, amount) for code, amount in grouped[key].items() if amount),
            key=lambda x: (x[1] < 0, x[0]),
        )  # debits first, as a bookkeeper writes them
        if not lines:
            continue
        day = days[key]
        if detailed:
            journals.append(
                Journal(f"C{key}", day, f"Carnet #{key} {memos.get(key, '')}"[:200].strip(), lines)
            )
        else:
            journals.append(
                Journal(f"C{day:%Y%m%d}", day, f"Carnet daily summary {day:%Y-%m-%d}", lines)
            )
    return PeriodJournals(journals, len(txns), max(txns, default=0), used)


def exports_overlapping(*, start: dt.date, end: dt.date) -> list[JournalExport]:
    return list(
        JournalExport.objects.filter(start__lte=end, end__gte=start).order_by("start", "pk")
    )


def changed_since_export(export: JournalExport) -> list[JournalTransaction]:
    """Journal transactions dated in the export's period but recorded after it (a back-dated
    payment, a correction): the accountant must bring them over by hand or export again."""
    since, until = period_bounds(export.start, export.end)
    return list(
        JournalTransaction.objects.filter(
            at__gte=since, at__lt=until, pk__gt=export.last_txn_id
        ).order_by("at", "pk")
    )
