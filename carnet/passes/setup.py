"""Settings → Packages & Memberships (SPEC 5.1, 5.4, 6.1, 6.4, 9.3–9.7, 9.10): create and edit
package and membership templates, archive them, and "update sold packages" / "update all
memberships" with the template's current terms.

Only name, quantity, income category, auto-select and the eligible items carry over to sold
packages; price, taxes and expiry never do (SPEC 5.4). A sold package is refused an update that
would leave it with fewer uses than it has reserved, used or forfeited, or an item limit below
that item's uses, or that would remove an item it has used.

Active memberships take the name, uses per cycle, amount, income category, auto-select,
cancellable-after policy and eligible items (SPEC 6.4). The amount and the uses apply to cycles
not yet invoiced: issued invoices and the allowance of cycles already invoiced stay as they were.
"""

from __future__ import annotations

from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from carnet.clinic.models import IncomeCategory, Tax, Treatment
from carnet.clinic.selectors import clinic_get
from carnet.core import activity, clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.permissions import Action, require

from .cycles import next_row_needed
from .expiry_rules import template_expiry_allowed
from .models import (
    Cycle,
    EligibleItem,
    ExpiryUnit,
    FreezeFee,
    Kind,
    Pass,
    PassInvoice,
    PassItem,
    PassTemplate,
)

MAX_INSTALMENTS = 24
MAX_BREAKAGE_BP = (
    9000  # an expected breakage rate of at most 90 % (ASC 606 wants a reasoned estimate)
)
MAX_TERM_CYCLES = 52
MAX_CYCLE_COUNT = (
    1000  # uses per cycle, rollover cap, cancellable after, longest pause: sane bounds
)
_FLAGS = (
    "tax_inclusive",
    "auto_select",
    "redeem_online",
    "family_sharing",
    "transferable",
    "sold_online",
    "new_patients_only",
    "once_per_patient",
)
_MEMBERSHIP = (
    "cycle",
    "term_cycles",
    "cancellable_after_cycles",
    "uses_per_cycle",
    "rollover",
    "rollover_cap",
    "pause_allowed",
    "pause_max_cycles",
    "freeze_fee_kind",
    "freeze_fee_minor",
    "self_cancel",
)
_WINDOW = ("allowed_days", "window_start", "window_end", "cap_uses", "cap_period")
_PLAIN = (
    (
        "name",
        "price_minor",
        "quantity",
        "face_value_minor",
        "expiry_value",
        "expiry_unit",
        "instalments",
        "expected_breakage_bp",
    )
    + _FLAGS
    + _MEMBERSHIP
    + _WINDOW
)
# Sold packages in these states still carry the template's terms; refunded, transferred or deleted ones are history.
UPDATABLE = (Pass.Status.ACTIVE, Pass.Status.EXPIRED)
# Memberships: only active ones (cancelled, expired or deleted ones are history).
UPDATABLE_MEMBERSHIPS = (Pass.Status.ACTIVE,)


def _noun(kind: str) -> str:
    return "membership" if kind == Kind.MEMBERSHIP else "package"


def template_get(pk: int) -> PassTemplate:
    found = PassTemplate.objects.select_related("income_category").filter(pk=pk).first()
    if found is None:
        raise NotFound(f"No package or membership template with id {pk}.")
    return found


def _items_of(template: PassTemplate) -> list[dict]:
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


def _fits(model, field: str, value) -> bool:
    """Whether an integer (or id, for a relation) fits the database column; non-integers are left to other checks."""
    f = model._meta.get_field(field)
    f = f.target_field if f.is_relation else f
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not isinstance(f, models.IntegerField)
    ):
        return True
    low, high = connection.ops.integer_field_range(f.get_internal_type())
    return (low is None or value >= low) and (high is None or value <= high)


