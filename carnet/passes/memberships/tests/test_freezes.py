"""Freezes (issue 22 point 7): a pause's freeze fee (none, once, per frozen cycle) set on the
template, billed like a cycle on a line of its own (and charged by autopay), the longest freeze
enforced with a clear message, the fee shown in the portal before the patient confirms, and the
template set-up's validation. Ledger invariants after each step."""

import datetime as dt

import pytest
from django.urls import reverse

from carnet.billing.payments import payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import PASSWORD, Api, make_patient
from carnet.core import clock
from carnet.core.errors import ValidationFailed
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.passes.cycles import memberships_recognise
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import services as ms
from carnet.passes.models import PassTemplate
from carnet.passes.tests.factories import at, membership_template
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(owner, front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        me = make_patient(email="me@example.test", first_name="Me")
        patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
        me.refresh_from_db()
        yield {"fd": front_desk, "admin": admin_staff, "cat": catalog, "patient": me}


def _template(s, kind="per_cycle", fee=1500, **kw):
    return membership_template(
        s["cat"],
        name=f"Freeze {kind}",
        price=6000,
        uses=2,
        pause_allowed=True,
        pause_max_cycles=2,
        freeze_fee_kind=kind,
        freeze_fee_minor=fee,
        **kw,
    )


def _sell(s, template, **kw):
    sold = ms.membership_sell(actor=s["fd"].user, patient=s["patient"], template=template, **kw)
    invoice = sold.pass_invoices.get().invoice
    if invoice.balance_minor and kw.get("payment_mode") != "automatic":
        payment_receive(
            actor=s["fd"].user,
            patient=s["patient"],
            method="cash",
            amount_minor=invoice.balance_minor,
            allocations=[(invoice, invoice.balance_minor)],
        )
    return sold


def _run(day):
    with clock.frozen(at(day, "06:00")):
        result = passes_daily(today=dt.date.fromisoformat(day))
        assert result["errors"] == []
        assert_ledger_ok()


@pytest.mark.parametrize(
    "kind, billed", [("per_cycle", [1500, 1500]), ("once", [1500]), ("none", [])]
)
def test_the_freeze_fee_is_billed_like_a_cycle_on_its_own_line(s, kind, billed):
    sold = _sell(s, _template(s, kind, fee=1500 if kind != "none" else 0))
    pause = ms.membership_pause(actor=s["fd"].user, sold_pass=sold, cycles=2)
    assert (pause.fee_kind, pause.fee_minor) == (kind, 1500 if kind != "none" else 0)
    for day in ("2026-06-01", "2026-07-01", "2026-08-01"):
        _run(day)
    rows = list(sold.pass_invoices.select_related("invoice").order_by("seq"))
    frozen = [r for r in rows if r.skipped]
    assert [r.period_start for r in frozen] == [dt.date(2026, 6, 1), dt.date(2026, 7, 1)]
    assert [r.invoice.total_minor for r in frozen if r.invoice_id] == billed
    for row in frozen:
        if row.invoice_id:
            [line] = row.invoice.lines.all()
            assert "freeze fee" in line.description and row.uses_allowed == 0
    assert (
        rows[-1].period_start == dt.date(2026, 8, 1) and rows[-1].invoice.total_minor == 6000
    )  # the end moved out
    assert ms.billed_cycles(sold) == 2  # a frozen cycle does not count toward the term
    with clock.frozen(at("2026-08-15", "06:00")):
        memberships_recognise()
        assert_ledger_ok()


def test_autopay_charges_the_freeze_fee(s):
    card = card_store(
        actor=s["fd"].user,
        patient=s["patient"],
        number="4242424242424242",
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="Me",
    )
    sold = _sell(s, _template(s), payment_mode="automatic", card=card)
    _run("2026-05-01")  # the first cycle
    ms.membership_pause(actor=s["fd"].user, sold_pass=sold, cycles=1)
    _run("2026-06-01")
    assert list(
        TestGatewayCharge.objects.order_by("pk").values_list("amount_minor", flat=True)
    ) == [6000, 1500]
    june = sold.pass_invoices.get(period_start=dt.date(2026, 6, 1))
    assert june.invoice.balance_minor == 0


def test_the_longest_freeze_is_enforced_with_a_clear_message(s, client):
    sold = _sell(s, _template(s))
    with pytest.raises(ValidationFailed) as refused:
        ms.membership_pause(actor=s["fd"].user, sold_pass=sold, cycles=3)
    assert "can be paused for at most 2 cycles at a time" in refused.value.message
    client.force_login(s["fd"].user)
    page = client.post(
        reverse("memberships:pause", kwargs={"pk": sold.pk}), {"cycles": "3"}, follow=True
    )
    assert "can be paused for at most 2 cycles at a time" in page.content.decode()
    assert "A freeze fee of $15.00 is billed for each paused cycle" in page.content.decode()


def test_the_portal_shows_the_fee_before_the_patient_pauses(s, client):
    template = _template(s, "once")
    sold = _sell(s, template)
    client.force_login(s["patient"].user)
    tab = client.get(reverse("portal:passes")).content.decode()
    assert "A freeze fee of $15.00 is billed once, when the pause starts." in tab
    assert 'data-confirm="A freeze fee of $15.00' in tab
    url = reverse("portal:membership_pause", kwargs={"pk": sold.pk})
    PassTemplate.objects.filter(pk=template.pk).update(
        freeze_fee_minor=2000
    )  # the template, not the membership
    sold.freeze_fee_minor = (
        2500  # as if staff moved it to a plan with another fee since the page was shown
    )
    sold.save(update_fields=["freeze_fee_minor"])
    stale = client.post(
        url, {"cycles": "1", "fee_kind": "once", "fee_minor": "1500"}, follow=True
    ).content.decode()
    assert "The freeze fee of" in stale and "is now $25.00" in stale and not sold.pauses.exists()
    done = client.post(
        url, {"cycles": "1", "fee_kind": "once", "fee_minor": "2500"}, follow=True
    ).content.decode()
    assert "is paused for 1 cycle" in done and sold.pauses.get().fee_minor == 2500
    too_long = Api(s["patient"].user).post(f"/me/passes/{sold.pk}/pause", {"cycles": 1})
    assert too_long.status_code == 409  # already paused


def test_the_api_refuses_a_stale_fee_with_a_409(s):
    sold = _sell(s, _template(s))
    api = Api(s["patient"].user)
    stale = api.post(f"/me/passes/{sold.pk}/pause", {"cycles": 2, "freeze_fee_minor": 1500})
    assert stale.status_code == 409 and stale.json()["code"] == "freeze_fee_changed"
    done = api.post(f"/me/passes/{sold.pk}/pause", {"cycles": 2, "freeze_fee_minor": 3000})
    assert done.status_code == 200 and done.json()["freeze_fee_kind"] == "per_cycle"


def _body(s, **over):
    data = {
        "name": "Frozen",
        "kind": "membership",
        "price_minor": 6000,
        "income_category_id": s["cat"]["income_category"].pk,
        "cycle": "monthly",
        "uses_per_cycle": 2,
        "pause_allowed": True,
        "pause_max_cycles": 2,
        "items": [{"treatment_id": s["cat"]["treatment"].pk}],
    }
    return {**data, **over}


@pytest.mark.parametrize(
    "over, field",
    [
        ({"freeze_fee_kind": "once"}, "freeze_fee_minor"),
        (
            {
                "freeze_fee_kind": "per_cycle",
                "freeze_fee_minor": 500,
                "pause_allowed": False,
                "pause_max_cycles": 0,
            },
            "freeze_fee_kind",
        ),
        ({"freeze_fee_minor": 500}, "freeze_fee_minor"),
        ({"freeze_fee_kind": "weekly"}, "freeze_fee_kind"),
        ({"freeze_fee_kind": "once", "freeze_fee_minor": -1}, "freeze_fee_minor"),
    ],
)
def test_template_setup_validates_the_freeze_fee(s, over, field):
    response = Api(s["admin"].user).post("/pass-templates", _body(s, **over))
    assert response.status_code == 422, response.content
    assert field in response.content.decode()


def test_template_setup_saves_the_freeze_fee_and_a_sale_keeps_it(s, client):
    api = Api(s["admin"].user)
    created = api.post(
        "/pass-templates", _body(s, freeze_fee_kind="per_cycle", freeze_fee_minor=1200)
    )
    assert created.status_code == 201, created.content
    assert (created.json()["freeze_fee_kind"], created.json()["freeze_fee_minor"]) == (
        "per_cycle",
        1200,
    )
    template = PassTemplate.objects.get(pk=created.json()["id"])
    sold = _sell(s, template)
    PassTemplate.objects.filter(pk=template.pk).update(freeze_fee_minor=9900)
    sold.refresh_from_db()
    assert (sold.freeze_fee_kind, sold.freeze_fee_minor) == ("per_cycle", 1200)
    client.force_login(s["admin"].user)
    page = client.get(reverse("pass_templates:edit", kwargs={"pk": template.pk})).content.decode()
    assert 'name="freeze_fee_kind"' in page and 'name="freeze_fee_minor"' in page
