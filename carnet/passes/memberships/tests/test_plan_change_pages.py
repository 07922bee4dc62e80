"""The staff page and the API to change a member's plan (issue 22 point 6): preview, then confirm;
the numbers shown are those posted; an automatic membership is charged what is due after the
change commits; Idempotency-Key replays; bad input is a clear 4xx or message."""

import uuid

import pytest
from django.urls import reverse

from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import Api, make_patient
from carnet.core import clock
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.passes.charging import pass_charge_due
from carnet.passes.memberships import services as ms
from carnet.passes.models import Pass, PassPlanChange
from carnet.passes.tests.factories import at, membership_template
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(front_desk, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "cat": catalog,
            "patient": make_patient(),
            "desk": Api(front_desk.user),
            "basic": membership_template(catalog, name="Basic", price=6000, uses=2),
            "gold": membership_template(catalog, name="Gold", price=12000, uses=8),
        }


def _sell(s, automatic=False):
    card = None
    if automatic:
        card = card_store(
            actor=s["fd"].user,
            patient=s["patient"],
            number="4242424242424242",
            exp_month=12,
            exp_year=2030,
            cvc="123",
            holder="Pat Test",
        )
    sold = ms.membership_sell(
        actor=s["fd"].user,
        patient=s["patient"],
        template=s["basic"],
        payment_mode="automatic" if automatic else "manual",
        card=card,
    )
    if automatic:
        pass_charge_due(sold_pass=sold)
    return sold


def test_the_page_previews_then_changes_with_the_numbers_shown(s, client):
    sold = _sell(s)
    client.force_login(s["fd"].user)
    url = reverse("memberships:plan_change", kwargs={"pk": sold.pk})
    assert "Gold" in client.get(url).content.decode()
    with clock.frozen(at("2026-05-11", "09:00")):
        page = client.post(url, {"form_key": "k1", "template": s["gold"].pk, "when": "now"})
        text = page.content.decode()
        assert page.status_code == 200 and 'data-testid="plan-preview"' in text
        credit, charge = page.context["preview"].credit_minor, page.context["preview"].charge_minor
        assert "Credit for the 21 unused days" in text and "Uses are carried" in text
        done = client.post(
            url,
            {
                "form_key": "k2",
                "template": s["gold"].pk,
                "when": "now",
                "confirm": "1",
                "expected_credit": credit,
                "expected_charge": charge,
                "expected_effective": "2026-05-11",
            },
            follow=True,
        )
        assert (
            "is now Gold" in done.content.decode()
            and 'data-testid="plan-changes"' in done.content.decode()
        )
        again = client.post(
            url,
            {
                "form_key": "k2",
                "template": s["gold"].pk,
                "when": "now",
                "confirm": "1",
                "expected_credit": credit,
                "expected_charge": charge,
                "expected_effective": "2026-05-11",
            },
            follow=True,
        )
        assert "nothing was done twice" in again.content.decode()
        assert_ledger_ok()
    change = PassPlanChange.objects.get()
    assert (change.credit_minor, change.charge_minor) == (credit, charge)


def test_the_page_says_when_the_numbers_moved(s, client):
    sold = _sell(s)
    client.force_login(s["fd"].user)
    url = reverse("memberships:plan_change", kwargs={"pk": sold.pk})
    with clock.frozen(at("2026-05-11", "09:00")):
        page = client.post(
            url,
            {
                "form_key": "k3",
                "template": s["gold"].pk,
                "when": "now",
                "confirm": "1",
                "expected_credit": 1,
                "expected_charge": 2,
                "expected_effective": "2026-05-11",
            },
        )
    text = page.content.decode()
    assert page.status_code == 200 and "numbers moved since the preview" in text
    assert 'data-testid="plan-preview"' in text and not PassPlanChange.objects.exists()


def test_the_page_refuses_the_same_plan_with_a_message(s, client):
    sold = _sell(s)
    client.force_login(s["fd"].user)
    url = reverse("memberships:plan_change", kwargs={"pk": sold.pk})
    page = client.post(url, {"form_key": "k4", "template": s["basic"].pk, "when": "now"})
    assert (
        page.status_code == 200
        and "is already on Basic; choose another plan" in page.content.decode()
    )


def test_the_api_previews_and_changes_charging_an_automatic_card_once(s):
    sold = _sell(s, automatic=True)
    assert TestGatewayCharge.objects.count() == 1
    with clock.frozen(at("2026-05-11", "09:00")):
        preview = s["desk"].get(
            f"/passes/{sold.pk}/plan-change-preview?template_id={s['gold'].pk}&when=now"
        )
        assert preview.status_code == 200, preview.content
        p = preview.json()
        assert (
            p["uses"] == "carried"
            and p["automatic"]
            and p["due_now_minor"] == p["charge_minor"] - p["credit_minor"]
        )
        body = {
            "template_id": s["gold"].pk,
            "when": "now",
            "expected_credit_minor": p["credit_minor"],
            "expected_charge_minor": p["charge_minor"],
        }
        refused = s["desk"].post(f"/passes/{sold.pk}/plan-change", body)
        assert refused.status_code == 400 and "Idempotency-Key" in refused.json()["detail"]
        key = {"Idempotency-Key": uuid.uuid4().hex}
        done = s["desk"].post(f"/passes/{sold.pk}/plan-change", body, **key)
        assert done.status_code == 200, done.content
        out = done.json()
        assert out["name"] == "Gold" and out["charge"]["outcome"] == "charged"
        assert (out["plan_change"]["credit_minor"], out["plan_change"]["charge_minor"]) == (
            p["credit_minor"],
            p["charge_minor"],
        )
        again = s["desk"].post(f"/passes/{sold.pk}/plan-change", body, **key)
        assert (
            again.status_code == 200
            and again.json()["plan_change"]["id"] == out["plan_change"]["id"]
        )
        charges = list(
            TestGatewayCharge.objects.order_by("pk").values_list("amount_minor", flat=True)
        )
        assert charges == [6000, p["due_now_minor"]]
        assert PassPlanChange.objects.count() == 1
        assert_ledger_ok()


def test_the_api_bad_input_is_a_clear_4xx(s):
    sold = _sell(s)
    same = s["desk"].post(f"/passes/{sold.pk}/plan-change", {"template_id": s["basic"].pk})
    assert same.status_code == 409 and same.json()["code"] == "same_plan"
    unknown = s["desk"].post(f"/passes/{sold.pk}/plan-change", {"template_id": 999999})
    assert unknown.status_code == 422
    bad_when = s["desk"].get(
        f"/passes/{sold.pk}/plan-change-preview?template_id={s['gold'].pk}&when=soon"
    )
    assert bad_when.status_code == 422
    scheduled = s["desk"].post(
        f"/passes/{sold.pk}/plan-change", {"template_id": s["gold"].pk, "when": "next_cycle"}
    )
    assert scheduled.status_code == 200 and scheduled.json()["plan_change"]["status"] == "scheduled"
    assert Pass.objects.get(pk=sold.pk).name == "Basic"
