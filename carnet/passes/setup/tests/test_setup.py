"""Package templates (SPEC 5.1, 5.4, 9.3, 9.10): validation, expiry rules, archive,
update sold packages."""

import datetime as dt

import pytest

from carnet.clinic.models import IncomeCategory, Treatment
from carnet.clinic.selectors import clinic_get
from carnet.conftest import make_catalog, make_patient, make_staff, race
from carnet.core import clock
from carnet.core.errors import CarnetError, Conflict, NotAllowed, ValidationFailed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.passes.models import EligibleItem, Pass, PassItem, PassTemplate, Redemption
from carnet.passes.redeeming.redemption import pass_attach
from carnet.passes.setup.expiry_rules import expiry_allowed, expiry_date, shortest_duration_days
from carnet.passes.setup.services import template_archive, template_save
from carnet.passes.setup.sold_update import sold_update, sold_update_preview
from carnet.passes.tests.factories import at, practitioner, sold_package
from carnet.scheduling.services import appointment_book, appointment_cancel
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


def package_data(catalog, **over):
    data = {
        "name": "10 massages",
        "price_minor": 80000,
        "income_category": catalog["income_category"],
        "quantity": 10,
        "expiry_value": 12,
        "expiry_unit": "months",
        "taxes": [catalog["tax"]],
    }
    data.update(over)
    return data


def one_item(catalog, **over):
    return [
        {
            "treatment": catalog["treatment"],
            "additional_charge_minor": 0,
            "compensation_minor": None,
            "limit": None,
            **over,
        }
    ]


def second_treatment(catalog, name="Acupuncture"):
    return Treatment.objects.create(
        name=name,
        discipline=catalog["discipline"],
        income_category=catalog["income_category"],
        duration_minutes=30,
        price_minor=7000,
    )


@pytest.fixture
def template(admin_staff, catalog):
    return template_save(
        actor=admin_staff.user, template=None, data=package_data(catalog), items=one_item(catalog)
    )


def sell(
    template,
    *,
    quantity=None,
    reserved=0,
    posted=0,
    forfeited=0,
    status=Pass.Status.ACTIVE,
    used=None,
):
    """A sold package copied from the template as a sale would (tests create it directly)."""
    sold = Pass.objects.create(
        template=template,
        patient=make_patient(),
        name=template.name,
        income_category=template.income_category,
        quantity=quantity or template.quantity,
        price_minor=template.price_minor,
        net_minor=template.price_minor,
        auto_select=template.auto_select,
        purchase_date=dt.date(2026, 1, 31),
        purchased_at=clock.now(),
        expires_on=dt.date(2027, 1, 31),
        status=status,
        reserved_count=reserved,
        posted_count=posted,
        forfeited_count=forfeited,
    )
    for item in template.items.all():
        PassItem.objects.create(
            sold_pass=sold,
            treatment=item.treatment,
            additional_charge_minor=item.additional_charge_minor,
            compensation_minor=item.compensation_minor,
            limit=item.limit,
            used_count=(used or {}).get(item.treatment_id, 0),
        )
    return sold


def refused(fn, field: str) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        fn()
    assert field in caught.value.fields, caught.value.fields
    return caught.value


# ---------------------------------------------------------------- create and validate


def test_admin_creates_a_package_template_with_items_taxes_and_a_log_entry(admin_staff, catalog):
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=package_data(catalog, family_sharing=True, instalments=3, sold_online=True),
        items=one_item(catalog, additional_charge_minor=1500, compensation_minor=6000, limit=4),
    )
    t.refresh_from_db()
    assert (t.kind, t.name, t.price_minor, t.quantity, t.instalments) == (
        "package",
        "10 massages",
        80000,
        10,
        3,
    )
    assert t.family_sharing and t.sold_online and list(t.taxes.all()) == [catalog["tax"]]
    item = t.items.get()
    assert (item.treatment, item.additional_charge_minor, item.compensation_minor, item.limit) == (
        catalog["treatment"],
        1500,
        6000,
        4,
    )
    log = ActivityLog.objects.get(object_type="passes.passtemplate", object_id=str(t.pk))
    assert (
        log.verb == "created"
        and log.actor == admin_staff.user
        and log.after["items"][0]["limit"] == 4
    )


