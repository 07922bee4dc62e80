"""Redeeming a package (SPEC 5.3): eligibility, auto-select, two-phase reservation, arrival,
removal, past visits, groups, classes, copy, reschedule and no-show. Each test names its rule."""

import datetime as dt
import importlib

import pytest
from django.apps import apps

from carnet.billing.models import Invoice
from carnet.billing.payments import payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import Conflict
from carnet.core.permissions import AccessLevel
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.models import Pass, Redemption
from carnet.passes.packages.ending import pass_shares_set
from carnet.passes.redeeming.redemption import explain, pass_attach, pass_remove
from carnet.passes.redeeming.visits import after_booking
from carnet.passes.tests.factories import at, package_template, practitioner, sold_package
from carnet.people.models import FamilyLink
from carnet.scheduling.arrival import (
    appointment_arrive,
    appointment_no_show,
    appointment_no_show_undo,
    appointment_unarrive,
)
from carnet.scheduling.services import (
    appointment_book,
    appointment_cancel,
    appointment_copy,
    appointment_reschedule,
)
from carnet.scheduling.tests.factories import clinic_set, treatment_of

pytestmark = pytest.mark.django_db
DAY = "2026-05-12"


@pytest.fixture
def setup(front_desk, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "cat": catalog,
            "prac": practitioner(catalog["location"]),
            "patient": make_patient(),
        }


def _book(s, hhmm="09:00", day=DAY, patients=None, treatment=None, **kw):
    return appointment_book(
        actor=s["fd"].user,
        treatment=treatment or s["cat"]["treatment"],
        practitioner=s["prac"],
        location=s["cat"]["location"],
        start=at(day, hhmm),
        patients=patients or [s["patient"]],
        **kw,
    )


def _visit(appointment, patient=None):
    visits = appointment.visits.all()
    return visits.get(patient=patient) if patient else visits.first()


def _live(appointment, patient=None):
    return Redemption.objects.filter(
        visit=_visit(appointment, patient), status__in=["reserved", "posted"]
    ).first()


def test_booking_auto_selects_a_paid_eligible_package_and_reserves_a_use(setup):
    sold = sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment = _book(setup)
    redemption = _live(appointment)
    assert redemption.sold_pass == sold and redemption.status == "reserved"
    sold.refresh_from_db()
    assert (sold.reserved_count, sold.posted_count, sold.remaining) == (1, 0, 9)
    assert_ledger_ok()


def test_an_unpaid_package_is_not_attached_and_explain_says_not_paid(setup):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]), paid=False)
    appointment = _book(setup)
    assert _live(appointment) is None
    [entry] = explain(_visit(appointment))
    assert entry["code"] == "not_paid" and "balance" in entry["message"]


def test_auto_select_picks_the_earliest_expiry_then_the_oldest(setup):
    template = package_template(setup["cat"])
    never = sold_package(setup["fd"], setup["patient"], template, expires_on=None)
    late = sold_package(setup["fd"], setup["patient"], template, expires_on=dt.date(2026, 12, 31))
    soon = sold_package(setup["fd"], setup["patient"], template, expires_on=dt.date(2026, 6, 30))
    soon_too = sold_package(
        setup["fd"], setup["patient"], template, expires_on=dt.date(2026, 6, 30)
    )
    assert _live(_book(setup, "09:00")).sold_pass == soon
    assert _live(_book(setup, "10:00")).sold_pass == soon  # 9 left, still first
    assert {never.pk, late.pk, soon_too.pk}  # the others stay untouched
    assert Pass.objects.get(pk=late.pk).reserved_count == 0


def test_auto_select_off_means_the_package_is_only_attached_by_hand(setup):
    sold = sold_package(
        setup["fd"], setup["patient"], package_template(setup["cat"], auto_select=False)
    )
    appointment = _book(setup)
    assert _live(appointment) is None
    pass_attach(actor=setup["fd"].user, visit=_visit(appointment), sold_pass=sold)
    assert _live(appointment).sold_pass == sold


