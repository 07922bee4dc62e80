"""Membership templates (SPEC 6.1, 9.7) and "update all memberships" (SPEC 6.4)."""

import datetime as dt

import pytest

from carnet.billing.models import Invoice
from carnet.clinic.models import IncomeCategory
from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import Conflict, NotAllowed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.passes.memberships import services as ms
from carnet.passes.memberships.cycle_billing import cycles_issue
from carnet.passes.models import PassInvoice, PassTemplate
from carnet.passes.setup.services import template_save
from carnet.passes.setup.sold_update import sold_update, sold_update_preview
from carnet.passes.setup.tests.test_setup import one_item, refused, second_treatment
from carnet.passes.tests.factories import at, practitioner
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


def membership_data(catalog, **over):
    data = {
        "kind": "membership",
        "name": "Wellness monthly",
        "price_minor": 6000,
        "income_category": catalog["income_category"],
        "cycle": "monthly",
        "term_cycles": 12,
        "cancellable_after_cycles": 3,
        "uses_per_cycle": 2,
        "taxes": [],
    }
    data.update(over)
    return data


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        template = template_save(
            actor=admin_staff.user,
            template=None,
            data=membership_data(catalog),
            items=one_item(catalog),
        )
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "t": template,
            "prac": practitioner(catalog["location"]),
        }


def _new(s, **over):
    return lambda: template_save(
        actor=s["admin"].user,
        template=None,
        data=membership_data(s["cat"], **over),
        items=one_item(s["cat"]),
    )


def _sell(s, patient=None, **kw):
    return ms.membership_sell(
        actor=s["fd"].user, patient=patient or make_patient(), template=s["t"], **kw
    )


def _edit(s, items=None, **data):
    return template_save(actor=s["admin"].user, template=s["t"], data=data, items=items)


def _book(s, patient, day):
    return appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(day, "09:00"),
        patients=[patient],
    )


# ---------------------------------------------------------------- template validation


def test_admin_creates_a_membership_template_with_every_field(s):
    t = template_save(
        actor=s["admin"].user,
        template=None,
        items=one_item(s["cat"]),
        data=membership_data(
            s["cat"],
            name="Yoga weekly",
            cycle="weekly",
            term_cycles=None,
            uses_per_cycle=None,
            rollover=False,
            pause_allowed=True,
            pause_max_cycles=2,
            self_cancel=True,
            sold_online=True,
            auto_select=False,
            redeem_online=True,
            taxes=[s["cat"]["tax"]],
        ),
    )
    t.refresh_from_db()
    assert (
        t.kind,
        t.cycle,
        t.term_cycles,
        t.uses_per_cycle,
        t.pause_allowed,
        t.pause_max_cycles,
        t.self_cancel,
        t.sold_online,
        t.auto_select,
        t.redeem_online,
        t.quantity,
    ) == ("membership", "weekly", None, None, True, 2, True, True, False, True, None)
    assert list(t.taxes.all()) == [s["cat"]["tax"]]
    assert ActivityLog.objects.filter(verb="created", object_id=str(t.pk)).exists()


def test_rollover_with_a_cap(s):
    t = _new(s, rollover=True, rollover_cap=2)()
    assert (t.rollover, t.rollover_cap) == (True, 2)
    assert _new(s, rollover=True, rollover_cap=None)().rollover_cap is None


def test_membership_set_up_needs_administrative_access(s):
    fd = make_staff(level=AccessLevel.FRONT_DESK)
    with pytest.raises(NotAllowed):
        template_save(
            actor=fd.user, template=None, data=membership_data(s["cat"]), items=one_item(s["cat"])
        )


