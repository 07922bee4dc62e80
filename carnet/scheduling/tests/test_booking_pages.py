"""The way into online booking: "Book online" from the portal's menu leads to the one location's
page, or to a choice of location when the clinic has several."""

import datetime as dt

import pytest
from django.test import Client

from carnet.clinic.models import Location
from carnet.conftest import PASSWORD, make_patient
from carnet.people.models import Shift
from carnet.people.services import patient_portal_enable

from .factories import clinic_set, practitioner

pytestmark = pytest.mark.django_db


def test_book_online_goes_straight_to_the_only_location(catalog):
    response = Client().get("/book/")
    assert (
        response.status_code == 302 and response["Location"] == f"/book/{catalog['location'].pk}/"
    )


def test_book_online_offers_each_active_location_with_its_hours_and_what_can_be_booked(catalog):
    uptown = Location.objects.create(
        name="Uptown", time_zone="America/Toronto", address="1 High St"
    )
    Location.objects.create(name="Closed", time_zone="America/Toronto", is_active=False)
    for weekday, start, end in [(0, 9, 12), (0, 13, 18), (2, 10, 14)]:
        Shift.objects.create(
            staff=practitioner(uptown),
            location=uptown,
            weekday=weekday,
            start_time=dt.time(start),
            end_time=dt.time(end),
        )
    catalog["treatment"].online_bookable = True
    catalog["treatment"].save()
    html = Client().get("/book/").content.decode()
    assert catalog["location"].name in html and "Uptown" in html and "1 High St" in html
    assert "Closed" not in html
    assert "<dt>Monday</dt><dd>09:00–18:00</dd><dt>Wednesday</dt><dd>10:00–14:00</dd>" in html
    assert f'href="/book/{uptown.pk}/">Book at Uptown</a>' in html
    assert 'Massage 60 <span class="muted">· 60 min · $101.70</span>' in html


def test_visitors_land_on_the_clinic_page_at_the_root_and_staff_and_patients_do_not(catalog, owner):
    """`/` for a visitor: the clinic's locations with hours, what can be booked with price, a Book
    button each (even with one location), and the doors to the portal and the staff log-in."""
    Shift.objects.create(
        staff=practitioner(catalog["location"]),
        location=catalog["location"],
        weekday=1,
        start_time=dt.time(9),
        end_time=dt.time(17),
    )
    catalog["treatment"].online_bookable = True
    catalog["treatment"].save()
    response = Client().get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert f'href="/book/{catalog["location"].pk}/">Book at {catalog["location"].name}</a>' in html
    assert "<dt>Tuesday</dt><dd>09:00–17:00</dd>" in html and "Massage 60" in html
    assert 'href="/portal/login/"' in html and 'href="/login/"' in html
    staff = Client()
    staff.force_login(owner.user)
    assert (
        staff.get("/").status_code == 200 and b"Book at" not in staff.get("/").content
    )  # Today, not the landing
    me = make_patient(email="lands@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    patient = Client()
    patient.force_login(me.user)
    assert patient.get("/")["Location"] == "/portal/"


def test_every_portal_page_has_the_same_menu_with_book_online(catalog, owner):
    clinic_set(gift_cards_enabled=True, gift_card_online_sales_enabled=True)
    me = make_patient(email="menu@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    client = Client()
    me.refresh_from_db()
    client.force_login(me.user)
    menus = set()
    for path in [
        "/portal/",
        "/portal/passes/",
        "/portal/gift-cards/buy/",
        "/portal/account/password/",
        f"/book/{catalog['location'].pk}/",
    ]:
        html = client.get(path).content.decode()
        nav = html[html.index('<nav class="mainnav"') : html.index("</nav>")]
        menus.add(nav.replace(' aria-current="page"', ""))
        assert 'href="/book/"' in nav and 'aria-current="page"' in nav
    assert len(menus) == 1
