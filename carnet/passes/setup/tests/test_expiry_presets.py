"""Jurisdiction presets for the clinic's expiry rule (issue 23 point 4): Quebec, Ontario, US federal
or none decide the rule; a sold pass keeps the terms of its sale (printed on the sale receipt, shown
in the portal) whatever the clinic's preset says later; Quebec offers a balance
under 5.00 on request."""

import datetime as dt

import pytest
from django.urls import reverse

from carnet.billing.documents import receipt_context
from carnet.conftest import PASSWORD, Api, make_patient
from carnet.core import clock
from carnet.core.errors import ValidationFailed
from carnet.passes.memberships import services as ms
from carnet.passes.packages.ending import pass_expiry_set, pass_transfer
from carnet.passes.selectors import pass_invoices
from carnet.passes.setup.expiry_rules import expiry_terms, template_expiry_allowed
from carnet.passes.tests.factories import (
    at,
    membership_template,
    package_template,
    practitioner,
    sold_package,
)
from carnet.people.services import patient_portal_enable
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db
FIVE_YEARS = dt.date(2031, 5, 1)  # from the sale on 2026-05-01


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "patient": make_patient(),
            "never": package_template(catalog, name="10 massages"),
            "year": package_template(
                catalog, name="Year of massage", expiry_value=12, expiry_unit="months"
            ),
        }


def _sell(s, template, **kwargs):
    return sold_package(s["fd"], s["patient"], template, **kwargs)


@pytest.mark.parametrize(
    "preset, rule, minimum",
    [
        ("quebec", "forbidden", 0),
        ("ontario", "forbidden", 0),
        ("us_federal", "minimum", 1826),
        ("none", "minimum", 30),
    ],
)
def test_each_preset_decides_the_rule_none_keeps_the_clinics_own(s, preset, rule, minimum):
    clinic_set(pass_expiry_preset=preset, pass_expiry_rule="minimum", pass_expiry_minimum_days=30)
    terms = expiry_terms()
    assert (terms.rule, terms.minimum_days) == (rule, minimum)
    assert terms.small_balance_refund == (preset == "quebec")


@pytest.mark.parametrize(
    "preset, refused", [("quebec", True), ("ontario", True), ("us_federal", True), ("none", False)]
)
def test_a_sale_with_a_one_year_expiry_follows_the_preset(s, preset, refused):
    clinic_set(pass_expiry_preset=preset)
    if refused:
        with pytest.raises(ValidationFailed) as error:
            _sell(s, s["year"])
        assert "preset" in error.value.message
    else:
        assert _sell(s, s["year"]).expires_on == dt.date(2027, 5, 1)
    _sell(s, s["never"])  # no expiry: always allowed


def test_us_federal_takes_five_years_and_a_template_shorter_is_refused(s):
    clinic_set(pass_expiry_preset="us_federal")
    assert _sell(s, s["never"], expires_on=FIVE_YEARS).expires_on == FIVE_YEARS
    with pytest.raises(ValidationFailed):
        _sell(s, s["never"], expires_on=FIVE_YEARS - dt.timedelta(days=1))
    template_expiry_allowed(value=5, unit="years")
    with pytest.raises(ValidationFailed):
        template_expiry_allowed(value=4, unit="years")


def test_quebec_lets_an_unlimited_membership_over_a_fixed_term_end_and_says_so(s):
    clinic_set(pass_expiry_preset="quebec")
    unlimited = ms.membership_sell(
        actor=s["fd"].user,
        patient=s["patient"],
        template=membership_template(s["cat"], name="Unlimited year", uses=None, term=12),
    )
    counted = ms.membership_sell(
        actor=s["fd"].user,
        patient=s["patient"],
        template=membership_template(s["cat"], name="Two a month", uses=2),
    )
    assert (
        unlimited.expiry_rule == "allowed" and "ends with its term" in unlimited.expiry_disclosure
    )
    assert counted.expiry_rule == "forbidden" and "does not expire" in counted.expiry_disclosure
    assert "under $5.00 is refunded on request" in counted.expiry_disclosure


