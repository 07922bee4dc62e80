"""The payment-gateway interface (SPEC 3.4): store a card, charge it, refund a charge.

Real gateways plug in behind `Gateway`; `get_gateway()` returns the one named by
settings.CARNET_GATEWAY (default: the built-in test gateway). Card numbers go into
`store_card` and never come back out: Carnet keeps only the token, brand, last four and expiry.

Idempotency: `charge` and `refund` take an idempotency key. The same key sent again returns the
first result and moves no money twice, so a caller that lost the response (network error) can
retry safely with the same key. The same key with different arguments is refused (Conflict).
`retrieve` looks a key up without moving money: what reconciliation asks after a lost answer.

Carnet calls a gateway only through carnet.gateway.services, which refuses to call out from
inside a database transaction (a remote charge cannot roll back with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.utils.module_loading import import_string

from carnet.core.errors import CarnetError

DEFAULT_GATEWAY = "carnet.gateway.testing.TestGateway"


@dataclass(frozen=True)
class StoredCard:
    token: str
    brand: str  # "visa", "mastercard", "amex", "discover" or "unknown"
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeResult:
    charge_id: str
    amount_minor: int
    currency: str
    status: str = "succeeded"  # a failed charge raises instead of returning


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    charge_id: str
    amount_minor: int


# Dunning (issue 22): a HARD decline means the bank will not accept this card again (lost or stolen,
# the account closed, "do not honour", expired, a wrong number): retrying it cannot work, so
# automatic retries stop and the patient is asked for a new card. Every other decline is SOFT
# (insufficient funds, a processing error, a generic decline): worth trying again on the clinic's
# schedule. Both gateways map their own codes to these (stripe.DECLINES, testing.TEST_CARDS),
# so the kind is the same.
HARD, SOFT = "hard", "soft"
HARD_DECLINES = frozenset(
    {
        "lost_card",
        "stolen_card",
        "pickup_card",
        "restricted_card",
        "do_not_honor",
        "do_not_honour",
        "account_closed",
        "invalid_account",
        "expired_card",
        "card_expired",
        "incorrect_number",
        "invalid_number",
        "card_not_supported",
        "currency_not_supported",
        "fraudulent",
        "security_violation",
        "stop_payment_order",
        "revocation_of_authorization",
        "revocation_of_all_authorizations",
        "transaction_not_allowed",
        "new_account_information_available",
        "no_action_taken",
    }
)


def decline_kind(decline_code: str) -> str:
    """HARD or SOFT for a gateway decline code (an unknown code is soft:
    one more try does no harm)."""
    return HARD if decline_code in HARD_DECLINES else SOFT


class PaymentFailed(CarnetError):
    """The gateway refused to move the money; the sentence says what the patient can do.
    `decline_code`: the gateway's own reason (e.g. "lost_card"); `kind`: HARD or SOFT from it."""

    status = 402
    code = "payment_failed"
    default_message = "The payment did not go through. Try another card or another payment method."

    def __init__(self, message: str | None = None, *, decline_code: str = "", **kwargs):
        super().__init__(message or self.default_message, **kwargs)
        self.decline_code = decline_code or self.code

    @property
    def kind(self) -> str:
        return decline_kind(self.decline_code)

    # The reason in the card holder's own words, where the staff sentence's first one is not.
    PATIENT_REASON = ""

    @property
    def for_patient(self) -> str:
        """The decline as the patient reads it on a portal page: the reason (the first sentence of
        the staff one), that nothing was charged, and what they can do."""
        reason = self.PATIENT_REASON or self.message.split(". ")[0].rstrip(".")
        charged = "" if "nothing was charged" in reason.lower() else " Nothing was charged."
        return f"{reason}.{charged} Please try another card, or contact the clinic."

    @property
    def hard(self) -> bool:
        return self.kind == HARD


class CardDeclined(PaymentFailed):
    code = "card_declined"
    default_message = (
        "The card was declined by the bank. Ask the patient for another card or payment method."
    )


class InsufficientFunds(PaymentFailed):
    code = "insufficient_funds"
    default_message = (
        "The card has insufficient funds for this amount. "
        "Try a smaller amount, another card or another payment method."
    )


HARD_DECLINE_MESSAGE = (
    "The bank declined this card and will not accept further charges on it. Ask the patient "
    "for another card."
)


