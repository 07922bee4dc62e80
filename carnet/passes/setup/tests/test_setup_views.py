"""Settings → Packages & Memberships pages: list, form with eligible items, archive,
update sold packages."""

import pytest
from django.urls import reverse

from carnet.clinic.forms import form_for
from carnet.clinic.models import Clinic
from carnet.clinic.selectors import clinic_get
from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.passes.memberships import services as ms
from carnet.passes.models import PassTemplate
from carnet.passes.setup.services import template_save
from carnet.passes.setup.tests.test_setup import one_item, package_data, second_treatment, sell
from carnet.passes.setup.tests.test_setup_memberships import membership_data

pytestmark = pytest.mark.django_db


def form_data(catalog, rows=None, **over):
    data = {
        "name": "Six massages",
        "price_minor": "450.00",
        "income_category": catalog["income_category"].pk,
        "taxes": [catalog["tax"].pk],
        "quantity": "6",
        "expiry_value": "1",
        "expiry_unit": "years",
        "auto_select": "on",
        "instalments": "1",
    }
    data.update(over)
    rows = (
        rows
        if rows is not None
        else [
            {
                "treatment": catalog["treatment"].pk,
                "additional_charge_minor": "10.00",
                "compensation_minor": "",
                "limit": "4",
            }
        ]
    )
    data.update(
        {
            "items-TOTAL_FORMS": "6",
            "items-INITIAL_FORMS": "0",
            "items-MIN_NUM_FORMS": "0",
            "items-MAX_NUM_FORMS": "100",
        }
    )
    for n in range(6):
        row = rows[n] if n < len(rows) else {}
        for key in ("treatment", "additional_charge_minor", "compensation_minor", "limit"):
            data[f"items-{n}-{key}"] = row.get(key, "")
    return data


@pytest.fixture
def admin_client(client, admin_staff):
    client.force_login(admin_staff.user)
    return client


def test_list_and_new_form_render_with_six_item_rows(admin_client, catalog):
    assert admin_client.get(reverse("pass_templates:list")).status_code == 200
    page = admin_client.get(reverse("pass_templates:new")).content.decode()
    assert (
        'name="items-5-treatment"' in page
        and "Additional charge" in page
        and "Per-item limit" in page
    )
    assert "<script" not in page.split("</head>")[1]  # no inline script (CSP)


def test_settings_index_links_to_packages(admin_client, catalog):
    assert (
        reverse("pass_templates:list")
        in admin_client.get(reverse("clinic:settings")).content.decode()
    )


def test_new_package_saves_amounts_and_ignores_blank_rows(admin_client, catalog):
    response = admin_client.post(reverse("pass_templates:new"), form_data(catalog))
    assert response.status_code == 302, response.content.decode()[:3000]
    t = PassTemplate.objects.get()
    assert (t.name, t.price_minor, t.quantity, t.expiry_value, t.expiry_unit, t.auto_select) == (
        "Six massages",
        45000,
        6,
        1,
        "years",
        True,
    )
    item = t.items.get()
    assert (item.additional_charge_minor, item.compensation_minor, item.limit) == (1000, None, 4)
    listing = admin_client.get(reverse("pass_templates:list")).content.decode()
    assert "Six massages" in listing and "$450.00" in listing


def test_service_errors_show_on_the_form_and_the_item_row(admin_client, catalog):
    rows = [
        {"treatment": catalog["treatment"].pk, "limit": "9"},
        {"treatment": catalog["treatment"].pk},
    ]
    response = admin_client.post(reverse("pass_templates:new"), form_data(catalog, rows=rows))
    page = response.content.decode()
    assert response.status_code == 200 and not PassTemplate.objects.exists()
    assert "between 1 and the quantity (6)" in page and "listed twice" in page
    no_items = admin_client.post(reverse("pass_templates:new"), form_data(catalog, rows=[]))
    assert "Add at least one eligible item" in no_items.content.decode()


