"""Value packages (issue 23 point 3) ending and reported: expiry moves the free balance's share of
deferred revenue to breakage (a booking on or before expiry keeps its hold), a refund suggests the
price in proportion to the value left, a transfer moves the value left, family sharing draws on the
owner's balance, proportional breakage follows the value drawn, and the pass sales report and the
deferred-revenue roll-forward show them and still tie to the ledger."""

import datetime as dt

import pytest
from django.urls import reverse

from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import PASSWORD, Api, make_patient
from carnet.core import clock
from carnet.core.errors import Conflict
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.models import Pass, Redemption
from carnet.passes.packages.ending import (
    pass_refund,
    pass_shares_set,
    pass_transfer,
    passes_expire,
    refund_suggestions,
)
from carnet.passes.redeeming.tests.test_value_redemption import value_template
from carnet.passes.tests.factories import at, practitioner, sold_package
from carnet.people.models import FamilyLink
from carnet.people.services import patient_portal_enable
from carnet.reports import pass_reports as reports
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book, appointment_cancel
from carnet.scheduling.tests.factories import clinic_set

from .test_online import buy_online

pytestmark = pytest.mark.django_db
MAY = {"start": "2026-05-01", "end": "2026-06-30"}


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        patient = make_patient()
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "patient": patient,
            "prac": practitioner(catalog["location"]),
            "template": value_template(catalog, transferable=True, family_sharing=True),
        }


def _sell(s, **kw):
    return sold_package(s["fd"], s["patient"], s["template"], **kw)


def _book(s, day="2026-05-12", hhmm="09:00", patient=None):
    return appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(day, hhmm),
        patients=[patient or s["patient"]],
    )


def _fresh(sold):
    return Pass.objects.get(pk=sold.pk)


def test_expiry_moves_the_free_balance_to_breakage_and_a_kept_booking_takes_the_rest(s):
    sold = _sell(s, expires_on=dt.date(2026, 5, 31))
    appointment_arrive(
        actor=s["fd"].user, appointment=_book(s, hhmm="09:00")
    )  # 90.00 drawn: 81.00 recognised
    kept = _book(s, day="2026-05-30")  # held on or before expiry
    assert passes_expire(today=dt.date(2026, 6, 1)) == 1
    sold = _fresh(sold)
    assert (
        sold.status,
        sold.value_forfeited_minor,
        sold.value_reserved_minor,
        sold.value_left,
    ) == ("expired", 82000, 9000, 0)
    left = 90000 - 8100
    keep = left * 9000 // 91000
    assert balance(accounts.BREAKAGE) == left - keep and balance(accounts.DEFERRED_PACKAGES) == keep
    assert_ledger_ok()
    with clock.frozen(at("2026-05-30", "10:00")):
        appointment_arrive(actor=s["fd"].user, appointment=kept)
    sold = _fresh(sold)
    assert (
        sold.recognised_minor == sold.deferred_minor == 90000
        and balance(accounts.DEFERRED_PACKAGES) == 0
    )
    assert_ledger_ok()


def test_a_booking_kept_at_expiry_then_cancelled_strands_no_value(s):
    sold = _sell(s, expires_on=dt.date(2026, 5, 31))
    kept = _book(s, day="2026-05-30")
    passes_expire(today=dt.date(2026, 6, 1))
    appointment_cancel(actor=s["fd"].user, appointment=kept)
    sold = _fresh(sold)
    assert (sold.value_forfeited_minor, sold.value_reserved_minor, sold.recognised_minor) == (
        100000,
        0,
        90000,
    )
    assert balance(accounts.DEFERRED_PACKAGES) == 0 and balance(accounts.BREAKAGE) == 90000
    assert_ledger_ok()


