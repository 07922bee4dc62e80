"""The terms a sold pass keeps (passes.terms): every field of a template reaches every pass made
from it — a sold package, a sold membership, a transferred package, an imported package and an
imported membership — or is named below as one a pass does not keep, or keeps in another shape.

The lists are read against the model: a field added to PassTemplate (or EligibleItem) fails here
until passes.terms copies it, or it is named in NOT_KEPT with why. The templates set every term
to a value that is not its default, so a forgotten copy cannot pass unseen."""

import datetime as dt

import pytest

from carnet.clinic.models import Clinic, IncomeCategory, Tax
from carnet.clinic.selectors import clinic_get
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.passes.charging import pass_invoices_bill
from carnet.passes.memberships import opening as membership_opening
from carnet.passes.memberships.services import membership_sell
from carnet.passes.models import MEMBERSHIP_TERMS, EligibleItem, PassTemplate
from carnet.passes.packages import opening as package_opening
from carnet.passes.packages.ending import pass_transfer
from carnet.passes.packages.selling import default_expiry, package_sell
from carnet.passes.redeeming.windows import window_terms
from carnet.passes.setup.expiry_rules import expiry_terms
from carnet.passes.terms import PACKAGE_TERMS
from carnet.scheduling.tests.factories import clinic_set

from .factories import at, pay_in_full

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 5, 1)

# A template's fields no pass keeps under their own name, and why.
NOT_KEPT = {
    "archived": "the template's own: whether it is still sold",
    "created_at": "the template's own",
    "updated_at": "the template's own",
    "price_minor": "a sale prices the pass: a package's plan total, a membership's cycle price",
    "sold_online": "offered online; a pass's sold_online says whether it was bought there",
    "new_patients_only": "an intro offer, checked at the sale",
    "once_per_patient": "an intro offer, checked at the sale",
    # Kept in another shape, checked by _derived_terms below.
    "expiry_value": "the sale's expires_on (default_expiry)",
    "expiry_unit": "the sale's expires_on (default_expiry)",
    "expected_breakage_bp": "a package's breakage_rate_bp, when the clinic says proportional",
    "allowed_locations": "window_terms",
    "allowed_days": "window_terms",
    "window_start": "window_terms",
    "window_end": "window_terms",
    "cap_uses": "window_terms",
    "cap_period": "window_terms",
}
# Terms of one kind only (passes.terms says which kind, this test that each is copied): a pass of
# the other kind keeps its own fixed value instead.
PACKAGE_ONLY = set(PACKAGE_TERMS)
MEMBERSHIP_ONLY = set(MEMBERSHIP_TERMS)
ITEM_NOT_KEPT = {"template": "the copy belongs to the pass"}


def _fields(model) -> dict:
    """The model's own fields (columns and many-to-many, not its id), by name."""
    return {
        f.name: f
        for f in model._meta.get_fields()
        if (f.concrete or f.many_to_many) and not f.auto_created
    }


def _value(obj, field):
    if field.many_to_many:
        return sorted(getattr(obj, field.name).values_list("pk", flat=True))
    return getattr(obj, field.attname)


def _kept(kind: str, *, left_out=()) -> list:
    other = MEMBERSHIP_ONLY if kind == PassTemplate.Kind.PACKAGE else PACKAGE_ONLY
    skip = set(NOT_KEPT) | other | set(left_out)
    return [f for name, f in _fields(PassTemplate).items() if name not in skip]


def _assert_terms_reach(template, sold, *, left_out=(), item_left_out=()) -> None:
    """Every term of `template` has the same value on `sold`, and every eligible item's on its
    copy; `left_out` are what this way of making a pass sets on purpose (with why, at the call)."""
    for field in _kept(template.kind, left_out=left_out):
        assert _value(sold, field) == _value(template, field), field.name
    copies = {i.treatment_id: i for i in sold.items.all()}
    assert set(copies) == set(template.items.values_list("treatment_id", flat=True))
    for item in template.items.all():
        for name, field in _fields(EligibleItem).items():
            if name not in ITEM_NOT_KEPT and name not in item_left_out:
                assert _value(copies[item.treatment_id], field) == _value(item, field), name


