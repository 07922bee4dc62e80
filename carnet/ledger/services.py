"""Posting to the ledger: the only code that writes Account, JournalTransaction and Posting."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Sum

from carnet.core import atomic, bulk, clock, statements
from carnet.core.errors import CarnetError, Conflict, ValidationFailed
from carnet.core.money import MAX_MINOR

from . import accounts
from .models import Account, BalanceCheckpoint, JournalTransaction, Posting


class LedgerUnbalanced(CarnetError):
    """Lines that cannot be posted: empty, unbalanced, or a malformed line.

    Always a bug in the calling service, never something a user did, hence 500.
    """

    status = 500
    code = "ledger_unbalanced"


class AlreadyReversed(Conflict):
    code = "ledger_already_reversed"


class LiabilityOverdrawn(Conflict):
    """A posting would take a liability (patient credit, gift cards, deferred revenue, tax) below
    zero: refused like TigerBeetle's debits_must_not_exceed_credits. The services' own checks and
    row locks come first; this is the backstop, so nothing is recorded when one of them is wrong."""

    code = "ledger_liability_negative"


@dataclass(frozen=True)
class Line:
    """One side of a journal entry. Exactly one of debit/credit is > 0 (plain ints).

    A line with both at 0 is allowed here and dropped by transaction_post, so callers can
    pass e.g. a zero tax line without a special case.
    """

    account: str
    debit: int = 0
    credit: int = 0
    patient_id: int | None = None


_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _refuse(line: Line, why: str):
    raise LedgerUnbalanced(f"Cannot post {line!r}: {why}.")


def _checked(lines: Iterable[Line]) -> list[Line]:
    """The lines worth posting (zero lines dropped), or LedgerUnbalanced."""
    kept = []
    for line in lines:
        if not isinstance(line, Line):
            raise LedgerUnbalanced(f"Cannot post {line!r}: not a ledger Line.")
        # type() rather than isinstance(): bool is an int subclass and True is not a cent.
        if type(line.debit) is not int or type(line.credit) is not int:
            _refuse(line, "amounts must be integer minor units")
        if line.debit < 0 or line.credit < 0:
            _refuse(line, "amounts cannot be negative")
        if line.debit and line.credit:
            _refuse(line, "a line is either a debit or a credit")
        if max(line.debit, line.credit) > MAX_MINOR:
            _refuse(line, "amount too large")
        if line.debit == line.credit == 0:
            continue
        try:
            accounts.describe(line.account)
        except ValueError as exc:
            _refuse(line, str(exc))
        if line.patient_id is not None and (
            type(line.patient_id) is not int or line.patient_id <= 0
        ):
            _refuse(line, "patient_id must be a positive integer")
        if line.account in accounts.PER_PATIENT and line.patient_id is None:
            _refuse(line, f"{line.account} is kept per patient; give patient_id")
        kept.append(line)
    if not kept:
        raise LedgerUnbalanced("Cannot post an empty journal transaction.")
    debits, credits = sum(x.debit for x in kept), sum(x.credit for x in kept)
    if debits != credits:
        raise LedgerUnbalanced(
            f"Journal transaction does not balance: debits {debits} != credits {credits}."
        )
    return kept


def _source_key(source) -> tuple[str, str]:
    if source is None:
        return "", ""
    if getattr(source, "pk", None) is None:
        raise ValueError("A ledger source must be a saved model instance")
    return source._meta.label_lower, str(source.pk)


def _by_codes(n: int):
    """The accounts of `n` codes, compiled (core.statements): every posting reads them."""
    slots = {f"c{i}": str for i in range(n)}
    return statements.select(
        lambda **codes: Account.objects.filter(code__in=[*codes.values()]), **slots
    )


_BY_CODES = [_by_codes(n) for n in range(1, 5)]


def _accounts(codes: set[str]) -> dict[str, Account]:
    """Code -> Account in one query; an account's first use creates it (get_or_create survives two
    first uses racing on the unique code)."""
    ordered = sorted(codes)
    if 0 < len(ordered) <= len(_BY_CODES):
        rows = _BY_CODES[len(ordered) - 1].all(**{f"c{n}": c for n, c in enumerate(ordered)})
    else:
        rows = Account.objects.filter(code__in=codes)
    found = {a.code: a for a in rows}
    for code in sorted(codes - found.keys()):
        account_type, name = accounts.describe(code)
        found[code], _ = Account.objects.get_or_create(
            code=code, defaults={"type": account_type, "name": name}
        )
    return found


def _unsaved(
    *, lines, kind, source_type, source_id, memo, at, reverses=None
) -> tuple[JournalTransaction, list[Line]]:
    kept = _checked(lines)
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"kind must be a short lower_case word, got {kind!r}")
    at = at or clock.now()
    if at.tzinfo is None:
        raise ValueError("A ledger transaction needs an aware datetime")
    return JournalTransaction(
        at=at, kind=kind, source_type=source_type, source_id=source_id, memo=memo, reverses=reverses
    ), kept


def _write(entries: list[tuple[JournalTransaction, list[Line]]]) -> list[JournalTransaction]:
    """Insert checked transactions and their postings, and guard the debited liabilities: three
    statements however many there are; on PostgreSQL one, for one transaction, whose insert also
    inserts its postings and reads the guard (two for several); and one more at an account's
    first use."""
    big = sum(len(kept) for _, kept in entries) >= bulk.COPY_FROM
    checks = _guard_checks(
        {
            (x.account, x.patient_id)
            for _, kept in entries
            for x in kept
            if x.debit and accounts.describe(x.account)[0] == accounts.LIABILITY
        }
    )
    if len(entries) == 1 and not big and connection.vendor == "postgresql":
        txn = _posted_whole(*entries[0], checks)
        if txn is not None:
            return [txn]
    # COPY (bulk.insert_rows, the billing job's batches) needs the accounts' ids first.
    by_code = _accounts({x.account for _, kept in entries for x in kept}) if big else None
    txns = bulk.insert(JournalTransaction, [txn for txn, _ in entries])
    numbered = [(txn.pk, *row) for txn, (_, kept) in zip(txns, entries) for row in _rows(kept)]
    if big:
        _postings_insert(numbered, by_code)
    elif _postings_by_code(numbered, checks):
        return txns  # the guard was read with the insert
    _liabilities_guard(checks)
    return txns


def _posted_whole(
    txn: JournalTransaction, kept: list[Line], checks: list[tuple[str, int | None]]
) -> JournalTransaction | None:
    """PostgreSQL: one transaction, its postings and the guard's read in one statement — the
    transaction's own insert (compiled, core.statements) in a WITH, then its postings' insert by
    account code (`_postings_by_code`'s) numbered from it. None, nothing sent, before that insert
    is compiled (the process's first transaction goes the usual way)."""
    inserter = statements.inserter(JournalTransaction)
    unsent = inserter.unsent([txn], connection)
    if unsent is None:
        return None
    rows = [(None, *row) for row in _rows(kept)]  # the transaction's id: from the WITH
    sql, params = _postings_guarded_sql(len(rows), checks, txn_sql=unsent[0])
    with connection.cursor() as cursor:
        cursor.execute(sql, unsent[1] + [v for row in rows for v in row] + params)
        found = cursor.fetchone()
    width = len(inserter.returning)
    inserter.returned([txn], [found[:width]], connection)
    inserted, totals = found[width], found[width + 1 :]
    if len(inserted) == len(rows):
        _guard_refuse(checks, totals)
        return txn
    _first_uses_follow([(txn.pk, *r[1:]) for r in rows], inserted)
    _liabilities_guard(checks)
    return txn


def _rows(kept: list[Line]) -> list[tuple]:
    return [(x.account, x.patient_id, x.debit - x.credit) for x in kept]


def _postings_insert(rows: list[tuple], by_code: dict[str, Account]) -> None:
    """Postings (transaction id, account code, patient id, amount) with their accounts' ids."""
    bulk.insert_rows(
        Posting,
        (
            {"transaction_id": txn, "account_id": by_code[code].pk, "patient_id": p, "amount": a}
            for txn, code, p, a in rows
        ),
    )


_ROW_SQL = "(CAST(%s AS bigint), %s, CAST(%s AS bigint), CAST(%s AS bigint))"


@functools.cache
def _postings_by_code_sql(vendor: str, n: int, returning: str, numbered: bool = True) -> str:
    """INSERT … SELECT joining each row's account code to its id: the accounts are found by the
    insert itself rather than read first (one statement fewer per posting, issue 25). A row whose
    account does not exist yet is not inserted; RETURNING says which were. Made once per database
    kind, number of rows and what is returned. Not `numbered`: the rows' transaction is the one
    the statement's WITH inserted (`txn`), not their first value."""
    qn = connection.ops.quote_name
    meta, account = Posting._meta, Account._meta
    columns = ", ".join(
        qn(meta.get_field(name).column)
        for name in ("transaction", "account", "patient_id", "amount")
    )
    txn = "v.column1" if numbered else f"txn.{qn(JournalTransaction._meta.pk.column)}"
    return (
        f"INSERT INTO {qn(meta.db_table)} ({columns}) "
        f"SELECT {txn}, a.{qn(account.pk.column)}, v.column3, v.column4 "
        f"FROM {'' if numbered else 'txn CROSS JOIN '}(VALUES {', '.join([_ROW_SQL] * n)}) AS v "
        f"JOIN {qn(account.db_table)} a ON a.{qn(account.get_field('code').column)} = v.column2 "
        f"RETURNING {returning}"
    )


def _postings_guarded_sql(
    n: int, checks: list[tuple[str, int | None]], *, txn_sql: str | None = None
) -> tuple[str, list]:
    """PostgreSQL: the insert in a WITH, and the guard's sums in the same statement. Its SELECT
    sees the table as it was before the insert (one snapshot), so each check adds the inserted
    rows' own amounts (`ins`). With `txn_sql` (the transaction's INSERT … RETURNING), that insert
    comes first in the WITH, and the statement returns its RETURNING's values before the rest."""
    insert = _postings_by_code_sql(
        "postgresql", n, "account_id, patient_id, amount", numbered=txn_sql is None
    )
    sums, params = _guard_sql(checks, inserted=True) if checks else ("", [])
    found = f"ARRAY(SELECT account_id FROM ins){', ' if sums else ''}{sums}"
    if txn_sql is None:
        return f"WITH ins AS ({insert}) SELECT {found}", params
    return f"WITH txn AS ({txn_sql}), ins AS ({insert}) SELECT txn.*, {found} FROM txn", params


def _postings_by_code(rows: list[tuple], checks: list[tuple[str, int | None]]) -> bool:
    """Postings (transaction id, account code, patient id, amount) in one statement; an account's
    first use creates it (`_accounts`) and its rows follow in a second. On PostgreSQL the guard's
    `checks` are read in the same statement: True when they were (and passed)."""
    if not rows:  # nothing to post (a batch of no transactions)
        return False
    values = [v for row in rows for v in row]
    guarded = connection.vendor == "postgresql" and bool(checks)
    with connection.cursor() as cursor:
        if guarded:
            sql, params = _postings_guarded_sql(len(rows), checks)
            cursor.execute(sql, values + params)
            inserted, *totals = cursor.fetchone()
        else:
            cursor.execute(
                _postings_by_code_sql(connection.vendor, len(rows), "account_id"), values
            )
            inserted = [account_id for (account_id,) in cursor.fetchall()]
    if len(inserted) == len(rows):
        if guarded:
            _guard_refuse(checks, totals)
        return guarded
    _first_uses_follow(rows, inserted)
    return False  # the guard reads again, with the rows that followed


def _first_uses_follow(rows: list[tuple], inserted: list[int]) -> None:
    """An account's first use: the rows (transaction id, account code, patient id, amount) the
    insert by code left out — no account to join, `inserted` holds the ids of those it found —
    go in once `_accounts` has made their accounts."""
    by_code, went_in = _accounts({code for _, code, _, _ in rows}), set(inserted)
    _postings_insert([r for r in rows if by_code[r[1]].pk not in went_in], by_code)


# A patient's own postings on a per-patient account; a clinic-wide account's
# checkpoint and postings since. The account by its code (the postings were inserted by code).
_ACCOUNT_SQL = "(SELECT id FROM ledger_account WHERE code = %s)"
_PER_PATIENT_SQL = (
    f"(SELECT COALESCE(SUM(amount), 0) FROM ledger_posting WHERE account_id = {_ACCOUNT_SQL} "
    "AND patient_id = %s)"
)
_CLINIC_WIDE_SQL = (
    "(SELECT COALESCE(MAX(amount), 0) FROM ledger_balancecheckpoint WHERE account_id = "
    f"{_ACCOUNT_SQL}) + (SELECT COALESCE(SUM(amount), 0) FROM ledger_posting WHERE account_id = "
    f"{_ACCOUNT_SQL} AND id > COALESCE((SELECT MAX(through_posting_id) FROM "
    f"ledger_balancecheckpoint WHERE account_id = {_ACCOUNT_SQL}), 0))"
)


def _guard_checks(debited: set[tuple[str, int | None]]) -> list[tuple[str, int | None]]:
    """What the guard reads for the debited liabilities: (account code, patient id or None)."""
    return sorted(
        {
            (code, patient_id if code in accounts.PER_PATIENT else None)
            for code, patient_id in debited
        },
        key=lambda c: (c[0], c[1] or 0),
    )


def _liabilities_guard(checks: list[tuple[str, int | None]]) -> None:
    """Refuse (LiabilityOverdrawn) postings that leave a debited liability below zero, read after
    the insert in one statement (on PostgreSQL, usually with the insert: `_postings_by_code`): only
    debits can lower a liability, so a posting without one reads nothing. Per-patient accounts
    (patient credit) are checked per patient, which also keeps the whole account at zero or above;
    the others from their checkpoint. Two transactions racing see each other's postings only once
    committed: the services' row locks (habit 5) keep them apart, this backs them up."""
    if not checks:
        return
    sql, params = _guard_sql(checks, inserted=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + sql, params)
        totals = cursor.fetchone()
    _guard_refuse(checks, totals)


def _guard_sql(checks: list[tuple[str, int | None]], *, inserted: bool) -> tuple[str, list]:
    """Each check's balance as one SELECT list, with its parameters; `inserted`: plus the amounts
    of the rows the statement's own insert (`ins`) returned."""
    parts, params = [], []
    for code, patient_id in checks:
        if patient_id is not None:
            part, args = _PER_PATIENT_SQL, [code, patient_id]
            mine = f"account_id = {_ACCOUNT_SQL} AND patient_id = %s"
        else:
            part, args = _CLINIC_WIDE_SQL, [code] * 3
            mine = f"account_id = {_ACCOUNT_SQL}"
        if inserted:
            part += f" + (SELECT COALESCE(SUM(amount), 0) FROM ins WHERE {mine})"
            args += args[-2:] if patient_id is not None else [code]
        parts.append(part)
        params += args
    return ", ".join(parts), params


def _guard_refuse(checks: list[tuple[str, int | None]], totals) -> None:
    for (code, patient_id), total in zip(checks, totals):
        if int(total) > 0:  # a liability's balance is credits - debits, i.e. -sum(amount)
            whose = f" for patient {patient_id}" if patient_id is not None else ""
            raise LiabilityOverdrawn(
                f"Refused: this would take {accounts.describe(code)[1]}{whose} below zero "
                f"({-int(total)} in minor units). Nothing was recorded; the ledger is unchanged."
            )


def balance_checkpoints_advance() -> int:
    """Bring every clinic-wide liability account's checkpoint up to the last committed posting, so
    the guard reads only the postings since (the daily job calls this). Returns how many moved.

    On PostgreSQL the last posting id is read under a brief SHARE lock on the postings table, which
    waits for transactions still inserting postings: every posting at or below it is then committed,
    and since postings never change, the sums below stay true for good.
    SQLite has one writer at a time."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {Posting._meta.db_table} IN SHARE MODE")
        through = Posting.objects.aggregate(last=Max("id"))["last"] or 0
    moved = 0
    with transaction.atomic():
        liabilities = (
            Account.objects.select_for_update(of=("self",))
            .filter(type=accounts.LIABILITY)
            .exclude(code__in=accounts.PER_PATIENT)
            .order_by("pk")
        )
        for account in liabilities:
            checkpoint = BalanceCheckpoint.objects.filter(account=account).first()
            start = checkpoint.through_posting_id if checkpoint else 0
            if through <= start:
                continue
            since = (
                Posting.objects.filter(account=account, id__gt=start, id__lte=through).aggregate(
                    total=Sum("amount")
                )["total"]
                or 0
            )
            BalanceCheckpoint.objects.update_or_create(
                account=account,
                defaults={
                    "through_posting_id": through,
                    "amount": (checkpoint.amount if checkpoint else 0) + int(since),
                    "at": clock.now(),
                },
            )
            moved += 1
    return moved


def _post(**entry) -> JournalTransaction:
    return _write([_unsaved(**entry)])[0]


@dataclass(frozen=True)
class Entry:
    """One journal transaction for transactions_post_many."""

    lines: list[Line]
    kind: str
    source: object = None
    memo: str = ""
    at: dt.datetime | None = None


@atomic.service
def transactions_post_many(entries: list[Entry]) -> list[JournalTransaction]:
    """transaction_post for many at once (the billing job): each entry is checked as one would be,
    then all are inserted together. All or nothing."""
    return _write([_from_entry(e) for e in entries])


def _from_entry(e: Entry) -> tuple[JournalTransaction, list[Line]]:
    source_type, source_id = _source_key(e.source)
    return _unsaved(
        lines=e.lines,
        kind=e.kind,
        source_type=source_type,
        source_id=source_id,
        memo=e.memo,
        at=e.at,
    )


@atomic.service  # joins the caller's transaction; standalone it is its own
def transaction_post(
    *, lines: list[Line], kind: str, source=None, memo: str = "", at: dt.datetime | None = None
) -> JournalTransaction:
    """Post one balanced journal transaction.

    Lines whose debit and credit are both 0 are dropped first. Raises LedgerUnbalanced
    (code "ledger_unbalanced") when nothing is left, debits != credits, or a line is malformed
    (negative, both sides, not a plain int, unknown account, A/R or patient credit without
    a patient). `source` is any saved model instance, stored as label_lower + pk; `at`
    defaults to clock.now().
    """
    return _write([_from_entry(Entry(lines=lines, kind=kind, source=source, memo=memo, at=at))])[0]


@transaction.atomic
def transaction_reverse(
    *, txn: JournalTransaction, memo: str, kind: str | None = None
) -> JournalTransaction:
    """Post the mirror image of `txn` (debits <-> credits) with the same source,
    linked by `reverses`.

    The ledger is append-only, so this is how a posting is corrected; `memo` says why.
    Raises AlreadyReversed if `txn` already has a reversal. `kind` defaults to "reversal".
    """
    if not memo.strip():
        raise ValidationFailed("A reversal needs a memo saying why.")
    # Lock the original first (a no-op on SQLite, where the one-to-one constraint decides).
    original = JournalTransaction.objects.select_for_update(of=("self",)).get(pk=txn.pk)
    if JournalTransaction.objects.filter(reverses=original).exists():
        raise AlreadyReversed(f"Journal transaction #{original.pk} has already been reversed.")
    lines = [
        Line(account=p.account.code, debit=p.credit, credit=p.debit, patient_id=p.patient_id)
        for p in original.postings.select_related("account").order_by("pk")
    ]
    try:
        with (
            transaction.atomic()
        ):  # a savepoint, so a lost race leaves the caller's transaction usable
            return _post(
                lines=lines,
                kind=kind or "reversal",
                source_type=original.source_type,
                source_id=original.source_id,
                memo=memo,
                at=None,
                reverses=original,
            )
    except IntegrityError:
        raise AlreadyReversed(
            f"Journal transaction #{original.pk} has already been reversed."
        ) from None


@transaction.atomic
def transactions_reverse_many(*, pks: list[int], memo: str, kind: str) -> list[JournalTransaction]:
    """transaction_reverse for many at once (undoing an import): one mirror image each, all or
    nothing. Raises AlreadyReversed if any of them already has a reversal."""
    if not memo.strip():
        raise ValidationFailed("A reversal needs a memo saying why.")
    pks = sorted(set(pks))
    originals, lines = [], {}
    for part in bulk.chunks(pks):
        originals += (
            JournalTransaction.objects.select_for_update(of=("self",))
            .filter(pk__in=part)
            .order_by("pk")
        )
        done = (
            JournalTransaction.objects.filter(reverses__in=part)
            .values_list("reverses_id", flat=True)
            .first()
        )
        if done is not None:
            raise AlreadyReversed(f"Journal transaction #{done} has already been reversed.")
        for p in (
            Posting.objects.filter(transaction_id__in=part).select_related("account").order_by("pk")
        ):
            lines.setdefault(p.transaction_id, []).append(
                Line(
                    account=p.account.code, debit=p.credit, credit=p.debit, patient_id=p.patient_id
                )
            )
    try:
        with transaction.atomic():
            return _write(
                [
                    _unsaved(
                        lines=lines[t.pk],
                        kind=kind,
                        source_type=t.source_type,
                        source_id=t.source_id,
                        memo=memo,
                        at=None,
                        reverses=t,
                    )
                    for t in originals
                ]
            )
    except IntegrityError:
        raise AlreadyReversed("One of these journal transactions has just been reversed.") from None