def test_arrival_covers_the_line_so_the_patient_owes_only_the_additional_charge(setup):
    cat = setup["cat"]
    template = package_template(cat, items=[(cat["treatment"], 1500, None, None)])
    sold_package(setup["fd"], setup["patient"], template)
    appointment = _book(setup)
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    visit = _visit(appointment)
    visit.refresh_from_db()
    assert visit.invoice.total_minor == 1695  # 15.00 + 13 % HST on the additional charge
    assert "covered by 10 massages" in visit.invoice.lines.get().description
    redemption = _live(appointment)
    assert (
        redemption.status == "posted"
        and redemption.value_minor == 9000
        and redemption.remaining_after == 9
    )
    assert balance(accounts.DEFERRED_PACKAGES) == 90000 - 9000
    assert balance(accounts.revenue(cat["income_category"].pk)) >= 9000
    assert_ledger_ok()


def test_a_zero_additional_charge_leaves_nothing_owing(setup):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment = _book(setup)
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    visit = _visit(appointment)
    visit.refresh_from_db()
    assert visit.invoice.total_minor == 0 and visit.invoice.status == "no_charge"


def test_session_values_split_the_price_without_losing_a_cent(setup):
    sold = sold_package(
        setup["fd"], setup["patient"], package_template(setup["cat"], price=10000, quantity=3)
    )
    values = []
    for hhmm in ("09:00", "10:00", "11:00"):
        appointment = _book(setup, hhmm)
        appointment_arrive(actor=setup["fd"].user, appointment=appointment)
        values.append(_live(appointment).value_minor)
    assert values == [3333, 3333, 3334] and sum(values) == 10000
    sold.refresh_from_db()
    assert sold.remaining == 0 and balance(accounts.DEFERRED_PACKAGES) == 0
    assert_ledger_ok()


def test_a_used_up_package_cannot_be_attached(setup):
    sold = sold_package(setup["fd"], setup["patient"], package_template(setup["cat"], quantity=1))
    _book(setup, "09:00")
    second = _book(setup, "10:00")
    assert _live(second) is None
    with pytest.raises(Conflict, match="uses are taken") as error:
        pass_attach(actor=setup["fd"].user, visit=_visit(second), sold_pass=sold)
    assert error.value.code == "used_up"


def test_expiry_is_checked_against_the_appointment_date(setup):
    sold = sold_package(
        setup["fd"],
        setup["patient"],
        package_template(setup["cat"]),
        expires_on=dt.date(2026, 5, 12),
    )
    on_the_day = _book(setup, "09:00", day="2026-05-12")
    after = _book(setup, "09:00", day="2026-05-13")
    assert _live(on_the_day).sold_pass == sold
    assert _live(after) is None
    assert explain(_visit(after))[0]["code"] == "expired"


def test_a_treatment_that_is_not_an_eligible_item_is_not_covered(setup):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    other = treatment_of(setup["cat"], "individual", name="Acupuncture")
    appointment = _book(setup, treatment=other)
    assert _live(appointment) is None and explain(_visit(appointment))[0]["code"] == "not_eligible"


def test_per_item_limits_hold_within_one_package(setup):
    cat = setup["cat"]
    acu = treatment_of(cat, "individual", name="Acupuncture")
    template = package_template(
        cat, quantity=4, items=[(cat["treatment"], 0, None, 1), (acu, 0, None, 3)]
    )
    sold_package(setup["fd"], setup["patient"], template)
    assert _live(_book(setup, "09:00")) is not None
    second = _book(setup, "10:00")
    assert _live(second) is None and explain(_visit(second))[0]["code"] == "item_limit"
    assert _live(_book(setup, "11:00", treatment=acu)) is not None


def test_another_patients_package_is_not_used_unless_shared_with_family(setup):
    owner, child = setup["patient"], make_patient(first_name="Kid")
    sold = sold_package(setup["fd"], owner, package_template(setup["cat"], family_sharing=True))
    FamilyLink.objects.create(patient=owner, relative=child, kind="guardian")
    first = _book(setup, "09:00", patients=[child])
    assert (
        _live(first, child) is None and explain(_visit(first, child))[0]["code"] == "other_patient"
    )
    pass_shares_set(actor=setup["fd"].user, sold_pass=sold, patients=[child])
    second = _book(setup, "10:00", patients=[child])
    assert _live(second, child).sold_pass == sold


def test_removing_before_arrival_frees_the_use(setup):
    sold = sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment = _book(setup)
    pass_remove(actor=setup["fd"].user, visit=_visit(appointment))
    sold.refresh_from_db()
    assert sold.remaining == 10 and _live(appointment) is None