def test_setting_up_packages_needs_administrative_access(catalog):
    front = make_staff(AccessLevel.FRONT_DESK)
    with pytest.raises(NotAllowed):
        template_save(
            actor=front.user, template=None, data=package_data(catalog), items=one_item(catalog)
        )
    assert not PassTemplate.objects.exists()


def test_price_may_be_zero(admin_staff, catalog):
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=package_data(catalog, price_minor=0),
        items=one_item(catalog, additional_charge_minor=5000),
    )
    assert t.price_minor == 0


def test_name_is_required(admin_staff, catalog):
    refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog, name="  "),
            items=one_item(catalog),
        ),
        "name",
    )


def test_price_cannot_be_negative(admin_staff, catalog):
    refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog, price_minor=-1),
            items=one_item(catalog),
        ),
        "price_minor",
    )


@pytest.mark.parametrize("quantity", [0, None])
def test_a_package_needs_at_least_one_use(admin_staff, catalog, quantity):
    refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog, quantity=quantity),
            items=one_item(catalog),
        ),
        "quantity",
    )


def test_at_least_one_eligible_item(admin_staff, catalog):
    error = refused(
        lambda: template_save(
            actor=admin_staff.user, template=None, data=package_data(catalog), items=[]
        ),
        "items",
    )
    assert "eligible item" in error.message


def test_item_treatments_are_distinct(admin_staff, catalog):
    error = refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog),
            items=one_item(catalog) + one_item(catalog),
        ),
        "items.1.treatment",
    )
    assert "listed twice" in error.message


def test_item_treatment_must_exist(admin_staff, catalog):
    refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog),
            items=[{"treatment_id": 999999}],
        ),
        "items.0.treatment",
    )


def test_additional_charge_cannot_be_negative(admin_staff, catalog):
    refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog),
            items=one_item(catalog, additional_charge_minor=-5),
        ),
        "items.0.additional_charge_minor",
    )


def test_compensation_cannot_be_negative_but_may_be_empty(admin_staff, catalog):
    refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog),
            items=one_item(catalog, compensation_minor=-1),
        ),
        "items.0.compensation_minor",
    )
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=package_data(catalog),
        items=one_item(catalog, compensation_minor=None),
    )
    assert t.items.get().compensation_minor is None


@pytest.mark.parametrize("limit", [0, 11])
def test_item_limit_is_between_one_and_the_quantity(admin_staff, catalog, limit):
    error = refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog),
            items=one_item(catalog, limit=limit),
        ),
        "items.0.limit",
    )
    assert "between 1 and the quantity (10)" in error.message


@pytest.mark.parametrize("instalments", [0, 25])
def test_instalments_are_between_1_and_24(admin_staff, catalog, instalments):
    refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog, instalments=instalments),
            items=one_item(catalog),
        ),
        "instalments",
    )


def test_expiry_value_is_at_least_one_or_empty(admin_staff, catalog):
    refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog, expiry_value=0),
            items=one_item(catalog),
        ),
        "expiry_value",
    )
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=package_data(catalog, expiry_value=None),
        items=one_item(catalog),
    )
    assert t.expiry_value is None


def test_income_category_and_taxes_must_exist_and_errors_use_the_names_sent(admin_staff, catalog):
    data = package_data(catalog)
    del data["income_category"], data["taxes"]
    error = refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data={**data, "income_category_id": 999999, "tax_ids": [999998]},
            items=one_item(catalog),
        ),
        "income_category_id",
    )
    assert "tax_ids" in error.fields


def test_all_problems_are_reported_together(admin_staff, catalog):
    error = refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog, name="", price_minor=-1),
            items=[],
        ),
        "name",
    )
    assert {"name", "price_minor", "items"} <= set(error.fields)
    assert "2 more problems" in error.message


# ---------------------------------------------------------------- edit and archive


