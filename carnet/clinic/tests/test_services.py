from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from carnet.clinic.models import (
    Clinic,
    Discipline,
    IncomeCategory,
    Location,
    Product,
    Tax,
    Treatment,
)
from carnet.clinic.selectors import clinic_get, setup_get, setup_list
from carnet.clinic.services import clinic_update, setup_save
from carnet.conftest import make_patient, make_staff
from carnet.core.errors import CarnetError, Conflict, NotAllowed, NotFound, ValidationFailed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel


@pytest.fixture
def full_access(db):
    return make_staff(AccessLevel.FULL_ACCESS, name="Full")


def treatment_data(catalog, **overrides):
    data = {
        "name": "Deep tissue",
        "price_minor": 12000,
        "income_category_id": catalog["income_category"].pk,
        "discipline_id": catalog["discipline"].pk,
        "duration_minutes": 60,
        "kind": "individual",
        "tax_ids": [catalog["tax"].pk],
    }
    data.update(overrides)
    return data


def log_for(obj) -> list[ActivityLog]:
    return list(
        ActivityLog.objects.filter(
            object_type=obj._meta.label_lower, object_id=str(obj.pk)
        ).order_by("id")
    )


# ---------------------------------------------------------------- clinic


def test_clinic_get_creates_the_single_clinic_once(db):
    first = clinic_get()
    second = clinic_get()
    assert first.pk == second.pk == 1
    assert Clinic.objects.count() == 1
    assert first.currency == "CAD" and first.time_zone == "America/Toronto"


def test_clinic_update_saves_and_logs_before_and_after(full_access):
    clinic_get()
    clinic = clinic_update(
        actor=full_access.user,
        data={
            "name": "Harbour Physio",
            "time_zone": "America/Vancouver",
            "no_show_fee_minor": 2500,
        },
    )
    clinic.refresh_from_db()
    assert (clinic.name, clinic.time_zone, clinic.no_show_fee_minor) == (
        "Harbour Physio",
        "America/Vancouver",
        2500,
    )
    [entry] = log_for(clinic)
    assert entry.verb == "updated"
    assert entry.actor == full_access.user
    assert entry.before["name"] == "My clinic" and entry.after["name"] == "Harbour Physio"
    assert ("time_zone", "America/Toronto", "America/Vancouver") in entry.changes()


@pytest.mark.parametrize("level", [AccessLevel.ADMIN_BILLING, AccessLevel.FRONT_DESK])
def test_clinic_update_needs_full_access(db, level):
    staff = make_staff(level)
    with pytest.raises(NotAllowed) as exc:
        clinic_update(actor=staff.user, data={"name": "Mine now"})
    assert "Full Access" in exc.value.message
    assert clinic_get().name == "My clinic"
    assert not ActivityLog.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("currency", "cad"),
        ("currency", "XYZ"),
        ("currency", "DOLLARS"),
        ("currency", ""),
        ("time_zone", "Mars/Olympus"),
        ("time_zone", "EST5"),
        ("time_zone", ""),
        ("no_show_fee_minor", -1),
        ("email", "not-an-email"),
    ],
)
def test_clinic_update_refuses_bad_values_naming_the_field(full_access, field, value):
    with pytest.raises(ValidationFailed) as exc:
        clinic_update(actor=full_access.user, data={field: value})
    assert field in exc.value.fields
    assert clinic_get().currency == "CAD"
    assert not ActivityLog.objects.exists()


@pytest.mark.parametrize("currency", ["EUR", "JPY", "USD", "GBP", "KWD"])
def test_clinic_accepts_real_currencies(full_access, currency):
    assert clinic_update(actor=full_access.user, data={"currency": currency}).currency == currency


def test_patients_cannot_change_clinic_settings(db):
    user = get_user_model().objects.create_user(username="pat@example.test", password="x" * 12)
    make_patient(user=user)
    with pytest.raises(NotAllowed) as exc:
        clinic_update(actor=user, data={"name": "Hacked"})
    assert "staff" in exc.value.message


