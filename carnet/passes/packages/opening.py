"""Packages brought in from the clinic's previous system (SPEC 15): an active pass per row with its
uses left, its remaining value in deferred revenue – packages against opening balance equity.

The value rule (carnet.imports.rows.remaining_value): the price split over the quantity as a sale
splits it, the uses already taken keeping the first shares; so each use left is then worth price ÷
quantity, and when the price is unknown the remaining value ÷ remaining uses. The pass keeps its
whole price as its value (net) with the part used before the switch counted as recognised, so
redeeming, expiring, refunding and transferring it work as for a pass sold in Carnet. A package
that holds a value (issue 23) comes with its value held and left, the value drawn before the
switch kept apart (Pass.value_before_import_minor), and the price's share of the value left
deferred (price × value left ÷ value held, as each draw then recognises it).

A package partly paid before the switch gets an invoice for its price with what was paid applied
(billing.opening.bills_open): the rest is a balance owed, and like any package bought in Carnet it
covers visits once that invoice is paid (SPEC 5.2). Its opening entry then carries the balance
owed into A/R: A/R (owed) + opening balance equity (the difference) = deferred revenue (value).

A package the file describes (no template of that name in Carnet: its name, quantity, price and
eligible treatments in the row) gets an archived template of its own, so it is never sold again
by mistake; a later import reuses it by name, and undoing the import leaves it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from carnet.billing.opening import Bill, bills_close, bills_in_use, bills_open
from carnet.clinic.models import Treatment
from carnet.clinic.selectors import clinic_get, money_text
from carnet.core import activity, bulk, clock
from carnet.core.undo import imported_rows_remove
from carnet.ledger import accounts
from carnet.ledger.services import Entry, Line, transactions_post_many
from carnet.passes.models import EligibleItem, Pass, PassInvoice, PassItem, PassTemplate
from carnet.passes.selectors import imported_invoices
from carnet.passes.terms import items_copy, pass_terms


@dataclass(frozen=True)
class Opening:
    patient_id: int
    template: PassTemplate
    purchase_date: dt.date
    price_minor: int | None  # None: unknown
    quantity: int
    remaining: int
    value_minor: int  # of the remaining uses
    expires_on: dt.date | None
    paid_minor: int | None = None  # None: paid in full
    # A package that holds a value (issue 23): what it held when bought and what is left of it
    # (quantity and remaining are then 0).
    value_held_minor: int | None = None
    value_left_minor: int | None = None

    def left_text(self) -> str:
        if self.value_held_minor is None:
            return f"{self.remaining} of {self.quantity} left"
        return f"{money_text(self.value_left_minor)} of {money_text(self.value_held_minor)} left"


@dataclass(frozen=True)
class Described:
    """A package template the import file describes instead of naming one of the clinic's."""

    name: str
    quantity: int
    price_minor: int
    treatment_ids: tuple[int, ...]


def described_templates_open(*, descriptions: list[Described]) -> dict[str, PassTemplate]:
    """Archived templates for packages described in the file (inside the caller's transaction),
    by lower-cased name; their income category is their first treatment's."""

    if not descriptions:
        return {}
    treatments = Treatment.objects.in_bulk({t for d in descriptions for t in d.treatment_ids})
    now = clock.now()
    made = {}
    for d in descriptions:
        template = PassTemplate.objects.create(
            kind=PassTemplate.Kind.PACKAGE,
            name=d.name,
            price_minor=d.price_minor,
            quantity=d.quantity,
            income_category_id=treatments[d.treatment_ids[0]].income_category_id,
            expiry_value=None,
            archived=True,
            created_at=now,
            updated_at=now,
        )
        EligibleItem.objects.bulk_create(
            EligibleItem(template=template, treatment_id=t) for t in d.treatment_ids
        )
        made[d.name.strip().lower()] = template
    return made