def _clean_template(
    t: PassTemplate, data: dict, errors: _Errors, names: dict[str, str]
) -> list[int] | None:
    """Copy `data` onto the unsaved template and check it; returns the tax ids to set (None: unchanged)."""
    for key in _PLAIN:
        if key in data:
            setattr(t, key, data[key])
            if data[key] is None and not PassTemplate._meta.get_field(key).null:
                errors.add(key, "This cannot be empty.")
            elif not _fits(PassTemplate, key, data[key]):
                errors.add(key, "The number is too large.")
    if "income_category" in data:
        t.income_category_id = _id(data["income_category"])
        if not _fits(PassTemplate, "income_category", t.income_category_id):
            errors.add(
                names["income_category"], f"No income category with id {t.income_category_id}."
            )
            t.income_category_id = None
    t.name = (t.name or "").strip()
    if not t.name:
        errors.add("name", f"Give the {_noun(t.kind)} a name.")
    elif len(t.name) > 160:
        errors.add("name", "The name can have at most 160 characters.")
    if t.price_minor is None or t.price_minor < 0:
        errors.add("price_minor", "The price must be zero or more.")
    if t.kind == Kind.MEMBERSHIP:
        _clean_membership(t, errors)
    else:
        _clean_package(t, errors)
        _clean_mode(t, errors)
    _clean_window(t, errors)
    if t.income_category_id is None:
        if names["income_category"] not in errors.fields:
            errors.add(names["income_category"], "Choose an income category.")
    elif not IncomeCategory.objects.filter(pk=t.income_category_id).exists():
        errors.add(names["income_category"], f"No income category with id {t.income_category_id}.")
    if "taxes" not in data:
        return None
    tax_ids = [_id(x) for x in data["taxes"] or []]
    asked = [i for i in tax_ids if _fits(Tax, "id", i)]
    missing = set(tax_ids) - set(Tax.objects.filter(pk__in=asked).values_list("pk", flat=True))
    if missing:
        errors.add(names["taxes"], f"No tax with id {', '.join(map(str, sorted(missing)))}.")
    return tax_ids


def _clean_package(t: PassTemplate, errors: _Errors) -> None:
    if t.face_value_minor is not None:
        _clean_value_package(t, errors)
    elif t.quantity is None or t.quantity < 1:
        errors.add("quantity", "A package needs a quantity of at least 1 use.")
    if t.instalments is None or not 1 <= t.instalments <= MAX_INSTALMENTS:
        errors.add(
            "instalments", f"Instalments must be between 1 (paid in full) and {MAX_INSTALMENTS}."
        )
    if t.expected_breakage_bp is None or not 0 <= t.expected_breakage_bp <= MAX_BREAKAGE_BP:
        errors.add(
            "expected_breakage_bp",
            f"The expected breakage rate is 0 to {MAX_BREAKAGE_BP // 100} % "
            f"(0 to {MAX_BREAKAGE_BP} basis points).",
        )
    if t.expiry_unit not in ExpiryUnit.values:
        errors.add("expiry_unit", "The expiry unit must be days, weeks, months or years.")
    elif t.expiry_value is not None and t.expiry_value < 1:
        errors.add(
            "expiry_value",
            f"The expiry must be at least 1 {t.expiry_unit[:-1]}, or empty for never.",
        )
    elif t.expiry_value is not None:
        try:
            template_expiry_allowed(value=t.expiry_value, unit=t.expiry_unit)
        except ValidationFailed as exc:
            errors.add("expiry_value", exc.message)


def _clean_value_package(t: PassTemplate, errors: _Errors) -> None:
    """A value package (issue 23): a face value of 0.01 or more drawn down by visits, no quantity,
    paid in full (its balance is all unlocked at once), and it stays a value package once sold."""
    if t.face_value_minor < 1:
        errors.add("face_value_minor", "The value it holds must be more than zero.")
    if t.quantity is not None:
        errors.add(
            "quantity",
            "A package that holds a value has no quantity of uses; leave the quantity empty.",
        )
    if t.instalments != 1:
        errors.add(
            "instalments", "A package that holds a value is paid in full; set instalments to 1."
        )


def _clean_mode(t: PassTemplate, errors: _Errors) -> None:
    """A sold package keeps counting uses or holding a value: the template cannot switch once sold."""
    if not t.pk or t.kind != Kind.PACKAGE:
        return
    was_value = (
        PassTemplate.objects.filter(pk=t.pk).values_list("face_value_minor", flat=True).get()
        is not None
    )
    if was_value != (t.face_value_minor is not None) and t.sold.exists():
        errors.add(
            "face_value_minor",
            "Packages of this template are sold, so it cannot switch between counting "
            "uses and holding a value. Create a new template instead.",
        )