# ---------------------------------------------------------------- set-up objects


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Discipline, {"name": "Physiotherapy"}),
        (IncomeCategory, {"name": "Physio income"}),
        (Tax, {"name": "GST", "rate": Decimal("5.000")}),
    ],
)
def test_setup_save_creates_and_logs(admin_staff, model, data):
    obj = setup_save(actor=admin_staff.user, obj=model(), data=data)
    assert obj.pk and model.objects.filter(pk=obj.pk).exists()
    [entry] = log_for(obj)
    assert entry.verb == "created" and entry.before is None
    assert entry.after["name"] == data["name"]
    assert entry.actor_name == admin_staff.user.username


def test_setup_save_updates_and_logs_before_and_after(admin_staff, catalog):
    tax = catalog["tax"]
    setup_save(actor=admin_staff.user, obj=tax, data={"rate": Decimal("15")})
    tax.refresh_from_db()
    assert tax.rate == Decimal("15.000")
    [entry] = log_for(tax)
    assert entry.verb == "updated"
    assert Decimal(entry.before["rate"]) == Decimal("13") and Decimal(
        entry.after["rate"]
    ) == Decimal("15")


def test_locations_need_full_access(admin_staff, owner):
    with pytest.raises(NotAllowed) as exc:
        setup_save(
            actor=admin_staff.user,
            obj=Location(),
            data={"name": "East", "time_zone": "America/Toronto"},
        )
    assert "Full Access" in exc.value.message
    loc = setup_save(
        actor=owner.user, obj=Location(), data={"name": "East", "time_zone": "America/Toronto"}
    )
    assert loc.pk and log_for(loc)[0].after["time_zone"] == "America/Toronto"


def test_location_time_zone_is_checked(owner):
    with pytest.raises(ValidationFailed) as exc:
        setup_save(
            actor=owner.user, obj=Location(), data={"name": "East", "time_zone": "Europe/Atlantis"}
        )
    assert set(exc.value.fields) == {"time_zone"}


@pytest.mark.parametrize(
    "level",
    [AccessLevel.FRONT_DESK, AccessLevel.PRACTITIONER_FRONT_DESK_ALL, AccessLevel.NO_ACCESS],
)
def test_catalog_set_up_needs_admin(db, level):
    staff = make_staff(level)
    with pytest.raises(NotAllowed) as exc:
        setup_save(actor=staff.user, obj=Discipline(), data={"name": "Chiro"})
    assert "Administrative/All Billing or higher" in exc.value.message
    assert AccessLevel(level).label in exc.value.message
    assert not Discipline.objects.filter(name="Chiro").exists()


def test_inactive_staff_cannot_set_up(db):
    staff = make_staff(AccessLevel.ACCOUNT_OWNER)
    staff.is_active = False
    staff.save()
    with pytest.raises(NotAllowed):
        setup_save(actor=staff.user, obj=Discipline(), data={"name": "Chiro"})


def test_treatment_with_taxes_round_trips(admin_staff, catalog):
    treatment = setup_save(actor=admin_staff.user, obj=Treatment(), data=treatment_data(catalog))
    treatment.refresh_from_db()
    assert list(treatment.taxes.all()) == [catalog["tax"]]
    assert log_for(treatment)[0].after["taxes"] == [catalog["tax"].pk]
    # Taxes can be cleared, and the log shows it.
    setup_save(actor=admin_staff.user, obj=treatment, data={"tax_ids": []})
    assert treatment.taxes.count() == 0
    entry = log_for(treatment)[-1]
    assert entry.before["taxes"] == [catalog["tax"].pk] and entry.after["taxes"] == []


