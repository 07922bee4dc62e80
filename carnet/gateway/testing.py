"""The built-in test gateway: deterministic test cards, no network, used in the demo and tests.

Test card numbers (any future expiry, any 3-digit CVC, 4 digits for American Express):

| number              | brand            | charge                                                  |
|---------------------|------------------|---------------------------------------------------------|
| 4242 4242 4242 4242 | Visa             | succeeds                                                |
| 5555 5555 5555 4444 | Mastercard       | succeeds                                                |
| 3782 822463 10005   | American Express | succeeds (CVC has 4 digits)                             |
| 4000 0000 0000 0002 | Visa             | soft decline: CardDeclined, code "card_declined" (402)  |
| 4000 0000 0000 9995 | Visa             | soft decline: InsufficientFunds, "insufficient_funds"   |
| 4000 0000 0000 9987 | Visa             | hard decline "lost_card" (CardDeclined, 402)            |
| 4000 0000 0000 9979 | Visa             | hard decline "stolen_card"                              |
| 4000 0000 0000 9599 | Visa             | hard decline "do_not_honor"                             |
| 4000 0000 0000 9581 | Visa             | hard decline "account_closed"                           |
| 4000 0000 0000 0069 | Visa             | hard decline "expired_card" (CardExpired)               |
| 4000 0000 0000 0267 | Visa             | soft decline "processing_error" (ProcessingError)       |
| 4000 0000 0000 0119 | Visa             | network error: GatewayUnavailable (503) and nothing is  |
|                     |                  | charged; every attempt, retries included, fails         |
| 4000 0000 0000 0770 | Visa             | lost response: the first attempt with a key charges,    |
|                     |                  | then raises GatewayUnavailable; a retry with the SAME   |
|                     |                  | key returns that same charge (what keys protect)        |
| any other number passing the Luhn check | succeeds; brand from the prefix             |

Declines carry their `decline_code` and so their kind, hard or soft (base.HARD_DECLINES), as
Stripe's do: a hard one stops a membership's automatic retries (passes.dunning).

Every card above is accepted by store_card; failures happen when it is charged. Declines and
network errors record nothing, so a retry with the same key fails the same way.

Refused by store_card (ValidationFailed, 422): a number failing the Luhn check or not 12–19
digits (field "number"), a month outside 1–12, an expiry in the past (code "card_expired"),
a CVC of the wrong length (field "cvc"). Charging a stored card whose expiry has since passed
raises CardDeclined with code "card_expired".

State lives in a database of its own (models TestGateway*, routed to the `gateway` alias, a
SQLite file), standing in for the remote gateway's: it is shared across processes, only ever
holds tokens, never numbers, and Carnet's transactions cannot roll it back — a charge made is
made, whatever happens to the caller afterwards, exactly as with a real gateway.

`OUTAGE` (tests): while true, every call raises GatewayUnavailable before doing anything.
"""

from __future__ import annotations

import re
import secrets

from django.db import IntegrityError, transaction
from django.db.models import F

from carnet.core import clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.money import ISO_4217, MAX_MINOR, Money

from .base import (
    HARD_DECLINE_MESSAGE,
    CardDeclined,
    CardExpired,
    ChargeResult,
    GatewayUnavailable,
    InsufficientFunds,
    ProcessingError,
    RefundResult,
    StoredCard,
)
from .models import TestGatewayCard, TestGatewayCharge, TestGatewayRefund

SUCCEEDS, DECLINED, INSUFFICIENT_FUNDS = "succeeds", "declined", "insufficient_funds"
NETWORK_ERROR, LOST_RESPONSE = "network_error", "lost_response"
# behaviour -> the decline it raises when charged (the behaviour is the gateway's decline code)
DECLINES = {
    DECLINED: lambda: CardDeclined(),
    INSUFFICIENT_FUNDS: lambda: InsufficientFunds(),
    "processing_error": lambda: ProcessingError(decline_code="processing_error"),
    "expired_card": lambda: CardExpired(decline_code="expired_card"),
    **{
        code: (lambda code=code: CardDeclined(HARD_DECLINE_MESSAGE, decline_code=code))
        for code in ("lost_card", "stolen_card", "do_not_honor", "account_closed")
    },
}

