"""Checking a package or membership template before it is saved (SPEC 5.1, 6.1, 9.3–9.7, 9.10,
16): every field's range, a package's uses or value, a membership's cycles, pause and freeze fee,
hours and caps, the eligible items, taxes and locations. All problems are gathered and raised
together, by field, so a form shows all of them. `services.template_save` calls `template_check`.
"""

from __future__ import annotations

from django.db import connection, models

from carnet.clinic.models import IncomeCategory, Location, Tax, Treatment
from carnet.core.errors import ValidationFailed
from carnet.passes.models import (
    MEMBERSHIP_TERMS,
    Cycle,
    EligibleItem,
    ExpiryUnit,
    FreezeFee,
    Kind,
    PassTemplate,
)

from .expiry_rules import template_expiry_allowed

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
_MEMBERSHIP = MEMBERSHIP_TERMS
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


def template_noun(kind: str) -> str:
    return "membership" if kind == Kind.MEMBERSHIP else "package"


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
    """Whether an integer (or id, for a relation) fits the database column;
    non-integers are left to other checks."""
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
    """Copy `data` onto the unsaved template and check it; returns the tax ids to set
    (None: unchanged)."""
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
        errors.add("name", f"Give the {template_noun(t.kind)} a name.")
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
    """A sold package keeps counting uses or holding a value:
    the template cannot switch once sold."""
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
    """Issue 23: days as digits 0 (Monday) to 6, a window with both ends (or none),
    a cap of 1 or more."""
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
    """SPEC 6.1 and 9.7: billed per cycle for a term (or open-ended),
    uses per cycle, rollover, pause."""
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
    """Issue 22 point 7: a freeze fee is none, once per pause or per frozen cycle,
    and needs an amount."""
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
            f"Add at least one eligible item: a treatment or class the {template_noun(t.kind)} "
            "covers.",
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
        charge, compensation, limit, value = _item_amounts(t, row, where, label, errors)
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


def _item_amounts(t: PassTemplate, row: dict, where: str, label: str, errors: _Errors):
    """(additional charge, compensation, limit, value) of an eligible item, each checked: it fits,
    is not negative, a limit within the quantity, a value only on a package that holds one."""
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
    return charge, compensation, limit, value


def template_check(
    t: PassTemplate,
    data: dict,
    items: list[dict],
    location_ids,
    names: dict[str, str],
) -> tuple[list[int] | None, list[dict], list[int] | None]:
    """Copy `data` onto the unsaved template and check it with its items and locations; raise
    ValidationFailed with every problem, or return (tax ids, clean items, location ids) to save
    (None: unchanged)."""
    errors = _Errors()
    tax_ids = _clean_template(t, data, errors, names)
    clean_items = _clean_items(t, items, errors)
    location_ids = _clean_locations(location_ids, errors)
    errors.raise_any()
    return tax_ids, clean_items, location_ids