def test_forbidden_expiry_rule_shows_on_the_form(admin_client, catalog):
    clinic = clinic_get()
    clinic.pass_expiry_rule = "forbidden"
    clinic.save()
    response = admin_client.post(reverse("pass_templates:new"), form_data(catalog))
    assert response.status_code == 200 and "forbids expiry" in response.content.decode()
    ok = admin_client.post(reverse("pass_templates:new"), form_data(catalog, expiry_value=""))
    assert ok.status_code == 302 and PassTemplate.objects.get().expiry_value is None


def test_edit_shows_items_and_offers_to_update_sold_packages(admin_client, admin_staff, catalog):
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=package_data(catalog),
        items=one_item(catalog, limit=3),
    )
    sold = sell(t)
    page = admin_client.get(reverse("pass_templates:edit", args=[t.pk])).content.decode()
    assert "Update sold packages" in page and 'value="3"' in page
    acupuncture = second_treatment(catalog)
    rows = [{"treatment": catalog["treatment"].pk, "limit": "3"}, {"treatment": acupuncture.pk}]
    response = admin_client.post(
        reverse("pass_templates:edit", args=[t.pk]),
        form_data(catalog, rows=rows, name="Renamed", quantity="10"),
    )
    assert response.status_code == 302 and response["Location"] == reverse(
        "pass_templates:sold_update", args=[t.pk]
    )
    preview = admin_client.get(response["Location"]).content.decode()
    assert (
        "Renamed" in preview
        and "10 massages" in preview
        and "Acupuncture" in preview
        and f"#{sold.pk}" in preview
    )
    assert "Changes: name, eligible items" in preview
    confirm = {"form_key": "upd-1"}
    assert admin_client.post(response["Location"], confirm).status_code == 302
    sold.refresh_from_db()
    assert sold.name == "Renamed" and sold.items.count() == 2
    assert (
        admin_client.post(response["Location"], confirm).status_code == 302
    )  # a double submit does nothing twice
    assert "nothing to update" in admin_client.get(response["Location"]).content.decode()


def test_update_sold_page_shows_problems_and_no_confirm_button(admin_client, admin_staff, catalog):
    t = template_save(
        actor=admin_staff.user, template=None, data=package_data(catalog), items=one_item(catalog)
    )
    sell(t, posted=4)
    template_save(actor=admin_staff.user, template=t, data={"quantity": 3}, items=None)
    page = admin_client.get(reverse("pass_templates:sold_update", args=[t.pk])).content.decode()
    assert "the new quantity 3 is lower" in page and "Update 1 sold package" not in page
    refused = admin_client.post(
        reverse("pass_templates:sold_update", args=[t.pk]), {"form_key": "upd-2"}
    )
    assert refused.status_code == 200 and "No sold package was updated" in refused.content.decode()


def test_edit_without_sold_packages_goes_back_to_the_list(admin_client, admin_staff, catalog):
    t = template_save(
        actor=admin_staff.user, template=None, data=package_data(catalog), items=one_item(catalog)
    )
    response = admin_client.post(
        reverse("pass_templates:edit", args=[t.pk]), form_data(catalog, name="New name")
    )
    assert response["Location"] == reverse("pass_templates:list")


def test_archive_and_bring_back(admin_client, admin_staff, catalog):
    t = template_save(
        actor=admin_staff.user, template=None, data=package_data(catalog), items=one_item(catalog)
    )
    admin_client.post(reverse("pass_templates:archive", args=[t.pk]), {"archived": "1"})
    t.refresh_from_db()
    assert (
        t.archived
        and "Bring back" in admin_client.get(reverse("pass_templates:list")).content.decode()
    )
    admin_client.post(reverse("pass_templates:archive", args=[t.pk]), {"archived": "0"})
    t.refresh_from_db()
    assert not t.archived