@pytest.mark.parametrize(
    "over,field",
    [
        ({"cycle": "daily"}, "cycle"),
        ({"cycle": ""}, "cycle"),
        ({"term_cycles": 0}, "term_cycles"),
        ({"term_cycles": 53}, "term_cycles"),
        ({"uses_per_cycle": 0}, "uses_per_cycle"),
        ({"uses_per_cycle": 1001}, "uses_per_cycle"),
        ({"rollover": True, "rollover_cap": 2**40}, "rollover_cap"),
        ({"pause_allowed": True, "pause_max_cycles": 53}, "pause_max_cycles"),
        ({"term_cycles": None, "cancellable_after_cycles": 2**40}, "cancellable_after_cycles"),
        ({"rollover": True, "rollover_cap": 0}, "rollover_cap"),
        ({"rollover": False, "rollover_cap": 2}, "rollover_cap"),
        ({"rollover": True, "uses_per_cycle": None}, "rollover"),
        ({"pause_allowed": True, "pause_max_cycles": 0}, "pause_max_cycles"),
        ({"cancellable_after_cycles": -1}, "cancellable_after_cycles"),
        ({"cancellable_after_cycles": 13}, "cancellable_after_cycles"),
        ({"quantity": 10}, "quantity"),
        ({"expiry_value": 12}, "expiry_value"),
        ({"instalments": 3}, "instalments"),
        ({"transferable": True}, "transferable"),
        ({"family_sharing": True}, "family_sharing"),
        ({"price_minor": -1}, "price_minor"),
        ({"name": " "}, "name"),
    ],
)
def test_membership_fields_are_checked(s, over, field):
    refused(_new(s, **over), field)
    assert PassTemplate.objects.count() == 1


def test_term_bounds_and_open_ended_are_allowed(s):
    assert _new(s, term_cycles=1, cancellable_after_cycles=1)().term_cycles == 1
    assert _new(s, term_cycles=52)().term_cycles == 52
    assert _new(s, term_cycles=None, cancellable_after_cycles=60)().term_cycles is None


def test_pause_not_allowed_clears_its_limit(s):
    assert _new(s, pause_allowed=False, pause_max_cycles=4)().pause_max_cycles == 0


def test_membership_items_are_checked_like_package_items_with_optional_limits(s):
    refused(
        lambda: template_save(
            actor=s["admin"].user, template=None, data=membership_data(s["cat"]), items=[]
        ),
        "items",
    )
    refused(
        lambda: template_save(
            actor=s["admin"].user,
            template=None,
            data=membership_data(s["cat"]),
            items=one_item(s["cat"], limit=0),
        ),
        "items.0.limit",
    )
    t = template_save(
        actor=s["admin"].user,
        template=None,
        data=membership_data(s["cat"]),
        items=one_item(s["cat"], limit=30, additional_charge_minor=500),
    )
    assert (t.items.get().limit, t.items.get().additional_charge_minor) == (30, 500)


def test_a_membership_stays_a_membership(s):
    _edit(s, kind="package", name="Renamed")
    s["t"].refresh_from_db()
    assert (s["t"].kind, s["t"].name) == ("membership", "Renamed")


# ---------------------------------------------------------------- update all memberships


def test_update_all_memberships_carries_the_spec_terms_only(s):
    sold = _sell(s)
    other = IncomeCategory.objects.create(name="Memberships")
    acupuncture = second_treatment(s["cat"])
    _edit(
        s,
        name="Wellness plus",
        uses_per_cycle=3,
        price_minor=7000,
        income_category=other,
        auto_select=False,
        cancellable_after_cycles=6,
        rollover=True,
        pause_allowed=True,
        pause_max_cycles=2,
        self_cancel=True,
        term_cycles=24,
        items=one_item(s["cat"])
        + [
            {
                "treatment": acupuncture,
                "additional_charge_minor": 1000,
                "compensation_minor": None,
                "limit": None,
            }
        ],
    )
    [plan] = sold_update_preview(template=s["t"])
    assert plan["changed"] == [
        "name",
        "uses_per_cycle",
        "cycle_price_minor",
        "income_category_id",
        "auto_select",
        "cancellable_after_cycles",
        "items",
    ]
    assert (
        plan["before"]["cycle_price_minor"] == 6000 and plan["after"]["cycle_price_minor"] == 7000
    )
    assert sold_update(actor=s["admin"].user, template=s["t"]) == 1
    sold.refresh_from_db()
    assert (
        sold.name,
        sold.uses_per_cycle,
        sold.cycle_price_minor,
        sold.income_category_id,
        sold.auto_select,
        sold.cancellable_after_cycles,
    ) == ("Wellness plus", 3, 7000, other.pk, False, 6)
    # not carried over (SPEC 6.4): term, rollover, pause, self-cancel, and the price it was sold at
    assert (
        sold.term_cycles,
        sold.rollover,
        sold.pause_allowed,
        sold.self_cancel,
        sold.price_minor,
    ) == (12, False, False, False, 6000)
    assert sorted(sold.items.values_list("treatment_id", flat=True)) == sorted(
        [s["cat"]["treatment"].pk, acupuncture.pk]
    )


