"""The built-in test gateway: each test card, card validation, idempotent charges and refunds."""

import datetime as dt

import pytest

from carnet.conftest import race
from carnet.core import clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.gateway.base import (
    CardDeclined,
    ChargeResult,
    Gateway,
    GatewayUnavailable,
    InsufficientFunds,
    PaymentFailed,
    get_gateway,
)
from carnet.gateway.models import TestGatewayCard, TestGatewayCharge, TestGatewayRefund
from carnet.gateway.testing import TestGateway, brand_of, luhn_valid

pytestmark = pytest.mark.django_db
NEXT_YEAR = clock.now().year + 1


def store(number="4242424242424242", *, exp_month=12, exp_year=None, cvc="123"):
    return TestGateway().store_card(
        number=number,
        exp_month=exp_month,
        exp_year=exp_year or NEXT_YEAR,
        cvc=cvc,
        holder="Ana Silva",
    )


def charge(token, key="k-1", amount=5000, currency="CAD"):
    return TestGateway().charge(
        token=token, amount_minor=amount, currency=currency, idempotency_key=key
    )


# ---------------------------------------------------------------- the test cards


@pytest.mark.parametrize(
    "number, brand, cvc",
    [
        ("4242424242424242", "visa", "123"),
        ("5555555555554444", "mastercard", "123"),
        ("378282246310005", "amex", "1234"),
        ("4111111111111111", "visa", "123"),  # not in the table but passes Luhn: succeeds
        ("6011111111111117", "discover", "123"),
    ],
)
def test_succeeding_cards_store_and_charge(number, brand, cvc):
    card = store(number, cvc=cvc)
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == (
        brand,
        number[-4:],
        12,
        NEXT_YEAR,
    )
    assert number not in card.token and card.token.startswith("tok_test_")
    result = charge(card.token)
    assert result == ChargeResult(
        charge_id=result.charge_id, amount_minor=5000, currency="CAD", status="succeeded"
    )
    assert TestGatewayCharge.objects.get().charge_id == result.charge_id


@pytest.mark.parametrize(
    "number, error, code, status",
    [
        ("4000000000000002", CardDeclined, "card_declined", 402),
        ("4000000000009995", InsufficientFunds, "insufficient_funds", 402),
        ("4000000000000119", GatewayUnavailable, "gateway_unavailable", 503),
    ],
)
def test_failing_cards_raise_and_charge_nothing_even_on_retry(number, error, code, status):
    card = store(number)
    for _ in range(2):  # a retry with the same key fails the same way
        with pytest.raises(error) as exc:
            charge(card.token, key="k-fail")
        assert (exc.value.code, exc.value.status) == (code, status)
        assert exc.value.message.endswith(".")
    assert not TestGatewayCharge.objects.exists()


def test_declines_are_payment_failures_with_a_sentence():
    assert issubclass(CardDeclined, PaymentFailed) and issubclass(InsufficientFunds, PaymentFailed)
    assert "another card" in CardDeclined().message


def test_lost_response_card_charges_once_and_the_retry_returns_that_charge():
    card = store("4000000000000770")
    with pytest.raises(GatewayUnavailable):
        charge(card.token, key="k-lost")
    first = TestGatewayCharge.objects.get()  # the money moved although the caller got an error
    retry = charge(card.token, key="k-lost")
    assert retry.charge_id == first.charge_id
    assert TestGatewayCharge.objects.count() == 1


def test_lost_response_card_fails_the_first_attempt_of_every_new_key():
    card = store("4000000000000770")
    for key in ("k-a", "k-b"):
        with pytest.raises(GatewayUnavailable):
            charge(card.token, key=key)
    assert TestGatewayCharge.objects.count() == 2


# ---------------------------------------------------------------- card validation


def test_luhn_and_brands():
    assert luhn_valid("4242424242424242") and not luhn_valid("4242424242424241")
    assert [
        brand_of(n) for n in ("4", "51", "2221", "2720", "34", "37", "6011", "65", "644", "9")
    ] == [
        "visa",
        "mastercard",
        "mastercard",
        "mastercard",
        "amex",
        "amex",
        "discover",
        "discover",
        "discover",
        "unknown",
    ]


def test_spaces_and_dashes_in_the_number_are_fine():
    assert store("4242 4242-4242 4242").last4 == "4242"


@pytest.mark.parametrize(
    "number", ["4242424242424241", "4242", "4242x24242424242", "", "42424242424242424242"]
)
def test_invalid_numbers_are_refused_naming_the_number_field(number):
    with pytest.raises(ValidationFailed) as exc:
        store(number)
    assert list(exc.value.fields) == ["number"]
    assert "card number" in exc.value.message
    assert not TestGatewayCard.objects.exists()


def test_expiry_in_the_past_is_refused_but_the_current_month_is_fine():
    at = dt.datetime(2030, 6, 15, 12, tzinfo=dt.timezone.utc)
    with clock.frozen(at):
        with pytest.raises(ValidationFailed) as exc:
            store(exp_month=5, exp_year=2030)
        assert exc.value.code == "card_expired" and "expired" in exc.value.message
        with pytest.raises(ValidationFailed) as exc:
            store(exp_month=12, exp_year=2029)
        assert exc.value.code == "card_expired"
        assert store(exp_month=6, exp_year=2030).exp_year == 2030


def test_two_digit_year_means_this_century():
    assert store(exp_year=NEXT_YEAR % 100).exp_year == NEXT_YEAR