def test_edit_changes_only_what_is_given_and_replaces_the_items(admin_staff, catalog, template):
    acupuncture = second_treatment(catalog)
    template_save(
        actor=admin_staff.user,
        template=template,
        data={"name": "Ten visits"},
        items=[{"treatment_id": acupuncture.pk, "limit": 5}],
    )
    template.refresh_from_db()
    assert (template.name, template.price_minor, template.quantity) == ("Ten visits", 80000, 10)
    assert [(i.treatment, i.limit) for i in template.items.all()] == [(acupuncture, 5)]
    assert list(template.taxes.all()) == [catalog["tax"]]
    log = ActivityLog.objects.filter(object_type="passes.passtemplate", verb="updated").get()
    assert log.before["name"] == "10 massages" and log.after["name"] == "Ten visits"
    assert log.before["items"][0]["treatment_id"] == catalog["treatment"].pk


def test_edit_without_items_keeps_them(admin_staff, catalog, template):
    template_save(actor=admin_staff.user, template=template, data={"quantity": 12}, items=None)
    assert template.items.count() == 1


def test_archive_and_bring_back_are_logged(admin_staff, template):
    template_archive(actor=admin_staff.user, template=template, archived=True)
    template.refresh_from_db()
    assert template.archived
    template_archive(actor=admin_staff.user, template=template, archived=False)
    verbs = list(
        ActivityLog.objects.filter(object_type="passes.passtemplate")
        .order_by("pk")
        .values_list("verb", flat=True)
    )
    assert verbs == ["created", "archived", "unarchived"]


# ---------------------------------------------------------------- expiry rules (SPEC 9.10)


@pytest.mark.parametrize(
    "start,value,unit,expected",
    [
        ("2026-01-31", 1, "months", "2026-02-28"),
        ("2028-01-31", 1, "months", "2028-02-29"),
        ("2026-03-31", 1, "months", "2026-04-30"),
        ("2026-01-15", 1, "months", "2026-02-15"),
        ("2026-11-30", 3, "months", "2027-02-28"),
        ("2028-02-29", 1, "years", "2029-02-28"),
        ("2026-01-31", 10, "days", "2026-02-10"),
        ("2026-01-31", 2, "weeks", "2026-02-14"),
    ],
)
def test_expiry_date_counts_months_and_years_to_the_month_end(start, value, unit, expected):
    got = expiry_date(purchase_date=dt.date.fromisoformat(start), value=value, unit=unit)
    assert got == dt.date.fromisoformat(expected)


def test_no_expiry_value_never_expires():
    assert expiry_date(purchase_date=dt.date(2026, 1, 1), value=None, unit="months") is None


def test_shortest_month_is_28_days_and_shortest_year_365():
    assert shortest_duration_days(value=1, unit="months") == 28
    assert shortest_duration_days(value=12, unit="months") == 365
    assert shortest_duration_days(value=1, unit="years") == 365
    assert shortest_duration_days(value=3, unit="weeks") == 21


def _rule(rule: str, days: int = 0):
    clinic = clinic_get()
    clinic.pass_expiry_rule, clinic.pass_expiry_minimum_days = rule, days
    clinic.save()


def test_forbidden_rule_refuses_a_template_expiry(admin_staff, catalog):
    _rule("forbidden")
    error = refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog),
            items=one_item(catalog),
        ),
        "expiry_value",
    )
    assert "forbids expiry" in error.message
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=package_data(catalog, expiry_value=None),
        items=one_item(catalog),
    )
    assert t.expiry_value is None


def test_minimum_rule_checks_the_shortest_duration(admin_staff, catalog):
    _rule("minimum", 30)  # one month can be 28 days: too short; 5 weeks is 35 days: long enough
    error = refused(
        lambda: template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog, expiry_value=1, expiry_unit="months"),
            items=one_item(catalog),
        ),
        "expiry_value",
    )
    assert "at least 30 days" in error.message and "as short as 28 days" in error.message
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=package_data(catalog, expiry_value=5, expiry_unit="weeks"),
        items=one_item(catalog),
    )
    assert t.expiry_value == 5


def test_expiry_allowed_for_one_sold_pass(db):
    _rule("minimum", 365)
    bought = dt.date(2026, 3, 1)
    expiry_allowed(purchase_date=bought, expires_on=dt.date(2027, 3, 1))
    expiry_allowed(purchase_date=bought, expires_on=None)
    with pytest.raises(ValidationFailed, match="at least 365 days"):
        expiry_allowed(purchase_date=bought, expires_on=dt.date(2027, 2, 28))
    _rule("forbidden")
    with pytest.raises(ValidationFailed, match="forbids expiry") as caught:
        expiry_allowed(purchase_date=bought, expires_on=dt.date(2030, 1, 1))
    assert "expires_on" in caught.value.fields
    _rule("allowed")
    with pytest.raises(ValidationFailed, match="before its purchase date"):
        expiry_allowed(purchase_date=bought, expires_on=dt.date(2026, 2, 1))


