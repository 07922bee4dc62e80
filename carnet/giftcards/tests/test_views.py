import pytest
from django.urls import reverse

from carnet.billing.tests.factories import manual_invoice
from carnet.clinic.selectors import clinic_get
from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.giftcards.models import GiftCard
from carnet.giftcards.services import gift_card_create_and_load
from carnet.people.services import patient_portal_enable

pytestmark = pytest.mark.django_db


def test_create_search_and_card_page(client, front_desk, catalog):
    client.force_login(front_desk.user)
    buyer = make_patient()
    response = client.post(
        reverse("giftcards:new"),
        {
            "form_key": "k1",
            "code": "page-card",
            "amount": "50.00",
            "purchaser": buyer.pk,
            "method": "cash",
        },
    )
    gift_card = GiftCard.objects.get()
    assert (
        response.status_code == 302
        and gift_card.code == "PAGE-CARD"
        and gift_card.balance_minor == 5000
    )
    again = client.post(
        reverse("giftcards:new"),
        {
            "form_key": "k1",
            "code": "page-card",
            "amount": "50.00",
            "purchaser": buyer.pk,
            "method": "cash",
        },
    )
    assert (
        again.status_code == 302 and GiftCard.objects.count() == 1
    )  # a double submit does nothing twice
    assert b"PAGE-CARD" in client.get(reverse("giftcards:list") + "?q=page").content
    assert b"PAGE-CARD" not in client.get(reverse("giftcards:list") + "?q=zzz").content
    page = client.get(reverse("giftcards:detail", args=[gift_card.pk]))
    assert page.status_code == 200 and b"Load" in page.content


def test_bad_input_shows_on_the_page(client, front_desk, catalog):
    client.force_login(front_desk.user)
    response = client.post(
        reverse("giftcards:new"), {"form_key": "k2", "code": "0bad", "method": "cash"}
    )
    assert response.status_code == 200 and b"not starting with 0" in response.content
    gift_card = gift_card_create_and_load(
        actor=front_desk.user, code="SMALL-1", amount_minor=100, purchaser=make_patient()
    )
    response = client.post(
        reverse("giftcards:transfer", args=[gift_card.pk]),
        {"form_key": "k3", "target_code": "NOPE-NOPE", "amount": "1.00"},
    )
    assert response.status_code == 200 and "No gift card with code" in response.content.decode()


def test_receive_payment_redeems_a_gift_card(client, front_desk, catalog):
    client.force_login(front_desk.user)
    gift_card_create_and_load(
        actor=front_desk.user, code="WALLET-1", amount_minor=2000, purchaser=make_patient()
    )
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 5000, category=catalog["income_category"])
    url = reverse("billing:payment_new", args=[patient.pk])
    short = client.post(
        url,
        {
            "form_key": "p1",
            "method": "gift_card",
            "amount": "30.00",
            "gift_card_code": "wallet-1",
            f"apply_{invoice.pk}": "30.00",
        },
    )
    assert short.status_code == 200 and "has only" in short.content.decode()
    ok = client.post(
        url,
        {
            "form_key": "p2",
            "method": "gift_card",
            "amount": "20.00",
            "gift_card_code": "wallet-1",
            f"apply_{invoice.pk}": "20.00",
        },
    )
    assert ok.status_code == 302
    invoice.refresh_from_db()
    assert invoice.applied_minor == 2000 and GiftCard.objects.get().balance_minor == 0


def test_portal_sells_a_card_when_online_sales_are_on(client, catalog):
    me = make_patient(email="me3@example.test")
    patient_portal_enable(
        actor=make_staff(AccessLevel.ACCOUNT_OWNER).user,
        patient=me,
        password="a long enough password",
    )
    me.refresh_from_db()
    client.force_login(me.user)
    url = reverse("portal:gift_card_buy")
    assert b"not sold online" in client.get(url).content
    clinic = clinic_get()
    clinic.gift_card_online_sales_enabled = True
    clinic.save()
    form = {
        "form_key": "w1",
        "amount": "40.00",
        "recipient_name": "Ann",
        "recipient_email": "ann@example.test",
        "holder": "Me",
        "number": "4242 4242 4242 4242",
        "exp_month": 12,
        "exp_year": 2040,
        "cvc": "123",
    }
    response = client.post(url, form)
    gift_card = GiftCard.objects.get()
    assert (
        response.status_code == 200
        and gift_card.code.encode() in response.content
        and gift_card.balance_minor == 4000
    )