def test_an_arrived_visit_must_be_unarrived_before_removing(setup):
    sold = sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment = _book(setup)
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    with pytest.raises(Conflict, match="Un-arrive it first"):
        pass_remove(actor=setup["fd"].user, visit=_visit(appointment))
    appointment_unarrive(actor=setup["fd"].user, appointment=appointment)
    sold.refresh_from_db()
    assert (sold.reserved_count, sold.posted_count) == (1, 0)
    assert balance(accounts.DEFERRED_PACKAGES) == 90000
    pass_remove(actor=setup["fd"].user, visit=_visit(appointment))
    assert_ledger_ok()


def test_cancelling_voids_the_reserved_use(setup):
    sold = sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment = _book(setup)
    appointment_cancel(actor=setup["fd"].user, appointment=appointment)
    sold.refresh_from_db()
    assert sold.remaining == 10 and Redemption.objects.get().status == "voided"


def test_the_migration_turns_stored_released_uses_into_voided_ones_and_back(setup):
    """Issue 24: a use's 'released' became 'voided'; the data migration converts stored rows both
    ways and leaves the other states alone."""
    migration = importlib.import_module("carnet.passes.migrations.0019_use_voided_not_released")
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    _book(setup, hhmm="09:00")
    appointment_cancel(actor=setup["fd"].user, appointment=_book(setup, hhmm="10:00"))
    Redemption.objects.filter(status="voided").update(status="released")  # as stored before it
    migration.released_to_voided(apps, None)
    assert sorted(Redemption.objects.values_list("status", flat=True)) == ["reserved", "voided"]
    migration.voided_to_released(apps, None)
    assert sorted(Redemption.objects.values_list("status", flat=True)) == ["released", "reserved"]


def test_redeeming_a_past_visit_turns_its_payments_into_credit(setup):
    fd, patient = setup["fd"], setup["patient"]
    appointment = _book(setup)
    appointment_arrive(actor=fd.user, appointment=appointment)
    visit = _visit(appointment)
    visit.refresh_from_db()
    old = visit.invoice
    payment_receive(
        actor=fd.user,
        patient=patient,
        method="cash",
        amount_minor=old.total_minor,
        allocations=[(old, old.total_minor)],
    )
    sold = sold_package(fd, patient, package_template(setup["cat"], auto_select=False))
    pass_attach(actor=fd.user, visit=visit, sold_pass=sold)
    visit.refresh_from_db()
    old.refresh_from_db()
    assert old.deleted_at is not None and visit.invoice.total_minor == 0
    assert balance(accounts.PATIENT_CREDIT, patient_id=patient.pk) == 10170
    assert _live(appointment).status == "posted"
    assert_ledger_ok()


def test_a_group_uses_only_the_primary_clients_package(setup):
    cat = setup["cat"]
    group = treatment_of(cat, "group", capacity=3, name="Couples")
    primary, secondary = setup["patient"], make_patient(first_name="Sec")
    template = package_template(cat, items=[(group, 0, None, None)])
    mine = sold_package(setup["fd"], primary, template)
    theirs = sold_package(setup["fd"], secondary, template)
    appointment = _book(setup, treatment=group, patients=[primary, secondary])
    assert _live(appointment, primary).sold_pass == mine
    assert _live(appointment, secondary) is None
    assert explain(_visit(appointment, secondary))[0]["code"] == "group_secondary"
    appointment_arrive(actor=setup["fd"].user, appointment=appointment)
    theirs.refresh_from_db()
    assert theirs.remaining == 10


def test_a_class_lets_each_participant_use_their_own_package(setup):
    cat = setup["cat"]
    yoga = treatment_of(cat, "class", capacity=5, name="Yoga")
    a, b = setup["patient"], make_patient(first_name="Bea")
    template = package_template(cat, items=[(yoga, 0, None, None)])
    pa, pb = sold_package(setup["fd"], a, template), sold_package(setup["fd"], b, template)
    session = _book(setup, treatment=yoga, patients=[a, b])
    assert _live(session, a).sold_pass == pa and _live(session, b).sold_pass == pb
    appointment_arrive(actor=setup["fd"].user, appointment=session)
    assert {_live(session, a).status, _live(session, b).status} == {"posted"}
    assert_ledger_ok()


def test_copying_carries_the_package_only_if_still_valid_on_the_new_date(setup):
    sold = sold_package(
        setup["fd"],
        setup["patient"],
        package_template(setup["cat"]),
        expires_on=dt.date(2026, 5, 20),
    )
    appointment = _book(setup)
    inside = appointment_copy(
        actor=setup["fd"].user, appointment=appointment, start=at("2026-05-19", "09:00")
    )
    outside = appointment_copy(
        actor=setup["fd"].user, appointment=appointment, start=at("2026-05-21", "09:00")
    )
    assert _live(inside).sold_pass == sold and _live(outside) is None