def packages_open(
    *, actor, openings: list[Opening], at: dt.datetime, memo: str, zone: str
) -> list[tuple[Pass, int | None]]:
    """Create the passes (inside the caller's transaction) and post each one's opening balance.
    Returns (pass, journal transaction id or None when nothing is left to defer), in order."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    passes = bulk.insert(Pass, _passes_new(openings, zone=zone, user=user))
    bulk.insert(
        PassItem,
        [item for p, o in zip(passes, openings) for item in items_copy(p, o.template.items.all())],
    )
    owing = _owing_invoiced(actor, passes, openings, at=at, memo=memo)
    owed = {p.pk: o.price_minor - o.paid_minor for p, o in owing}
    moving = [(p, o) for p, o in zip(passes, openings) if o.value_minor or owed.get(p.pk)]
    txns = transactions_post_many(
        [
            Entry(
                kind="opening_balance",
                source=p,
                at=at,
                memo=f"{memo}: {p.name}, {o.left_text()}"
                + (f", {money_text(owed[p.pk])} owed" if p.pk in owed else ""),
                lines=_opening_lines(p, o, owed.get(p.pk, 0)),
            )
            for p, o in moving
        ]
    )
    by_pass = {p.pk: t.pk for (p, _), t in zip(moving, txns)}
    activity.record_many(actor=actor, verb="imported", objs=passes)
    return [(p, by_pass.get(p.pk)) for p in passes]


def _passes_new(openings: list[Opening], *, zone: str, user) -> list[Pass]:
    """The passes as they stood at the switch (not saved): the template's terms and the clinic's
    expiry terms at the switch (kept like a sale's, passes.terms), the uses left and the value
    still deferred. No taxes: the price was taxed in the previous system."""
    clinic = clinic_get()
    passes = []
    for o in openings:
        net = o.price_minor if o.price_minor is not None else o.value_minor
        terms = pass_terms(o.template, clinic=clinic)
        # The file's counts (uses, or a value held and left), paid before the switch in one go;
        # breakage at expiry only, as before (a sale in Carnet fixes a proportional rate).
        holds_value = o.value_held_minor is not None
        terms.update(
            quantity=None if holds_value else o.quantity,
            face_value_minor=o.value_held_minor,
            instalments=1,
            breakage_rate_bp=0,
        )
        passes.append(
            Pass(
                **terms,
                patient_id=o.patient_id,
                price_minor=o.price_minor or 0,
                net_minor=net,
                deferred_minor=net,
                recognised_minor=net - o.value_minor,
                used_before_import=o.quantity - o.remaining,
                value_before_import_minor=(
                    o.value_held_minor - o.value_left_minor if holds_value else 0
                ),
                purchase_date=o.purchase_date,
                purchased_at=dt.datetime.combine(o.purchase_date, dt.time(12), ZoneInfo(zone)),
                expires_on=o.expires_on,
                created_by=user,
            )
        )
    return passes


def _owing_invoiced(actor, passes: list[Pass], openings: list[Opening], *, at, memo: str) -> list:
    """(pass, opening) of those not fully paid before the switch, each with an invoice for its price
    and what was paid on it then (billing.opening.bills_open), as its one instalment."""
    owing = [
        (p, o)
        for p, o in zip(passes, openings)
        if o.paid_minor is not None and o.paid_minor < (o.price_minor or 0)
    ]
    invoices = bills_open(
        actor=actor,
        invoice_date=at.date(),
        at=at,
        memo=memo,
        bills=[
            Bill(
                patient_id=p.patient_id,
                kind=Pass.Kind.PACKAGE,
                description=f"{p.name} (bought {o.purchase_date})",
                income_category_id=p.income_category_id,
                total_minor=o.price_minor,
                net_minor=o.price_minor,
                paid_minor=o.paid_minor,
            )
            for p, o in owing
        ],
    )
    bulk.insert(
        PassInvoice,
        [
            PassInvoice(
                sold_pass=p,
                seq=1,
                due_on=o.purchase_date,
                unit_price_minor=o.price_minor,
                amount_minor=o.price_minor,
                net_minor=o.price_minor,
                invoice=i,
            )
            for (p, o), i in zip(owing, invoices)
        ],
    )
    return owing


def _opening_lines(sold: Pass, o: Opening, owed: int) -> list[Line]:
    """Deferred revenue for the uses left; A/R for what is owed; equity takes the difference."""
    equity = o.value_minor - owed
    return [
        line
        for line in (
            Line(accounts.AR, debit=owed, patient_id=sold.patient_id) if owed else None,
            Line(accounts.OPENING_BALANCE_EQUITY, debit=equity) if equity > 0 else None,
            Line(accounts.OPENING_BALANCE_EQUITY, credit=-equity) if equity < 0 else None,
            Line(accounts.DEFERRED_PACKAGES, credit=o.value_minor) if o.value_minor else None,
        )
        if line is not None
    ]


def packages_in_use(pks: list[int]) -> list[str]:
    """Why each of these imported passes can no longer be undone (used, ended or changed since)."""
    problems = bills_in_use(imported_invoices(pks))
    for part in bulk.chunks(pks):
        for p in Pass.objects.filter(pk__in=part).order_by("pk"):
            if (
                p.status != Pass.Status.ACTIVE
                and p.status != Pass.Status.EXPIRED
                or p.reserved_count
                or p.posted_count
            ):
                problems.append(
                    f"{p.name} of patient #{p.patient_id} (pass #{p.pk}) has been "
                    + (
                        "used"
                        if p.reserved_count or p.posted_count
                        else p.get_status_display().lower()
                    )
                )
            elif p.forfeited_count or p.redemptions.exists():
                problems.append(
                    f"{p.name} of patient #{p.patient_id} (pass #{p.pk}) has changed since the "
                    "import"
                )
    return problems


def packages_close(*, actor, pks: list[int]) -> None:
    """Undo imported passes (caller's transaction; the caller reverses their opening balances),
    refused with the reasons if any has been used."""
    invoices = imported_invoices(pks)
    imported_rows_remove(
        actor=actor,
        model=Pass,
        pks=pks,
        in_use=packages_in_use,
        children=((PassItem, "sold_pass_id"), (PassInvoice, "sold_pass_id")),
    )
    bills_close(actor=actor, invoice_pks=invoices)