# ---------------------------------------------------------------- update sold packages (SPEC 5.4)


def _edit_everything(admin_staff, catalog, template, **over):
    """Change all five carried terms and the three that never carry over."""
    new_category = IncomeCategory.objects.create(name="Packages")
    acupuncture = second_treatment(catalog)
    data = {
        "name": "Ten visits",
        "quantity": 12,
        "income_category": new_category,
        "auto_select": False,
        "redeem_online": True,
        "price_minor": 99900,
        "taxes": [],
        "expiry_value": 2,
        "expiry_unit": "years",
        **over,
    }
    items = [
        {
            "treatment": catalog["treatment"],
            "additional_charge_minor": 500,
            "compensation_minor": 7000,
            "limit": 6,
        },
        {
            "treatment": acupuncture,
            "additional_charge_minor": 0,
            "compensation_minor": None,
            "limit": None,
        },
    ]
    template_save(actor=admin_staff.user, template=template, data=data, items=items)
    template.refresh_from_db()
    return new_category, acupuncture


def test_update_sold_packages_carries_exactly_the_five_terms(admin_staff, catalog, template):
    sold = sell(template, posted=2, used={catalog["treatment"].pk: 2})
    new_category, acupuncture = _edit_everything(admin_staff, catalog, template)
    assert sold_update(actor=admin_staff.user, template=template) == 1
    sold.refresh_from_db()
    assert (
        sold.name,
        sold.quantity,
        sold.income_category,
        sold.auto_select,
        sold.redeem_online,
    ) == ("Ten visits", 12, new_category, False, True)
    # Price, taxes (in the price paid) and expiry stay as sold; counts are untouched.
    assert (sold.price_minor, sold.net_minor, sold.expires_on) == (
        80000,
        80000,
        dt.date(2027, 1, 31),
    )
    assert (sold.posted_count, sold.reserved_count) == (2, 0)
    items = {i.treatment_id: i for i in sold.items.all()}
    massage = items[catalog["treatment"].pk]
    assert (
        massage.additional_charge_minor,
        massage.compensation_minor,
        massage.limit,
        massage.used_count,
    ) == (500, 7000, 6, 2)
    assert (items[acupuncture.pk].limit, items[acupuncture.pk].used_count) == (None, 0)


def test_update_sold_packages_logs_each_pass_and_the_template(admin_staff, catalog, template):
    first, second = sell(template), sell(template)
    _edit_everything(admin_staff, catalog, template)
    sold_update(actor=admin_staff.user, template=template)
    for sold in (first, second):
        log = ActivityLog.objects.get(object_type="passes.pass", object_id=str(sold.pk))
        assert log.verb == "updated_from_template" and log.actor == admin_staff.user
        assert log.before["name"] == "10 massages" and log.after["name"] == "Ten visits"
        assert len(log.after["items"]) == 2
    summary = ActivityLog.objects.get(
        object_type="passes.passtemplate", verb="sold_packages_updated"
    )
    assert summary.after["passes"] == [first.pk, second.pk]


def test_preview_lists_exactly_the_affected_packages(admin_staff, catalog, template):
    active, expired = sell(template), sell(template, status=Pass.Status.EXPIRED)
    sell(template, status=Pass.Status.REFUNDED)
    sell(template, status=Pass.Status.TRANSFERRED)
    other = template_save(
        actor=admin_staff.user,
        template=None,
        data=package_data(catalog, name="Other"),
        items=one_item(catalog),
    )
    sell(other)
    assert sold_update_preview(template=template) == []  # nothing differs yet
    template_save(
        actor=admin_staff.user,
        template=template,
        data={"name": "Renamed", "price_minor": 1},
        items=None,
    )
    preview = sold_update_preview(template=template)
    assert [p["pass_id"] for p in preview] == [active.pk, expired.pk]
    assert preview[0]["changed"] == ["name"] and preview[0]["problems"] == []
    assert (preview[0]["before"]["name"], preview[0]["after"]["name"]) == ("10 massages", "Renamed")