TEST_CARDS = {
    "4242424242424242": SUCCEEDS,
    "5555555555554444": SUCCEEDS,
    "378282246310005": SUCCEEDS,
    "4000000000000002": DECLINED,
    "4000000000009995": INSUFFICIENT_FUNDS,
    "4000000000009987": "lost_card",
    "4000000000009979": "stolen_card",
    "4000000000009599": "do_not_honor",
    "4000000000009581": "account_closed",
    "4000000000000069": "expired_card",
    "4000000000000267": "processing_error",
    "4000000000000119": NETWORK_ERROR,
    "4000000000000770": LOST_RESPONSE,
}


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def brand_of(digits: str) -> str:
    if digits.startswith("4"):
        return "visa"
    if digits[:2] in {"34", "37"}:
        return "amex"
    if "51" <= digits[:2] <= "55" or "2221" <= digits[:4] <= "2720":
        return "mastercard"
    if digits.startswith(("6011", "65")) or "644" <= digits[:3] <= "649":
        return "discover"
    return "unknown"


def _expired(month: int, year: int) -> bool:
    # A card is good through the last day of its expiry month.
    today = clock.now().date()
    return (year, month) < (today.year, today.month)


def _check_card(number: str, exp_month, exp_year, cvc: str) -> tuple[str, int]:
    """The card's digits and four-digit expiry year, or ValidationFailed naming every bad field."""
    fields: dict[str, list[str]] = {}
    code = None
    digits = re.sub(r"[ -]", "", number or "")
    if not re.fullmatch(r"\d{12,19}", digits) or not luhn_valid(digits):
        fields["number"] = ["This is not a valid card number; check the digits."]
    if not isinstance(exp_month, int) or not 1 <= exp_month <= 12:
        fields["exp_month"] = ["Enter the expiry month as a number from 1 to 12."]
    if isinstance(exp_year, int) and 0 <= exp_year < 100:
        exp_year += 2000  # "27" on the card means 2027
    if not isinstance(exp_year, int) or not 2000 <= exp_year <= 2099:
        fields["exp_year"] = ["Enter the expiry year, like 2030."]
    elif "exp_month" not in fields and _expired(exp_month, exp_year):
        code = "card_expired"
        fields["exp_year"] = ["This card has expired; ask the patient for a current card."]
    cvc_length = 4 if brand_of(digits) == "amex" else 3
    if not re.fullmatch(rf"\d{{{cvc_length}}}", cvc or ""):
        fields["cvc"] = [f"Enter the {cvc_length}-digit security code (CVC) from the card."]
    if fields:
        first_field, [first] = next(iter(fields.items()))
        raise ValidationFailed(
            f"Please correct the card's {first_field.replace('_', ' ')}: {first}",
            code=code,
            fields=fields,
        )
    return digits, exp_year


def _check_request(amount_minor: int, idempotency_key: str, currency: str = "CAD") -> None:
    if (
        not isinstance(amount_minor, int)
        or isinstance(amount_minor, bool)
        or not 0 < amount_minor <= MAX_MINOR
    ):
        raise ValidationFailed(
            "The amount must be a positive whole number of minor units (cents).",
            fields={"amount_minor": ["Must be greater than zero."]},
        )
    if currency not in ISO_4217:
        raise ValidationFailed(
            f"“{currency}” is not a currency code.", fields={"currency": ["Unknown currency."]}
        )
    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 255:
        raise ValidationFailed(
            "Every charge and refund needs an idempotency key of 1 to 255 characters.",
            fields={"idempotency_key": ["Required, at most 255 characters."]},
        )


OUTAGE = False
DB = "gateway"  # carnet.gateway.routers.ALIAS


def _reachable() -> None:
    if OUTAGE:
        raise GatewayUnavailable()


def _key_reused(what: str) -> Conflict:
    return Conflict(
        f"This idempotency key was already used for a different {what}; "
        f"use a new key for a new {what}.",
        code="idempotency_key_reused",
    )