def test_front_desk_sees_the_list_read_only_and_cannot_open_the_form(client, admin_staff, catalog):
    t = template_save(
        actor=admin_staff.user, template=None, data=package_data(catalog), items=one_item(catalog)
    )
    client.force_login(make_staff(AccessLevel.FRONT_DESK).user)
    listing = client.get(reverse("pass_templates:list")).content.decode()
    assert "10 massages" in listing and "New package" not in listing and "Archive" not in listing
    assert client.get(reverse("pass_templates:edit", args=[t.pk])).status_code == 403
    assert client.post(reverse("pass_templates:archive", args=[t.pk])).status_code == 403


def test_clinic_settings_form_has_the_expiry_rule_and_receipt_settings(client, catalog):
    client.force_login(make_staff(AccessLevel.FULL_ACCESS).user)
    page = client.get(reverse("clinic:clinic_settings")).content.decode()
    for name in (
        "pass_expiry_rule",
        "pass_expiry_minimum_days",
        "pass_expiry_reminder_days",
        "insurer_ready_receipts",
    ):
        assert f'name="{name}"' in page


def test_clinic_settings_page_saves_the_expiry_rule(client, catalog):
    client.force_login(make_staff(AccessLevel.FULL_ACCESS).user)
    form = form_for(Clinic)(instance=clinic_get())
    data = {name: form[name].value() for name in form.fields}
    data = {k: v for k, v in data.items() if v not in (None, False)}
    data.update(
        pass_expiry_rule="minimum",
        pass_expiry_minimum_days="365",
        pass_expiry_reminder_days="30",
        insurer_ready_receipts="on",
    )
    response = client.post(reverse("clinic:clinic_settings"), data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    clinic = clinic_get()
    assert (
        clinic.pass_expiry_rule,
        clinic.pass_expiry_minimum_days,
        clinic.pass_expiry_reminder_days,
        clinic.insurer_ready_receipts,
    ) == ("minimum", 365, 30, True)


# ---------------------------------------------------------------- memberships (SPEC 6.1, 6.4)


def membership_form(catalog, rows=None, **over):
    data = form_data(
        catalog,
        rows=rows,
        name="Wellness monthly",
        price_minor="60.00",
        cycle="monthly",
        term_cycles="12",
        cancellable_after_cycles="3",
        uses_per_cycle="2",
        rollover="on",
        rollover_cap="2",
        pause_allowed="on",
        pause_max_cycles="2",
        self_cancel="on",
        sold_online="on",
    )
    for key in ("quantity", "expiry_value", "expiry_unit", "instalments"):
        data.pop(key)
    data.update(over)
    return data


def test_list_shows_packages_and_memberships_with_a_type_and_both_new_buttons(
    admin_client, admin_staff, catalog
):
    template_save(
        actor=admin_staff.user, template=None, data=package_data(catalog), items=one_item(catalog)
    )
    template_save(
        actor=admin_staff.user,
        template=None,
        data=membership_data(catalog, term_cycles=None),
        items=one_item(catalog),
    )
    page = admin_client.get(reverse("pass_templates:list")).content.decode()
    assert "<th>Type</th>" in page and "Package" in page and "Membership" in page
    assert "New package" in page and "New membership" in page and "?kind=membership" in page
    assert "$60.00" in page and "2 per cycle" in page and "Open-ended" in page


def test_new_membership_form_shows_the_membership_fields_only(admin_client, catalog):
    page = admin_client.get(reverse("pass_templates:new") + "?kind=membership").content.decode()
    assert "New membership" in page and "Amount per cycle" in page
    for name in (
        "cycle",
        "term_cycles",
        "cancellable_after_cycles",
        "uses_per_cycle",
        "rollover",
        "rollover_cap",
        "pause_allowed",
        "pause_max_cycles",
        "self_cancel",
        "sold_online",
        "auto_select",
        "taxes",
        "income_category",
    ):
        assert f'name="{name}"' in page, name
    for name in ("quantity", "expiry_value", "instalments", "transferable", "family_sharing"):
        assert f'name="{name}"' not in page, name
    assert "<script" not in page.split("</head>")[1]
    package = admin_client.get(reverse("pass_templates:new")).content.decode()
    assert 'name="quantity"' in package and 'name="term_cycles"' not in package


def test_new_membership_is_saved_from_the_form(admin_client, catalog):
    response = admin_client.post(
        reverse("pass_templates:new") + "?kind=membership", membership_form(catalog)
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    t = PassTemplate.objects.get()
    assert (
        t.kind,
        t.price_minor,
        t.cycle,
        t.term_cycles,
        t.cancellable_after_cycles,
        t.uses_per_cycle,
        t.rollover,
        t.rollover_cap,
        t.pause_allowed,
        t.pause_max_cycles,
        t.self_cancel,
        t.sold_online,
        t.quantity,
    ) == ("membership", 6000, "monthly", 12, 3, 2, True, 2, True, 2, True, True, None)


def test_open_ended_unlimited_membership_from_empty_fields(admin_client, catalog):
    response = admin_client.post(
        reverse("pass_templates:new") + "?kind=membership",
        membership_form(
            catalog,
            term_cycles="",
            uses_per_cycle="",
            rollover="",
            rollover_cap="",
            pause_allowed="",
            pause_max_cycles="",
            cancellable_after_cycles="",
        ),
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    t = PassTemplate.objects.get()
    assert (
        t.term_cycles,
        t.uses_per_cycle,
        t.rollover,
        t.pause_allowed,
        t.pause_max_cycles,
        t.cancellable_after_cycles,
    ) == (None, None, False, False, 0, 0)


def test_membership_errors_show_on_their_fields(admin_client, catalog):
    response = admin_client.post(
        reverse("pass_templates:new") + "?kind=membership",
        membership_form(
            catalog, term_cycles="60", rollover="", rollover_cap="3", pause_max_cycles="0"
        ),
    )
    page = response.content.decode()
    assert response.status_code == 200 and not PassTemplate.objects.exists()
    assert (
        "between 1 and 52 cycles" in page
        and "turn rollover on" in page
        and "longest pause: 1 to 52 cycles" in page
    )


def test_update_all_memberships_page_previews_and_applies_once(
    admin_client, admin_staff, front_desk, catalog
):
    t = template_save(
        actor=admin_staff.user,
        template=None,
        data=membership_data(catalog),
        items=one_item(catalog),
    )
    sold = ms.membership_sell(actor=front_desk.user, patient=make_patient(), template=t)
    page = admin_client.get(reverse("pass_templates:edit", args=[t.pk])).content.decode()
    assert "Update all memberships" in page and 'name="quantity"' not in page
    response = admin_client.post(
        reverse("pass_templates:edit", args=[t.pk]),
        membership_form(catalog, name="Wellness plus", price_minor="75.00", uses_per_cycle="3"),
    )
    assert response.status_code == 302 and response["Location"] == reverse(
        "pass_templates:sold_update", args=[t.pk]
    )
    preview = admin_client.get(response["Location"]).content.decode()
    assert "Update all memberships" in preview and f"#{sold.pk}" in preview
    assert "Changes: name, uses per cycle, amount" in preview and "$60.00 per cycle" in preview
    assert "$75.00 per cycle" in preview and "already issued stay at their amount" in preview
    assert "keeps 2 uses" in preview and "Update 1 membership" in preview
    assert admin_client.post(response["Location"], {"form_key": "m-1"}).status_code == 302
    sold.refresh_from_db()
    assert (sold.name, sold.cycle_price_minor, sold.uses_per_cycle) == ("Wellness plus", 7500, 3)
    assert admin_client.post(response["Location"], {"form_key": "m-1"}).status_code == 302
    assert (
        "Every active membership already has"
        in admin_client.get(response["Location"]).content.decode()
    )
