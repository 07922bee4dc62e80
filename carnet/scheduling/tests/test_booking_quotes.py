"""Online booking's choices and prices: "any practitioner" offers every practitioner's free times,
the first available day is found ahead, and the confirm page and email say what the visit costs or
which package covers it and what is left of it."""

import datetime as dt

import pytest
from django.core import mail
from django.test import Client

from carnet.conftest import PASSWORD, make_patient
from carnet.core import clock
from carnet.passes.memberships.services import membership_sell
from carnet.passes.tests.factories import membership_template, package_template, sold_package
from carnet.people.models import Shift
from carnet.people.services import patient_portal_enable
from carnet.scheduling import online

from .factories import at, practitioner

DAY = "2026-03-10"  # a Tuesday
pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(catalog, owner):
    catalog["treatment"].online_bookable = True
    catalog["treatment"].save()
    anna, bob = practitioner(catalog["location"]), practitioner(catalog["location"])
    anna.display_name, bob.display_name = "Anna", "Bob"
    anna.save(), bob.save()
    Shift.objects.create(
        staff=anna,
        location=catalog["location"],
        weekday=1,
        start_time=dt.time(9),
        end_time=dt.time(11),
    )
    Shift.objects.create(
        staff=bob,
        location=catalog["location"],
        weekday=1,
        start_time=dt.time(10),
        end_time=dt.time(12),
    )
    me = make_patient(email="me@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    with clock.frozen(at("2026-03-09", "12:00")):
        yield {**catalog, "anna": anna, "bob": bob, "owner": owner, "me": me}


def test_any_practitioner_offers_each_free_time_once_with_who_is_free(setup):
    times = online.bookable_times(
        treatment=setup["treatment"], location=setup["location"], day=dt.date.fromisoformat(DAY)
    )
    assert [(t.strftime("%H:%M"), p.display_name) for t, p in times] == [
        ("09:00", "Anna"),
        ("10:00", "Anna"),
        ("11:00", "Bob"),
    ]
    only_bob = online.bookable_times(
        treatment=setup["treatment"],
        location=setup["location"],
        day=dt.date.fromisoformat(DAY),
        practitioner=setup["bob"],
    )
    assert [t.strftime("%H:%M") for t, _ in only_bob] == ["10:00", "11:00"]


def test_the_first_available_day_is_found_ahead_and_the_page_shows_the_week_from_it(setup):
    assert online.first_available_day(
        treatment=setup["treatment"], location=setup["location"], start=dt.date(2026, 3, 11)
    ) == dt.date(2026, 3, 17)
    html = (
        Client()
        .get(f"/book/{setup['location'].pk}/?treatment={setup['treatment'].pk}")
        .content.decode()
    )
    assert "First available: " in html and "Tuesday 10 March</a> with Anna" not in html
    assert "Tuesday 10 March at 09:00</a> with Anna" in html
    assert "Massage 60 (60 min) · $101.70" in html  # 90.00 + 13% tax
    assert "<small>Bob</small>" in html and 'aria-current="true">Week of 9 Mar' in html


def _confirm_page(s, client):
    start = at(DAY, "09:00").isoformat()
    return client.get(
        f"/book/{s['location'].pk}/confirm/",
        {"treatment": s["treatment"].pk, "practitioner": s["anna"].pk, "start": start, "any": 1},
    ).content.decode()


def test_the_confirm_page_names_the_package_that_will_cover_the_visit_and_what_is_left(setup):
    client = Client()
    assert "You pay $101.70 (tax included) at the clinic." in _confirm_page(setup, client)
    template = package_template(setup, name="10 Massages", quantity=10, redeem_online=True)
    sold = sold_package(setup["owner"], setup["me"], template)
    client.force_login(setup["me"].user)
    assert "You pay $101.70 (tax included)" in _confirm_page(
        setup, Client()
    )  # not logged in: price only
    assert "Covered by 10 Massages — 9 left after this visit; you pay $0.00." in _confirm_page(
        setup, client
    )
    sold.items.update(additional_charge_minor=1000)
    assert (
        "Covered by 10 Massages — 9 left after this visit; you pay $11.30 (the additional "
        "charge, tax included)."
    ) in _confirm_page(setup, client)


def test_a_membership_cover_counts_this_cycles_uses(setup):
    template = membership_template(setup, name="Wellness monthly", uses=2, redeem_online=True)
    membership_sell(
        actor=setup["owner"].user,
        patient=setup["me"],
        template=template,
        start_date=dt.date(2026, 3, 1),
    )
    client = Client()
    client.force_login(setup["me"].user)
    assert "Covered by Wellness monthly — 1 use left this cycle after this visit" in _confirm_page(
        setup, client
    )


def test_the_confirmation_email_says_what_the_visit_costs(
    setup, django_capture_on_commit_callbacks
):
    template = package_template(setup, name="10 Massages", quantity=10, redeem_online=True)
    sold_package(setup["owner"], setup["me"], template)
    with django_capture_on_commit_callbacks(execute=True):
        online.appointment_book_online(
            user=setup["me"].user,
            patient=setup["me"],
            treatment=setup["treatment"],
            practitioner=setup["anna"],
            location=setup["location"],
            start=at(DAY, "09:00"),
            idempotency_key="k1",
        )
    [message] = mail.outbox
    assert "Covered by 10 Massages — 9 left after this visit; you pay $0.00." in message.body
