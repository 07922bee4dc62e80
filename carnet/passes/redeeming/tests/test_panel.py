"""The appointment panel's package section (SPEC 5.3): the covering pass, Remove, Change/Use,
Explain, the no-show choice, the booking form's Package choice, the schedule's icon and access."""

import datetime as dt
import re

import pytest
from django.urls import reverse

from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.passes.memberships.services import membership_sell
from carnet.passes.models import Pass, Redemption
from carnet.passes.tests.factories import (
    at,
    membership_template,
    package_template,
    practitioner,
    sold_package,
)
from carnet.people.models import Shift
from carnet.people.services import patient_portal_enable
from carnet.scheduling.models import Appointment
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set, treatment_of

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}
DAY = "2026-05-12"  # a Tuesday


@pytest.fixture
def s(front_desk, catalog, client):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        prac = practitioner(catalog["location"])
        Shift.objects.create(
            staff=prac,
            location=catalog["location"],
            weekday=1,
            start_time=dt.time(8),
            end_time=dt.time(17),
        )
        client.force_login(front_desk.user)
        yield {
            "fd": front_desk,
            "cat": catalog,
            "prac": prac,
            "client": client,
            "patient": make_patient(first_name="Ada", last_name="Quince"),
        }


def _book(s, hhmm="09:00", patients=None, **kw):
    return appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(DAY, hhmm),
        patients=patients or [s["patient"]],
        **kw,
    )


def _live(appointment):
    return Redemption.objects.filter(
        visit__appointment=appointment, status__in=["reserved", "posted"]
    ).first()


def _panel(s, appointment):
    response = s["client"].get(reverse("scheduling:appointment", args=[appointment.pk]), headers=HX)
    assert response.status_code == 200
    return response.content.decode()


def _post(s, appointment, action, data=None, client=None):
    return (client or s["client"]).post(
        reverse(f"scheduling:appointment_{action}", args=[appointment.pk]), data or {}, headers=HX
    )


def test_the_panel_shows_the_auto_selected_package_with_its_uses_left_and_expiry(s):
    sold = sold_package(
        s["fd"],
        s["patient"],
        package_template(s["cat"], name="Ten massages"),
        expires_on=dt.date(2026, 12, 31),
    )
    appointment = _book(s)
    assert _live(appointment).sold_pass == sold
    html = _panel(s, appointment)
    assert 'data-testid="pass-covering"' in html and "Ten massages" in html
    assert "9 remaining" in html and "expires 31 Dec 2026" in html and "Reserved" in html
    assert ">Remove</button>" in html and "Why not?" in html


def test_a_visit_without_a_package_says_so_and_offers_the_ones_that_fit(s):
    appointment = _book(s, pass_choice=None)
    sold = sold_package(
        s["fd"], s["patient"], package_template(s["cat"], name="Five massages", quantity=5)
    )
    html = _panel(s, appointment)
    assert (
        "No package" in html
        and f'<option value="{sold.pk}">Five massages (5 left)</option>' in html
    )
    assert ">Use</button>" in html
    _post(s, appointment, "pass_use", {"patient": s["patient"].pk, "pass": sold.pk})
    assert _live(appointment).sold_pass == sold


def test_remove_frees_the_session(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]))
    appointment = _book(s)
    response = _post(s, appointment, "pass_remove", {"patient": s["patient"].pk})
    html = response.content.decode()
    assert response.status_code == 200 and "Package removed" in html and "No package" in html
    sold.refresh_from_db()
    assert _live(appointment) is None and (sold.reserved_count, sold.remaining) == (0, 10)


def test_change_moves_the_visit_to_another_pass_in_one_request(s):
    template = package_template(s["cat"])
    first = sold_package(s["fd"], s["patient"], template, expires_on=dt.date(2026, 6, 30))
    second = sold_package(s["fd"], s["patient"], template, expires_on=None)
    appointment = _book(s)
    assert _live(appointment).sold_pass == first
    html = _panel(s, appointment)
    assert ">Change</button>" in html and f'<option value="{second.pk}">' in html
    response = _post(s, appointment, "pass_use", {"patient": s["patient"].pk, "pass": second.pk})
    assert "now covers this visit" in response.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert _live(appointment).sold_pass == second
    assert (first.reserved_count, second.reserved_count) == (0, 1)