def _clean_window(t: PassTemplate, errors: _Errors) -> None:
    """Issue 23: days as digits 0 (Monday) to 6, a window with both ends (or none), a cap of 1 or more."""
    days = t.allowed_days or ""
    if any(c not in "0123456" for c in days) or len(set(days)) != len(days):
        errors.add(
            "allowed_days",
            'Give each day once, as "0" (Monday) to "6" (Sunday); empty for every day.',
        )
    else:
        t.allowed_days = "".join(sorted(days))
    if (t.window_start is None) != (t.window_end is None):
        errors.add(
            "window_end" if t.window_end is None else "window_start",
            "Give both the start and the end of the hours, or neither.",
        )
    elif t.window_start is not None and t.window_start == t.window_end:
        errors.add("window_end", "The hours end when they start; leave both empty for any time.")
    if t.cap_uses is not None and t.cap_uses < 1:
        errors.add("cap_uses", "The cap must be at least 1 use, or empty for no cap.")
    if not t.cap_period:
        t.cap_period = "week"  # the form's empty choice
    if t.cap_period not in ("day", "week"):
        errors.add("cap_period", "The cap is per day or per week.")


def _clean_membership(t: PassTemplate, errors: _Errors) -> None:
    """SPEC 6.1 and 9.7: billed per cycle for a term (or open-ended), uses per cycle, rollover, pause."""
    if t.cycle not in Cycle.values:
        errors.add("cycle", "Choose the billing cycle: weekly, monthly or yearly.")
    if t.term_cycles is not None and not 1 <= t.term_cycles <= MAX_TERM_CYCLES:
        errors.add(
            "term_cycles",
            f"The term must be between 1 and {MAX_TERM_CYCLES} cycles, or empty for open-ended.",
        )
    if t.cancellable_after_cycles is None or not 0 <= t.cancellable_after_cycles <= MAX_CYCLE_COUNT:
        errors.add(
            "cancellable_after_cycles",
            f"“Cancellable after” must be 0 to {MAX_CYCLE_COUNT} cycles.",
        )
    elif t.term_cycles is not None and t.cancellable_after_cycles > t.term_cycles:
        errors.add(
            "cancellable_after_cycles",
            f"“Cancellable after” cannot be more than the term ({t.term_cycles} cycles).",
        )
    if t.uses_per_cycle is not None and not 1 <= t.uses_per_cycle <= MAX_CYCLE_COUNT:
        errors.add(
            "uses_per_cycle",
            f"Uses per cycle must be 1 to {MAX_CYCLE_COUNT}, or empty for unlimited.",
        )
    if t.rollover_cap is not None and not 1 <= t.rollover_cap <= MAX_CYCLE_COUNT:
        errors.add(
            "rollover_cap",
            f"The rollover cap must be 1 to {MAX_CYCLE_COUNT} uses, or empty for no cap.",
        )
    elif t.rollover_cap is not None and not t.rollover:
        errors.add(
            "rollover_cap",
            "A rollover cap applies only when unused uses roll over; turn rollover on or "
            "leave the cap empty.",
        )
    if t.rollover and t.uses_per_cycle is None:
        errors.add(
            "rollover",
            "Unlimited uses have nothing to roll over; set uses per cycle or turn rollover off.",
        )
    if not t.pause_allowed:
        t.pause_max_cycles = 0
    elif t.pause_max_cycles is None or not 1 <= t.pause_max_cycles <= MAX_TERM_CYCLES:
        errors.add(
            "pause_max_cycles",
            f"When pausing is allowed, give the longest pause: 1 to {MAX_TERM_CYCLES} cycles.",
        )
    _clean_freeze_fee(t, errors)


MAX_FREEZE_FEE_MINOR = 10_000_000  # a freeze fee of at most 100,000.00


