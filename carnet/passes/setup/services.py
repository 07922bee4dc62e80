"""Package and membership templates, Settings → Packages & Memberships (SPEC 5.1, 6.1, 9.3–9.7,
9.10, 16): save a template with its eligible items (checked by `checks`), read one, archive it.
Applying a template's terms to what was sold from it is `sold_update`.
"""

from __future__ import annotations

from django.db import transaction

from carnet.core import activity, clock
from carnet.core.errors import NotFound, ValidationFailed
from carnet.core.permissions import Action, require
from carnet.passes.models import (
    EligibleItem,
    Kind,
    PassTemplate,
)

from .checks import template_check


def template_get(pk: int) -> PassTemplate:
    found = PassTemplate.objects.select_related("income_category").filter(pk=pk).first()
    if found is None:
        raise NotFound(f"No package or membership template with id {pk}.")
    return found


def template_items(template: PassTemplate) -> list[dict]:
    return (
        [
            {
                "treatment_id": i.treatment_id,
                "additional_charge_minor": i.additional_charge_minor,
                "compensation_minor": i.compensation_minor,
                "limit": i.limit,
                "value_minor": i.value_minor,
            }
            for i in template.items.all()
        ]
        if template.pk
        else []
    )


def _snapshot(template: PassTemplate) -> dict:
    return {**activity.snapshot(template), "items": template_items(template)}


def _save_items(t: PassTemplate, items: list[dict]) -> None:
    existing = {i.treatment_id: i for i in t.items.all()}
    for row in items:
        item = existing.pop(row["treatment_id"], None) or EligibleItem(
            template=t, treatment_id=row["treatment_id"]
        )
        item.additional_charge_minor = row["additional_charge_minor"]
        item.compensation_minor = row["compensation_minor"]
        item.limit = row["limit"]
        item.value_minor = row.get("value_minor")
        item.save()
    EligibleItem.objects.filter(pk__in=[i.pk for i in existing.values()]).delete()


@transaction.atomic
def template_save(
    *, actor, template: PassTemplate | None, data: dict, items: list[dict] | None
) -> PassTemplate:
    """Create (`template` None) or edit a package or membership template with its eligible items.

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
    location_ids = data.pop("location_ids", data.pop("allowed_locations", None))
    if template is None:
        t = PassTemplate(kind=data.pop("kind", Kind.PACKAGE), income_category_id=None)
        before = None
    else:
        PassTemplate.objects.select_for_update(of=("self",)).get(pk=template.pk)
        t = template  # the caller's instance, so it shows what was saved
        t.refresh_from_db()
        data.pop("kind", None)  # a package stays a package, a membership a membership
        before = _snapshot(t)
    if t.kind not in Kind.values:
        raise ValidationFailed(
            "The kind must be package or membership.", fields={"kind": ["Unknown kind."]}
        )
    given = template_items(t) if items is None else list(items)
    try:
        tax_ids, clean_items, location_ids = template_check(t, data, given, location_ids, names)
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
    if location_ids is not None:
        t.allowed_locations.set(location_ids)
    _save_items(t, clean_items)
    activity.record(
        actor=actor,
        verb="updated" if before else "created",
        obj=t,
        before=before,
        after=_snapshot(t),
    )
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
    activity.record(
        actor=actor,
        verb="archived" if archived else "unarchived",
        obj=t,
        before=before,
        after=_snapshot(t),
    )
    return t