def _not_defaults(template, *, item_left_out=()) -> None:
    """The template sets every term it keeps (and each item every field) to a non-default value;
    its kind is the fixture's choice."""
    for field in _kept(template.kind, left_out=("kind",)):
        value = _value(template, field)
        default = [] if field.many_to_many else field.get_default()
        assert value not in ([], None, default), f"set {field.name} in the fixture"
    for item in template.items.all():
        for name, field in _fields(EligibleItem).items():
            if name not in ITEM_NOT_KEPT and name not in item_left_out:
                assert _value(item, field) not in (None, field.get_default()), f"set item {name}"


def _derived_terms(template, sold, clinic, *, window=True) -> None:
    """The terms a pass keeps in another shape: its window and the clinic's expiry terms of the
    day (a sale's or an import's)."""
    if window:
        assert sold.window_terms == window_terms(template) and sold.window_terms["days"]
    unlimited = template.uses_per_cycle is None and template.term_cycles is not None
    terms = expiry_terms(
        clinic, unlimited_term=template.kind == PassTemplate.Kind.MEMBERSHIP and unlimited
    )
    assert (
        sold.expiry_preset,
        sold.expiry_rule,
        sold.expiry_minimum_days,
        sold.expiry_disclosure,
    ) == (terms.preset, terms.rule, terms.minimum_days, terms.disclosure)


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(
        time_zone="America/Toronto",
        breakage_method=Clinic.BreakageMethod.PROPORTIONAL,
        pass_expiry_preset="us_federal",
    )
    other = IncomeCategory.objects.create(name="Passes income")
    tax = Tax.objects.create(name="GST", rate="5.000")
    with clock.frozen(at(TODAY.isoformat(), "10:00")):
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "income": other,
            "taxes": [catalog["tax"], tax],
            "patient": make_patient(),
            "clinic": clinic_get(),
        }


def _template(s, kind: str, **fields) -> PassTemplate:
    """Every term away from its default (the template is made directly: a value package with a
    quantity too, so that both counts are seen copied)."""
    now = clock.now()
    shared = {
        "name": f"Terms {kind}",
        "price_minor": 30000,
        "tax_inclusive": True,
        "income_category": s["income"],
        "expiry_value": 6,
        "expiry_unit": "years",  # the US federal preset: at least 5 years
        "auto_select": False,
        "redeem_online": True,
        "family_sharing": True,
        "sold_online": True,
        "allowed_days": "024",
        "window_start": dt.time(6),
        "window_end": dt.time(9),
        "cap_uses": 2,
        "cap_period": "day",
        "created_at": now,
        "updated_at": now,
    }
    template = PassTemplate.objects.create(kind=kind, **{**shared, **fields})
    template.taxes.set(s["taxes"])
    template.allowed_locations.set([s["cat"]["location"]])
    EligibleItem.objects.create(
        template=template,
        treatment=s["cat"]["treatment"],
        additional_charge_minor=500,
        compensation_minor=4000,
        limit=5,
        value_minor=6000 if kind == PassTemplate.Kind.PACKAGE else None,
    )
    return template


def _package(s) -> PassTemplate:
    return _template(
        s,
        PassTemplate.Kind.PACKAGE,
        quantity=10,
        face_value_minor=50000,
        transferable=True,
        instalments=3,
        expected_breakage_bp=1000,
    )


def _membership(s) -> PassTemplate:
    return _template(
        s,
        PassTemplate.Kind.MEMBERSHIP,
        cycle="weekly",
        term_cycles=12,
        cancellable_after_cycles=2,
        uses_per_cycle=3,
        rollover=True,
        rollover_cap=4,
        pause_allowed=True,
        pause_max_cycles=2,
        freeze_fee_kind="once",
        freeze_fee_minor=500,
        self_cancel=True,
    )


def test_the_lists_name_only_fields_the_models_have():
    fields = set(_fields(PassTemplate))
    assert set(NOT_KEPT) | PACKAGE_ONLY | MEMBERSHIP_ONLY <= fields
    assert set(ITEM_NOT_KEPT) <= set(_fields(EligibleItem))


