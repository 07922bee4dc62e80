"""The Pay Balance link: a signed, expiring page where the patient pays everything owed by card."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse

from carnet.billing.emails import pay_link_token
from carnet.billing.models import Payment
from carnet.billing.payments import balance_pay_online, payment_receive
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient, race
from carnet.core import clock
from carnet.core.errors import Conflict, ValidationFailed
from carnet.gateway.base import CardDeclined, GatewayUnavailable
from carnet.gateway.models import TestGatewayCharge
from carnet.ledger import accounts
from carnet.ledger.selectors import balance

pytestmark = pytest.mark.django_db

CARD = {
    "holder": "Ana Silva",
    "number": "4242 4242 4242 4242",
    "exp_month": "12",
    "exp_year": "2099",
    "cvc": "123",
}


@pytest.fixture
def owing(front_desk, catalog):
    """A patient with two open invoices (the older one part paid) and another patient's invoice."""
    patient = make_patient(first_name="Ana", last_name="Silva", email="ana@example.test")
    cat = catalog["income_category"]
    older, newer = (
        manual_invoice(front_desk, patient, 6000, category=cat),
        manual_invoice(front_desk, patient, 2500, category=cat),
    )
    payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=1000,
        allocations=[(older, 1000)],
    )
    other = manual_invoice(front_desk, make_patient(), 9900, category=cat)
    return patient, older, newer, other


def pay_url(patient):
    return reverse("portal:pay_balance", args=[pay_link_token(patient)])


def form_key(html: str) -> str:
    return re.search(r'name="form_key" value="([0-9a-f]+)"', html).group(1)


def test_the_link_shows_the_outstanding_invoices_and_total(client, owing):
    patient = owing[0]
    html = client.get(pay_url(patient)).content.decode()
    assert "Ana Silva" in html and "$50.00" in html and "$25.00" in html and "$75.00" in html
    assert "$99.00" not in html  # another patient's invoice


def test_paying_settles_every_open_invoice_and_emails_a_receipt(
    client, owing, django_capture_on_commit_callbacks
):
    patient, older, newer, other = owing
    url = pay_url(patient)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url, {**CARD, "form_key": form_key(client.get(url).content.decode())}
        )
    assert response.status_code == 302
    payment = Payment.objects.get(patient=patient, method="card_gateway")
    assert (
        payment.amount_minor == 7500
        and payment.gateway_charge_id
        and "•••• 4242" in payment.reference
    )
    older.refresh_from_db(), newer.refresh_from_db(), other.refresh_from_db()
    assert (older.status, newer.status, other.status) == ("paid", "paid", "unpaid")
    assert balance(accounts.AR, patient_id=patient.pk) == 0
    assert balance(accounts.PATIENT_CREDIT, patient_id=patient.pk) == 0
    assert_ledger_ok()
    thanks = client.get(response["Location"]).content.decode()
    assert "Thank you" in thanks and "$75.00" in thanks and "ana@example.test" in thanks
    [message] = mail.outbox
    assert message.to == ["ana@example.test"] and "$75.00" in message.body
    assert len(message.attachments) == 2 and all(
        a[2] == "application/pdf" for a in message.attachments
    )
    assert (
        "nothing to pay" in client.get(url).content.decode()
    )  # the link stays, the balance is zero


def test_double_submit_with_the_same_form_key_charges_once(
    client, owing, django_capture_on_commit_callbacks
):
    patient = owing[0]
    url = pay_url(patient)
    data = {**CARD, "form_key": form_key(client.get(url).content.decode())}
    with django_capture_on_commit_callbacks(execute=True):
        first, second = client.post(url, data), client.post(url, data)
    assert (
        first.status_code == second.status_code == 302 and first["Location"] == second["Location"]
    )
    assert (
        TestGatewayCharge.objects.count() == 1
        and Payment.objects.filter(method="card_gateway").count() == 1
    )
    assert len(mail.outbox) == 1
    assert_ledger_ok()


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_concurrent_double_submit_charges_once(owing):
    patient = owing[0]
    results = race(
        2,
        lambda i: balance_pay_online(
            patient=patient,
            card_number="4242424242424242",
            exp_month=12,
            exp_year=2099,
            cvc="123",
            holder="Ana",
            idempotency_key="same",
        ),
    )
    assert all(isinstance(r, Payment) for r in results), results
    assert results[0].pk == results[1].pk
    assert (
        TestGatewayCharge.objects.count() == 1
        and Payment.objects.filter(method="card_gateway").count() == 1
    )
    assert_ledger_ok()