class CardExpired(CardDeclined):
    code = "card_expired"
    default_message = "The card has expired. Ask the patient for a current card."


class AuthenticationRequired(PaymentFailed):
    """The bank wants the card holder to confirm the payment (3-D Secure): only the patient can."""

    code = "authentication_required"
    # At the desk nothing has been sent yet: the sentence says what staff can do. The automatic
    # charges (passes.dunning) email the link themselves and record SENT_MESSAGE
    # instead.
    default_message = (
        "The patient's bank asks them to confirm this payment themselves, which a card on file "
        "charged at the desk cannot do. Send them a Pay Balance request from the Billing tab "
        "(they confirm and pay online), or take another payment method."
    )
    SENT_MESSAGE = (
        "The patient's bank asks them to confirm this payment themselves; they were emailed how "
        "to pay."
    )
    PATIENT_REASON = "Your bank asks you to confirm this payment, which could not be done here"


class AuthenticationPending(CarnetError):
    """An on-session charge the bank wants the card holder to confirm (3-D Secure) before any money
    moves. Not a failure: the charge waits at the gateway (`reference`, its PaymentIntent id, is on
    the attempt) while the page completes the check with Stripe.js using `client_secret`, then asks
    Carnet again, which reads the outcome from the gateway by that id."""

    status = 402
    code = "authentication_pending"
    default_message = (
        "Your bank asks you to confirm this payment. Follow the steps shown by your bank; "
        "nothing is charged until you do."
    )

    def __init__(
        self, message: str | None = None, *, reference: str = "", client_secret: str = "", **kwargs
    ):
        super().__init__(message or self.default_message, **kwargs)
        self.reference, self.client_secret = reference, client_secret
        self.attempt = None  # set by billing.card_attempts: the attempt that waits


class ProcessingError(PaymentFailed):
    code = "processing_error"
    default_message = (
        "The card processor could not process this card just now; nothing was charged. "
        "Try again in a moment, or use another payment method."
    )


class GatewayUnavailable(CarnetError):
    """A network or gateway outage: whether money moved is unknown, so retry with the SAME key."""

    status = 503
    code = "gateway_unavailable"
    default_message = (
        "The payment gateway could not be reached, so we do not know whether the card was "
        "charged. Try again in a moment: retrying is safe and will not charge twice."
    )

    def __init__(self, message: str | None = None, **kwargs):
        super().__init__(message or self.default_message, **kwargs)


@runtime_checkable
class Gateway(Protocol):
    def store_card(
        self, *, number: str, exp_month: int, exp_year: int, cvc: str, holder: str
    ) -> StoredCard:
        """Validate the card and keep it at the gateway. Raises ValidationFailed naming the field
        ("number", "exp_month", "exp_year", "cvc"; code "card_expired" for a past expiry)."""
        ...

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
        """Raises CardDeclined, InsufficientFunds (402) or GatewayUnavailable (503). `reference`:
        what `prepare_charge` returned, for gateways that have it (below); `customer`: the patient's
        customer at the gateway, for a card on file."""
        ...

    def refund(self, *, charge_id: str, amount_minor: int, idempotency_key: str) -> RefundResult:
        """Refund part or all of a charge; the refunds of a charge never add up to more than it."""
        ...

    def retrieve(
        self, *, kind: str, idempotency_key: str, reference: str = "", charge_id: str = ""
    ) -> ChargeResult | RefundResult | None:
        """What the charge (kind "charge") or refund ("refund") made with this key became: its
        result, or None when the gateway never moved money for it. Raises GatewayUnavailable.
        `reference`: the charge's prepared reference, if any; `charge_id`:
        the charge a refund was for."""
        ...

    # A gateway whose charge is two calls (Stripe: create the PaymentIntent, then confirm it) also
    # has `prepare_charge(token=, amount_minor=, currency=, idempotency_key=, customer=) -> str`:
    # the reference is committed on the attempt before `charge` confirms it, so reconciliation can
    # always find the charge by it. Cards are then saved through `customer_create`,
    # `setup_intent_create` and `setup_intent_card`, and `card_detach` takes one off file.


def get_gateway() -> Gateway:
    """A fresh instance of the configured gateway (cheap; tests may switch the setting)."""
    path = getattr(settings, "CARNET_GATEWAY", DEFAULT_GATEWAY)
    return import_string(path)()
