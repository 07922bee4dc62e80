"""Edit the template, then "update sold packages" / "update all memberships" (SPEC 5.4, 6.4) with
the template's current terms: a preview of what changes, then all or nothing.

Only name, quantity, income category, auto-select and the eligible items carry over to sold
packages; price, taxes and expiry never do (SPEC 5.4). A sold package is refused an update that
would leave it with fewer uses than it has reserved, used or forfeited, or an item limit below
that item's uses, or that would remove an item it has used.

Active memberships take the name, uses per cycle, amount, income category, auto-select,
cancellable-after policy and eligible items (SPEC 6.4). The amount and the uses apply to cycles
not yet invoiced: issued invoices and the allowance of cycles already invoiced stay as they were.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from carnet.clinic.models import IncomeCategory
from carnet.clinic.selectors import clinic_today, money_text
from carnet.core import activity
from carnet.core.errors import Conflict
from carnet.core.permissions import Action, require
from carnet.passes.cycles import next_row_needed
from carnet.passes.models import (
    Kind,
    Pass,
    PassInvoice,
    PassItem,
    PassTemplate,
)

from .checks import template_noun
from .services import template_items

# Sold packages in these states still carry the template's terms; refunded,
# transferred or deleted ones are history.
UPDATABLE = (Pass.Status.ACTIVE, Pass.Status.EXPIRED)
# Memberships: only active ones (cancelled, expired or deleted ones are history).
UPDATABLE_MEMBERSHIPS = (Pass.Status.ACTIVE,)

# "Redeem on online bookings" is auto-select's online twin: it carries over with
# it (issue 20 point 8).
_PACKAGE_FIELDS = ("name", "quantity", "income_category_id", "auto_select", "redeem_online")
_MEMBERSHIP_FIELDS = (
    "name",
    "uses_per_cycle",
    "cycle_price_minor",
    "income_category_id",
    "auto_select",
    "redeem_online",
    "cancellable_after_cycles",
)


def _fields(kind: str) -> tuple[str, ...]:
    return _MEMBERSHIP_FIELDS if kind == Kind.MEMBERSHIP else _PACKAGE_FIELDS


def _terms(template: PassTemplate) -> dict:
    """What carries over: to sold packages never price, taxes or expiry (SPEC 5.4); to memberships
    name, uses, amount (as the price of cycles not yet invoiced), income category, auto-select,
    cancellation term and eligible items (SPEC 6.4)."""
    terms = {
        "kind": template.kind,
        "name": template.name,
        "income_category_id": template.income_category_id,
        "auto_select": template.auto_select,
        "redeem_online": template.redeem_online,
        "items": {i.treatment_id: i for i in template.items.select_related("treatment")},
    }
    if template.kind == Kind.MEMBERSHIP:
        terms.update(
            uses_per_cycle=template.uses_per_cycle,
            cycle_price_minor=template.price_minor,
            cancellable_after_cycles=template.cancellable_after_cycles,
        )
    else:
        terms["quantity"] = template.quantity
    return terms


def _item_view(item, *, limit=None) -> dict:
    return {
        "treatment_id": item.treatment_id,
        "treatment": item.treatment.name,
        "additional_charge_minor": item.additional_charge_minor,
        "compensation_minor": item.compensation_minor,
        "limit": item.limit if limit is None else limit,
        "value_minor": item.value_minor,
    }


def _quantity(sold: Pass, terms: dict) -> int | None:
    """An expired package keeps its quantity: its unused uses went to breakage
    and cannot come back."""
    return terms["quantity"] if sold.status == Pass.Status.ACTIVE else sold.quantity


def _uses(n: int | None) -> str:
    return "unlimited uses" if n is None else f"{n} use{'s' if n != 1 else ''}"


def _allowed_after(row: PassInvoice, old_uses: int | None, new_uses: int | None) -> int | None:
    """A cycle not yet invoiced: the new uses per cycle plus what rolled over into it (kept)."""
    if new_uses is None:
        return None
    rolled = (
        0 if row.uses_allowed is None or old_uses is None else max(row.uses_allowed - old_uses, 0)
    )
    return new_uses + rolled


def _cycle_changes(sold: Pass, terms: dict) -> tuple[list[dict], list[str]]:
    """What the update does to a membership's cycles not yet invoiced, and notes saying so: the
    amount and the uses apply to them; invoiced cycles (the current one included) keep theirs."""
    uses_change = sold.uses_per_cycle != terms["uses_per_cycle"]
    price_change = sold.cycle_price_minor != terms["cycle_price_minor"]
    if not (uses_change or price_change):
        return [], []
    rows = list(sold.pass_invoices.order_by("seq"))
    future = [r for r in rows if r.invoice_id is None and not r.skipped]
    changes, notes = [], []
    for row in future:
        allowed = (
            _allowed_after(row, sold.uses_per_cycle, terms["uses_per_cycle"])
            if uses_change
            else row.uses_allowed
        )
        if allowed is not None and allowed < row.used_count:
            notes.append(
                f"Cycle {row.seq} (from {row.period_start:%Y-%m-%d}) already has {row.used_count} "
                f"uses booked, more than the new {allowed}; it keeps {_uses(row.used_count)}."
            )
            allowed = row.used_count
        changes.append(
            {
                "seq": row.seq,
                "period_start": row.period_start.isoformat(),
                "uses_allowed_before": row.uses_allowed,
                "uses_allowed_after": allowed,
                "price_before": row.unit_price_minor,
                "price_after": terms["cycle_price_minor"],
            }
        )
    if future:
        first = f"cycle {future[0].seq} (from {future[0].period_start:%Y-%m-%d})"
    else:
        needed = next_row_needed(sold, rows)
        first = f"cycle {needed[0]} (from {needed[1]:%Y-%m-%d})" if needed else None
    if first is None:
        notes.insert(
            0,
            "No further cycle will be invoiced (the term is over or it is cancelled at a cycle "
            "end); only the name and the other terms change.",
        )
        return changes, notes
    issued = [r for r in rows if r.invoice_id is not None and not r.skipped]
    if price_change:
        notes.insert(
            0,
            f"The amount {money_text(terms['cycle_price_minor'])} applies from {first} on; "
            f"the {len(issued)} invoice{'s' if len(issued) != 1 else ''} already issued stay at "
            "their amount.",
        )
    if uses_change:
        today = clinic_today()
        current = next((r for r in issued if r.period_start <= today < r.period_end), None)
        keeps = (
            f" (the current cycle {current.seq} keeps {_uses(current.uses_allowed)})"
            if current
            else ""
        )
        notes.insert(
            1 if price_change else 0,
            f"{_uses(terms['uses_per_cycle']).capitalize()} per cycle from {first} on; "
            f"cycles already invoiced keep their allowance{keeps}.",
        )
    return changes, notes


def _plan(sold: Pass, terms: dict, categories: dict) -> dict | None:
    """The before/after of one sold package or membership and what stops the update;
    None if nothing would change."""
    fields = _fields(terms["kind"])
    items = {i.treatment_id: i for i in sold.items.all()}
    before = {f: getattr(sold, f) for f in fields} | {
        "income_category": categories.get(sold.income_category_id, ""),
        "items": [_item_view(i) for i in items.values()],
    }
    who = f"{sold.name} (#{sold.pk}, {sold.patient})"
    after_items, problems = _items_after(items, terms["items"], who)
    after = {f: terms[f] for f in fields} | {
        "income_category": categories.get(terms["income_category_id"], ""),
        "items": after_items,
    }
    if terms["kind"] == Kind.PACKAGE:
        used = (
            sold.reserved_count + sold.posted_count + sold.forfeited_count + sold.used_before_import
        )
        after["quantity"] = quantity = _quantity(sold, terms)
        if quantity is not None and quantity < used:
            problems.insert(
                0,
                {
                    "code": "quantity_below_used",
                    "message": (
                        f"{who} has {used} uses reserved, used or forfeited; the new quantity "
                        f"{quantity} is lower."
                    ),
                },
            )
    changed = [f for f in fields if before[f] != after[f]]
    if _items_key(before) != _items_key(after):
        changed.append("items")
    if not changed:
        return None
    cycles, notes = _cycle_changes(sold, terms) if terms["kind"] == Kind.MEMBERSHIP else ([], [])
    return {
        "pass_id": sold.pk,
        "patient_id": sold.patient_id,
        "patient": str(sold.patient),
        "status": sold.status,
        "kind": terms["kind"],
        "changed": changed,
        "before": before,
        "after": after,
        "problems": problems,
        "notes": notes,
        "cycles": cycles,
    }


def _items_after(items: dict, new_items: dict, who: str) -> tuple[list, list]:
    """The eligible items after the update (an old one with voided uses only is kept, with no uses
    left) and what stops it: a limit below the uses made, or an item in use that would go."""
    after_items, problems = [], []
    for tid, new in new_items.items():
        after_items.append(_item_view(new))
        old = items.get(tid)
        if old and new.limit is not None and new.limit < old.used_count:
            problems.append(
                {
                    "code": "limit_below_used",
                    "message": (
                        f"{who} has used {new.treatment.name} {old.used_count} times; "
                        f"the new limit {new.limit} is lower."
                    ),
                }
            )
    for tid, old in items.items():
        if tid in new_items:
            continue
        if old.used_count:
            problems.append(
                {
                    "code": "eligible_item_in_use",
                    "message": (
                        f"{who} has used {old.treatment.name} {old.used_count} times, "
                        "so it cannot stop being an eligible item."
                    ),
                }
            )
        elif old.redemptions.exists():  # voided uses only: kept for history, with no uses left
            after_items.append(_item_view(old, limit=0))
    return after_items, problems


def _items_key(view: dict) -> list:
    """The eligible items of a before/after view, comparable."""
    return sorted(
        (
            i["treatment_id"],
            i["additional_charge_minor"],
            i["compensation_minor"],
            i["limit"],
            -1 if i["value_minor"] is None else i["value_minor"],
        )
        for i in view["items"]
    )


def _affected(template: PassTemplate):
    statuses = UPDATABLE_MEMBERSHIPS if template.kind == Kind.MEMBERSHIP else UPDATABLE
    return (
        Pass.objects.filter(template=template, kind=template.kind, status__in=statuses)
        .select_related("patient")
        .prefetch_related("items__treatment")
        .order_by("pk")
    )


def _categories() -> dict[int, str]:
    return dict(IncomeCategory.objects.values_list("pk", "name"))


def sold_update_preview(*, template: PassTemplate) -> list[dict]:
    """The sold packages (active or expired) or active memberships that the update would change,
    each with the before/after of the terms that carry over (`changed` names those that differ),
    problems (`quantity_below_used`, `limit_below_used`, `eligible_item_in_use`) that would refuse
    the update, and for memberships `notes` on when the amount and uses apply and `cycles`, the
    cycles not yet invoiced that take them. The caller checks access."""
    terms, categories = _terms(template), _categories()
    return [plan for plan in (_plan(p, terms, categories) for p in _affected(template)) if plan]


def _apply(sold: Pass, terms: dict, plan: dict) -> None:
    fields = _fields(terms["kind"])
    quantity = (
        _quantity(sold, terms) if terms["kind"] == Kind.PACKAGE else None
    )  # before the fields change
    for f in fields:
        setattr(sold, f, terms[f])
    if terms["kind"] == Kind.PACKAGE:
        sold.quantity = quantity
    sold.save(update_fields=[f.removesuffix("_id") for f in fields])
    existing = {i.treatment_id: i for i in sold.items.all()}
    for tid, new in terms["items"].items():
        item = existing.pop(tid, None) or PassItem(sold_pass=sold, treatment_id=tid, used_count=0)
        item.additional_charge_minor, item.compensation_minor, item.limit, item.value_minor = (
            new.additional_charge_minor,
            new.compensation_minor,
            new.limit,
            new.value_minor,
        )
        item.save()
    for old in (
        existing.values()
    ):  # unused (checked by the plan): gone, or kept with no uses if it has history
        if old.redemptions.exists():
            old.limit = 0
            old.save(update_fields=["limit"])
        else:
            old.delete()
    for row in plan[
        "cycles"
    ]:  # not yet invoiced (the pass is locked): never below the uses already booked
        allowed = row["uses_allowed_after"]
        PassInvoice.objects.filter(sold_pass=sold, seq=row["seq"], invoice__isnull=True).update(
            unit_price_minor=row["price_after"],
            uses_allowed=None if allowed is None else Greatest(Value(allowed), F("used_count")),
        )


@transaction.atomic
def sold_update(*, actor, template: PassTemplate) -> int:
    """Apply the template's terms to every sold package (name, quantity, income category,
    auto-select, eligible items; SPEC 5.4) or active membership (name, uses per cycle, amount,
    income category, auto-select, cancellable-after and eligible items; SPEC 6.4) that differs,
    all or none; returns how many changed. A membership's new amount and uses apply to the cycles
    not yet invoiced; issued invoices are unchanged.

    Each pass is locked (in pk order) before its counts are compared, so a redemption cannot slip
    in between the check and the update; on SQLite the check constraints hold the same line."""
    require(actor, Action.SETUP_MANAGE)
    template = PassTemplate.objects.select_for_update(of=("self",)).get(pk=template.pk)
    noun = template_noun(template.kind)
    terms, categories = _terms(template), _categories()
    locked = list(_affected(template).select_for_update(of=("self",)))
    plans = [(p, plan) for p, plan in ((p, _plan(p, terms, categories)) for p in locked) if plan]
    for _, plan in plans:
        if plan["problems"]:
            first = plan["problems"][0]
            raise Conflict(f"No sold {noun} was updated: {first['message']}", code=first["code"])
    try:
        with transaction.atomic():
            for sold, plan in plans:
                _apply(sold, terms, plan)
                after = plan["after"] | ({"cycles": plan["cycles"]} if plan["cycles"] else {})
                activity.record(
                    actor=actor,
                    verb="updated_from_template",
                    obj=sold,
                    before=plan["before"],
                    after=after,
                )
    except IntegrityError:
        raise Conflict(
            f"A sold {noun} was used while it was being updated; nothing was changed. "
            "Please try again.",
            code="changed_meanwhile",
        ) from None
    summary = {k: v for k, v in terms.items() if k not in ("items", "kind")} | {
        "items": template_items(template)
    }
    activity.record(
        actor=actor,
        verb="sold_memberships_updated"
        if template.kind == Kind.MEMBERSHIP
        else "sold_packages_updated",
        obj=template,
        after={"passes": [p.pk for p, _ in plans], "terms": summary},
    )
    return len(plans)