def test_new_amount_applies_from_the_next_cycle_and_issued_invoices_stay(s):
    sold = _sell(s)
    [may] = Invoice.objects.filter(pass_invoice__sold_pass=sold)
    _edit(s, price_minor=7500)
    [plan] = sold_update_preview(template=s["t"])
    assert (
        "applies from cycle 2 (from 2026-06-01)" in plan["notes"][0]
        and "already issued" in plan["notes"][0]
    )
    sold_update(actor=s["admin"].user, template=s["t"])
    cycles_issue(today=dt.date(2026, 6, 1))
    may_again, june = Invoice.objects.filter(pass_invoice__sold_pass=sold).order_by("pk")
    assert may_again.pk == may.pk and (may_again.total_minor, may_again.subtotal_minor) == (
        6000,
        6000,
    )
    assert june.total_minor == 7500
    assert list(sold.pass_invoices.order_by("seq").values_list("amount_minor", flat=True)) == [
        6000,
        7500,
    ]


def test_a_cycle_made_ahead_by_a_booking_takes_the_new_amount_and_uses(s):
    patient = make_patient()
    sold = _sell(s, patient=patient)
    _book(s, patient, "2026-06-03")  # makes June's row, not invoiced yet
    june = sold.pass_invoices.get(seq=2)
    assert june.invoice_id is None and (
        june.uses_allowed,
        june.used_count,
        june.unit_price_minor,
    ) == (2, 1, 6000)
    _edit(s, price_minor=8000, uses_per_cycle=4)
    [plan] = sold_update_preview(template=s["t"])
    assert plan["cycles"] == [
        {
            "seq": 2,
            "period_start": "2026-06-01",
            "uses_allowed_before": 2,
            "uses_allowed_after": 4,
            "price_before": 6000,
            "price_after": 8000,
        }
    ]
    assert any("current cycle 1 keeps 2 uses" in n for n in plan["notes"])
    sold_update(actor=s["admin"].user, template=s["t"])
    june.refresh_from_db()
    assert (june.uses_allowed, june.unit_price_minor) == (4, 8000)
    assert sold.pass_invoices.get(seq=1).uses_allowed == 2  # the current cycle keeps its allowance
    cycles_issue(today=dt.date(2026, 6, 1))
    june.refresh_from_db()
    assert june.invoice.total_minor == 8000


def test_fewer_uses_than_the_current_cycle_used_keeps_its_allowance(s):
    patient = make_patient()
    sold = _sell(s, patient=patient)
    _book(s, patient, "2026-05-04")
    _book(s, patient, "2026-05-05")
    _book(s, patient, "2026-06-02")
    _book(s, patient, "2026-06-03")  # June's row made ahead with 2 uses booked
    _edit(s, uses_per_cycle=1)
    [plan] = sold_update_preview(template=s["t"])
    assert plan["problems"] == []
    assert any("Cycle 2 (from 2026-06-01) already has 2 uses booked" in n for n in plan["notes"])
    assert sold_update(actor=s["admin"].user, template=s["t"]) == 1
    may, june = sold.pass_invoices.order_by("seq")
    assert (may.uses_allowed, may.used_count) == (2, 2)
    assert (june.uses_allowed, june.used_count) == (2, 2)  # never below what is booked
    sold.refresh_from_db()
    assert sold.uses_per_cycle == 1
    cycles_issue(today=dt.date(2026, 7, 1))
    assert sold.pass_invoices.get(seq=3).uses_allowed == 1


