"""The portal's Packages & Memberships tab tells the truth: a payment plan says what its payments
have unlocked and what is due next (as staff see it), each pass and offer lists what it covers,
prices on sale include their tax before the card form, a membership shows its next billing amount,
and Settings explains the clinic's online-sales switch next to each template's "Sold online"."""

import datetime as dt

import pytest
from django.test import Client

from carnet.billing.payments import payment_receive
from carnet.conftest import PASSWORD, make_patient
from carnet.core import clock
from carnet.passes.memberships.services import membership_sell
from carnet.passes.selectors import pass_invoices
from carnet.passes.tests.factories import at, membership_template, package_template, sold_package
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(catalog, owner):
    clinic_set(online_sales_enabled=True, time_zone="America/Toronto")
    me = make_patient(email="me@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    client = Client()
    client.force_login(me.user)
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {**catalog, "owner": owner, "me": me, "client": client}


def _tab(s) -> str:
    return s["client"].get("/portal/passes/").content.decode()


def test_a_partly_paid_plan_says_how_many_sessions_are_unlocked_and_the_next_instalment(s):
    template = package_template(s, name="Plan of 8", price=80000, quantity=8, instalments=4)
    sold = sold_package(s["owner"], s["me"], template, paid=False)
    assert (
        'data-testid="pass-status">Awaiting payment (next instalment $200.00 on 1 May 2026)<'
        in _tab(s)
    )
    [first] = pass_invoices(sold)
    payment_receive(
        actor=s["owner"].user,
        patient=s["me"],
        method="cash",
        amount_minor=first.total_minor,
        allocations=[(first, first.total_minor)],
    )
    assert (
        'data-testid="pass-status">2 of 8 sessions unlocked, next instalment $200.00 on 1 Jun 2026<'
        in _tab(s)
    )


def test_passes_and_offers_list_what_they_cover_and_prices_include_tax(s):
    template = package_template(
        s,
        name="10 Massages",
        price=99000,
        quantity=10,
        sold_online=True,
        taxes=[s["tax"]],
        items=[(s["treatment"], 500, None, None)],
    )
    sold_package(s["owner"], s["me"], template)
    html = _tab(s)
    assert (
        html.count('Massage 60 <small class="muted">(+$5.00)</small>') == 2
    )  # the pass and the offer
    assert (
        'data-testid="offer-price">$1,118.70 <small class="muted">incl. tax</small>' in html
    )  # 990.00 + 13%
    page = s["client"].get(f"/portal/passes/buy/{template.pk}/").content.decode()
    assert 'data-testid="pass-price">$1,118.70<' in page
    assert f'data-testid="pass-total">$1,118.70 including tax ($990.00 + {s["tax"].name})<' in page
    assert 'data-testid="pass-covers">Massage 60' in page


def test_a_membership_shows_its_next_billing_date_and_amount(s):
    template = membership_template(s, name="Wellness monthly", price=6000, taxes=[s["tax"]])
    membership_sell(
        actor=s["owner"].user, patient=s["me"], template=template, start_date=dt.date(2026, 5, 1)
    )
    html = _tab(s)
    assert 'data-testid="membership-next-billing">2026-06-01<' in html
    assert 'data-testid="membership-next-amount">$67.80<' in html


def test_settings_says_when_the_clinic_switch_keeps_sold_online_templates_off_the_portal(s):
    package_template(s, name="10 Massages", sold_online=True)
    staff = Client()
    staff.force_login(s["owner"].user)
    page = staff.get("/settings/passes/").content.decode()
    assert "Online sales are on" in page and 'data-testid="online-off"' not in page
    clinic_set(online_sales_enabled=False)
    page = staff.get("/settings/passes/").content.decode()
    assert "Online sales are off" in page and 'data-testid="online-off"' in page
    assert "Packages are not sold online at the moment" in _tab(s)