@pytest.mark.parametrize(
    "fields, bad",
    [
        ({"exp_month": 13}, "exp_month"),
        ({"exp_month": 0}, "exp_month"),
        ({"exp_year": 3100}, "exp_year"),
        ({"cvc": "12"}, "cvc"),
        ({"cvc": "abc"}, "cvc"),
        ({"number": "378282246310005", "cvc": "123"}, "cvc"),  # American Express has 4 digits
    ],
)
def test_bad_expiry_or_cvc_names_the_field(fields, bad):
    with pytest.raises(ValidationFailed) as exc:
        store(**fields)
    assert list(exc.value.fields) == [bad]


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(ValidationFailed) as exc:
        store("1234", exp_month=13, cvc="")
    assert set(exc.value.fields) == {"number", "exp_month", "cvc"}


def test_a_card_that_expired_after_being_stored_is_declined():
    with clock.frozen(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)):
        card = store(exp_month=2, exp_year=2030)
    with clock.frozen(dt.datetime(2030, 3, 1, tzinfo=dt.timezone.utc)):
        with pytest.raises(CardDeclined) as exc:
            charge(card.token)
    assert exc.value.code == "card_expired"


# ---------------------------------------------------------------- charges


def test_same_key_returns_the_same_charge_and_charges_once():
    card = store()
    first, again = charge(card.token, key="k-same"), charge(card.token, key="k-same")
    assert first == again
    assert TestGatewayCharge.objects.filter(key="k-same").count() == 1
    assert charge(card.token, key="k-other").charge_id != first.charge_id
    assert TestGatewayCharge.objects.count() == 2


@pytest.mark.parametrize("change", [{"amount": 6000}, {"currency": "USD"}, {"token": "other"}])
def test_same_key_for_a_different_charge_is_a_conflict(change):
    card = store()
    charge(card.token, key="k-1")
    args = {"token": card.token, "key": "k-1", **change}
    with pytest.raises(Conflict) as exc:
        charge(**args)
    assert exc.value.code == "idempotency_key_reused"
    assert TestGatewayCharge.objects.count() == 1


@pytest.mark.parametrize(
    "args, field",
    [
        ({"amount": 0}, "amount_minor"),
        ({"amount": -5}, "amount_minor"),
        ({"amount": 2**63}, "amount_minor"),
        ({"currency": "XYZ"}, "currency"),
        ({"key": ""}, "idempotency_key"),
        ({"key": "k" * 256}, "idempotency_key"),
    ],
)
def test_bad_charge_requests_are_refused(args, field):
    card = store()
    with pytest.raises(ValidationFailed) as exc:
        charge(card.token, **args)
    assert list(exc.value.fields) == [field]


def test_unknown_token_is_not_found():
    with pytest.raises(NotFound) as exc:
        charge("tok_test_nope")
    assert exc.value.code == "unknown_card"


# ---------------------------------------------------------------- refunds


def refund(charge_id, amount, key):
    return TestGateway().refund(charge_id=charge_id, amount_minor=amount, idempotency_key=key)


def test_refunds_are_bounded_by_the_charged_amount():
    done = charge(store().token, amount=10000)
    refund(done.charge_id, 4000, "r-1")
    refund(done.charge_id, 6000, "r-2")
    with pytest.raises(ValidationFailed) as exc:
        refund(done.charge_id, 1, "r-3")
    assert exc.value.code == "refund_exceeds_charge" and "$0.00" in exc.value.message
    assert TestGatewayCharge.objects.get().refunded_minor == 10000
    assert TestGatewayRefund.objects.count() == 2


def test_a_refund_larger_than_what_is_left_says_how_much_is_left():
    done = charge(store().token, amount=10000)
    refund(done.charge_id, 2500, "r-1")
    with pytest.raises(ValidationFailed) as exc:
        refund(done.charge_id, 7501, "r-2")
    assert "$75.00" in exc.value.message and list(exc.value.fields) == ["amount_minor"]
    assert not TestGatewayRefund.objects.filter(key="r-2").exists()


def test_same_refund_key_returns_the_same_refund_and_refunds_once():
    done = charge(store().token, amount=10000)
    first, again = refund(done.charge_id, 3000, "r-1"), refund(done.charge_id, 3000, "r-1")
    assert first == again and first.charge_id == done.charge_id and first.amount_minor == 3000
    assert TestGatewayCharge.objects.get().refunded_minor == 3000
    with pytest.raises(Conflict) as exc:
        refund(done.charge_id, 2000, "r-1")
    assert exc.value.code == "idempotency_key_reused"


def test_refund_of_an_unknown_charge_is_not_found():
    with pytest.raises(NotFound):
        refund("ch_test_nope", 100, "r-1")


# ---------------------------------------------------------------- the interface


def test_test_gateway_is_the_default_and_fits_the_interface(settings):
    assert isinstance(get_gateway(), TestGateway)
    assert isinstance(TestGateway(), Gateway)


class _Recording:
    def store_card(self, **kwargs): ...
    def charge(self, **kwargs): ...
    def refund(self, **kwargs): ...


def test_carnet_gateway_setting_picks_the_gateway(settings):
    settings.CARNET_GATEWAY = f"{__name__}._Recording"
    assert isinstance(get_gateway(), _Recording)


# ---------------------------------------------------------------- races


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_charge_once():
    token = store().token
    results = race(6, lambda i: charge(token, key="race-key"))
    assert all(isinstance(r, ChargeResult) for r in results), results
    assert len({r.charge_id for r in results}) == 1
    assert TestGatewayCharge.objects.count() == 1


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_never_exceed_the_charge():
    done = charge(store().token, amount=10000)
    results = race(6, lambda i: refund(done.charge_id, 3000, f"race-r-{i}"))
    assert sum(not isinstance(r, Exception) for r in results) == 3
    assert all(isinstance(r, ValidationFailed) for r in results if isinstance(r, Exception)), (
        results
    )
    assert TestGatewayCharge.objects.get().refunded_minor == 9000
