"""Writes for closing the month (SPEC 15): the account mapping, and journal exports recorded as
batches. An export is refused until every account with postings in the period is mapped, warns
(refuses unless confirmed) when its period overlaps an earlier export, and checks that every
journal balances and that the files' totals tie to the period's trial balance."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from django.db import transaction

from carnet.clinic.selectors import clinic_get
from carnet.core import activity, clock
from carnet.core.errors import CarnetError, Conflict, ValidationFailed
from carnet.core.money import exponent
from carnet.core.permissions import Action, require
from carnet.core.spreadsheet import FORMULA_STARTS
from carnet.ledger.models import Account

from . import formats
from .models import AccountMapping, JournalExport
from .selectors import exports_overlapping, period_journals, trial_balance

MAX_DAYS = 366


class ExportDoesNotTie(CarnetError):
    """The journals do not balance or do not match the trial balance: a bug,
    never the user's doing."""

    status = 500
    code = "export_does_not_tie"


def _clean(value: str, what: str, max_length: int) -> str:
    value = (value or "").strip()
    if len(value) > max_length:
        raise ValidationFailed(
            f"The {what} is at most {max_length} characters.", fields={what: ["Too long."]}
        )
    if value.startswith(FORMULA_STARTS) or any(c in value for c in '\t\r\n"'):
        raise ValidationFailed(
            f"The {what} “{value}” cannot start with = + - @ or hold tabs, line breaks or "
            "double quotes; write it as your accounting software shows it.",
            fields={what: ["Not allowed."]},
        )
    return value


@transaction.atomic
def account_mapping_set(
    *, actor, account_code: str, name: str = "", code: str = "", tax_rate: str = ""
) -> AccountMapping:
    """Map a Carnet account to the clinic's account: `name` for QuickBooks, `code` for Xero."""
    require(actor, Action.ACCOUNTING_EXPORT)
    account = Account.objects.filter(code=account_code).first()
    if account is None:
        raise ValidationFailed(
            f"“{account_code}” is not an account in Carnet's ledger.", code="unknown_account"
        )
    mapping = AccountMapping.objects.select_for_update(of=("self",)).filter(account=account).first()
    before = activity.snapshot(mapping) if mapping else None
    mapping = mapping or AccountMapping(account=account)
    mapping.name = _clean(name, "account name", 159)
    mapping.code = _clean(code, "account code", 10)
    mapping.tax_rate = _clean(tax_rate, "tax rate", 60)
    mapping.updated_at = clock.now()
    mapping.updated_by = actor if getattr(actor, "is_authenticated", False) else None
    mapping.save()
    activity.record(
        actor=actor,
        verb="mapping changed" if before else "mapping added",
        obj=mapping,
        before=before,
        after=activity.snapshot(mapping),
    )
    return mapping


@dataclass
class Export:
    batch: JournalExport
    files: list[tuple[str, str]]  # (file name, content)


def _period(start: dt.date, end: dt.date) -> None:
    if start > end:
        raise ValidationFailed(
            "The period's start is after its end.", fields={"start": ["After the end."]}
        )
    if (end - start).days >= MAX_DAYS:
        raise ValidationFailed(
            f"Export at most {MAX_DAYS} days at a time.", fields={"end": ["Period too long."]}
        )


def _mapped(fmt: str, used: set[str]) -> dict[str, AccountMapping]:
    mappings = {
        m.account.code: m
        for m in AccountMapping.objects.select_related("account").filter(account__code__in=used)
    }
    field = "code" if fmt == JournalExport.Format.XERO else "name"
    missing = sorted(c for c in used if not getattr(mappings.get(c), field, ""))
    if missing:
        names = dict(Account.objects.filter(code__in=missing).values_list("code", "name"))
        what = "Xero account code" if field == "code" else "QuickBooks account name"
        raise Conflict(
            (
                f"Map every account with postings in the period first: {len(missing)} without a "
                f"{what} ("
            )
            + ", ".join(names.get(c, c) for c in missing[:10])
            + ("…" if len(missing) > 10 else "")
            + "). Use Accounting → Account mapping.",
            code="accounts_not_mapped",
        )
    return mappings