def _clean_freeze_fee(t: PassTemplate, errors: _Errors) -> None:
    """Issue 22 point 7: a freeze fee is none, once per pause or per frozen cycle, and needs an amount."""
    if t.freeze_fee_kind not in FreezeFee.values:
        errors.add(
            "freeze_fee_kind", "Choose the freeze fee: none, once per pause or per frozen cycle."
        )
    elif t.freeze_fee_kind == FreezeFee.NONE or not t.pause_allowed:
        if t.freeze_fee_kind != FreezeFee.NONE:
            errors.add(
                "freeze_fee_kind",
                "A freeze fee needs pausing allowed; allow pausing or choose no fee.",
            )
        elif t.freeze_fee_minor:
            errors.add(
                "freeze_fee_minor",
                "Choose when the freeze fee is billed (once or per frozen cycle), or leave "
                "the amount at 0.",
            )
    elif t.freeze_fee_minor is None or not 0 < t.freeze_fee_minor <= MAX_FREEZE_FEE_MINOR:
        errors.add("freeze_fee_minor", "Give the freeze fee: more than 0 and at most 100,000.00.")
    if t.quantity is not None:
        errors.add(
            "quantity", "A membership has uses per cycle, not a quantity; leave the quantity empty."
        )
    if t.face_value_minor is not None:
        errors.add(
            "face_value_minor", "A membership has uses per cycle; only a package can hold a value."
        )
    if t.expiry_value is not None:
        errors.add(
            "expiry_value", "A membership does not expire; it ends with its term or when cancelled."
        )
    if t.instalments != 1:
        errors.add("instalments", "A membership is billed per cycle; it has no instalments.")
    if t.transferable:
        errors.add("transferable", "A membership cannot be transferred.")
    if t.family_sharing:
        errors.add("family_sharing", "Family sharing applies to packages only.")


def _clean_locations(given, errors: _Errors) -> list[int] | None:
    """The allowed locations' ids (instances or ids; None: unchanged), each one that exists."""
    from carnet.clinic.models import Location

    if given is None:
        return None
    ids = [_id(x) for x in given]
    found = set(
        Location.objects.filter(pk__in=[i for i in ids if _fits(Location, "id", i)]).values_list(
            "pk", flat=True
        )
    )
    if set(ids) - found:
        errors.add(
            "location_ids", f"No location with id {', '.join(map(str, sorted(set(ids) - found)))}."
        )
    return ids


def _clean_items(t: PassTemplate, items: list[dict], errors: _Errors) -> list[dict]:
    if not items:
        errors.add(
            "items",
            f"Add at least one eligible item: a treatment or class the {_noun(t.kind)} covers.",
        )
        return []
    ids = [_id(row.get("treatment", row.get("treatment_id"))) for row in items]
    known = Treatment.objects.in_bulk(
        [i for i in ids if isinstance(i, int) and _fits(Treatment, "id", i)]
    )
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
            errors.add(
                where + "treatment",
                f"{treatment.name} is listed twice; each treatment can be an eligible item once.",
            )
        seen.add(tid)
        label = treatment.name if treatment else "this item"
        charge = row.get("additional_charge_minor") or 0
        compensation = row.get("compensation_minor")
        limit = row.get("limit")
        value = row.get("value_minor")
        for key, value_ in (
            ("additional_charge_minor", charge),
            ("compensation_minor", compensation),
            ("limit", limit),
            ("value_minor", value),
        ):
            if not _fits(EligibleItem, key, value_):
                errors.add(
                    where + key,
                    f"The {key.removesuffix('_minor').replace('_', ' ')} for {label} is too large.",
                )
        if charge < 0:
            errors.add(
                where + "additional_charge_minor",
                f"The additional charge for {label} must be zero or more.",
            )
        if compensation is not None and compensation < 0:
            errors.add(
                where + "compensation_minor",
                f"The staff compensation value for {label} must be zero or more "
                "(leave it empty to use the treatment's price).",
            )
        if limit is not None and (limit < 1 or (t.quantity is not None and limit > t.quantity)):
            top = f" and the quantity ({t.quantity})" if t.quantity is not None else ""
            errors.add(
                where + "limit",
                f"The limit for {label} must be between 1{top}, or empty for no limit.",
            )
        if value is not None and t.face_value_minor is None:
            errors.add(
                where + "value_minor",
                f"A value for {label} applies to a package that holds a value; leave "
                "it empty for a package that counts uses.",
            )
        elif value is not None and value < 0:
            errors.add(
                where + "value_minor",
                f"The value drawn for {label} must be zero or more (leave it empty to "
                "draw the treatment's price).",
            )
        clean.append(
            {
                "treatment_id": tid,
                "additional_charge_minor": charge,
                "compensation_minor": compensation,
                "limit": limit,
                "value_minor": value,
            }
        )
    return clean


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
    errors = _Errors()
    tax_ids = _clean_template(t, data, errors, names)
    clean_items = _clean_items(t, _items_of(t) if items is None else list(items), errors)
    location_ids = _clean_locations(location_ids, errors)
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