def test_preview_leaves_out_packages_already_matching(admin_staff, catalog, template):
    template_save(actor=admin_staff.user, template=template, data={"name": "Renamed"}, items=None)
    template.refresh_from_db()
    stale, current = sell(template), sell(template)
    Pass.objects.filter(pk=stale.pk).update(name="Old name")
    assert [p["pass_id"] for p in sold_update_preview(template=template)] == [stale.pk]
    assert sold_update(actor=admin_staff.user, template=template) == 1
    assert not ActivityLog.objects.filter(
        object_type="passes.pass", object_id=str(current.pk)
    ).exists()


def test_price_only_change_affects_no_sold_package(admin_staff, catalog, template):
    sell(template)
    template_save(
        actor=admin_staff.user,
        template=template,
        data={"price_minor": 1, "taxes": [], "expiry_value": None},
        items=None,
    )
    assert sold_update_preview(template=template) == []
    assert sold_update(actor=admin_staff.user, template=template) == 0


def test_refuses_quantity_below_what_a_sold_package_used(admin_staff, catalog, template):
    sold = sell(template, reserved=2, posted=3, forfeited=1)
    template_save(
        actor=admin_staff.user,
        template=template,
        data={"quantity": 5, "name": "Five"},
        items=one_item(catalog, limit=None),
    )
    preview = sold_update_preview(template=template)
    assert preview[0]["problems"][0]["code"] == "quantity_below_used"
    with pytest.raises(Conflict) as caught:
        sold_update(actor=admin_staff.user, template=template)
    assert caught.value.code == "quantity_below_used" and "6 uses" in caught.value.message
    sold.refresh_from_db()
    assert (sold.name, sold.quantity) == ("10 massages", 10)  # all or none


def test_quantity_equal_to_used_is_allowed(admin_staff, catalog, template):
    sold = sell(template, posted=6)
    template_save(actor=admin_staff.user, template=template, data={"quantity": 6}, items=None)
    assert sold_update(actor=admin_staff.user, template=template) == 1
    sold.refresh_from_db()
    assert sold.quantity == 6 and sold.remaining == 0


def test_refuses_item_limit_below_its_uses(admin_staff, catalog, template):
    sell(template, posted=4, used={catalog["treatment"].pk: 4})
    template_save(
        actor=admin_staff.user, template=template, data={}, items=one_item(catalog, limit=3)
    )
    assert sold_update_preview(template=template)[0]["problems"][0]["code"] == "limit_below_used"
    with pytest.raises(Conflict) as caught:
        sold_update(actor=admin_staff.user, template=template)
    assert caught.value.code == "limit_below_used"


def test_refuses_removing_an_item_a_sold_package_used(admin_staff, catalog, template):
    sell(template, posted=1, used={catalog["treatment"].pk: 1})
    acupuncture = second_treatment(catalog)
    template_save(
        actor=admin_staff.user, template=template, data={}, items=[{"treatment": acupuncture}]
    )
    with pytest.raises(Conflict) as caught:
        sold_update(actor=admin_staff.user, template=template)
    assert (
        caught.value.code == "eligible_item_in_use"
        and catalog["treatment"].name in caught.value.message
    )


def test_removes_an_unused_item_from_sold_packages(admin_staff, catalog, template):
    sold = sell(template)
    acupuncture = second_treatment(catalog)
    template_save(
        actor=admin_staff.user, template=template, data={}, items=[{"treatment": acupuncture}]
    )
    assert sold_update(actor=admin_staff.user, template=template) == 1
    assert [i.treatment for i in sold.items.all()] == [acupuncture]
    assert [i.treatment for i in EligibleItem.objects.filter(template=template)] == [acupuncture]


def test_update_sold_packages_needs_administrative_access(catalog, template):
    with pytest.raises(NotAllowed):
        sold_update(actor=make_staff(AccessLevel.FRONT_DESK).user, template=template)


# ---------------------------------------------------------------- with real sales and bookings


