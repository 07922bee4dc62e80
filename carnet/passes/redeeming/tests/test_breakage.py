"""Breakage in proportion to redemptions (issue 23 point 5, ASC 606-10-55-48): each use of a package
sold under the proportional method also recognises its share of the template's expected breakage,
through a contra account; a package used more than expected takes it back; when it ends the rest is
trued up, so breakage in all is the value never redeemed. The roll-forward shows both columns and
ties to the ledger; ledger_check holds after every step."""

import datetime as dt

import pytest
from django.urls import reverse

from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import Api, make_patient
from carnet.core import clock
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.models import Pass, PassTemplate
from carnet.passes.packages.ending import pass_refund, passes_expire
from carnet.passes.setup.tests.test_setup_views import form_data
from carnet.passes.tests.factories import at, package_template, practitioner, sold_package
from carnet.reports import pass_reports as reports
from carnet.scheduling.arrival import appointment_arrive, appointment_unarrive
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db
MAY = {"start": "2026-05-01", "end": "2026-05-31"}
SHARE = 10000 * 1000 // 9000  # a use of 100.00 at 10 % expected: 1/9 of it, 11.11


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto", breakage_method="proportional")
    with clock.frozen(at("2026-05-01", "10:00")):
        template = package_template(
            catalog, name="10 massages", price=100000, quantity=10, expected_breakage_bp=1000
        )
        patient = make_patient()
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "patient": patient,
            "prac": practitioner(catalog["location"]),
            "template": template,
            "sold": sold_package(front_desk, patient, template, expires_on=dt.date(2026, 5, 31)),
        }


def _arrive(s, n, day=12):
    done = []
    for i in range(n):
        appointment = appointment_book(
            actor=s["fd"].user,
            treatment=s["cat"]["treatment"],
            practitioner=s["prac"],
            location=s["cat"]["location"],
            start=at(f"2026-05-{day + i // 8:02d}", f"{9 + i % 8:02d}:00"),
            patients=[s["patient"]],
        )
        done.append(appointment_arrive(actor=s["fd"].user, appointment=appointment))
    return done


def _books():
    return {
        "deferred": balance(accounts.DEFERRED_PACKAGES),
        "ahead": balance(accounts.EXPECTED_BREAKAGE),
        "breakage": balance(accounts.BREAKAGE),
    }


def _package_row(rf):
    return {
        k: v for k, v in {r["type"]: r for r in rf.types.rows}["Package"].items() if k != "type"
    }


def test_each_use_recognises_its_share_and_the_rollforward_ties(s):
    assert s["sold"].breakage_rate_bp == 1000
    _arrive(s, 1)
    assert _books() == {"deferred": 90000, "ahead": SHARE, "breakage": SHARE}
    assert Pass.objects.get(pk=s["sold"].pk).breakage_expected_minor == SHARE
    assert_ledger_ok()
    rf = reports.deferred_revenue_rollforward(actor=s["admin"].user, **MAY)
    row = _package_row(rf)
    assert (row["sold"], row["redeemed"], row["breakage_expected"], row["expired"]) == (
        100000,
        10000,
        SHARE,
        0,
    )
    assert row["closing"] == row["ledger"] == 90000 - SHARE and rf.ties_out
    assert "breakage_expected" in [c.key for c in rf.table.columns]


def test_a_package_used_in_full_takes_its_expected_breakage_back(s):
    _arrive(s, 9)
    assert _books()["ahead"] == 9 * SHARE  # 99.99, under the 100.00 still deferred
    assert_ledger_ok()
    _arrive(s, 1, day=14)
    assert _books() == {
        "deferred": 0,
        "ahead": 0,
        "breakage": 0,
    }  # nothing was left unused: no breakage
    assert_ledger_ok()
    assert reports.deferred_revenue_rollforward(actor=s["admin"].user, **MAY).ties_out


def test_expiry_trues_up_so_breakage_in_all_is_the_value_never_used(s):
    _arrive(s, 3)
    assert passes_expire(today=dt.date(2026, 6, 1)) == 1
    assert _books() == {"deferred": 0, "ahead": 0, "breakage": 70000}
    assert Pass.objects.get(pk=s["sold"].pk).breakage_expected_minor == 0
    assert_ledger_ok()
    row = _package_row(
        reports.deferred_revenue_rollforward(
            actor=s["admin"].user, start="2026-05-01", end="2026-06-01"
        )
    )
    assert (row["breakage_expected"], row["expired"], row["closing"], row["ledger"]) == (
        3 * SHARE,
        70000 - 3 * SHARE,
        0,
        0,
    )


def test_unarriving_a_visit_reverses_its_share(s):
    [appointment] = _arrive(s, 1)
    appointment_unarrive(actor=s["fd"].user, appointment=appointment)
    assert _books() == {"deferred": 100000, "ahead": 0, "breakage": 0}
    assert Pass.objects.get(pk=s["sold"].pk).breakage_expected_minor == 0
    assert_ledger_ok()


def test_a_refund_settles_what_was_recognised_ahead(s):
    _arrive(s, 2)
    pass_refund(actor=s["admin"].user, sold_pass=s["sold"], amount_minor=50000)
    books = _books()
    assert books["ahead"] == 0 and books["deferred"] == 0
    assert (
        books["breakage"] == 80000 - 50000
    )  # the value kept on the refund, nothing recognised twice
    assert_ledger_ok()
    assert reports.deferred_revenue_rollforward(actor=s["admin"].user, **MAY).ties_out


def test_at_expiry_the_default_posts_nothing_ahead_and_a_sold_package_keeps_its_method(s):
    clinic_set(breakage_method="expiry")
    other = sold_package(s["fd"], make_patient(), s["template"])
    assert other.breakage_rate_bp == 0
    _arrive(s, 1)  # s["sold"] was sold under the proportional method: it keeps it
    assert _books()["ahead"] == SHARE
    assert_ledger_ok()


def test_the_rate_is_checked_and_offered_in_settings(s, owner, client):
    url = "/pass-templates"
    body = {
        "name": "Too hopeful",
        "price_minor": 1000,
        "income_category_id": s["cat"]["income_category"].pk,
        "quantity": 5,
        "items": [{"treatment_id": s["cat"]["treatment"].pk}],
    }
    refused = Api(s["admin"].user).post(url, {**body, "expected_breakage_bp": 9500})
    assert refused.status_code == 422 and "expected breakage" in refused.content.decode()
    made = Api(s["admin"].user).post(url, {**body, "expected_breakage_bp": 1500})
    assert made.status_code == 201 and made.json()["expected_breakage_bp"] == 1500
    client.force_login(owner.user)
    page = client.get(reverse("clinic:clinic_settings")).content.decode()
    assert "In proportion to redemptions (ASC 606-10-55-48)" in page


def test_the_template_page_sets_the_expected_breakage_rate(s, client):
    """Each template's rate is the clinic's to set, on Settings → Packages & Memberships too."""
    client.force_login(s["admin"].user)
    page = client.get(reverse("pass_templates:new")).content.decode()
    assert "Expected breakage rate" in page
    data = form_data(s["cat"], name="Ten with breakage", expected_breakage_bp="1200")
    response = client.post(reverse("pass_templates:new"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert PassTemplate.objects.get(name="Ten with breakage").expected_breakage_bp == 1200
    too_hopeful = client.post(
        reverse("pass_templates:new"), {**data, "name": "Hopeful", "expected_breakage_bp": "9500"}
    )
    assert too_hopeful.status_code == 200 and not PassTemplate.objects.filter(name="Hopeful")