@pytest.mark.parametrize(
    ("kind", "capacity", "ok"),
    [
        ("individual", None, True),
        ("individual", 1, True),
        ("individual", 4, False),
        ("group", None, True),
        ("group", 6, True),
        ("class", 12, True),
        ("class", None, False),
        ("class", 0, False),
    ],
)
def test_treatment_kinds_and_capacity(admin_staff, catalog, kind, capacity, ok):
    data = treatment_data(catalog, kind=kind, capacity=capacity)
    if ok:
        treatment = setup_save(actor=admin_staff.user, obj=Treatment(), data=data)
        assert (treatment.kind, treatment.capacity) == (kind, capacity)
    else:
        with pytest.raises(ValidationFailed) as exc:
            setup_save(actor=admin_staff.user, obj=Treatment(), data=data)
        assert "capacity" in exc.value.fields
        assert not Treatment.objects.filter(name="Deep tissue").exists()


def test_unknown_kind_is_refused(admin_staff, catalog):
    with pytest.raises(ValidationFailed) as exc:
        setup_save(
            actor=admin_staff.user, obj=Treatment(), data=treatment_data(catalog, kind="party")
        )
    assert "kind" in exc.value.fields


def test_unknown_tax_id_names_the_field_sent(admin_staff, catalog):
    with pytest.raises(ValidationFailed) as exc:
        setup_save(
            actor=admin_staff.user,
            obj=Treatment(),
            data=treatment_data(catalog, tax_ids=[catalog["tax"].pk, 9999]),
        )
    assert set(exc.value.fields) == {"tax_ids"}
    assert "9999" in exc.value.message
    assert not Treatment.objects.filter(name="Deep tissue").exists()


def test_unknown_income_category_id_names_the_field_sent(admin_staff, catalog):
    with pytest.raises(ValidationFailed) as exc:
        setup_save(
            actor=admin_staff.user,
            obj=Product(),
            data={"name": "Oil", "price_minor": 1500, "income_category_id": 9999},
        )
    assert set(exc.value.fields) == {"income_category_id"}


def test_unknown_discipline_id_names_the_field_sent(admin_staff, catalog):
    with pytest.raises(ValidationFailed) as exc:
        setup_save(
            actor=admin_staff.user,
            obj=Treatment(),
            data=treatment_data(catalog, discipline_id=9999),
        )
    assert set(exc.value.fields) == {"discipline_id"}


def test_model_field_names_stay_when_instances_are_given(admin_staff, catalog):
    # Pages pass model instances under the model's own field names.
    with pytest.raises(ValidationFailed) as exc:
        setup_save(
            actor=admin_staff.user,
            obj=Product(),
            data={"name": "Oil", "price_minor": -5, "income_category": catalog["income_category"]},
        )
    assert set(exc.value.fields) == {"price_minor"}


def test_null_tax_list_is_a_validation_error(admin_staff, catalog):
    with pytest.raises(ValidationFailed) as exc:
        setup_save(actor=admin_staff.user, obj=catalog["treatment"], data={"tax_ids": None})
    assert set(exc.value.fields) == {"tax_ids"}
    assert catalog["treatment"].taxes.count() == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price_minor", -1),
        ("duration_minutes", 2),
        ("duration_minutes", 24 * 60 + 1),
        ("name", ""),
    ],
)
def test_treatment_field_limits(admin_staff, catalog, field, value):
    with pytest.raises(ValidationFailed) as exc:
        setup_save(
            actor=admin_staff.user, obj=Treatment(), data=treatment_data(catalog, **{field: value})
        )
    assert field in exc.value.fields


@pytest.mark.parametrize("rate", [Decimal("-1"), Decimal("100.001"), Decimal("1000")])
def test_tax_rate_must_be_a_percentage(admin_staff, rate):
    with pytest.raises(ValidationFailed) as exc:
        setup_save(actor=admin_staff.user, obj=Tax(), data={"name": "Odd", "rate": rate})
    assert "rate" in exc.value.fields


