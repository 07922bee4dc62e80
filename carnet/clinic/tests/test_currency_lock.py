"""Issue 17: the clinic currency cannot change once any invoice, payment or gift card exists (100.00
would become ¥10,000), and no process keeps a currency that may still change."""

import pytest
from django.test import Client
from django.urls import reverse

from carnet.billing.models import Payment
from carnet.billing.payments import payment_receive
from carnet.billing.tests.factories import manual_invoice
from carnet.clinic import selectors
from carnet.clinic.selectors import clinic_currency, clinic_get
from carnet.clinic.services import clinic_update
from carnet.conftest import Api, make_catalog, make_patient, make_staff
from carnet.core.errors import Conflict
from carnet.core.permissions import AccessLevel
from carnet.giftcards.models import GiftCard
from carnet.giftcards.services import gift_card_create_and_load
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    clinic_set(currency="CAD", gift_cards_enabled=True)
    return make_staff(AccessLevel.ACCOUNT_OWNER)


def _invoice(owner):
    manual_invoice(owner, make_patient(), 10000, category=make_catalog()["income_category"])


def _payment(owner):
    payment_receive(actor=owner.user, patient=make_patient(), method="cash", amount_minor=10000)


def _gift_card(owner):
    gift_card_create_and_load(actor=owner.user, code="GIFT-2026", amount_minor=0)


def test_the_currency_can_change_while_no_money_is_recorded(owner):
    clinic_update(actor=owner.user, data={"currency": "EUR"})
    assert clinic_get().currency == "EUR"


@pytest.mark.parametrize("record", [_invoice, _payment, _gift_card])
def test_the_currency_cannot_change_once_an_invoice_payment_or_gift_card_exists(owner, record):
    record(owner)
    with pytest.raises(Conflict, match="The currency stays CAD") as refused:
        clinic_update(actor=owner.user, data={"currency": "JPY"})
    assert refused.value.code == "currency_locked"
    clinic_update(actor=owner.user, data={"currency": "CAD", "name": "Same currency is fine"})
    assert (clinic_get().currency, clinic_get().name) == ("CAD", "Same currency is fine")


def test_the_api_and_the_settings_page_refuse_the_change_with_a_sentence(owner):
    _payment(owner)
    response = Api(owner.user).patch("/clinic", {"currency": "JPY"})
    assert response.status_code == 409 and "The currency stays CAD" in response.json()["detail"]
    client = Client()
    client.force_login(owner.user)
    page = client.get(reverse("clinic:clinic_settings"))
    assert page.status_code == 200
    form = {k: v for k, v in page.context["form"].initial.items() if v is not None}
    form.update(currency="JPY")
    html = client.post(reverse("clinic:clinic_settings"), form).content.decode()
    assert "The currency stays CAD" in html
    assert clinic_get().currency == "CAD" and Payment.objects.get().amount_minor == 10000


def test_no_process_keeps_a_currency_that_may_still_change(owner):
    """A worker that read the currency before the owner changed it must not go on in the old one."""
    assert clinic_currency() == "CAD"
    clinic_set(currency="EUR")  # another process's change: no signal reaches this one
    assert clinic_currency() == "EUR"
    _payment(owner)
    assert clinic_currency() == "EUR"
    assert selectors.clinic_currency_kept() == "EUR"  # now fixed: kept for the process's life
    assert not GiftCard.objects.exists()
