"""Importing a file (SPEC 15): a dry run first (what would be created, its money and every
problem), then a commit that writes everything in one transaction or nothing; undo while nothing
imported has been used since. Opening balances are dated the start of the cut-over day."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction

from carnet.billing.opening import credits_close, credits_open
from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.core import activity, bulk, clock
from carnet.core.errors import Conflict, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.giftcards.opening import Opening as GiftCardOpening
from carnet.giftcards.opening import gift_cards_close, gift_cards_open
from carnet.ledger.services import transactions_reverse_many
from carnet.passes.memberships.opening import Opening as MembershipOpening
from carnet.passes.memberships.opening import memberships_close, memberships_open
from carnet.passes.models import PassTemplate
from carnet.passes.packages.opening import (
    Described,
    Opening,
    described_templates_open,
    packages_close,
    packages_open,
)
from carnet.people.services import patients_import, patients_remove_imported

from .columns import COLUMNS, kind_checked, mapping_checked
from .models import ImportBatch, ImportedRecord, ImportFile, Kind
from .reading import MAX_BYTES, sheet_read
from .rows import Plan, imported_ids, plan_rows

MONEY_VALUES = {
    "price",
    "amount_paid",
    "balance_owing",
    "remaining_value",
    "value_left",
    "value_held",
    "paid",
    "amount",
    "balance",
    "cycle_price",
}


@dataclass
class Preview:
    kind: str
    file_name: str
    sha256: str
    cut_over: dt.date
    plan: Plan
    headers: list[str]
    mapping: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.plan.ok

    def mapped(self) -> list[tuple[str, str]]:
        """(Carnet column label, the file's header it reads), for the page and the command."""
        return [
            (c.label, self.headers[self.mapping[c.key]] if c.key in self.mapping else "—")
            for c in COLUMNS[self.kind]
        ]

    def first_rows(self, n: int = 5) -> list[dict]:
        """The first rows to create, amounts shown as money (they are minor units inside)."""
        money = clinic_get().money

        def shown(key, value):
            return money(value) if key in MONEY_VALUES and isinstance(value, int) else value

        return [
            {
                "line": r.line,
                "external_id": r.external_id,
                **{
                    k: shown(k, v)
                    for k, v in r.values.items()
                    if not k.endswith(("_id", "_ids", "current"))
                },
            }
            for r in self.plan.rows[:n]
        ]


def _opening_at(cut_over: dt.date, zone: str) -> dt.datetime:
    return dt.datetime.combine(cut_over, dt.time.min, ZoneInfo(zone))


def import_preview(
    *,
    actor,
    kind: str,
    data: bytes,
    file_name: str,
    cut_over: dt.date | None = None,
    mapping: dict | None = None,
    action: Action | None = Action.DATA_IMPORT,
) -> Preview:
    """The dry run: reads and checks every row, writes nothing. `action=None`: the command line,
    whose user already has the server."""
    if action is not None:
        require(actor, action)
    kind = kind_checked(kind)
    clinic = clinic_get()
    sheet = sheet_read(data=data, file_name=file_name)
    used = mapping_checked(kind, sheet.headers, mapping)
    cut_over = cut_over or clinic_today(clinic)
    plan = plan_rows(
        kind=kind, sheet=sheet, mapping=used, currency=clinic.currency, cut_over=cut_over
    )
    return Preview(
        kind=kind,
        file_name=file_name[:200],
        sha256=hashlib.sha256(data).hexdigest(),
        cut_over=cut_over,
        plan=plan,
        headers=sheet.headers,
        mapping=used,
    )


@transaction.atomic
def import_commit(
    *,
    actor,
    kind: str,
    data: bytes,
    file_name: str,
    cut_over: dt.date | None = None,
    mapping: dict | None = None,
    action: Action | None = Action.DATA_IMPORT,
) -> ImportBatch:
    """Check every row again and, only if all are valid, create them and their opening balances in
    one transaction. Rows imported before (same kind, same external id) are skipped."""
    preview = import_preview(
        actor=actor,
        kind=kind,
        data=data,
        file_name=file_name,
        cut_over=cut_over,
        mapping=mapping,
        action=action,
    )
    plan = preview.plan
    if not plan.ok:
        _refuse_invalid(plan)
    clinic = clinic_get()
    user = actor if getattr(actor, "is_authenticated", False) else None
    batch = ImportBatch.objects.create(
        kind=preview.kind,
        file_name=preview.file_name,
        file_sha256=preview.sha256,
        encoding=plan.encoding,
        cut_over=preview.cut_over,
        rows=plan.total_rows,
        created=len(plan.rows),
        skipped=len(plan.skipped),
        money_minor=plan.money_minor,
        created_at=clock.now(),
        created_by=user,
    )
    _rows_create(actor, batch, plan, clinic)
    activity.record(actor=actor, verb="imported", obj=batch, after=activity.snapshot(batch))
    return batch


def _refuse_invalid(plan: Plan) -> None:
    """Nothing is imported while any row has a problem: the count and the first of them."""
    first = str(plan.problems[0]).rstrip(".")
    raise ValidationFailed(
        f"Nothing was imported: {len(plan.problems)} problem(s), the first on {first}. "
        "Correct the file and try again.",
        code="import_invalid",
        fields={"rows": [str(p) for p in plan.problems[:100]]},
    )


def _rows_create(actor, batch: ImportBatch, plan: Plan, clinic) -> None:
    """The plan's rows and their opening balances, each recorded as imported by the batch."""
    at = _opening_at(batch.cut_over, clinic.time_zone)
    memo = f"Opening balance, import #{batch.pk}"
    try:
        made = _CREATE[batch.kind](actor=actor, plan=plan, at=at, memo=memo, zone=clinic.time_zone)
        bulk.insert(
            ImportedRecord,
            [
                ImportedRecord(
                    batch=batch,
                    kind=batch.kind,
                    external_id=row.external_id,
                    line=row.line,
                    object_id=pk,
                    txn_id=txn_id,
                )
                for row, (pk, txn_id) in zip(plan.rows, made)
            ],
        )
    except IntegrityError:  # the same rows (or gift card codes) committed by someone else meanwhile
        raise Conflict(
            "Nothing was imported: some of these rows were imported at the same moment by another "
            "import. Run the dry run again to see what is left.",
            code="import_raced",
        ) from None


def _patients(*, actor, plan: Plan, at, memo, zone) -> list[tuple[int, int | None]]:

    index = {r.external_id: n for n, r in enumerate(plan.rows)}
    refs = {v for r in plan.rows for v in (r.values["guardian"], r.values["spouse"]) if v}
    earlier = imported_ids(Kind.PATIENTS, refs - set(index))
    # A skipped row (imported before) is found through its earlier record, like any other.
    earlier.update(imported_ids(Kind.PATIENTS, refs & {r.external_id for r in plan.skipped}))

    def ref(external_id: str) -> int:
        return index[external_id] if external_id in index else -earlier[external_id]

    links, seen = [], set()
    for n, row in enumerate(plan.rows):
        for key, kind, guardian_first in (
            ("guardian", "guardian", True),
            ("spouse", "spouse", False),
        ):
            other = row.values[key]
            if not other:
                continue
            pair = (ref(other), n) if guardian_first else (n, ref(other))
            if frozenset(pair) not in seen:  # a spouse named on both rows is linked once
                seen.add(frozenset(pair))
                links.append((*pair, kind))
    fields = (
        "first_name",
        "last_name",
        "preferred_name",
        "email",
        "phone",
        "date_of_birth",
        "address",
        "notes",
    )
    patients = patients_import(
        actor=actor, rows=[{f: r.values[f] for f in fields} for r in plan.rows], links=links
    )
    return [(p.pk, None) for p in patients]


def _packages(*, actor, plan: Plan, at, memo, zone) -> list[tuple[int, int | None]]:

    described = {}
    for r in plan.rows:
        if r.values["template_id"] is None:
            described.setdefault(
                r.values["template"].strip().lower(),
                Described(
                    name=r.values["template"].strip(),
                    quantity=r.values["quantity"],
                    price_minor=r.values["price"] or 0,
                    treatment_ids=r.values["treatment_ids"],
                ),
            )
    new_templates = described_templates_open(descriptions=list(described.values()))
    templates = PassTemplate.objects.prefetch_related("items").in_bulk(
        {r.values["template_id"] for r in plan.rows} - {None}
    )

    def template(r):
        if r.values["template_id"]:
            return templates[r.values["template_id"]]
        return new_templates[r.values["template"].strip().lower()]

    made = packages_open(
        actor=actor,
        at=at,
        memo=memo,
        zone=zone,
        openings=[
            Opening(
                patient_id=r.values["patient_id"],
                template=template(r),
                purchase_date=r.values["purchase_date"],
                price_minor=r.values["price"],
                quantity=r.values["quantity"] or 0,
                remaining=r.values["remaining"] or 0,
                value_minor=r.money_minor,
                expires_on=r.values["expiry"],
                paid_minor=r.values["paid"],
                # A package that holds a value (issue 23): None for one that counts uses.
                value_held_minor=r.values.get("value_held")
                if r.values["quantity"] is None
                else None,
                value_left_minor=r.values["value_left"],
            )
            for r in plan.rows
        ],
    )
    return [(p.pk, txn) for p, txn in made]


def _memberships(*, actor, plan: Plan, at, memo, zone) -> list[tuple[int, int | None]]:

    templates = PassTemplate.objects.prefetch_related("items", "taxes").in_bulk(
        {r.values["template_id"] for r in plan.rows}
    )
    made = memberships_open(
        actor=actor,
        at=at,
        cut_over=plan.cut_over,
        memo=memo,
        zone=zone,
        openings=[
            MembershipOpening(
                patient_id=r.values["patient_id"],
                template=templates[r.values["template_id"]],
                start_date=r.values["start_date"],
                current=r.values["current"],
                uses_taken=r.values["uses_this_cycle"],
                cycle_price_minor=r.values["cycle_price"],
                payment_mode=r.values["payment"],
            )
            for r in plan.rows
        ],
    )
    return [(p.pk, txn) for p, txn in made]


def _credit(*, actor, plan: Plan, at, memo, zone) -> list[tuple[int, int | None]]:

    made = credits_open(
        actor=actor,
        at=at,
        memo=memo,
        amounts=[(r.values["patient_id"], r.values["amount"]) for r in plan.rows],
    )
    return [(p.pk, txn) for p, txn in made]


def _gift_cards(*, actor, plan: Plan, at, memo, zone) -> list[tuple[int, int | None]]:
    made = gift_cards_open(
        actor=actor,
        at=at,
        memo=memo,
        openings=[
            GiftCardOpening(
                code=r.values["code"],
                balance_minor=r.values["balance"],
                purchaser_id=r.values.get("purchaser_id"),
                recipient_name=r.values["recipient_name"],
            )
            for r in plan.rows
        ],
    )
    return [(c.pk, txn) for c, txn in made]


_CREATE = {
    Kind.PATIENTS: _patients,
    Kind.PACKAGES: _packages,
    Kind.MEMBERSHIPS: _memberships,
    Kind.CREDIT: _credit,
    Kind.GIFT_CARDS: _gift_cards,
}


_CLOSE = {
    Kind.PATIENTS: patients_remove_imported,
    Kind.PACKAGES: packages_close,
    Kind.MEMBERSHIPS: memberships_close,
    Kind.CREDIT: credits_close,
}


def _close(kind: str, *, actor, pks: list[int]) -> None:
    _CLOSE.get(kind, gift_cards_close)(actor=actor, pks=pks)


@transaction.atomic
def import_undo(
    *, actor, batch: ImportBatch, action: Action | None = Action.DATA_IMPORT
) -> ImportBatch:
    """Take an import back out while nothing it brought in has been used: its opening balances are
    reversed in the ledger (never deleted), what it created is removed, and its external ids may
    be imported again."""
    if action is not None:
        require(actor, action)
    batch = ImportBatch.objects.select_for_update(of=("self",)).get(pk=batch.pk)
    if batch.undone_at:
        raise Conflict(
            f"{batch} was already undone on {batch.undone_at:%Y-%m-%d %H:%M}.", code="import_undone"
        )
    records = list(batch.records.filter(live=True).values_list("pk", "object_id", "txn_id"))
    txns = [t for _, _, t in records if t]
    # Closing first: it puts back what was earned since the import (e.g. membership fees), so the
    # reversal below never takes a liability below zero on the way (the ledger refuses that).
    _close(batch.kind, actor=actor, pks=[o for _, o, _ in records])
    if txns:
        transactions_reverse_many(
            pks=txns,
            memo=f"Undo of import #{batch.pk} ({batch.file_name})",
            kind="opening_balance_undone",
        )
    ImportedRecord.objects.filter(batch=batch).update(live=False)
    before = activity.snapshot(batch)
    batch.undone_at, batch.undone_by = (
        clock.now(),
        actor if getattr(actor, "is_authenticated", False) else None,
    )
    batch.save(update_fields=["undone_at", "undone_by"])
    activity.record(
        actor=actor, verb="import undone", obj=batch, before=before, after=activity.snapshot(batch)
    )
    return batch


def import_file_store(*, actor, data: bytes, file_name: str) -> ImportFile:
    """Keep an uploaded file for its dry run and commit (the page's steps).
    A user's older uploads go."""
    require(actor, Action.DATA_IMPORT)
    if not data:
        raise ValidationFailed("Choose a file to upload.", fields={"file": ["The file is empty."]})
    if len(data) > MAX_BYTES:
        raise ValidationFailed(
            "The file is larger than 50 MB; split it into smaller files.",
            fields={"file": ["Too large."]},
        )
    ImportFile.objects.filter(uploaded_by=actor).delete()
    return ImportFile.objects.create(
        file_name=file_name[:200] or "upload", data=data, uploaded_at=clock.now(), uploaded_by=actor
    )


def import_file_get(*, actor, pk: int) -> ImportFile | None:
    """The actor's own upload, or None (another person's upload is not theirs to import)."""
    return ImportFile.objects.filter(pk=pk, uploaded_by=actor).first()


def import_file_commit(
    *, actor, upload: ImportFile, kind: str, cut_over: dt.date | None, mapping: dict
) -> ImportBatch:
    """Commit an uploaded file; the upload is removed in the same transaction."""
    with transaction.atomic():
        batch = import_commit(
            actor=actor,
            kind=kind,
            data=bytes(upload.data),
            file_name=upload.file_name,
            cut_over=cut_over,
            mapping=mapping,
        )
        ImportFile.objects.filter(pk=upload.pk).delete()
    return batch