def test_product_create_and_update(admin_staff, catalog):
    product = setup_save(
        actor=admin_staff.user,
        obj=Product(),
        data={
            "name": "Massage oil",
            "price_minor": 1800,
            "income_category_id": catalog["income_category"].pk,
            "tax_ids": [catalog["tax"].pk],
            "stock": 12,
            "sku": "OIL-1",
            "tax_inclusive": True,
        },
    )
    setup_save(actor=admin_staff.user, obj=product, data={"stock": 11})
    product.refresh_from_db()
    assert (product.stock, product.sku, product.tax_inclusive) == (11, "OIL-1", True)
    assert [e.verb for e in log_for(product)] == ["created", "updated"]
    assert log_for(product)[1].changes() == [("stock", 12, 11)]


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (Discipline, {"name": "Yoga"}),
        (IncomeCategory, {"name": "Yoga income"}),
        (Tax, {"name": "PST", "rate": Decimal("7")}),
    ],
)
def test_duplicate_names_are_refused_not_crashed(admin_staff, model, data):
    setup_save(actor=admin_staff.user, obj=model(), data=data)
    with pytest.raises((ValidationFailed, Conflict)) as exc:
        setup_save(actor=admin_staff.user, obj=model(), data=data)
    assert "name" in exc.value.fields or exc.value.status == 409
    assert model.objects.filter(name=data["name"]).count() == 1


def test_duplicate_treatment_name_in_one_discipline_is_refused(admin_staff, catalog):
    setup_save(actor=admin_staff.user, obj=Treatment(), data=treatment_data(catalog))
    with pytest.raises(CarnetError) as exc:
        setup_save(actor=admin_staff.user, obj=Treatment(), data=treatment_data(catalog))
    assert exc.value.status in (409, 422)
    # The same name in another discipline is fine.
    other = Discipline.objects.create(name="Physio")
    setup_save(
        actor=admin_staff.user,
        obj=Treatment(),
        data=treatment_data(catalog, discipline_id=other.pk),
    )
    assert Treatment.objects.filter(name="Deep tissue").count() == 2


def test_duplicate_product_name_is_refused(admin_staff, catalog):
    data = {"name": "Oil", "price_minor": 100, "income_category_id": catalog["income_category"].pk}
    setup_save(actor=admin_staff.user, obj=Product(), data=data)
    with pytest.raises(CarnetError) as exc:
        setup_save(actor=admin_staff.user, obj=Product(), data=data)
    assert exc.value.status in (409, 422)


def test_renaming_onto_an_existing_name_is_refused(admin_staff):
    setup_save(actor=admin_staff.user, obj=Discipline(), data={"name": "A"})
    b = setup_save(actor=admin_staff.user, obj=Discipline(), data={"name": "B"})
    with pytest.raises(CarnetError):
        setup_save(actor=admin_staff.user, obj=b, data={"name": "A"})
    b.refresh_from_db()
    assert b.name == "B"


def test_a_refused_write_leaves_no_log(admin_staff, catalog):
    before = ActivityLog.objects.count()
    with pytest.raises(ValidationFailed):
        setup_save(
            actor=admin_staff.user, obj=Treatment(), data=treatment_data(catalog, price_minor=-1)
        )
    assert ActivityLog.objects.count() == before


# ---------------------------------------------------------------- selectors


def test_setup_list_and_get(catalog):
    assert list(setup_list("treatments")) == [catalog["treatment"]]
    assert setup_get("taxes", catalog["tax"].pk) == catalog["tax"]
    with pytest.raises(NotFound) as exc:
        setup_get("taxes", 424242)
    assert "424242" in exc.value.message


def test_setup_lists_are_ordered_by_name(admin_staff):
    for name in ["Physio", "Acupuncture", "Massage"]:
        setup_save(actor=admin_staff.user, obj=Discipline(), data={"name": name})
    assert [d.name for d in setup_list("disciplines")] == ["Acupuncture", "Massage", "Physio"]


def test_clinic_money_uses_the_clinic_currency(full_access):
    clinic_update(actor=full_access.user, data={"currency": "EUR"})
    assert str(clinic_get().money(1250)) == "€12.50"
