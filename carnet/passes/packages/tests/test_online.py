"""Buying a package online from the patient portal (SPEC 9.1, 11): paid by card through the
gateway, once per form key, only for oneself or a dependant; and the portal's Packages &
Memberships tab, which shows only the patient's own and dependants' passes."""

import pytest
from django.urls import reverse

from carnet.billing.models import Invoice, Payment
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import PASSWORD, make_patient, race
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.gateway.base import CardDeclined, GatewayUnavailable
from carnet.gateway.models import TestGatewayCharge
from carnet.passes.models import Pass
from carnet.passes.packages.online import package_buy_online
from carnet.passes.selectors import pass_fully_paid, pass_unlocked
from carnet.passes.tests.factories import package_template, sold_package
from carnet.people.services import family_link_add, patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db

CARD = {
    "card_number": "4242 4242 4242 4242",
    "exp_month": 12,
    "exp_year": 2040,
    "cvc": "123",
    "holder": "Me Myself",
}


@pytest.fixture
def shop(owner, catalog):
    clinic_set(online_sales_enabled=True)
    me = make_patient(email="me@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    template = package_template(
        catalog, name="5 massages", price=40000, quantity=5, sold_online=True
    )
    return {"me": me, "user": me.user, "template": template, "catalog": catalog, "owner": owner}


def buy_online(s, key="k1", patient=None, template=None, **card):
    return package_buy_online(
        user=s["user"],
        patient=patient or s["me"],
        template=template or s["template"],
        idempotency_key=key,
        **{**CARD, **card},
    )