def test_a_refused_change_keeps_the_current_pass(s):
    template = package_template(s["cat"])
    first = sold_package(s["fd"], s["patient"], template)
    unpaid = sold_package(s["fd"], s["patient"], template, paid=False)
    appointment = _book(s)
    response = _post(s, appointment, "pass_use", {"patient": s["patient"].pk, "pass": unpaid.pk})
    assert response.status_code == 200 and "Not paid yet" in response.content.decode()
    assert _live(appointment).sold_pass == first
    assert Pass.objects.get(pk=first.pk).reserved_count == 1


def test_explain_lists_every_pass_with_its_reason(s):
    template = package_template(s["cat"])
    sold_package(s["fd"], s["patient"], template, paid=False)
    sold_package(s["fd"], s["patient"], template, expires_on=dt.date(2026, 5, 10))
    appointment = _book(s)
    assert _live(appointment) is None
    url = reverse("scheduling:appointment_pass_explain", args=[appointment.pk])
    fragment = s["client"].get(url, {"patient": s["patient"].pk}, headers=HX).content.decode()
    assert 'data-code="not_paid"' in fragment and "Not paid yet" in fragment
    assert 'data-code="expired"' in fragment and "Expired on 2026-05-10" in fragment
    assert "(not_paid)" not in fragment and "(expired)" not in fragment  # words, not codes
    assert "<html" not in fragment
    page = s["client"].get(
        url, {"patient": s["patient"].pk}
    )  # without htmx: the appointment page, list open
    assert page.status_code == 200 and 'data-code="not_paid"' in page.content.decode()
    assert "<html" in page.content.decode()


def test_explain_is_for_staff_only(s, client):
    appointment = _book(s)
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    patient_portal_enable(actor=owner.user, patient=s["patient"], password="a long enough password")
    s["patient"].refresh_from_db()
    client.force_login(s["patient"].user)
    response = client.get(reverse("scheduling:appointment_pass_explain", args=[appointment.pk]))
    assert response.status_code == 302 and "Packages for" not in response.content.decode()


def test_a_covered_no_show_offers_using_the_session_or_charging_the_fee(s):
    clinic_set(no_show_fee_minor=4000)
    cat = s["cat"]
    template = package_template(cat, items=[(cat["treatment"], 1000, None, None)])
    sold = sold_package(s["fd"], s["patient"], template)
    appointment = _book(s)
    html = _panel(s, appointment)
    assert (
        "No-show (use a session)" in html
        and "No-show (charge the $40.00 fee, keep the session)" in html
    )
    _post(s, appointment, "no_show", {"charge_fee": "1", "use_pass": "1"})
    live = _live(appointment)
    assert live.status == "posted" and live.by_no_show
    visit = appointment.visits.get()
    assert visit.invoice.total_minor == 1130  # the additional charge (with the catalog's tax)

    other = _book(s, "11:00")
    _post(s, other, "no_show", {"charge_fee": "1", "use_pass": "0"})
    visit = other.visits.get()
    sold.refresh_from_db()
    assert _live(other) is None and visit.invoice.total_minor == 4000
    assert (sold.reserved_count, sold.posted_count) == (0, 1)


def test_an_uncovered_no_show_keeps_the_plain_buttons(s):
    html = _panel(s, _book(s))
    assert "No-show (use a session)" not in html and "No-show (no fee)" in html


def test_the_booking_form_package_choice(s):
    sold = sold_package(s["fd"], s["patient"], package_template(s["cat"]))
    url = f"{reverse('scheduling:book')}?location={s['cat']['location'].pk}"
    page = s["client"].get(url).content.decode()
    assert 'name="package"' in page and "Auto: use a paid package" in page
    base = {
        "treatment": s["cat"]["treatment"].pk,
        "patient": s["patient"].pk,
        "practitioner": s["prac"].pk,
    }
    s["client"].post(url, {**base, "start": f"{DAY}T09:00", "package": "none", "form_key": "k1"})
    s["client"].post(url, {**base, "start": f"{DAY}T11:00", "package": "auto", "form_key": "k2"})
    plain, covered = Appointment.objects.order_by("start")
    assert _live(plain) is None and _live(covered).sold_pass == sold


