"""The terms a sold pass keeps (SPEC 5.4, 6.4, 9.5): its own copy of its template's terms, so that
a later change of the template or of the clinic's settings never alters what the patient bought.

One place says which terms those are, for every way a pass comes to be: a package sold
(packages.selling), a membership sold or imported (memberships.services.membership_copy), a
package imported (packages.opening), a membership's plan change (memberships.plan_change, the new
plan's terms) and a transfer (packages.ending, a copy of the old pass's own terms). At the passes
root, below both rooms that sell. passes/tests/test_terms.py checks that every field of a
template reaches a sold package, a sold membership, a transferred and an imported pass, or is
named there as one a pass does not keep.
"""

from __future__ import annotations

from carnet.clinic.selectors import clinic_get
from carnet.passes.models import MEMBERSHIP_TERMS, EligibleItem, Pass, PassItem, PassTemplate
from carnet.passes.redeeming.breakage import breakage_rate_at_sale
from carnet.passes.redeeming.windows import window_terms
from carnet.passes.setup.expiry_rules import expiry_terms

# A template's terms a pass keeps under the same name: both kinds', a package's, a membership's
# (models.MEMBERSHIP_TERMS).
TERMS = (
    "name",
    "income_category_id",
    "auto_select",
    "redeem_online",
    "family_sharing",
    "tax_inclusive",
)
PACKAGE_TERMS = ("quantity", "face_value_minor", "transferable", "instalments")
# The clinic's expiry terms on the day of the sale (setup.expiry_rules.expiry_terms).
EXPIRY_TERMS = ("expiry_preset", "expiry_rule", "expiry_minimum_days", "expiry_disclosure")
# An eligible item's terms its pass's copy keeps (PassItem); `value_minor` only on a pass that
# holds a value (a template's items have one only then, setup.checks).
ITEM_TERMS = ("treatment_id", "additional_charge_minor", "compensation_minor", "limit")


def pass_terms(source: PassTemplate | Pass, *, clinic=None) -> dict:
    """The Pass fields a pass keeps, as keyword arguments for `Pass(...)`: from a template, what
    a pass sold (or imported) now takes, with the clinic's expiry terms and breakage rate of the
    day; from a pass (a transfer), that pass's own, whatever the template or the clinic say now.
    The caller adds what is not a term (patient, price, dates, counts) and what it changes on
    purpose (a transfer's remaining uses, an import's counts, a plan change's term)."""
    membership = source.kind == Pass.Kind.MEMBERSHIP
    names = TERMS + (MEMBERSHIP_TERMS if membership else PACKAGE_TERMS)
    terms = {"kind": source.kind, **{n: getattr(source, n) for n in names}}
    if membership:
        # A membership counts uses per cycle, is never transferred and is billed cycle by cycle.
        terms.update(quantity=None, transferable=False, instalments=1)
    if isinstance(source, Pass):
        kept = EXPIRY_TERMS + (("cycle_price_minor",) if membership else ("breakage_rate_bp",))
        terms.update(
            template_id=source.template_id,
            window_terms=source.window_terms,
            **{n: getattr(source, n) for n in kept},
        )
        return terms
    clinic = clinic or clinic_get()
    terms.update(template=source, window_terms=window_terms(source))
    if membership:
        terms["cycle_price_minor"] = source.price_minor
    else:
        terms["breakage_rate_bp"] = breakage_rate_at_sale(source, clinic)
    # Quebec lets a membership of unlimited uses over a fixed term end (expiry_rules).
    unlimited_term = membership and source.uses_per_cycle is None and source.term_cycles is not None
    expiry = expiry_terms(clinic, unlimited_term=unlimited_term)
    terms.update(
        expiry_preset=expiry.preset,
        expiry_rule=expiry.rule,
        expiry_minimum_days=expiry.minimum_days,
        expiry_disclosure=expiry.disclosure,
    )
    return terms


def items_copy(
    sold: Pass, items: list[EligibleItem] | list[PassItem], *, left_only: bool = False
) -> list[PassItem]:
    """`sold`'s copies (not saved) of a template's eligible items, or of another pass's items.
    `left_only` (a transfer): what is left of each item's limit, and none of an item used up."""
    copies = []
    for item in items:
        terms = {n: getattr(item, n) for n in ITEM_TERMS}
        if left_only and item.limit is not None:
            terms["limit"] = item.limit - item.used_count
            if terms["limit"] <= 0:
                continue
        if sold.face_value_minor is not None:
            terms["value_minor"] = item.value_minor
        copies.append(PassItem(sold_pass=sold, **terms))
    return copies