def test_the_refund_suggestion_is_the_price_in_proportion_to_the_value_left(s):
    sold = _sell(s)
    appointment_arrive(actor=s["fd"].user, appointment=_book(s))
    _book(s, hhmm="11:00")  # held: counts as left, voided by the refund
    suggestion = refund_suggestions(_fresh(sold))
    assert (suggestion["value_left"], suggestion["suggested"]) == (91000, 90000 * 91000 // 100000)
    pass_refund(
        actor=s["admin"].user,
        sold_pass=_fresh(sold),
        amount_minor=suggestion["suggested"],
        detach_future=True,
    )
    sold = _fresh(sold)
    assert (
        sold.status,
        sold.value_reserved_minor,
        sold.value_forfeited_minor,
        sold.value_left,
    ) == ("refunded", 0, 91000, 0)
    assert balance(accounts.DEFERRED_PACKAGES) == 0
    assert_ledger_ok()


def test_the_refund_page_explains_the_suggestion_in_money(client, s):
    sold = _sell(s)
    client.force_login(s["admin"].user)
    page = client.get(reverse("passes:refund", kwargs={"pk": sold.pk})).content.decode()
    assert "$1,000.00 of value left ÷ $1,000.00 held" in page and "uses ×" not in page


def test_a_transfer_moves_the_value_left_with_its_deferred_revenue(s):
    sold = _sell(s)
    appointment_arrive(actor=s["fd"].user, appointment=_book(s))
    other = make_patient()
    new = pass_transfer(actor=s["admin"].user, sold_pass=_fresh(sold), to_patient=other)
    assert (new.face_value_minor, new.quantity, new.net_minor, new.deferred_minor) == (
        91000,
        None,
        81900,
        81900,
    )
    old = _fresh(sold)
    assert (old.status, old.value_forfeited_minor, old.recognised_minor) == (
        "transferred",
        91000,
        90000,
    )
    appointment = _book(s, hhmm="13:00", patient=other)
    assert Redemption.objects.get(visit__appointment=appointment).sold_pass_id == new.pk
    appointment_arrive(actor=s["fd"].user, appointment=appointment)
    new = _fresh(new)
    assert new.recognised_minor == 81900 * 9000 // 91000
    assert_ledger_ok()
    with pytest.raises(Conflict):
        pass_transfer(actor=s["admin"].user, sold_pass=old, to_patient=s["patient"])


def test_a_used_up_value_package_cannot_be_transferred(s):
    s["template"].face_value_minor = 9000
    s["template"].save()
    sold = _sell(s)
    appointment_arrive(actor=s["fd"].user, appointment=_book(s))
    with pytest.raises(Conflict) as caught:
        pass_transfer(actor=s["admin"].user, sold_pass=_fresh(sold), to_patient=make_patient())
    assert caught.value.code == "used_up_value" and "no balance left" in caught.value.message


def test_a_shared_family_member_draws_on_the_owners_balance(s):
    sold = _sell(s)
    child = make_patient()
    FamilyLink.objects.create(patient=s["patient"], relative=child, kind="guardian")
    pass_shares_set(actor=s["fd"].user, sold_pass=sold, patients=[child])
    appointment_arrive(actor=s["fd"].user, appointment=_book(s, patient=child))
    sold = _fresh(sold)
    assert (sold.value_posted_minor, sold.value_left) == (9000, 91000)
    assert_ledger_ok()


def test_proportional_breakage_follows_the_value_drawn_and_ends_exact(s):
    clinic_set(breakage_method="proportional")
    s["template"].expected_breakage_bp = 1000
    s["template"].face_value_minor = 18000
    s["template"].save()
    sold = _sell(s, expires_on=dt.date(2026, 5, 31))
    appointment_arrive(actor=s["fd"].user, appointment=_book(s))
    share = 45000 * 1000 // 9000  # 45.00 recognised from 90.00 paid for 180.00: 1/9 of it ahead
    assert balance(accounts.EXPECTED_BREAKAGE) == share == _fresh(sold).breakage_expected_minor
    assert_ledger_ok()
    passes_expire(today=dt.date(2026, 6, 1))
    assert balance(accounts.EXPECTED_BREAKAGE) == 0 and balance(accounts.BREAKAGE) == 45000
    assert balance(accounts.DEFERRED_PACKAGES) == 0
    assert_ledger_ok()
    assert reports.deferred_revenue_rollforward(actor=s["admin"].user, **MAY).ties_out


def test_the_pass_sales_report_shows_value_columns_and_used_up(s):
    s["template"].face_value_minor = 15000
    s["template"].save()
    sold = _sell(s)
    appointment_arrive(actor=s["fd"].user, appointment=_book(s))
    _book(s, hhmm="11:00")  # holds the last 60.00
    table = reports.pass_sales_report(actor=s["admin"].user, **MAY)
    [row] = table.rows
    assert (
        row["value_held"],
        row["value_drawn"],
        row["value_reserved"],
        row["value_forfeited"],
        row["value_left"],
    ) == (15000, 9000, 6000, 0, 0)
    assert row["status"] == "Used up" and row["quantity"] is None and row["remaining"] is None
    assert [
        r["id"]
        for r in reports.pass_sales_report(actor=s["admin"].user, usage="completed", **MAY).rows
    ] == [sold.pk]
    assert not reports.pass_sales_report(actor=s["admin"].user, usage="remaining", **MAY).rows
    assert [
        r["id"]
        for r in reports.pass_sales_report(actor=s["admin"].user, status="used_up", **MAY).rows
    ] == [sold.pk]


def test_the_rollforward_ties_to_the_ledger_through_sale_draws_and_expiry(s):
    _sell(s, expires_on=dt.date(2026, 5, 31))
    appointment_arrive(actor=s["fd"].user, appointment=_book(s))
    appointment_arrive(actor=s["fd"].user, appointment=_book(s, hhmm="11:00"))
    passes_expire(today=dt.date(2026, 6, 1))
    rf = reports.deferred_revenue_rollforward(actor=s["admin"].user, **MAY)
    row = {r["type"]: r for r in rf.types.rows}["Package"]
    assert (row["sold"], row["redeemed"], row["expired"], row["closing"], row["ledger"]) == (
        90000,
        16200,
        90000 - 16200,
        0,
        0,
    )
    assert rf.ties_out and rf.mismatches == []


def test_pages_show_the_money_left_never_sessions(client, s):
    sold = _sell(s)
    appointment_arrive(actor=s["fd"].user, appointment=_book(s))
    client.force_login(s["fd"].user)
    detail = client.get(reverse("passes:detail", kwargs={"pk": sold.pk})).content.decode()
    assert "$910.00" in detail and "$90.00 drawn of $1,000.00" in detail
    listing = client.get(
        reverse("passes:patient_passes", kwargs={"pk": s["patient"].pk})
    ).content.decode()
    assert "$90.00 of $1,000.00" in listing and "$910.00" in listing
    sell = client.get(reverse("passes:sell", kwargs={"pk": s["patient"].pk})).content.decode()
    assert "Wellness bank — $900.00, $1,000.00 of treatments" in sell
    for page in (detail, listing, sell):
        main = page.split("<main", 1)[1].lower()  # the menu's "Sessions" (logins) aside
        assert "session" not in main


def test_the_portal_sells_and_shows_a_value_package_in_money(client, front_desk, catalog):
    """Portal purchase and the Packages tab: what it holds and what is left, in money (issue 23)."""
    clinic_set(online_sales_enabled=True)
    me = make_patient(email="bank@example.test")
    patient_portal_enable(actor=front_desk.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    template = value_template(catalog, sold_online=True)
    client.force_login(me.user)
    buy = client.get(reverse("portal:pass_buy", kwargs={"pk": template.pk})).content.decode()
    assert "$1,000.00 of treatments" in buy and " uses," not in buy and "Unlimited uses" not in buy
    sold = buy_online({"user": me.user, "me": me, "template": template})
    assert sold.face_value_minor == 100000
    bought = client.get(reverse("portal:pass_bought", kwargs={"pk": sold.pk})).content.decode()
    assert "$1,000.00 of treatments" in bought
    tab = client.get(reverse("portal:passes")).content.decode()
    assert f'data-testid="pass-{sold.pk}"' in tab and "$0.00 of $1,000.00 used" in tab
    main = tab.split("<main", 1)[1]
    assert "session" not in main.lower()


def test_the_api_shows_the_value_held_drawn_and_left(s):
    sold = _sell(s)
    appointment_arrive(actor=s["fd"].user, appointment=_book(s))
    api = Api(s["admin"].user)
    got = api.get(f"/passes/{sold.pk}").json()
    assert (
        got["face_value_minor"],
        got["value_left_minor"],
        got["value_posted_minor"],
        got["quantity"],
    ) == (100000, 91000, 9000, None)
    [use] = got["redemptions"]
    assert (
        use["drawn_minor"],
        use["full_value_minor"],
        use["value_left_after_minor"],
        use["value_minor"],
    ) == (9000, 9000, 91000, 8100)
    assert got["items"][0]["value_minor"] is None
    suggestion = api.get(f"/passes/{sold.pk}/refund-suggestion").json()
    assert (suggestion["value_left"], suggestion["suggested"]) == (91000, 81900)
    listed = api.get(f"/patients/{s['patient'].pk}/passes").json()
    assert listed[0]["value_left_minor"] == 91000