def test_a_sold_pass_keeps_its_terms_when_the_preset_changes(s):
    clinic_set(pass_expiry_preset="us_federal")
    federal = _sell(s, s["never"], expires_on=FIVE_YEARS)
    clinic_set(pass_expiry_preset="ontario")
    ontario = _sell(s, s["never"])
    clinic_set(pass_expiry_preset="none")
    for sold in (federal, ontario):
        sold.refresh_from_db()
    assert (federal.expiry_preset, federal.expires_on) == ("us_federal", FIVE_YEARS)
    assert "5 years" in federal.expiry_disclosure and "do not expire" in ontario.expiry_disclosure
    # Sold under Ontario: no expiry may be added later, although the clinic's rule now allows it.
    with pytest.raises(ValidationFailed) as error:
        pass_expiry_set(actor=s["admin"].user, sold_pass=ontario, expires_on=dt.date(2027, 1, 1))
    assert "Ontario preset" in error.value.message
    # Sold under US federal: at least 5 years still, although the clinic's rule now allows less.
    with pytest.raises(ValidationFailed):
        pass_expiry_set(actor=s["admin"].user, sold_pass=federal, expires_on=dt.date(2027, 1, 1))
    pass_expiry_set(actor=s["admin"].user, sold_pass=federal, expires_on=dt.date(2032, 1, 1))
    # A transfer keeps the first sale's terms.
    ontario.transferable = True
    ontario.save(update_fields=["transferable"])
    moved = pass_transfer(
        actor=s["admin"].user, sold_pass=ontario, to_patient=make_patient(first_name="Other")
    )
    assert (moved.expiry_preset, moved.expiry_rule) == ("ontario", "forbidden")


def test_an_expiry_edit_also_meets_the_clinics_rule_today(s):
    federal = _sell(s, s["never"])  # sold under none / allowed
    clinic_set(pass_expiry_preset="ontario")
    with pytest.raises(ValidationFailed):
        pass_expiry_set(actor=s["admin"].user, sold_pass=federal, expires_on=FIVE_YEARS)
    pass_expiry_set(actor=s["admin"].user, sold_pass=federal, expires_on=None)


def test_the_sale_receipt_and_the_portal_show_the_terms_of_the_sale(s, owner, client):
    clinic_set(pass_expiry_preset="ontario", online_sales_enabled=True)
    me = make_patient(email="me@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    sold = sold_package(s["fd"], me, s["never"])
    [invoice] = pass_invoices(sold)
    [line] = receipt_context(invoice)["sale_terms"]
    assert (
        line["disclosure"]
        == "Ontario: prepaid passes and gift cards sold by this clinic do not expire."
    )
    client.force_login(s["fd"].user)
    page = client.get(reverse("billing:receipt", args=[invoice.pk])).content.decode()
    assert "10 massages: does not expire. Ontario: prepaid passes" in page
    clinic_set(
        pass_expiry_preset="us_federal"
    )  # the receipt and the portal still say what was sold
    assert (
        "10 massages: does not expire. Ontario: prepaid passes"
        in client.get(reverse("billing:receipt", args=[invoice.pk])).content.decode()
    )
    s["never"].sold_online = True
    s["never"].save(update_fields=["sold_online"])
    client.force_login(me.user)
    portal = client.get(reverse("portal:passes")).content.decode()
    assert "Ontario: prepaid passes" in portal  # the pass bought
    assert "US federal law (CARD Act)" in portal  # what a purchase now is sold with
    mine = Api(me.user).get(f"/passes/{sold.pk}").json()
    assert mine["expiry_disclosure"].startswith("Ontario")


def _use(s, sold, times):
    prac = practitioner(s["cat"]["location"])
    for n in range(times):
        appointment = appointment_book(
            actor=s["fd"].user,
            treatment=s["cat"]["treatment"],
            practitioner=prac,
            location=s["cat"]["location"],
            start=at("2026-05-12", f"{9 + n:02d}:00"),
            patients=[sold.patient],
        )
        appointment_arrive(actor=s["fd"].user, appointment=appointment)


@pytest.mark.parametrize("preset", ["quebec", "none"])
def test_quebec_offers_a_balance_under_five_dollars_on_the_refund_form(s, client, preset):
    clinic_set(pass_expiry_preset=preset)
    sold = _sell(s, package_template(s["cat"], name="3 for 12", price=1200, quantity=3))
    _use(s, sold, 2)  # 4.00 left
    clinic_set(
        pass_expiry_preset="none" if preset == "quebec" else "quebec"
    )  # the terms of the sale decide
    client.force_login(s["admin"].user)
    page = client.get(reverse("passes:refund", args=[sold.pk])).content.decode()
    offered = (
        Api(s["admin"].user).get(f"/passes/{sold.pk}/refund-suggestion").json()["small_balance"]
    )
    if preset == "quebec":
        assert 'data-testid="small-balance"' in page and "refunded on request" in page
        assert offered == 400
    else:
        assert 'data-testid="small-balance"' not in page and offered is None


def test_the_settings_page_offers_the_presets_and_says_sold_passes_keep_their_terms(
    s, owner, client
):
    client.force_login(owner.user)
    page = client.get(reverse("clinic:clinic_settings")).content.decode()
    assert "Pass expiry preset" in page and "Ontario / no expiry" in page
    assert "Changing it never alters passes already sold" in page
    assert Api(owner.user).patch("/clinic", {"pass_expiry_preset": "quebec"}).status_code == 200
    assert Api(owner.user).patch("/clinic", {"pass_expiry_preset": "mars"}).status_code == 422