def test_unlimited_uses_carry_to_future_cycles(s):
    patient = make_patient()
    sold = _sell(s, patient=patient)
    _book(s, patient, "2026-06-03")
    _edit(s, uses_per_cycle=None)
    sold_update(actor=s["admin"].user, template=s["t"])
    assert list(sold.pass_invoices.order_by("seq").values_list("uses_allowed", flat=True)) == [
        2,
        None,
    ]


def test_each_membership_and_the_template_are_logged(s):
    first, second = _sell(s), _sell(s)
    _edit(s, name="Wellness plus")
    assert sold_update(actor=s["admin"].user, template=s["t"]) == 2
    rows = ActivityLog.objects.filter(verb="updated_from_template", object_type="passes.pass")
    assert sorted(int(r.object_id) for r in rows) == [first.pk, second.pk]
    assert all(
        r.before["name"] == "Wellness monthly" and r.after["name"] == "Wellness plus" for r in rows
    )
    log = ActivityLog.objects.get(verb="sold_memberships_updated", object_id=str(s["t"].pk))
    assert (
        log.after["passes"] == [first.pk, second.pk]
        and log.after["terms"]["name"] == "Wellness plus"
    )


def test_cancelled_and_deleted_memberships_are_left_alone(s):
    active, cancelled, deleted = _sell(s), _sell(s), _sell(s)
    cancelled.status, deleted.status = "cancelled", "deleted"
    cancelled.save(update_fields=["status"])
    deleted.save(update_fields=["status"])
    _edit(s, name="Renamed", price_minor=9000)
    assert [p["pass_id"] for p in sold_update_preview(template=s["t"])] == [active.pk]
    sold_update(actor=s["admin"].user, template=s["t"])
    cancelled.refresh_from_db()
    assert (cancelled.name, cancelled.cycle_price_minor) == ("Wellness monthly", 6000)


def test_a_price_only_change_is_previewed_and_unchanged_memberships_are_left_out(s):
    _sell(s)
    assert sold_update_preview(template=s["t"]) == []
    assert sold_update(actor=s["admin"].user, template=s["t"]) == 0
    _edit(s, price_minor=6500)
    [plan] = sold_update_preview(template=s["t"])
    assert plan["changed"] == ["cycle_price_minor"]


def test_removing_an_item_a_membership_used_is_refused(s):
    patient = make_patient()
    _sell(s, patient=patient)
    _book(s, patient, "2026-05-04")
    acupuncture = second_treatment(s["cat"])
    _edit(
        s,
        items=[
            {
                "treatment": acupuncture,
                "additional_charge_minor": 0,
                "compensation_minor": None,
                "limit": None,
            }
        ],
    )
    [plan] = sold_update_preview(template=s["t"])
    assert plan["problems"][0]["code"] == "eligible_item_in_use"
    with pytest.raises(Conflict, match="No sold membership was updated") as caught:
        sold_update(actor=s["admin"].user, template=s["t"])
    assert caught.value.code == "eligible_item_in_use"


def test_a_finished_term_says_no_further_cycle(s):
    sold = _sell(s)
    sold.term_cycles = 1
    sold.save(update_fields=["term_cycles"])
    _edit(s, price_minor=9000)
    [plan] = sold_update_preview(template=s["t"])
    assert "No further cycle will be invoiced" in plan["notes"][0]


def test_update_all_memberships_needs_administrative_access(s):
    _sell(s)
    _edit(s, name="Renamed")
    with pytest.raises(NotAllowed):
        sold_update(actor=s["fd"].user, template=s["t"])
    assert PassInvoice.objects.count() == 1
