"""/api/v1/pass-templates: templates round trip, 4xx on bad input, update sold packages."""

import pytest

from carnet.billing.models import Invoice
from carnet.conftest import Api, make_patient, make_staff
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.passes.memberships import services as ms
from carnet.passes.models import Pass, PassTemplate
from carnet.passes.setup.tests.test_setup import sell

pytestmark = pytest.mark.django_db


def body(catalog, **over):
    data = {
        "name": "5 visits",
        "price_minor": 40000,
        "income_category_id": catalog["income_category"].pk,
        "tax_ids": [catalog["tax"].pk],
        "quantity": 5,
        "expiry_value": 6,
        "expiry_unit": "months",
        "items": [
            {"treatment_id": catalog["treatment"].pk, "additional_charge_minor": 1000, "limit": 3}
        ],
    }
    data.update(over)
    return data


@pytest.fixture
def api(admin_staff):
    return Api(admin_staff.user)


def test_create_read_list_patch_round_trip(api, catalog):
    created = api.post("/pass-templates", body(catalog))
    assert created.status_code == 201, created.content
    got = created.json()
    assert (got["kind"], got["name"], got["price_minor"], got["quantity"], got["tax_ids"]) == (
        "package",
        "5 visits",
        40000,
        5,
        [catalog["tax"].pk],
    )
    assert got["items"][0] | {"id": 0} == {
        "id": 0,
        "treatment_id": catalog["treatment"].pk,
        "treatment_name": "Massage 60",
        "additional_charge_minor": 1000,
        "compensation_minor": None,
        "limit": 3,
        "value_minor": None,
    }
    pk = got["id"]
    assert api.get(f"/pass-templates/{pk}").json() == got
    assert [t["id"] for t in api.get("/pass-templates").json()] == [pk]
    patched = api.patch(f"/pass-templates/{pk}", {"name": "Five visits", "instalments": 2})
    assert patched.status_code == 200, patched.content
    assert (
        patched.json()["name"],
        patched.json()["instalments"],
        len(patched.json()["items"]),
    ) == ("Five visits", 2, 1)
    items = api.patch(
        f"/pass-templates/{pk}", {"items": [{"treatment_id": catalog["treatment"].pk}]}
    ).json()["items"]
    assert (items[0]["additional_charge_minor"], items[0]["limit"]) == (0, None)


def test_create_honours_the_idempotency_key(api, catalog):
    first = api.post("/pass-templates", body(catalog), **{"Idempotency-Key": "tpl-1"})
    again = api.post("/pass-templates", body(catalog), **{"Idempotency-Key": "tpl-1"})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert PassTemplate.objects.count() == 1
    other = api.post("/pass-templates", body(catalog, name="Other"), **{"Idempotency-Key": "tpl-1"})
    assert other.status_code == 409


