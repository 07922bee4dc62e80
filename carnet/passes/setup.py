"""Settings → Packages & Memberships (SPEC 5.1, 5.4, 9.3–9.6, 9.10): create and edit templates,
archive them, and "update sold packages" with the template's current terms.

Only name, quantity, income category, auto-select and the eligible items carry over to sold
packages; price, taxes and expiry never do (SPEC 5.4). A sold package is refused an update that
would leave it with fewer uses than it has reserved, used or forfeited, or an item limit below
that item's uses, or that would remove an item it has used.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from carnet.clinic.models import IncomeCategory, Tax, Treatment
from carnet.core import activity, clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.permissions import Action, require

from .expiry_rules import template_expiry_allowed
from .models import EligibleItem, ExpiryUnit, Kind, Pass, PassItem, PassTemplate

MAX_INSTALMENTS = 24
_FLAGS = ("tax_inclusive", "auto_select", "redeem_online", "family_sharing", "transferable", "sold_online")
_PLAIN = ("name", "price_minor", "quantity", "expiry_value", "expiry_unit", "instalments") + _FLAGS
# Sold packages in these states still carry the template's terms; refunded, transferred or deleted ones are history.
UPDATABLE = (Pass.Status.ACTIVE, Pass.Status.EXPIRED)


def template_get(pk: int) -> PassTemplate:
    found = PassTemplate.objects.select_related("income_category").filter(pk=pk).first()
    if found is None:
        raise NotFound(f"No package or membership template with id {pk}.")
    return found


def _items_of(template: PassTemplate) -> list[dict]:
    return [{"treatment_id": i.treatment_id, "additional_charge_minor": i.additional_charge_minor,
             "compensation_minor": i.compensation_minor, "limit": i.limit}
            for i in template.items.all()] if template.pk else []


def _snapshot(template: PassTemplate) -> dict:
    return {**activity.snapshot(template), "items": _items_of(template)}


def _id(value):
    return getattr(value, "pk", value)


class _Errors:
    """Problems found while validating, by field; raised together so a form shows all of them."""

    def __init__(self):
        self.fields: dict[str, list[str]] = {}
        self.first: str | None = None

    def add(self, field: str, message: str) -> None:
        self.fields.setdefault(field, []).append(message)
        self.first = self.first or message

    def raise_any(self) -> None:
        if self.fields:
            more = sum(len(m) for m in self.fields.values()) - 1
            tail = f" ({more} more problem{'s' if more > 1 else ''} to correct.)" if more else ""
            raise ValidationFailed(f"{self.first}{tail}", fields=self.fields)


def _clean_template(t: PassTemplate, data: dict, errors: _Errors, names: dict[str, str]) -> list[int] | None:
    """Copy `data` onto the unsaved template and check it; returns the tax ids to set (None: unchanged)."""
    for key in _PLAIN:
        if key in data:
            setattr(t, key, data[key])
    if "income_category" in data:
        t.income_category_id = _id(data["income_category"])
    t.name = (t.name or "").strip()
    if not t.name:
        errors.add("name", "Give the package a name.")
    elif len(t.name) > 160:
        errors.add("name", "The name can have at most 160 characters.")
    if t.price_minor is None or t.price_minor < 0:
        errors.add("price_minor", "The price must be zero or more.")
    if t.kind == Kind.PACKAGE and (t.quantity is None or t.quantity < 1):
        errors.add("quantity", "A package needs a quantity of at least 1 use.")
    elif t.quantity is not None and t.quantity < 1:
        errors.add("quantity", "The quantity must be at least 1 use, or empty for unlimited.")
    if t.instalments is None or not 1 <= t.instalments <= MAX_INSTALMENTS:
        errors.add("instalments", f"Instalments must be between 1 (paid in full) and {MAX_INSTALMENTS}.")
    if t.expiry_unit not in ExpiryUnit.values:
        errors.add("expiry_unit", "The expiry unit must be days, weeks, months or years.")
    elif t.expiry_value is not None and t.expiry_value < 1:
        errors.add("expiry_value", f"The expiry must be at least 1 {t.expiry_unit[:-1]}, or empty for never.")
    elif t.expiry_value is not None:
        try:
            template_expiry_allowed(value=t.expiry_value, unit=t.expiry_unit)
        except ValidationFailed as exc:
            errors.add("expiry_value", exc.message)
    if t.income_category_id is None:
        errors.add(names["income_category"], "Choose an income category.")
    elif not IncomeCategory.objects.filter(pk=t.income_category_id).exists():
        errors.add(names["income_category"], f"No income category with id {t.income_category_id}.")
    if "taxes" not in data:
        return None
    tax_ids = [_id(x) for x in data["taxes"] or []]
    missing = set(tax_ids) - set(Tax.objects.filter(pk__in=tax_ids).values_list("pk", flat=True))
    if missing:
        errors.add(names["taxes"], f"No tax with id {', '.join(map(str, sorted(missing)))}.")
    return tax_ids


def _clean_items(t: PassTemplate, items: list[dict], errors: _Errors) -> list[dict]:
    if not items:
        errors.add("items", "Add at least one eligible item: a treatment or class the package covers.")
        return []
    ids = [_id(row.get("treatment", row.get("treatment_id"))) for row in items]
    known = Treatment.objects.in_bulk([i for i in ids if isinstance(i, int)])
    seen: set[int] = set()
    clean = []
    for n, (row, tid) in enumerate(zip(items, ids)):
        where = f"items.{n}."
        treatment = known.get(tid)
        if tid is None:
            errors.add(where + "treatment", "Choose a treatment for this eligible item.")
        elif treatment is None:
            errors.add(where + "treatment", f"No treatment with id {tid}.")
        elif tid in seen:
            errors.add(where + "treatment", f"{treatment.name} is listed twice; each treatment can be an eligible item once.")
        seen.add(tid)
        label = treatment.name if treatment else "this item"
        charge = row.get("additional_charge_minor") or 0
        compensation = row.get("compensation_minor")
        limit = row.get("limit")
        if charge < 0:
            errors.add(where + "additional_charge_minor", f"The additional charge for {label} must be zero or more.")
        if compensation is not None and compensation < 0:
            errors.add(where + "compensation_minor", f"The staff compensation value for {label} must be zero or more "
                       "(leave it empty to use the treatment's price).")
        if limit is not None and (limit < 1 or (t.quantity is not None and limit > t.quantity)):
            top = f" and the quantity ({t.quantity})" if t.quantity is not None else ""
            errors.add(where + "limit", f"The limit for {label} must be between 1{top}, or empty for no limit.")
        clean.append({"treatment_id": tid, "additional_charge_minor": charge, "compensation_minor": compensation,
                      "limit": limit})
    return clean


def _save_items(t: PassTemplate, items: list[dict]) -> None:
    existing = {i.treatment_id: i for i in t.items.all()}
    for row in items:
        item = existing.pop(row["treatment_id"], None) or EligibleItem(template=t, treatment_id=row["treatment_id"])
        item.additional_charge_minor = row["additional_charge_minor"]
        item.compensation_minor = row["compensation_minor"]
        item.limit = row["limit"]
        item.save()
    EligibleItem.objects.filter(pk__in=[i.pk for i in existing.values()]).delete()


@transaction.atomic
def template_save(*, actor, template: PassTemplate | None, data: dict, items: list[dict] | None) -> PassTemplate:
    """Create (`template` None) or edit a package template with its eligible items.

    `data` holds any of the template's fields (only those given change when editing); the income
    category as `income_category` or `income_category_id`, taxes as `taxes` or `tax_ids` (instances
    or ids). `items` is the full list of eligible items, each with `treatment` or `treatment_id`,
    `additional_charge_minor`, `compensation_minor` (None: the treatment's price) and `limit`
    (None: no per-item limit); None keeps the current items. Errors name the field as given,
    items as `items.<index>.<field>`."""
    require(actor, Action.SETUP_MANAGE)
    data = dict(data)
    names = {"income_category": "income_category", "taxes": "taxes"}
    if "income_category_id" in data:
        data["income_category"] = data.pop("income_category_id")
        names["income_category"] = "income_category_id"
    if "tax_ids" in data:
        data["taxes"] = data.pop("tax_ids")
        names["taxes"] = "tax_ids"
    if template is None:
        t = PassTemplate(kind=data.pop("kind", Kind.PACKAGE), income_category_id=None)
        before = None
    else:
        PassTemplate.objects.select_for_update(of=("self",)).get(pk=template.pk)
        t = template  # the caller's instance, so it shows what was saved
        t.refresh_from_db()
        data.pop("kind", None)  # a package stays a package
        before = _snapshot(t)
    if t.kind not in Kind.values:
        raise ValidationFailed("The kind must be package or membership.", fields={"kind": ["Unknown kind."]})
    errors = _Errors()
    tax_ids = _clean_template(t, data, errors, names)
    clean_items = _clean_items(t, _items_of(t) if items is None else list(items), errors)
    try:
        errors.raise_any()
    except ValidationFailed:
        if t.pk:
            t.refresh_from_db()  # the caller's instance is left as it was
        raise
    now = clock.now()
    if before is None:
        t.created_at = now
    t.updated_at = now
    t.save()
    if tax_ids is not None:
        t.taxes.set(tax_ids)
    _save_items(t, clean_items)
    activity.record(actor=actor, verb="updated" if before else "created", obj=t, before=before, after=_snapshot(t))
    return t


@transaction.atomic
def template_archive(*, actor, template: PassTemplate, archived: bool) -> PassTemplate:
    """Archive (no longer sold; sold passes unaffected) or bring back a template."""
    require(actor, Action.SETUP_MANAGE)
    t = PassTemplate.objects.select_for_update(of=("self",)).get(pk=template.pk)
    if t.archived == archived:
        return t
    before = _snapshot(t)
    t.archived, t.updated_at = archived, clock.now()
    t.save(update_fields=["archived", "updated_at"])
    activity.record(actor=actor, verb="archived" if archived else "unarchived", obj=t, before=before, after=_snapshot(t))
    return t


# ---------------------------------------------------------------- update sold packages

def _terms(template: PassTemplate) -> dict:
    """What carries over to sold packages (SPEC 5.4): never price, taxes or expiry."""
    return {"name": template.name, "quantity": template.quantity, "income_category_id": template.income_category_id,
            "auto_select": template.auto_select,
            "items": {i.treatment_id: i for i in template.items.select_related("treatment")}}


def _item_view(item, *, limit=None) -> dict:
    return {"treatment_id": item.treatment_id, "treatment": item.treatment.name,
            "additional_charge_minor": item.additional_charge_minor, "compensation_minor": item.compensation_minor,
            "limit": item.limit if limit is None else limit}


def _quantity(sold: Pass, terms: dict) -> int | None:
    """An expired package keeps its quantity: its unused uses went to breakage and cannot come back."""
    return terms["quantity"] if sold.status == Pass.Status.ACTIVE else sold.quantity


def _plan(sold: Pass, terms: dict, categories: dict) -> dict | None:
    """The before/after of one sold package and what stops the update; None if nothing would change."""
    items = {i.treatment_id: i for i in sold.items.all()}
    before = {"name": sold.name, "quantity": sold.quantity, "income_category_id": sold.income_category_id,
              "income_category": categories.get(sold.income_category_id, ""), "auto_select": sold.auto_select,
              "items": [_item_view(i) for i in items.values()]}
    after_items, problems = [], []
    who = f"{sold.name} (#{sold.pk}, {sold.patient})"
    for tid, new in terms["items"].items():
        after_items.append(_item_view(new))
        old = items.get(tid)
        if old and new.limit is not None and new.limit < old.used_count:
            problems.append({"code": "limit_below_used", "message": (
                f"{who} has used {new.treatment.name} {old.used_count} times; the new limit {new.limit} is lower.")})
    for tid, old in items.items():
        if tid in terms["items"]:
            continue
        if old.used_count:
            problems.append({"code": "eligible_item_in_use", "message": (
                f"{who} has used {old.treatment.name} {old.used_count} times, so it cannot stop being an eligible item.")})
        elif old.redemptions.exists():  # released uses only: kept for history, with no uses left
            after_items.append(_item_view(old, limit=0))
    used = sold.reserved_count + sold.posted_count + sold.forfeited_count
    quantity = _quantity(sold, terms)
    if quantity is not None and quantity < used:
        problems.insert(0, {"code": "quantity_below_used", "message": (
            f"{who} has {used} uses reserved, used or forfeited; the new quantity {quantity} is lower.")})
    after = {"name": terms["name"], "quantity": quantity, "income_category_id": terms["income_category_id"],
             "income_category": categories.get(terms["income_category_id"], ""), "auto_select": terms["auto_select"],
             "items": after_items}

    def key(view):
        return sorted((i["treatment_id"], i["additional_charge_minor"], i["compensation_minor"], i["limit"])
                      for i in view["items"])

    changed = [f for f in ("name", "quantity", "income_category_id", "auto_select") if before[f] != after[f]]
    if key(before) != key(after):
        changed.append("items")
    if not changed:
        return None
    return {"pass_id": sold.pk, "patient_id": sold.patient_id, "patient": str(sold.patient), "status": sold.status,
            "changed": changed, "before": before, "after": after, "problems": problems}


def _affected(template: PassTemplate):
    return (Pass.objects.filter(template=template, kind=template.kind, status__in=UPDATABLE)
            .select_related("patient").prefetch_related("items__treatment").order_by("pk"))


def _categories() -> dict[int, str]:
    return dict(IncomeCategory.objects.values_list("pk", "name"))


def sold_update_preview(*, template: PassTemplate) -> list[dict]:
    """The sold packages (active or expired) that "update sold packages" would change, each with
    the before/after of name, quantity, income category, auto-select and eligible items, the
    fields that change, and problems (`quantity_below_used`, `limit_below_used`,
    `eligible_item_in_use`) that would refuse the update. The caller checks access."""
    terms, categories = _terms(template), _categories()
    return [plan for plan in (_plan(p, terms, categories) for p in _affected(template)) if plan]


def _apply(sold: Pass, terms: dict) -> None:
    sold.name, sold.quantity = terms["name"], _quantity(sold, terms)
    sold.income_category_id, sold.auto_select = terms["income_category_id"], terms["auto_select"]
    sold.save(update_fields=["name", "quantity", "income_category", "auto_select"])
    existing = {i.treatment_id: i for i in sold.items.all()}
    for tid, new in terms["items"].items():
        item = existing.pop(tid, None) or PassItem(sold_pass=sold, treatment_id=tid, used_count=0)
        item.additional_charge_minor, item.compensation_minor, item.limit = (
            new.additional_charge_minor, new.compensation_minor, new.limit)
        item.save()
    for old in existing.values():  # unused (checked by the plan): gone, or kept with no uses if it has history
        if old.redemptions.exists():
            old.limit = 0
            old.save(update_fields=["limit"])
        else:
            old.delete()


@transaction.atomic
def sold_update(*, actor, template: PassTemplate) -> int:
    """Apply the template's name, quantity, income category, auto-select and eligible items to
    every sold package that differs (SPEC 5.4), all or none; returns how many changed.

    Each pass is locked (in pk order) before its counts are compared, so a redemption cannot slip
    in between the check and the update; on SQLite the check constraints hold the same line."""
    require(actor, Action.SETUP_MANAGE)
    if template.kind != Kind.PACKAGE:
        raise Conflict("Updating sold memberships is not available yet.", code="not_supported")
    template = PassTemplate.objects.select_for_update(of=("self",)).get(pk=template.pk)
    terms, categories = _terms(template), _categories()
    locked = list(_affected(template).select_for_update(of=("self",)))
    plans = [(p, plan) for p, plan in ((p, _plan(p, terms, categories)) for p in locked) if plan]
    for _, plan in plans:
        if plan["problems"]:
            first = plan["problems"][0]
            raise Conflict(f"No sold package was updated: {first['message']}", code=first["code"])
    try:
        with transaction.atomic():
            for sold, plan in plans:
                _apply(sold, terms)
                activity.record(actor=actor, verb="updated_from_template", obj=sold,
                                before=plan["before"], after=plan["after"])
    except IntegrityError:
        raise Conflict("A sold package was used while it was being updated; nothing was changed. Please try again.",
                       code="changed_meanwhile") from None
    activity.record(actor=actor, verb="sold_packages_updated", obj=template,
                    after={"passes": [p.pk for p, _ in plans], "terms": {
                        k: v for k, v in terms.items() if k != "items"} | {"items": _items_of(template)}})
    return len(plans)