class TestGateway:
    __test__ = False  # not a pytest test class despite the name

    name = "test"

    def store_card(
        self, *, number: str, exp_month: int, exp_year: int, cvc: str, holder: str
    ) -> StoredCard:
        _reachable()
        digits, exp_year = _check_card(number, exp_month, exp_year, cvc)
        card = TestGatewayCard.objects.create(
            token="tok_test_" + secrets.token_hex(12),
            behaviour=TEST_CARDS.get(digits, SUCCEEDS),
            brand=brand_of(digits),
            last4=digits[-4:],
            exp_month=exp_month,
            exp_year=exp_year,
            created_at=clock.now(),
        )
        return StoredCard(
            token=card.token,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
        )

    def charge(
        self,
        *,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        customer: str = "",
        reference: str = "",
        off_session: bool = True,
    ) -> ChargeResult:
        # customer, reference, off_session: for gateways that need them (Stripe);
        # one call does it all here.
        _reachable()
        _check_request(amount_minor, idempotency_key, currency)
        done = TestGatewayCharge.objects.filter(key=idempotency_key).first()
        if done is not None:  # a retry: answer as the first time, charge nothing
            return self._charge_result(
                done, token=token, amount_minor=amount_minor, currency=currency
            )
        card = TestGatewayCard.objects.filter(token=token).first()
        if card is None:
            raise NotFound(
                "The payment gateway does not know this card; add the card again.",
                code="unknown_card",
            )
        if card.behaviour in DECLINES:
            raise DECLINES[card.behaviour]()
        if _expired(card.exp_month, card.exp_year):
            raise CardDeclined(
                "The card has expired. Ask the patient for a current card.", code="card_expired"
            )
        if card.behaviour == NETWORK_ERROR:
            # Before charging: nothing happened, a retry fails the same way.
            raise GatewayUnavailable()
        try:
            with transaction.atomic(using=DB):
                done = TestGatewayCharge.objects.create(
                    key=idempotency_key,
                    charge_id="ch_test_" + secrets.token_hex(12),
                    token=token,
                    amount_minor=amount_minor,
                    currency=currency,
                    created_at=clock.now(),
                )
        except IntegrityError:  # a concurrent retry with the same key charged first
            done = TestGatewayCharge.objects.get(key=idempotency_key)
            return self._charge_result(
                done, token=token, amount_minor=amount_minor, currency=currency
            )
        if card.behaviour == LOST_RESPONSE:
            raise GatewayUnavailable()  # the charge happened; only the answer was lost
        return self._charge_result(done, token=token, amount_minor=amount_minor, currency=currency)

    @staticmethod
    def _charge_result(
        done: TestGatewayCharge, *, token: str, amount_minor: int, currency: str
    ) -> ChargeResult:
        if (done.token, done.amount_minor, done.currency) != (token, amount_minor, currency):
            raise _key_reused("charge")
        return ChargeResult(
            charge_id=done.charge_id, amount_minor=done.amount_minor, currency=done.currency
        )

    def refund(self, *, charge_id: str, amount_minor: int, idempotency_key: str) -> RefundResult:
        _reachable()
        _check_request(amount_minor, idempotency_key)
        done = (
            TestGatewayRefund.objects.filter(key=idempotency_key).select_related("charge").first()
        )
        if done is not None:
            return self._refund_result(done, charge_id=charge_id, amount_minor=amount_minor)
        charge = TestGatewayCharge.objects.filter(charge_id=charge_id).first()
        if charge is None:
            raise NotFound(f"The payment gateway has no charge {charge_id}.", code="unknown_charge")
        try:
            with transaction.atomic(using=DB):
                done = TestGatewayRefund.objects.create(
                    key=idempotency_key,
                    refund_id="re_test_" + secrets.token_hex(12),
                    charge=charge,
                    amount_minor=amount_minor,
                    created_at=clock.now(),
                )
                # Conditional update: correct without row locks
                # (SQLite) and under concurrent refunds.
                room = TestGatewayCharge.objects.filter(
                    pk=charge.pk, refunded_minor__lte=F("amount_minor") - amount_minor
                )
                if not room.update(refunded_minor=F("refunded_minor") + amount_minor):
                    charge.refresh_from_db()
                    left = Money(charge.amount_minor - charge.refunded_minor, charge.currency)
                    raise ValidationFailed(
                        f"Only {left} of this charge can still be refunded; refund that much "
                        "or less.",
                        code="refund_exceeds_charge",
                        fields={"amount_minor": [f"At most {left}."]},
                    )
        except IntegrityError:  # a concurrent retry with the same key refunded first
            done = TestGatewayRefund.objects.select_related("charge").get(key=idempotency_key)
        return self._refund_result(done, charge_id=charge_id, amount_minor=amount_minor)

    @staticmethod
    def _refund_result(
        done: TestGatewayRefund, *, charge_id: str, amount_minor: int
    ) -> RefundResult:
        if (done.charge.charge_id, done.amount_minor) != (charge_id, amount_minor):
            raise _key_reused("refund")
        return RefundResult(
            refund_id=done.refund_id, charge_id=charge_id, amount_minor=done.amount_minor
        )

    def retrieve(
        self, *, kind: str, idempotency_key: str, reference: str = "", charge_id: str = ""
    ) -> ChargeResult | RefundResult | None:
        _reachable()  # found by the key alone: this gateway keeps every key for ever
        if kind == "charge":
            done = TestGatewayCharge.objects.filter(key=idempotency_key).first()
            return (
                None
                if done is None
                else ChargeResult(
                    charge_id=done.charge_id, amount_minor=done.amount_minor, currency=done.currency
                )
            )
        done = (
            TestGatewayRefund.objects.filter(key=idempotency_key).select_related("charge").first()
        )
        return (
            None
            if done is None
            else RefundResult(
                refund_id=done.refund_id,
                charge_id=done.charge.charge_id,
                amount_minor=done.amount_minor,
            )
        )