@pytest.mark.parametrize(
    "over,field",
    [
        ({"name": ""}, "name"),
        ({"price_minor": -1}, "price_minor"),
        ({"quantity": 0}, "quantity"),
        ({"items": []}, "items"),
        ({"items": [{"treatment_id": 999999}]}, "items.0.treatment"),
        ({"instalments": 25}, "instalments"),
        ({"expiry_value": 0}, "expiry_value"),
        ({"income_category_id": 999999}, "income_category_id"),
        ({"expiry_unit": "fortnights"}, "expiry_unit"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(api, catalog, over, field):
    response = api.post("/pass-templates", body(catalog, **over))
    assert response.status_code == 422, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in {e["field"] for e in response.json()["errors"]}
    assert not PassTemplate.objects.exists()


def test_unknown_template_is_a_404(api):
    assert api.get("/pass-templates/999999").status_code == 404
    assert api.post("/pass-templates/999999/sold-update").json()["code"] == "not_found"


def test_front_desk_sees_templates_but_cannot_change_them(api, catalog):
    pk = api.post("/pass-templates", body(catalog)).json()["id"]
    front = Api(make_staff(AccessLevel.FRONT_DESK).user)
    assert front.get(f"/pass-templates/{pk}").status_code == 200
    for response in (
        front.post("/pass-templates", body(catalog)),
        front.patch(f"/pass-templates/{pk}", {"name": "x"}),
        front.post(f"/pass-templates/{pk}/archive"),
        front.get(f"/pass-templates/{pk}/sold-update-preview"),
        front.post(f"/pass-templates/{pk}/sold-update"),
    ):
        assert response.status_code == 403 and response.json()["code"] == "not_allowed"


def test_archive_and_filter(api, catalog):
    pk = api.post("/pass-templates", body(catalog)).json()["id"]
    assert api.post(f"/pass-templates/{pk}/archive").json()["archived"] is True
    assert api.get("/pass-templates?archived=false").json() == []
    assert (
        api.post(f"/pass-templates/{pk}/archive", {"archived": False}).json()["archived"] is False
    )


def test_preview_and_update_sold_packages(api, admin_staff, catalog):
    pk = api.post("/pass-templates", body(catalog)).json()["id"]
    sold = sell(PassTemplate.objects.get(pk=pk), posted=2, used={catalog["treatment"].pk: 2})
    api.patch(f"/pass-templates/{pk}", {"name": "Renamed", "quantity": 8, "price_minor": 1})
    preview = api.get(f"/pass-templates/{pk}/sold-update-preview").json()
    assert [(p["pass_id"], p["changed"], p["problems"]) for p in preview] == [
        (sold.pk, ["name", "quantity"], [])
    ]
    assert (preview[0]["before"]["quantity"], preview[0]["after"]["quantity"]) == (5, 8)
    done = api.post(f"/pass-templates/{pk}/sold-update")
    assert done.status_code == 200 and done.json() == {"updated": 1}
    sold.refresh_from_db()
    assert (sold.name, sold.quantity, sold.price_minor) == ("Renamed", 8, 40000)
    assert ActivityLog.objects.filter(object_type="passes.pass", object_id=str(sold.pk)).exists()


def test_update_sold_packages_refusal_is_a_409_with_its_code(api, catalog):
    pk = api.post("/pass-templates", body(catalog)).json()["id"]
    sell(PassTemplate.objects.get(pk=pk), posted=3)
    api.patch(
        f"/pass-templates/{pk}",
        {"quantity": 2, "items": [{"treatment_id": catalog["treatment"].pk}]},
    )
    response = api.post(f"/pass-templates/{pk}/sold-update")
    assert response.status_code == 409 and response.json()["code"] == "quantity_below_used"
    assert Pass.objects.get().quantity == 5


def test_clinic_expiry_rule_set_through_the_api_is_enforced_on_templates(api, catalog):
    owner = Api(make_staff(AccessLevel.FULL_ACCESS).user)
    response = owner.patch(
        "/clinic",
        {
            "pass_expiry_rule": "minimum",
            "pass_expiry_minimum_days": 200,
            "pass_expiry_reminder_days": 7,
            "insurer_ready_receipts": True,
        },
    )
    assert response.status_code == 200, response.content
    assert (response.json()["pass_expiry_rule"], response.json()["insurer_ready_receipts"]) == (
        "minimum",
        True,
    )
    short = api.post("/pass-templates", body(catalog, expiry_value=6, expiry_unit="months"))
    assert short.status_code == 422 and "at least 200 days" in short.json()["detail"]
    assert (
        api.post("/pass-templates", body(catalog, expiry_value=7, expiry_unit="months")).status_code
        == 201
    )
    assert owner.patch("/clinic", {"pass_expiry_rule": "sometimes"}).status_code == 422


# ---------------------------------------------------------------- memberships (SPEC 6.1, 6.4)


def membership_body(catalog, **over):
    data = {
        "kind": "membership",
        "name": "Wellness monthly",
        "price_minor": 6000,
        "income_category_id": catalog["income_category"].pk,
        "cycle": "monthly",
        "term_cycles": 12,
        "cancellable_after_cycles": 3,
        "uses_per_cycle": 2,
        "rollover": True,
        "rollover_cap": 1,
        "pause_allowed": True,
        "pause_max_cycles": 2,
        "self_cancel": True,
        "sold_online": True,
        "items": [{"treatment_id": catalog["treatment"].pk}],
    }
    data.update(over)
    return data


def test_membership_template_round_trip(api, catalog):
    created = api.post("/pass-templates", membership_body(catalog))
    assert created.status_code == 201, created.content
    got = created.json()
    assert {
        k: got[k]
        for k in (
            "kind",
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
            "quantity",
            "expiry_value",
            "instalments",
        )
    } == {
        "kind": "membership",
        "cycle": "monthly",
        "term_cycles": 12,
        "cancellable_after_cycles": 3,
        "uses_per_cycle": 2,
        "rollover": True,
        "rollover_cap": 1,
        "pause_allowed": True,
        "pause_max_cycles": 2,
        "self_cancel": True,
        "sold_online": True,
        "quantity": None,
        "expiry_value": None,
        "instalments": 1,
    }
    pk = got["id"]
    assert api.get(f"/pass-templates/{pk}").json() == got
    patched = api.patch(
        f"/pass-templates/{pk}",
        {
            "term_cycles": None,
            "uses_per_cycle": None,
            "rollover": False,
            "rollover_cap": None,
            "cycle": "weekly",
        },
    )
    assert patched.status_code == 200, patched.content
    assert (
        patched.json()["term_cycles"],
        patched.json()["uses_per_cycle"],
        patched.json()["cycle"],
    ) == (None, None, "weekly")


@pytest.mark.parametrize(
    "over,field",
    [
        ({"cycle": "daily"}, "cycle"),
        ({"term_cycles": 53}, "term_cycles"),
        ({"uses_per_cycle": 0}, "uses_per_cycle"),
        ({"rollover": False, "rollover_cap": 2}, "rollover_cap"),
        ({"pause_max_cycles": 0}, "pause_max_cycles"),
        ({"cancellable_after_cycles": -1}, "cancellable_after_cycles"),
        ({"quantity": 5}, "quantity"),
        ({"instalments": 2}, "instalments"),
    ],
)
def test_bad_membership_input_is_a_422_naming_the_field(api, catalog, over, field):
    response = api.post("/pass-templates", membership_body(catalog, **over))
    assert response.status_code == 422, response.content
    assert field in {e["field"] for e in response.json()["errors"]}
    assert not PassTemplate.objects.exists()


def test_preview_and_update_all_memberships(api, front_desk, catalog):
    pk = api.post("/pass-templates", membership_body(catalog)).json()["id"]
    sold = ms.membership_sell(
        actor=front_desk.user, patient=make_patient(), template=PassTemplate.objects.get(pk=pk)
    )
    [first_invoice] = Invoice.objects.filter(pass_invoice__sold_pass=sold)
    api.patch(
        f"/pass-templates/{pk}",
        {
            "name": "Wellness plus",
            "price_minor": 7000,
            "uses_per_cycle": 3,
            "cancellable_after_cycles": 4,
            "term_cycles": 24,
        },
    )
    [plan] = api.get(f"/pass-templates/{pk}/sold-update-preview").json()
    assert (plan["kind"], plan["changed"]) == (
        "membership",
        ["name", "uses_per_cycle", "cycle_price_minor", "cancellable_after_cycles"],
    )
    assert (plan["before"]["cycle_price_minor"], plan["after"]["cycle_price_minor"]) == (6000, 7000)
    assert (plan["before"]["uses_per_cycle"], plan["after"]["uses_per_cycle"]) == (2, 3)
    assert plan["notes"] and plan["problems"] == []
    done = api.post(f"/pass-templates/{pk}/sold-update", **{"Idempotency-Key": "mem-upd-1"})
    assert done.status_code == 200 and done.json() == {"updated": 1}
    sold.refresh_from_db()
    assert (
        sold.name,
        sold.cycle_price_minor,
        sold.uses_per_cycle,
        sold.cancellable_after_cycles,
        sold.term_cycles,
    ) == ("Wellness plus", 7000, 3, 4, 12)
    first_invoice.refresh_from_db()
    assert first_invoice.total_minor == 6000
    assert api.get(f"/pass-templates/{pk}/sold-update-preview").json() == []


def test_out_of_range_numbers_and_nulls_are_a_422_not_a_500(api, catalog):
    """Found by fuzzing: ids and counts beyond the database's integers,
    and null for a non-null field."""
    huge = 2**70
    for over, field in (
        ({"items": [{"treatment_id": huge}]}, "items.0.treatment_id"),
        ({"income_category_id": huge}, "income_category_id"),
        ({"tax_ids": [huge]}, "tax_ids"),
        ({"price_minor": huge}, "price_minor"),
        ({"quantity": huge}, "quantity"),
        (
            {"items": [{"treatment_id": catalog["treatment"].pk, "additional_charge_minor": huge}]},
            "items.0.additional_charge_minor",
        ),
    ):
        response = api.post("/pass-templates", body(catalog, **over))
        assert response.status_code == 422, (over, response.content)
        assert field in {e["field"] for e in response.json()["errors"]}, (over, response.json())
    pk = api.post("/pass-templates", body(catalog)).json()["id"]
    nulls = api.patch(f"/pass-templates/{pk}", {"rollover": None, "redeem_online": None})
    assert nulls.status_code == 422 and {"rollover", "redeem_online"} <= {
        e["field"] for e in nulls.json()["errors"]
    }
    kept = api.patch(f"/pass-templates/{pk}", {"items": None, "name": "Same items"})
    assert kept.status_code == 200 and len(kept.json()["items"]) == 1