def test_a_sold_package_keeps_every_term_of_its_template(s):
    template = _package(s)
    _not_defaults(template)
    sold = package_sell(actor=s["fd"].user, patient=s["patient"], template=template)
    _assert_terms_reach(template, sold)
    _derived_terms(template, sold, s["clinic"])
    assert sold.breakage_rate_bp == template.expected_breakage_bp
    assert sold.expires_on == default_expiry(template, TODAY)


def test_a_transferred_package_keeps_every_term_of_the_pass_it_came_from(s):
    template = _package(s)
    sold = package_sell(actor=s["fd"].user, patient=s["patient"], template=template)
    pass_invoices_bill(today=TODAY + dt.timedelta(days=70))  # every instalment invoiced
    pay_in_full(s["admin"], sold)
    new = pass_transfer(actor=s["admin"].user, sold_pass=sold, to_patient=make_patient())
    # What is left of it (a value: its balance), paid in full by the first owner.
    _assert_terms_reach(template, new, left_out=("quantity", "face_value_minor", "instalments"))
    assert (new.quantity, new.face_value_minor, new.instalments) == (None, 50000, 1)
    _derived_terms(template, new, s["clinic"])
    assert (new.breakage_rate_bp, new.expires_on) == (sold.breakage_rate_bp, sold.expires_on)


def test_an_imported_package_keeps_every_term_of_its_template_but_what_the_file_says(s):
    template = _package(s)
    [(imported, _)] = package_opening.packages_open(
        actor=s["admin"].user,
        openings=[
            package_opening.Opening(
                patient_id=s["patient"].pk,
                template=template,
                purchase_date=TODAY - dt.timedelta(days=30),
                price_minor=30000,
                quantity=4,
                remaining=3,
                value_minor=22500,
                expires_on=None,
            )
        ],
        at=clock.now(),
        memo="Import",
        zone="America/Toronto",
    )
    # The file's counts (an imported pass counts uses: no value, so no item value either), paid
    # before the switch in one go, taxed there; breakage at expiry only.
    _assert_terms_reach(
        template,
        imported,
        left_out=("quantity", "face_value_minor", "instalments", "taxes"),
        item_left_out=("value_minor",),
    )
    assert (imported.quantity, imported.face_value_minor, imported.instalments) == (4, None, 1)
    assert not imported.taxes.exists() and imported.breakage_rate_bp == 0
    _derived_terms(template, imported, s["clinic"])


def test_a_sold_membership_keeps_every_term_of_its_template(s):
    template = _membership(s)
    _not_defaults(template, item_left_out=("value_minor",))  # only a package holds a value
    sold = membership_sell(actor=s["fd"].user, patient=s["patient"], template=template)
    _assert_terms_reach(template, sold)
    _derived_terms(template, sold, s["clinic"])
    assert (sold.quantity, sold.transferable, sold.instalments) == (None, False, 1)
    assert sold.cycle_price_minor == template.price_minor


def test_an_imported_membership_keeps_every_term_of_its_template_but_what_is_left(s):
    template = _membership(s)
    start = TODAY - dt.timedelta(weeks=3)
    current = membership_opening.current_cycle(
        template, start_date=start, next_cycle=TODAY + dt.timedelta(weeks=1)
    )
    [(imported, _)] = membership_opening.memberships_open(
        actor=s["admin"].user,
        openings=[
            membership_opening.Opening(
                patient_id=s["patient"].pk,
                template=template,
                start_date=start,
                current=current,
                uses_taken=1,
                cycle_price_minor=25000,
                payment_mode="manual",
            )
        ],
        at=clock.now(),
        cut_over=TODAY,
        memo="Import",
        zone="America/Toronto",
    )
    # What is left of its term, counted from the current cycle (the fourth).
    _assert_terms_reach(template, imported, left_out=("term_cycles",))
    assert imported.term_cycles == template.term_cycles - 3
    _derived_terms(template, imported, s["clinic"])