def test_the_schedule_marks_covered_appointments_only(s, django_assert_max_num_queries):
    sold_package(s["fd"], s["patient"], package_template(s["cat"]))
    covered = _book(s, "09:00")
    plain = _book(s, "11:00", patients=[make_patient()])
    url = reverse("scheduling:schedule")
    params = {"location": s["cat"]["location"].pk, "date": DAY}
    html = s["client"].get(url, params).content.decode()
    assert (
        f'data-testid="covered-{covered.pk}"' in html
        and 'aria-label="Covered by a package"' in html
    )
    assert f'data-testid="covered-{plain.pk}"' not in html
    for hhmm in ("13:00", "14:00", "15:00"):  # more covered appointments cost no more queries
        _book(s, hhmm, patients=[make_patient()])
    with django_assert_max_num_queries(60) as before:
        s["client"].get(url, params)
    count = len(before.captured_queries)
    for hhmm in ("08:00", "10:00", "12:00"):
        other = make_patient()
        sold_package(s["fd"], other, package_template(s["cat"], name=f"P{hhmm}"))
        _book(s, hhmm, patients=[other])
    with django_assert_max_num_queries(count) as after:
        html = s["client"].get(url, params).content.decode()
    assert len(re.findall(r'data-testid="covered-', html)) == 4
    assert len(after.captured_queries) <= count


def test_group_secondaries_use_the_primary_s_package(s):
    group = treatment_of(s["cat"], "group", capacity=3)
    sold = sold_package(
        s["fd"],
        s["patient"],
        package_template(s["cat"], name="Group pack", items=[(group, 0, None, None)]),
    )
    friend = make_patient(first_name="Bo", last_name="Friend")
    appointment = appointment_book(
        actor=s["fd"].user,
        treatment=group,
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(DAY, "09:00"),
        patients=[s["patient"], friend],
    )
    html = _panel(s, appointment)
    assert "The group uses the primary's package." in html and "Group pack" in html
    assert _live(appointment).sold_pass == sold


def test_staff_without_billing_see_no_package_controls_and_a_post_is_refused(s, client):
    sold_package(s["fd"], s["patient"], package_template(s["cat"]))
    appointment = _book(s)
    nobill = make_staff(AccessLevel.FRONT_DESK, billing=False)
    client.force_login(nobill.user)
    html = client.get(
        reverse("scheduling:appointment", args=[appointment.pk]), headers=HX
    ).content.decode()
    assert 'data-testid="pass-coverage"' not in html and "Why not?" not in html
    response = _post(s, appointment, "pass_remove", {"patient": s["patient"].pk}, client=client)
    assert response.status_code == 403 and "billing access" in response.content.decode()
    assert _live(appointment) is not None
    response = client.get(reverse("scheduling:appointment_pass_explain", args=[appointment.pk]))
    assert response.status_code == 403


def test_sell_a_package_links_to_the_checkout_for_this_visit(s):
    appointment = _book(s)
    target = (
        f"{reverse('billing:purchase_new', args=[s['patient'].pk])}?appointment={appointment.pk}"
    )
    html = _panel(s, appointment)
    assert f'href="{target}">Sell a package</a>' in html


def test_a_membership_covering_a_visit_with_an_unpaid_cycle_shows_a_warning(
    front_desk, catalog, client
):
    with clock.frozen(at("2026-05-01", "10:00")):
        patient = make_patient()
        membership_sell(
            actor=front_desk.user, patient=patient, template=membership_template(catalog)
        )
        appointment = appointment_book(
            actor=front_desk.user,
            treatment=catalog["treatment"],
            practitioner=practitioner(catalog["location"]),
            location=catalog["location"],
            start=at("2026-05-04", "09:00"),
            patients=[patient],
        )
        client.force_login(front_desk.user)
        page = client.get(reverse("scheduling:appointment", args=[appointment.pk])).content.decode()
    assert "Membership:" in page and "this cycle 1 of 2 used" in page
    assert "not paid yet" in page