def test_a_declined_card_shows_why_and_charges_nothing(client, owing):
    patient = owing[0]
    url = pay_url(patient)
    key = form_key(client.get(url).content.decode())
    response = client.post(url, {**CARD, "number": "4000 0000 0000 0002", "form_key": key})
    html = response.content.decode()
    assert (
        response.status_code == 200
        and "The card was declined by the bank. Nothing was charged." in html
    )
    assert 'value="123"' not in html  # the CVC is never echoed back
    assert (
        not Payment.objects.filter(method="card_gateway").exists()
        and TestGatewayCharge.objects.count() == 0
    )
    # The same form, corrected, then goes through.
    assert client.post(url, {**CARD, "form_key": key}).status_code == 302
    assert Payment.objects.get(method="card_gateway").amount_minor == 7500
    assert_ledger_ok()


def test_a_bad_card_number_is_shown_on_its_field(client, owing):
    url = pay_url(owing[0])
    response = client.post(url, {**CARD, "number": "4242 4242 4242 4241", "form_key": "k1"})
    assert (
        response.status_code == 200
        and "This is not a valid card number" in response.content.decode()
    )
    assert not Payment.objects.filter(method="card_gateway").exists()


def test_a_lost_response_is_retried_safely_with_the_same_key(owing):
    patient = owing[0]
    card = {
        "card_number": "4000000000000770",
        "exp_month": 12,
        "exp_year": 2099,
        "cvc": "123",
        "holder": "Ana",
        "idempotency_key": "k-lost",
    }
    with pytest.raises(GatewayUnavailable):
        balance_pay_online(patient=patient, **card)  # charged, but the answer was lost
    payment = balance_pay_online(patient=patient, **card)
    assert payment.amount_minor == 7500 and TestGatewayCharge.objects.count() == 1
    assert_ledger_ok()


def test_tampered_and_expired_links_show_a_clear_page(client, owing):
    patient = owing[0]
    token = pay_link_token(patient)
    for bad in (
        token[:-2] + "xx",
        "nonsense",
        token.replace(str(patient.pk), str(patient.pk + 1), 1),
    ):
        response = client.get(reverse("portal:pay_balance", args=[bad]))
        assert (
            response.status_code == 400
            and "This payment link is not valid" in response.content.decode()
        )
        assert (
            client.post(
                reverse("portal:pay_balance", args=[bad]), {**CARD, "form_key": "k"}
            ).status_code
            == 400
        )
    later = clock.now() + timedelta(days=8)
    with clock.frozen(later):
        response = client.get(reverse("portal:pay_balance", args=[token]))
        assert response.status_code == 410 and "expired" in response.content.decode()
        assert (
            client.post(
                reverse("portal:pay_balance", args=[token]), {**CARD, "form_key": "k"}
            ).status_code
            == 410
        )
    with clock.frozen(clock.now() + timedelta(days=6)):
        assert client.get(reverse("portal:pay_balance", args=[token])).status_code == 200
    assert not Payment.objects.filter(method="card_gateway").exists()


def test_the_thank_you_page_shows_only_the_links_own_payment(client, owing, front_desk):
    patient, *_ = owing
    stranger = make_patient()
    theirs = payment_receive(
        actor=front_desk.user, patient=stranger, method="cash", amount_minor=100
    )
    url = reverse("portal:pay_balance_paid", args=[pay_link_token(patient), theirs.pk])
    assert client.get(url).status_code == 404


def test_the_service_refuses_when_nothing_is_owed_and_checks_its_input(owing):
    card = {
        "card_number": "4242424242424242",
        "exp_month": 12,
        "exp_year": 2099,
        "cvc": "123",
        "holder": "Ana",
    }
    with pytest.raises(Conflict) as exc:
        balance_pay_online(patient=make_patient(), idempotency_key="k", **card)
    assert exc.value.code == "nothing_owing"
    with pytest.raises(ValidationFailed):
        balance_pay_online(patient=owing[0], idempotency_key="", **card)
    with pytest.raises(ValidationFailed):
        balance_pay_online(patient=owing[0], idempotency_key="k", **{**card, "holder": " "})
    with pytest.raises(CardDeclined):
        balance_pay_online(
            patient=owing[0], idempotency_key="k", **{**card, "card_number": "4000000000000002"}
        )
    assert TestGatewayCharge.objects.count() == 0