def test_rescheduling_past_expiry_is_refused_with_the_reason(setup):
    sold_package(
        setup["fd"],
        setup["patient"],
        package_template(setup["cat"]),
        expires_on=dt.date(2026, 5, 20),
    )
    appointment = _book(setup)
    with pytest.raises(Conflict, match="expires on 2026-05-20") as error:
        appointment_reschedule(
            actor=setup["fd"].user, appointment=appointment, start=at("2026-05-21", "09:00")
        )
    assert error.value.code == "expired"
    appointment_reschedule(
        actor=setup["fd"].user, appointment=appointment, start=at("2026-05-20", "09:00")
    )
    assert str(_live(appointment).visit_date) == "2026-05-20"


def test_a_no_show_can_use_the_session_billing_the_additional_charge(setup):
    cat = setup["cat"]
    clinic_set(no_show_fee_minor=4000)
    sold = sold_package(
        setup["fd"],
        setup["patient"],
        package_template(cat, items=[(cat["treatment"], 1000, None, None)]),
    )
    appointment = _book(setup)
    appointment_no_show(actor=setup["fd"].user, appointment=appointment)
    visit = _visit(appointment)
    visit.refresh_from_db()
    assert visit.invoice.total_minor == 1130 and _live(appointment).by_no_show
    appointment_no_show_undo(actor=setup["fd"].user, appointment=appointment)
    sold.refresh_from_db()
    assert (sold.reserved_count, sold.posted_count) == (1, 0)
    assert_ledger_ok()


def test_a_no_show_can_charge_the_fee_instead_and_free_the_session(setup):
    clinic_set(no_show_fee_minor=4000)
    sold = sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    appointment = _book(setup)
    appointment_no_show(actor=setup["fd"].user, appointment=appointment, use_pass=False)
    visit = _visit(appointment)
    visit.refresh_from_db()
    sold.refresh_from_db()
    assert visit.invoice.total_minor == 4000 and sold.remaining == 10
    assert_ledger_ok()


def test_staff_without_billing_access_book_without_using_packages(setup, catalog):
    sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]))
    nobill = make_staff(AccessLevel.FRONT_DESK, billing=False)
    appointment = appointment_book(
        actor=nobill.user,
        treatment=catalog["treatment"],
        practitioner=setup["prac"],
        location=catalog["location"],
        start=at(DAY, "09:00"),
        patients=[setup["patient"]],
    )
    assert _live(appointment) is None


def test_invoices_for_a_sale_post_to_deferred_revenue(setup):
    sold = sold_package(
        setup["fd"],
        setup["patient"],
        package_template(setup["cat"], taxes=[setup["cat"]["tax"]]),
        paid=False,
    )
    invoice = Invoice.objects.get(pass_invoice__sold_pass=sold)
    assert invoice.total_minor == 101700
    assert balance(accounts.DEFERRED_PACKAGES) == 90000
    assert balance(accounts.tax_payable(setup["cat"]["tax"].pk)) == 11700
    assert_ledger_ok()


def test_online_bookings_attach_only_packages_allowed_online(setup):
    desk_only = sold_package(
        setup["fd"], setup["patient"], package_template(setup["cat"], name="Desk only")
    )
    first = _book(setup, "09:00", pass_choice=None)
    after_booking(actor=None, appointment=first, online=True)
    assert _live(first) is None
    assert explain(_visit(first), online=True)[0]["code"] == "not_online"
    online_ok = sold_package(
        setup["fd"], setup["patient"], package_template(setup["cat"], redeem_online=True)
    )
    second = _book(setup, "10:00", pass_choice=None)
    after_booking(actor=None, appointment=second, online=True)
    assert _live(second).sold_pass == online_ok
    desk_only.refresh_from_db()
    assert desk_only.remaining == 10


def test_an_explicit_pass_that_cannot_cover_the_booking_is_refused_with_its_reason(setup):
    sold = sold_package(setup["fd"], setup["patient"], package_template(setup["cat"]), paid=False)
    with pytest.raises(Conflict) as error:
        _book(setup, pass_choice=sold)
    assert error.value.code == "not_paid"