def test_buying_online_creates_a_paid_redeemable_pass_and_one_gateway_charge(
    shop, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        sold = buy_online(shop)
    assert sold.patient == shop["me"] and sold.sold_online and sold.status == "active"
    assert pass_fully_paid(sold) and pass_unlocked(sold) == 5 and sold.remaining == 5
    [charge] = TestGatewayCharge.objects.all()
    [payment] = Payment.objects.all()
    assert charge.amount_minor == 40000 and payment.gateway_charge_id == charge.charge_id
    assert (
        payment.method == "card_gateway"
        and payment.created_by is None
        and payment.unapplied_minor == 0
    )
    invoice = Invoice.objects.get(patient=shop["me"])
    assert invoice.balance_minor == 0 and invoice.applied_minor == invoice.total_minor == 40000
    assert [m.to for m in mailoutbox] == [["me@example.test"]]
    assert_ledger_ok()


def test_a_template_not_sold_online_is_refused_and_nothing_is_charged(shop):
    desk_only = package_template(shop["catalog"], name="Desk only", sold_online=False)
    with pytest.raises(Conflict) as refused:
        buy_online(shop, template=desk_only)
    assert refused.value.code == "not_sold_online"
    archived = package_template(shop["catalog"], name="Old", sold_online=True, archived=True)
    with pytest.raises(Conflict):
        buy_online(shop, key="k2", template=archived)
    assert not Pass.objects.exists() and not TestGatewayCharge.objects.exists()


def test_clinic_online_sales_off_refuses(shop):
    clinic_set(online_sales_enabled=False)
    with pytest.raises(Conflict) as refused:
        buy_online(shop)
    assert refused.value.code == "online_sales_off"
    assert not Pass.objects.exists() and not TestGatewayCharge.objects.exists()


def test_a_declined_card_sells_nothing_and_the_same_form_can_then_pay(shop):
    with pytest.raises(CardDeclined) as declined:
        buy_online(shop, card_number="4000000000000002")
    assert "declined" in declined.value.message
    assert (
        not Pass.objects.exists() and not Invoice.objects.exists() and not Payment.objects.exists()
    )
    sold = buy_online(shop)  # the same form key, another card
    assert pass_fully_paid(sold) and TestGatewayCharge.objects.count() == 1


def test_a_bad_card_number_stops_before_anything(shop):
    with pytest.raises(ValidationFailed):
        buy_online(shop, card_number="4242 4242 4242 4241")
    assert not Pass.objects.exists() and not TestGatewayCharge.objects.exists()


def test_the_same_key_twice_sells_one_pass_and_charges_once(shop):
    first = buy_online(shop)
    again = buy_online(shop, card_number="5555 5555 5555 4444")
    assert first == again
    assert (
        Pass.objects.count() == 1
        and TestGatewayCharge.objects.count() == 1
        and Payment.objects.count() == 1
    )
    other = buy_online(shop, key="k2")  # a new form: a second purchase
    assert other != first and TestGatewayCharge.objects.count() == 2


def test_a_lost_response_then_retry_charges_once(shop):
    with pytest.raises(GatewayUnavailable):
        buy_online(shop, card_number="4000 0000 0000 0770")
    assert TestGatewayCharge.objects.count() == 1 and not Pass.objects.exists()
    sold = buy_online(shop, card_number="4000 0000 0000 0770")
    assert pass_fully_paid(sold)
    assert TestGatewayCharge.objects.count() == 1 and Payment.objects.count() == 1
    assert_ledger_ok()


def test_a_guardian_buys_for_a_dependant_but_never_for_a_stranger(shop):
    child, stranger = make_patient(), make_patient()
    family_link_add(actor=shop["owner"].user, patient=shop["me"], relative=child, kind="guardian")
    sold = buy_online(shop, patient=child)
    assert sold.patient == child and pass_fully_paid(sold)
    with pytest.raises(NotFound):
        buy_online(shop, key="k2", patient=stranger)
    assert (
        not Pass.objects.filter(patient=stranger).exists()
        and TestGatewayCharge.objects.count() == 1
    )


def test_a_free_package_is_sold_without_a_charge(shop):
    free = package_template(
        shop["catalog"], name="Free trial", price=0, quantity=1, sold_online=True
    )
    sold = buy_online(shop, template=free, card_number="", cvc="", holder="")
    assert sold.price_minor == 0 and pass_unlocked(sold) == 1
    assert not TestGatewayCharge.objects.exists() and not Payment.objects.exists()
    assert buy_online(shop, template=free) == sold


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_racing_twin_submissions_charge_once(shop):
    results = race(2, lambda i: buy_online(shop))
    passes = [r for r in results if isinstance(r, Pass)]
    assert passes and all(p == passes[0] for p in passes), results
    assert (
        Pass.objects.count() == 1
        and TestGatewayCharge.objects.count() == 1
        and Payment.objects.count() == 1
    )


# ---------------------------------------------------------------- the portal pages


def _portal(client, shop):
    client.force_login(shop["user"])
    return client


def test_the_tab_shows_own_and_dependants_passes_only(client, shop, front_desk):
    child, stranger = make_patient(first_name="Kid"), make_patient()
    family_link_add(actor=shop["owner"].user, patient=shop["me"], relative=child, kind="guardian")
    mine = sold_package(front_desk, shop["me"], package_template(shop["catalog"], name="Mine pack"))
    kids = sold_package(front_desk, child, package_template(shop["catalog"], name="Kid pack"))
    sold_package(front_desk, stranger, package_template(shop["catalog"], name="Stranger pack"))
    page = _portal(client, shop).get(reverse("portal:passes")).content.decode()
    assert "Mine pack" in page and "Kid pack" in page and "Stranger pack" not in page
    assert (
        "0 / 10 used" in page
        and f'data-testid="pass-{mine.pk}"' in page
        and f'data-testid="pass-{kids.pk}"' in page
    )
    assert "5 massages" in page  # offered online, with its Buy button
    assert reverse("portal:pass_buy", kwargs={"pk": shop["template"].pk}) in page


def test_another_patients_pass_is_never_reachable(client, shop, front_desk):
    stranger = make_patient()
    theirs = sold_package(front_desk, stranger, package_template(shop["catalog"], name="Theirs"))
    response = _portal(client, shop).get(reverse("portal:pass_bought", kwargs={"pk": theirs.pk}))
    assert response.status_code == 404
    desk_only = package_template(shop["catalog"], name="Desk only")
    assert client.get(reverse("portal:pass_buy", kwargs={"pk": desk_only.pk})).status_code == 404
    form = {
        "form_key": "w1",
        "patient": stranger.pk,
        **{k: v for k, v in CARD.items() if k != "card_number"},
        "number": CARD["card_number"],
    }
    client.post(reverse("portal:pass_buy", kwargs={"pk": shop["template"].pk}), form)
    assert not Pass.objects.filter(patient=stranger, sold_online=True).exists()


def test_buy_page_sells_and_confirms_and_shows_a_decline(client, shop):
    url = reverse("portal:pass_buy", kwargs={"pk": shop["template"].pk})
    portal = _portal(client, shop)
    assert b"$400.00" in portal.get(url).content
    form = {
        "form_key": "w1",
        "holder": "Me",
        "number": "4000 0000 0000 0002",
        "exp_month": 12,
        "exp_year": 2040,
        "cvc": "123",
    }
    declined = portal.post(url, form)
    assert (
        declined.status_code == 200
        and b"declined" in declined.content
        and b"Nothing was charged" in declined.content
    )
    assert not Pass.objects.exists()
    response = portal.post(url, {**form, "number": "4242 4242 4242 4242"})
    sold = Pass.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "portal:pass_bought", kwargs={"pk": sold.pk}
    )
    assert b"5 massages" in portal.get(response["Location"]).content
    assert (
        portal.post(url, {**form, "number": "4242 4242 4242 4242"}).status_code == 302
    )  # a double submit
    assert Pass.objects.count() == 1 and TestGatewayCharge.objects.count() == 1


def test_portal_pages_need_a_patient_login(client, shop, front_desk):
    for name, kwargs in (("portal:passes", {}), ("portal:pass_buy", {"pk": shop["template"].pk})):
        assert client.get(reverse(name, kwargs=kwargs)).status_code == 302  # to the portal login
    client.force_login(front_desk.user)
    assert client.get(reverse("portal:passes")).status_code == 302


def test_a_guardian_chooses_the_dependant_on_the_buy_page(client, shop):
    child = make_patient(first_name="Kid")
    family_link_add(actor=shop["owner"].user, patient=shop["me"], relative=child, kind="guardian")
    url = reverse("portal:pass_buy", kwargs={"pk": shop["template"].pk})
    portal = _portal(client, shop)
    assert child.full_name.encode() in portal.get(url).content  # the "For" choice
    form = {
        "form_key": "w9",
        "patient": child.pk,
        "holder": "Me",
        "number": "4242 4242 4242 4242",
        "exp_month": 12,
        "exp_year": 2040,
        "cvc": "123",
    }
    assert portal.post(url, form).status_code == 302
    assert Pass.objects.get().patient == child
    page = portal.get(reverse("portal:passes")).content.decode()
    assert "5 massages" in page and "Kid" in page
