"""Value packages (issue 23 point 3) in Settings → Packages & Memberships: a package that holds a
value (price and face value) instead of a count, on the page and through the API, and its sale."""

import re

import pytest
from django.urls import reverse

from carnet.conftest import Api, make_patient
from carnet.core.errors import ValidationFailed
from carnet.passes.models import PassTemplate
from carnet.passes.setup.services import template_save
from carnet.passes.setup.tests.test_setup import one_item, package_data
from carnet.passes.setup.tests.test_setup_views import form_data
from carnet.passes.tests.factories import sold_package

pytestmark = pytest.mark.django_db


def value_data(catalog, **over):
    return package_data(
        catalog, **{"price_minor": 90000, "quantity": None, "face_value_minor": 100000, **over}
    )


def test_a_value_package_saves_its_face_value_and_an_item_value(admin_staff, catalog):
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=value_data(catalog),
        items=one_item(catalog, value_minor=7500),
    )
    t.refresh_from_db()
    assert (t.price_minor, t.face_value_minor, t.quantity) == (90000, 100000, None)
    assert t.items.get().value_minor == 7500


@pytest.mark.parametrize(
    "over,field",
    [
        ({"face_value_minor": 0}, "face_value_minor"),
        ({"quantity": 10}, "quantity"),
        ({"instalments": 3}, "instalments"),
    ],
)
def test_a_value_package_is_refused_a_zero_value_a_quantity_or_a_payment_plan(
    admin_staff, catalog, over, field
):
    with pytest.raises(ValidationFailed) as caught:
        template_save(
            actor=admin_staff.user,
            template=None,
            data=value_data(catalog, **over),
            items=one_item(catalog),
        )
    assert field in caught.value.fields


def test_an_item_value_on_a_count_package_is_refused(admin_staff, catalog):
    with pytest.raises(ValidationFailed) as caught:
        template_save(
            actor=admin_staff.user,
            template=None,
            data=package_data(catalog),
            items=one_item(catalog, value_minor=5000),
        )
    assert "items.0.value_minor" in caught.value.fields


def test_a_sold_template_cannot_switch_between_count_and_value(admin_staff, front_desk, catalog):
    t = template_save(
        actor=admin_staff.user, template=None, data=value_data(catalog), items=one_item(catalog)
    )
    sold_package(front_desk, make_patient(), t)
    with pytest.raises(ValidationFailed) as caught:
        template_save(
            actor=admin_staff.user,
            template=t,
            data={"face_value_minor": None, "quantity": 10},
            items=None,
        )
    assert "face_value_minor" in caught.value.fields
    t.refresh_from_db()
    assert t.face_value_minor == 100000


def test_the_sale_copies_the_face_value_and_the_item_values(admin_staff, front_desk, catalog):
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=value_data(catalog),
        items=one_item(catalog, value_minor=7500),
    )
    sold = sold_package(front_desk, make_patient(), t)
    assert (sold.face_value_minor, sold.value_left, sold.quantity, sold.remaining) == (
        100000,
        100000,
        None,
        None,
    )
    assert sold.items.get().value_minor == 7500
    assert sold.net_minor == 90000 and sold.deferred_minor == 90000


def test_the_page_saves_a_value_package(client, admin_staff, catalog):
    client.force_login(admin_staff.user)
    page = client.get(reverse("pass_templates:new")).content.decode()
    assert "Holds a value" in page and "Value it holds" in page and "Value drawn" in page
    data = form_data(
        catalog, quantity="", holds_value="on", face_value_minor="1,000.00", price_minor="900.00"
    )
    data["items-0-value_minor"] = "75.00"
    response = client.post(reverse("pass_templates:new"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    t = PassTemplate.objects.get()
    assert (t.price_minor, t.face_value_minor, t.quantity, t.items.get().value_minor) == (
        90000,
        100000,
        None,
        7500,
    )


def test_the_page_asks_for_the_value_when_holds_a_value_is_ticked(client, admin_staff, catalog):
    client.force_login(admin_staff.user)
    response = client.post(
        reverse("pass_templates:new"), form_data(catalog, quantity="", holds_value="on")
    )
    assert response.status_code == 200
    assert "Give the value it holds" in response.content.decode()
    assert not PassTemplate.objects.exists()


def test_the_page_without_holds_a_value_still_needs_a_quantity(client, admin_staff, catalog):
    client.force_login(admin_staff.user)
    response = client.post(
        reverse("pass_templates:new"), form_data(catalog, quantity="", face_value_minor="100.00")
    )
    assert response.status_code == 200 and "quantity of at least 1 use" in response.content.decode()


def test_the_api_creates_a_value_package_and_refuses_bad_ones(admin_staff, catalog):
    api = Api(admin_staff.user)
    body = {
        "name": "Wellness bank",
        "price_minor": 90000,
        "face_value_minor": 100000,
        "income_category_id": catalog["income_category"].pk,
        "items": [{"treatment_id": catalog["treatment"].pk, "value_minor": 8000}],
    }
    created = api.post("/pass-templates", body)
    assert created.status_code == 201, created.content
    got = created.json()
    assert (got["face_value_minor"], got["quantity"], got["items"][0]["value_minor"]) == (
        100000,
        None,
        8000,
    )
    bad = api.post("/pass-templates", {**body, "face_value_minor": -5})
    assert bad.status_code == 422 or bad.status_code == 400
    assert "face_value_minor" in bad.content.decode()


def test_the_edit_page_shows_a_value_package_as_such_and_the_list_names_its_value(
    client, admin_staff, catalog
):
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=value_data(catalog),
        items=one_item(catalog, value_minor=7500),
    )
    client.force_login(admin_staff.user)
    page = client.get(reverse("pass_templates:edit", kwargs={"pk": t.pk})).content.decode()

    [box] = re.findall(r'<input type="checkbox" name="holds_value"[^>]*>', page)
    assert " checked" in box
    assert (
        'name="face_value_minor" value="1000.00"' in page
        and 'name="items-0-value_minor" value="75.00"' in page
    )
    listing = client.get(reverse("pass_templates:list")).content.decode()
    assert "$1,000.00 of treatments" in listing
