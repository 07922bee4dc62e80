"""Packages brought in from the clinic's previous system (SPEC 15): an active pass per row with its
uses left, its remaining value in deferred revenue – packages against opening balance equity.

The value rule (carnet.imports.rows.remaining_value): the price split over the quantity as a sale
splits it, the uses already taken keeping the first shares; so each use left is then worth price ÷
quantity, and when the price is unknown the remaining value ÷ remaining uses. The pass keeps its
whole price as its value (net) with the part used before the switch counted as recognised, so
redeeming, expiring, refunding and transferring it work as for a pass sold in Carnet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from carnet.core import activity, bulk
from carnet.core.undo import imported_rows_remove
from carnet.ledger import accounts
from carnet.ledger.services import Entry, Line, transactions_post_many

from .models import Pass, PassItem, PassTemplate


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


def packages_open(*, actor, openings: list[Opening], at: dt.datetime, memo: str, zone: str) -> list[tuple[Pass, int | None]]:
    """Create the passes (inside the caller's transaction) and post each one's opening balance.
    Returns (pass, journal transaction id or None when nothing is left to defer), in order."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    passes = []
    for o in openings:
        t = o.template
        net = o.price_minor if o.price_minor is not None else o.value_minor
        passes.append(Pass(
            kind=Pass.Kind.PACKAGE, template=t, patient_id=o.patient_id, name=t.name,
            income_category_id=t.income_category_id, quantity=o.quantity, price_minor=o.price_minor or 0,
            net_minor=net, deferred_minor=net, recognised_minor=net - o.value_minor,
            used_before_import=o.quantity - o.remaining, auto_select=t.auto_select, redeem_online=t.redeem_online,
            family_sharing=t.family_sharing, transferable=t.transferable, instalments=1,
            purchase_date=o.purchase_date,
            purchased_at=dt.datetime.combine(o.purchase_date, dt.time(12), ZoneInfo(zone)),
            expires_on=o.expires_on, created_by=user))
    passes = bulk.insert(Pass, passes)
    bulk.insert(PassItem, [
        PassItem(sold_pass=p, treatment_id=i.treatment_id, additional_charge_minor=i.additional_charge_minor,
                 compensation_minor=i.compensation_minor, limit=i.limit)
        for p, o in zip(passes, openings) for i in o.template.items.all()])
    with_value = [(p, o) for p, o in zip(passes, openings) if o.value_minor]
    txns = transactions_post_many([
        Entry(kind="opening_balance", source=p, at=at, memo=f"{memo}: {p.name}, {o.remaining} of {o.quantity} left",
              lines=[Line(accounts.OPENING_BALANCE_EQUITY, debit=o.value_minor),
                     Line(accounts.DEFERRED_PACKAGES, credit=o.value_minor)])
        for p, o in with_value])
    by_pass = {p.pk: t.pk for (p, _), t in zip(with_value, txns)}
    activity.record_many(actor=actor, verb="imported", objs=passes)
    return [(p, by_pass.get(p.pk)) for p in passes]


def packages_in_use(pks: list[int]) -> list[str]:
    """Why each of these imported passes can no longer be undone (used, ended or changed since)."""
    problems = []
    for part in bulk.chunks(pks):
        for p in Pass.objects.filter(pk__in=part).order_by("pk"):
            if p.status != Pass.Status.ACTIVE and p.status != Pass.Status.EXPIRED or p.reserved_count or p.posted_count:
                problems.append(f"{p.name} of patient #{p.patient_id} (pass #{p.pk}) has been "
                                f"{'used' if p.reserved_count or p.posted_count else p.get_status_display().lower()}")
            elif p.forfeited_count or p.redemptions.exists():
                problems.append(f"{p.name} of patient #{p.patient_id} (pass #{p.pk}) has changed since the import")
    return problems


def packages_close(*, actor, pks: list[int]) -> None:
    """Undo imported passes (caller's transaction; the caller reverses their opening balances),
    refused with the reasons if any has been used."""
    imported_rows_remove(actor=actor, model=Pass, pks=pks, in_use=packages_in_use, children=((PassItem, "sold_pass_id"),))
