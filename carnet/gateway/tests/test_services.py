"""Cards on file: storing (never the number), removing, charging, refunding, and who may."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model

from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import Conflict, NotAllowed, NotFound, ValidationFailed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.gateway import selectors
from carnet.gateway.base import (
    CardDeclined,
    ChargeResult,
    GatewayUnavailable,
    RefundResult,
    StoredCard,
)
from carnet.gateway.models import CardOnFile, TestGatewayCard, TestGatewayCharge, TestGatewayRefund
from carnet.gateway.services import card_charge, card_remove, card_store, charge_refund

NUMBER = "4242424242424242"
NEXT_YEAR = clock.now().year + 1


@pytest.fixture
def patient(db):
    return make_patient()


def store(actor, patient, number=NUMBER, **overrides):
    args = {
        "number": number,
        "exp_month": 8,
        "exp_year": NEXT_YEAR,
        "cvc": "123",
        "holder": " Ana Silva ",
    }
    args.update(overrides)
    return card_store(actor=actor.user, patient=patient, **args)


def log_for(obj):
    return list(
        ActivityLog.objects.filter(
            object_type=obj._meta.label_lower, object_id=str(obj.pk)
        ).order_by("id")
    )


def every_value(*models):
    for model in models:
        for row in model.objects.values_list():
            yield from (str(v) for v in row)


# ---------------------------------------------------------------- card_store


def test_card_store_keeps_only_token_brand_last4_and_expiry(front_desk, patient):
    card = store(front_desk, patient)
    card.refresh_from_db()
    assert (card.patient, card.brand, card.last4, card.exp_month, card.exp_year, card.holder) == (
        patient,
        "visa",
        "4242",
        8,
        NEXT_YEAR,
        "Ana Silva",
    )
    assert card.token == TestGatewayCard.objects.get().token
    assert card.removed_at is None and card.created_at is not None
    assert str(card) == f"Visa •••• 4242 (exp. 08/{NEXT_YEAR})"
    assert {f.name for f in CardOnFile._meta.fields}.isdisjoint({"number", "cvc", "card_number"})


@pytest.mark.parametrize("number", [NUMBER, "4242 4242 4242 4242", "5555-5555-5555-4444"])
def test_the_card_number_is_in_no_column_of_any_row(front_desk, patient, number):
    card = store(front_desk, patient, number=number, cvc="987")
    done = card_charge(card_or_token=card, amount_minor=5000, currency="CAD", idempotency_key="k-1")
    charge_refund(charge_id=done.charge_id, amount_minor=1000, idempotency_key="r-1")
    card_remove(actor=front_desk.user, card=card)
    digits = number.replace(" ", "").replace("-", "")
    values = list(
        every_value(CardOnFile, TestGatewayCard, TestGatewayCharge, TestGatewayRefund, ActivityLog)
    )
    assert values  # the check looked at real rows
    assert not [v for v in values if digits in v or number in v or digits[:12] in v]


def test_card_store_logs_the_card_without_its_token(front_desk, patient):
    card = store(front_desk, patient)
    [entry] = log_for(card)
    assert (entry.verb, entry.actor) == ("card_stored", front_desk.user)
    assert entry.after["last4"] == "4242" and "token" not in entry.after


def test_an_invalid_number_names_the_number_field_and_stores_nothing(front_desk, patient):
    with pytest.raises(ValidationFailed) as exc:
        store(front_desk, patient, number="4242424242424241")
    assert list(exc.value.fields) == ["number"]
    assert not CardOnFile.objects.exists() and not TestGatewayCard.objects.exists()
    assert not ActivityLog.objects.filter(verb="card_stored").exists()


def test_an_expired_card_is_refused(front_desk, patient):
    with clock.frozen(dt.datetime(2030, 6, 1, tzinfo=dt.timezone.utc)):
        with pytest.raises(ValidationFailed) as exc:
            store(front_desk, patient, exp_month=5, exp_year=2030)
    assert exc.value.code == "card_expired"
    assert not CardOnFile.objects.exists()


@pytest.mark.parametrize("holder", ["", "   ", "x" * 121])
def test_the_name_on_the_card_is_required_and_bounded(front_desk, patient, holder):
    with pytest.raises(ValidationFailed) as exc:
        store(front_desk, patient, holder=holder)
    assert list(exc.value.fields) == ["holder"]
    assert not TestGatewayCard.objects.exists()  # refused before reaching the gateway


# ---------------------------------------------------------------- who may


@pytest.mark.parametrize(
    "level, billing",
    [
        (AccessLevel.FRONT_DESK, False),  # right level, but no billing access
        (AccessLevel.FULL_ACCESS, False),
        (AccessLevel.PRACTITIONER_FRONT_DESK, True),  # below Front Desk
    ],
)
def test_staff_who_cannot_take_payments_cannot_store_or_remove_cards(
    db, front_desk, patient, level, billing
):
    staff = make_staff(level, billing=billing)
    with pytest.raises(NotAllowed) as exc:
        store(staff, patient)
    assert "take payments" in exc.value.message
    assert not TestGatewayCard.objects.exists()
    card = store(front_desk, patient)
    with pytest.raises(NotAllowed):
        card_remove(actor=staff.user, card=card)
    card.refresh_from_db()
    assert card.removed_at is None


def test_no_billing_access_message_says_what_to_do(db, patient):
    with pytest.raises(NotAllowed) as exc:
        store(make_staff(AccessLevel.FRONT_DESK, billing=False), patient)
    assert "billing access" in exc.value.message and "Full Access" in exc.value.message


def test_patients_cannot_store_cards(db, patient):
    user = get_user_model().objects.create_user(username="pat", password="x")
    with pytest.raises(NotAllowed):
        card_store(
            actor=user,
            patient=patient,
            number=NUMBER,
            exp_month=8,
            exp_year=NEXT_YEAR,
            cvc="123",
            holder="Pat",
        )


# ---------------------------------------------------------------- card_remove and selectors


def test_card_remove_keeps_the_row_hides_the_card_and_logs_once(front_desk, patient):
    card = store(front_desk, patient)
    removed = card_remove(actor=front_desk.user, card=card)
    assert removed.removed_at is not None and not removed.is_active
    assert (
        card_remove(actor=front_desk.user, card=card).removed_at == removed.removed_at
    )  # harmless twice
    assert list(selectors.cards_for_patient(patient)) == []
    assert CardOnFile.objects.filter(pk=card.pk).exists()
    stored, gone = log_for(card)
    assert (
        gone.verb == "card_removed"
        and gone.before["removed_at"] is None
        and gone.after["removed_at"]
    )
    assert "token" not in gone.before and "token" not in gone.after


def test_cards_for_patient_lists_active_cards_newest_first(front_desk, patient):
    with clock.frozen(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)):
        older = store(front_desk, patient)
    with clock.frozen(dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)):
        newer = store(front_desk, patient, number="5555555555554444")
        removed = store(front_desk, patient, number="4000000000000002")
    store(front_desk, make_patient())  # someone else's
    card_remove(actor=front_desk.user, card=removed)
    assert list(selectors.cards_for_patient(patient)) == [newer, older]
    assert list(patient.cards.all()) == [removed, newer, older]


def test_card_get(front_desk, patient):
    card = store(front_desk, patient)
    assert selectors.card_get(card.pk) == card
    with pytest.raises(NotFound):
        selectors.card_get(card.pk + 1000)


# ---------------------------------------------------------------- card_charge and charge_refund


def test_card_charge_with_a_card_or_its_token(front_desk, patient):
    card = store(front_desk, patient)
    by_card = card_charge(
        card_or_token=card, amount_minor=9000, currency="CAD", idempotency_key="k-1"
    )
    by_token = card_charge(
        card_or_token=card.token, amount_minor=9000, currency="CAD", idempotency_key="k-1"
    )
    assert by_card == by_token and by_card.status == "succeeded"
    assert TestGatewayCharge.objects.get().amount_minor == 9000


def test_card_charge_refuses_a_removed_card(front_desk, patient):
    card = card_remove(actor=front_desk.user, card=store(front_desk, patient))
    with pytest.raises(Conflict) as exc:
        card_charge(card_or_token=card, amount_minor=100, currency="CAD", idempotency_key="k-1")
    assert exc.value.code == "card_removed" and "another card" in exc.value.message
    assert not TestGatewayCharge.objects.exists()


def test_card_charge_passes_declines_through(front_desk, patient):
    card = store(front_desk, patient, number="4000000000000002")
    with pytest.raises(CardDeclined):
        card_charge(card_or_token=card, amount_minor=100, currency="CAD", idempotency_key="k-1")


def test_retrying_a_lost_response_through_the_service_charges_once(front_desk, patient):
    card = store(front_desk, patient, number="4000000000000770")
    with pytest.raises(GatewayUnavailable):
        card_charge(card_or_token=card, amount_minor=4200, currency="CAD", idempotency_key="pay-7")
    retry = card_charge(
        card_or_token=card, amount_minor=4200, currency="CAD", idempotency_key="pay-7"
    )
    assert retry.charge_id == TestGatewayCharge.objects.get().charge_id


def test_charge_refund_is_idempotent_and_bounded(front_desk, patient):
    done = card_charge(
        card_or_token=store(front_desk, patient),
        amount_minor=5000,
        currency="CAD",
        idempotency_key="k-1",
    )
    first = charge_refund(charge_id=done.charge_id, amount_minor=5000, idempotency_key="r-1")
    assert (
        charge_refund(charge_id=done.charge_id, amount_minor=5000, idempotency_key="r-1") == first
    )
    with pytest.raises(ValidationFailed):
        charge_refund(charge_id=done.charge_id, amount_minor=1, idempotency_key="r-2")


# ------------------------------------------------------------- another gateway behind the interface


class FakeGateway:
    calls: list = []

    def store_card(self, **kwargs):
        FakeGateway.calls.append(("store_card", kwargs))
        return StoredCard(
            token="fake_tok", brand="mastercard", last4="4444", exp_month=1, exp_year=2099
        )

    def charge(self, **kwargs):
        FakeGateway.calls.append(("charge", kwargs))
        return ChargeResult(
            charge_id="fake_ch", amount_minor=kwargs["amount_minor"], currency=kwargs["currency"]
        )

    def refund(self, **kwargs):
        FakeGateway.calls.append(("refund", kwargs))
        return RefundResult(
            refund_id="fake_re", charge_id=kwargs["charge_id"], amount_minor=kwargs["amount_minor"]
        )


def test_services_use_the_configured_gateway(settings, front_desk, patient):
    settings.CARNET_GATEWAY = f"{__name__}.FakeGateway"
    FakeGateway.calls = []
    card = store(front_desk, patient)
    assert (card.token, card.brand, card.last4) == ("fake_tok", "mastercard", "4444")
    card_charge(card_or_token=card, amount_minor=100, currency="CAD", idempotency_key="k")
    charge_refund(charge_id="fake_ch", amount_minor=100, idempotency_key="r")
    assert [name for name, _ in FakeGateway.calls] == ["store_card", "charge", "refund"]
    assert FakeGateway.calls[1][1] == {
        "token": "fake_tok",
        "amount_minor": 100,
        "currency": "CAD",
        "idempotency_key": "k",
    }
    assert not TestGatewayCard.objects.exists()