@pytest.fixture
def booked(admin_staff, front_desk, catalog):
    """A package sold and paid through the selling service, and a booking that reserved one use
    (the clock stays frozen on 1 May 2026 for the test)."""
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        t = template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog),
            items=one_item(catalog),
        )
        patient, prac = make_patient(), practitioner(catalog["location"])
        sold = sold_package(front_desk, patient, t)

        def book(treatment, hhmm="09:00"):
            return appointment_book(
                actor=front_desk.user,
                treatment=treatment,
                practitioner=prac,
                location=catalog["location"],
                start=at("2026-05-12", hhmm),
                patients=[patient],
            )

        yield {"template": t, "sold": sold, "book": book, "appointment": book(catalog["treatment"])}


def test_an_item_with_a_reserved_use_cannot_be_removed_from_sold_packages(
    admin_staff, catalog, booked
):
    t, sold = booked["template"], booked["sold"]
    assert PassItem.objects.get(sold_pass=sold).used_count == 1
    template_save(
        actor=admin_staff.user,
        template=t,
        data={},
        items=[{"treatment": second_treatment(catalog)}],
    )
    with pytest.raises(Conflict) as caught:
        sold_update(actor=admin_staff.user, template=t)
    assert caught.value.code == "eligible_item_in_use"


def test_an_item_with_voided_uses_is_kept_with_no_uses_left_and_new_items_cover_bookings(
    admin_staff, front_desk, catalog, booked
):
    t, sold = booked["template"], booked["sold"]
    appointment_cancel(actor=front_desk.user, appointment=booked["appointment"])
    assert Redemption.objects.get().status == "voided"
    acupuncture = second_treatment(catalog)
    template_save(actor=admin_staff.user, template=t, data={}, items=[{"treatment": acupuncture}])
    assert sold_update(actor=admin_staff.user, template=t) == 1
    items = {i.treatment_id: i for i in PassItem.objects.filter(sold_pass=sold)}
    assert items[catalog["treatment"].pk].limit == 0  # its history stays; it covers nothing more
    assert items[acupuncture.pk].limit is None
    visit = booked["book"](acupuncture, "11:00").visits.get()
    live = Redemption.objects.filter(visit=visit, status="reserved").get()
    assert live.sold_pass == sold and live.item == items[acupuncture.pk]
    no_cover = booked["book"](catalog["treatment"], "13:00").visits.get()
    assert not Redemption.objects.filter(visit=no_cover, status__in=["reserved", "posted"]).exists()


# ---------------------------------------------------------------- racing a booking


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", range(3))
def test_update_sold_packages_racing_a_booking_never_leaves_a_package_over_used(run):
    """The template lowers the quantity to what is already used while a visit takes one more use:
    whichever locks the pass first wins, the other is refused cleanly,
    and the counts stay within it."""
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        catalog, admin = make_catalog(), make_staff(AccessLevel.ADMIN_BILLING)
        prac, patient = practitioner(catalog["location"]), make_patient()
        t = template_save(
            actor=admin.user, template=None, data=package_data(catalog), items=one_item(catalog)
        )
        sold = sold_package(admin, patient, t)
        visits = [
            appointment_book(
                actor=admin.user,
                treatment=catalog["treatment"],
                practitioner=prac,
                location=catalog["location"],
                start=at("2026-05-12", hhmm),
                patients=[patient],
                pass_choice=None,
            ).visits.get()
            for hhmm in ("09:00", "11:00")
        ]
        pass_attach(actor=admin.user, visit=visits[0], sold_pass=sold)
        template_save(actor=admin.user, template=t, data={"quantity": 1}, items=None)
        work = [
            lambda: sold_update(actor=admin.user, template=t),
            lambda: pass_attach(actor=admin.user, visit=visits[1], sold_pass=sold),
        ]
        results = race(2, lambda i: work[i]())
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, CarnetError)]
    assert not unexpected, unexpected
    refused = [r.code for r in results if isinstance(r, CarnetError)]
    assert len(refused) == 1 and refused[0] in ("quantity_below_used", "used_up"), results
    sold.refresh_from_db()
    assert sold.quantity >= sold.reserved_count + sold.posted_count + sold.forfeited_count
    assert (sold.quantity, sold.reserved_count) == ((1, 1) if refused[0] == "used_up" else (10, 2))