# ---------------------------------------------------------------- update sold packages / all memberships

# "Redeem on online bookings" is auto-select's online twin: it carries over with it (issue 20 point 8).
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
    """An expired package keeps its quantity: its unused uses went to breakage and cannot come back."""
    return terms["quantity"] if sold.status == Pass.Status.ACTIVE else sold.quantity


def _today():
    return clock.today(clinic_get().time_zone)


def _money(minor: int) -> str:
    return str(clinic_get().money(minor))


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
    rows = list(sold.instalment_rows.order_by("seq"))
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
                f"Cycle {row.seq} (from {row.period_start:%Y-%m-%d}) already has {row.used_count} uses "
                f"booked, more than the new {allowed}; it keeps {_uses(row.used_count)}."
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
            "No further cycle will be invoiced (the term is over or it is cancelled at a cycle end); "
            "only the name and the other terms change.",
        )
        return changes, notes
    issued = [r for r in rows if r.invoice_id is not None and not r.skipped]
    if price_change:
        notes.insert(
            0,
            f"The amount {_money(terms['cycle_price_minor'])} applies from {first} on; the "
            f"{len(issued)} invoice{'s' if len(issued) != 1 else ''} already issued stay at their amount.",
        )
    if uses_change:
        today = _today()
        current = next((r for r in issued if r.period_start <= today < r.period_end), None)
        keeps = (
            f" (the current cycle {current.seq} keeps {_uses(current.uses_allowed)})"
            if current
            else ""
        )
        notes.insert(
            1 if price_change else 0,
            f"{_uses(terms['uses_per_cycle']).capitalize()} per cycle from {first} on; cycles already "
            f"invoiced keep their allowance{keeps}.",
        )
    return changes, notes


def _plan(sold: Pass, terms: dict, categories: dict) -> dict | None:
    """The before/after of one sold package or membership and what stops the update; None if nothing would change."""
    fields = _fields(terms["kind"])
    items = {i.treatment_id: i for i in sold.items.all()}
    before = {f: getattr(sold, f) for f in fields} | {
        "income_category": categories.get(sold.income_category_id, ""),
        "items": [_item_view(i) for i in items.values()],
    }
    after_items, problems = [], []
    who = f"{sold.name} (#{sold.pk}, {sold.patient})"
    for tid, new in terms["items"].items():
        after_items.append(_item_view(new))
        old = items.get(tid)
        if old and new.limit is not None and new.limit < old.used_count:
            problems.append(
                {
                    "code": "limit_below_used",
                    "message": (
                        f"{who} has used {new.treatment.name} {old.used_count} times; the new limit {new.limit} is lower."
                    ),
                }
            )
    for tid, old in items.items():
        if tid in terms["items"]:
            continue
        if old.used_count:
            problems.append(
                {
                    "code": "eligible_item_in_use",
                    "message": (
                        f"{who} has used {old.treatment.name} {old.used_count} times, so it cannot stop being an eligible item."
                    ),
                }
            )
        elif old.redemptions.exists():  # released uses only: kept for history, with no uses left
            after_items.append(_item_view(old, limit=0))
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
                        f"{who} has {used} uses reserved, used or forfeited; the new quantity {quantity} is lower."
                    ),
                },
            )

    def key(view):
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

    changed = [f for f in fields if before[f] != after[f]]
    if key(before) != key(after):
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
    noun = _noun(template.kind)
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
            f"A sold {noun} was used while it was being updated; nothing was changed. Please try again.",
            code="changed_meanwhile",
        ) from None
    summary = {k: v for k, v in terms.items() if k not in ("items", "kind")} | {
        "items": _items_of(template)
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