def _tie_out(period, start: dt.date, end: dt.date) -> None:
    for j in period.journals:
        if sum(a for _, a in j.lines):
            raise ExportDoesNotTie(f"Journal {j.number} does not balance.")
    net = period.net_by_account()
    for row in trial_balance(start=start, end=end):
        if net.get(row["code"], 0) != row["debits"] - row["credits"]:
            raise ExportDoesNotTie(
                f"The export's {row['code']} moves {net.get(row['code'], 0)}, the trial balance "
                f"{row['debits'] - row['credits']}."
            )


def _refuse_overlap(start: dt.date, end: dt.date) -> None:
    """Conflict when the period overlaps an export already made (the desk confirms to go ahead)."""
    overlapping = exports_overlapping(start=start, end=end)
    if overlapping:
        raise Conflict(
            "This period overlaps what was already exported: "
            + "; ".join(
                f"#{e.pk} {e.start} to {e.end} ({e.get_format_display()}, {e.created_at:%Y-%m-%d})"
                for e in overlapping[:5]
            )
            + (
                ". Exporting again may book those days twice in your accounting software; "
                "confirm to go ahead."
            ),
            code="overlapping_export",
        )


def _files(fmt: str, period, mappings, start: dt.date, end: dt.date) -> list[tuple[str, str, int]]:
    """(name, text, lines) of each file `fmt` imports."""
    places = exponent(clinic_get().currency)
    stem = f"carnet-journal-{fmt}-{start:%Y-%m-%d}-to-{end:%Y-%m-%d}"
    if fmt == JournalExport.Format.XERO:
        files = formats.xero(
            period.journals,
            codes={c: m.code for c, m in mappings.items()},
            tax_rates={c: m.tax_rate for c, m in mappings.items()},
            places=places,
            stem=stem,
        )
    else:
        write = formats.qbo if fmt == JournalExport.Format.QBO else formats.iif
        files = write(
            period.journals,
            names={c: m.name for c, m in mappings.items()},
            places=places,
            stem=stem,
        )
    return files


@transaction.atomic
def journal_export(
    *,
    actor,
    fmt: str,
    start: dt.date,
    end: dt.date,
    detailed: bool = False,
    allow_overlap: bool = False,
    action: Action | None = Action.ACCOUNTING_EXPORT,
) -> Export:
    """The period's journals as the files `fmt` imports, recorded as an export batch. Writes no file
    itself (the page downloads them, the command saves them). `action=None`: the command line."""
    if action is not None:
        require(actor, action)
    if fmt not in JournalExport.Format.values:
        raise ValidationFailed(
            f"Unknown format “{fmt}”; choose qbo, xero or iif.", fields={"format": ["Unknown."]}
        )
    _period(start, end)
    if not allow_overlap:
        _refuse_overlap(start, end)
    period = period_journals(start=start, end=end, detailed=detailed)
    mappings = _mapped(fmt, period.accounts)
    _tie_out(period, start, end)
    files = _files(fmt, period, mappings, start, end)
    batch = JournalExport.objects.create(
        format=fmt,
        start=start,
        end=end,
        detailed=detailed,
        journals=len(period.journals),
        lines=sum(len(j.lines) for j in period.journals),
        debits_minor=sum(j.debits for j in period.journals),
        txn_count=period.txn_count,
        last_txn_id=period.last_txn_id,
        created_at=clock.now(),
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        files=[
            {"name": name, "sha256": hashlib.sha256(text.encode()).hexdigest(), "lines": n}
            for name, text, n in files
        ],
    )
    activity.record(actor=actor, verb="exported", obj=batch, after=activity.snapshot(batch))
    return Export(batch=batch, files=[(name, text) for name, text, _ in files])
