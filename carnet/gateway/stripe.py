"""Stripe as Carnet's card processor (CARNET_GATEWAY=carnet.gateway.stripe.StripeGateway).

Card numbers never reach Carnet: the browser gives them to Stripe.js, and Carnet only ever sees
Stripe's ids (PaymentMethod pm_…, SetupIntent seti_…, PaymentIntent pi_…). So `store_card`, which
takes a number, is refused; cards are saved with a SetupIntent instead (`setup_intent_create`,
then `setup_intent_card` once Stripe.js has confirmed it).

Charges are PaymentIntents made in two calls: `prepare_charge` creates it unconfirmed and returns
its id, which billing.card_attempts commits on the attempt; only then does `charge` confirm it.
Reconciliation therefore always finds a charge by its PaymentIntent id (`retrieve`), without
relying on Stripe's idempotency keys (kept for 24 hours only, and not honoured by every test
double). A Carnet charge id is the PaymentIntent id; refunds are made against it.

Stripe's errors become Carnet's: a declined card CardDeclined / InsufficientFunds / CardExpired /
AuthenticationRequired / ProcessingError (402, with a sentence for staff and patients), a network
error or Stripe outage GatewayUnavailable (503: nothing known, asked again later).
"""

from __future__ import annotations

import stripe
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from carnet.core.errors import CarnetError, Conflict, NotFound, ValidationFailed

from .base import (
    HARD_DECLINE_MESSAGE,
    AuthenticationPending,
    AuthenticationRequired,
    CardDeclined,
    CardExpired,
    ChargeResult,
    GatewayUnavailable,
    InsufficientFunds,
    PaymentFailed,
    ProcessingError,
    RefundResult,
    StoredCard,
)

KEY_SETTINGS = ("STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET")
METADATA_KEY = "carnet_key"  # every PaymentIntent and Refund carries the attempt's gateway key
BRANDS = {"visa": "visa", "mastercard": "mastercard", "amex": "amex", "discover": "discover"}

# Stripe's decline codes (error.decline_code, else error.code) → Carnet's error and its sentence.
DECLINES: dict[str, tuple[type[PaymentFailed], str | None]] = {
    "insufficient_funds": (InsufficientFunds, None),
    "expired_card": (CardExpired, None),
    "authentication_required": (AuthenticationRequired, None),
    "processing_error": (ProcessingError, None),
    "incorrect_cvc": (
        CardDeclined,
        "The card's security code (CVC) is wrong. Check it and try again.",
    ),
    "invalid_cvc": (
        CardDeclined,
        "The card's security code (CVC) is wrong. Check it and try again.",
    ),
    "incorrect_number": (CardDeclined, "The card number is wrong. Check it and try again."),
    # Hard declines (base.HARD_DECLINES): the same card will not be accepted again; no retry.
    **{
        code: (CardDeclined, HARD_DECLINE_MESSAGE)
        for code in (
            "lost_card",
            "stolen_card",
            "pickup_card",
            "restricted_card",
            "do_not_honor",
            "invalid_account",
            "card_not_supported",
            "fraudulent",
            "security_violation",
            "stop_payment_order",
            "transaction_not_allowed",
            "revocation_of_authorization",
            "revocation_of_all_authorizations",
            "new_account_information_available",
            "no_action_taken",
        )
    },
    "generic_decline": (CardDeclined, None),
    "card_declined": (CardDeclined, None),
    "payment_intent_authentication_failure": (
        CardDeclined,
        "The card holder did not confirm the payment with their bank, so nothing was charged.",
    ),
}


def decline_error(code: str | None, decline_code: str | None = None) -> PaymentFailed:
    """The Carnet error for a Stripe card error's codes (unknown codes are a plain, soft decline),
    carrying the code that decided it: its `kind` (hard or soft) drives dunning."""
    for candidate in (decline_code, code):
        if candidate in DECLINES:
            error, message = DECLINES[candidate]
            return error(
                message, decline_code=decline_code or candidate
            )  # the bank's own reason kept
    return CardDeclined(decline_code=decline_code or code or "")


def settings_check() -> None:
    missing = [name for name in KEY_SETTINGS if not getattr(settings, name, "")]
    if missing:
        raise ImproperlyConfigured(
            f"CARNET_GATEWAY is Stripe but {missing[0]} is not set. Copy it from the Stripe "
            "Dashboard (Developers → API keys, or the webhook endpoint's signing secret) into "
            "the environment."
        )


def _client() -> stripe.StripeClient:
    base = getattr(settings, "STRIPE_API_BASE", "")
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": base} if base else None,
        max_network_retries=0,
    )  # a retry is Carnet's decision (same attempt, same key)


def error_for(exc: stripe.StripeError) -> CarnetError:
    """Stripe's error as Carnet's: a card error by the decline code in its body's error object."""
    if isinstance(exc, stripe.CardError):
        error = getattr(exc, "error", None)
        return decline_error(exc.code, getattr(error, "decline_code", None))
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)):
        return GatewayUnavailable()
    if isinstance(exc, stripe.AuthenticationError):
        return GatewayUnavailable(
            "Stripe refused Carnet's secret key (STRIPE_SECRET_KEY); ask the clinic's "
            "administrator to check it. Nothing was charged."
        )
    if isinstance(exc, stripe.InvalidRequestError):
        if exc.http_status == 404:
            return NotFound(
                "Stripe does not know this card or payment; add the card again.",
                code="unknown_card",
            )
        return ValidationFailed(
            f"Stripe refused the request: {exc.user_message or exc}", code="stripe_refused"
        )
    return GatewayUnavailable()


def _call(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except stripe.StripeError as exc:
        raise error_for(exc) from exc


def _stored(pm) -> StoredCard:
    card = pm.card
    return StoredCard(
        token=pm.id,
        brand=BRANDS.get(card.brand, "unknown"),
        last4=card.last4,
        exp_month=int(card.exp_month),
        exp_year=int(card.exp_year),
    )


class StripeGateway:
    name = "stripe"

    def __init__(self):
        settings_check()
        self.client = _client()

    @property
    def publishable_key(self) -> str:
        return settings.STRIPE_PUBLISHABLE_KEY

    # ------------------------------------------------------------ cards

    def store_card(self, **card) -> StoredCard:
        raise ValidationFailed(
            "With Stripe, cards are entered in Stripe's own form, never sent to Carnet.",
            code="card_entry_by_stripe_js",
            fields={"number": ["Use the Stripe card form."]},
        )

    def customer_create(self, *, name: str, email: str, reference: str) -> str:
        customer = _call(
            self.client.v1.customers.create,
            params={
                "name": name[:250],
                **({"email": email} if email else {}),
                "metadata": {"carnet_patient": reference},
            },
            options={"idempotency_key": f"{reference}-customer"},
        )
        return customer.id

    def card_attach(self, *, token: str, customer: str) -> None:
        """Keep a card typed for a purchase on file for the customer (a membership's autopay)."""
        _call(self.client.v1.payment_methods.attach, token, params={"customer": customer})

    def setup_intent_create(
        self, *, customer: str = "", entry_for: str = "", keep: bool = False
    ) -> tuple[str, str]:
        """A SetupIntent for Stripe.js to put a card in: (its id, the client secret for the page).
        With a customer: a card saved on file (off-session use). Without: a card typed for one
        payment, tagged with what it is for (`entry_for`) so it cannot be used for anything else
        (`keep`: then kept on file for future off-session charges, as a membership's card is)."""
        params = {
            "usage": "off_session" if customer or keep else "on_session",
            "payment_method_types": ["card"],
            "metadata": {"carnet_for": entry_for},
        }
        if customer:
            params["customer"] = customer
        intent = _call(self.client.v1.setup_intents.create, params=params)
        return intent.id, intent.client_secret

    def setup_intent_card(
        self, *, setup_intent: str, customer: str = "", entry_for: str = ""
    ) -> StoredCard:
        """The card a SetupIntent holds, once Stripe.js confirmed it. Refuses one made for another
        customer or another purpose (an id sent by someone else)."""
        intent = _call(self.client.v1.setup_intents.retrieve, setup_intent)
        tag = (intent.metadata.to_dict() if intent.metadata else {}).get("carnet_for", "")
        if (intent.customer or "") != customer or (not customer and tag != entry_for):
            raise NotFound("No such card set-up for this patient.", code="unknown_setup_intent")
        if intent.status != "succeeded" or not intent.payment_method:
            raise Conflict(
                "The card was not saved: its bank has not confirmed it yet. Finish the card form "
                "(and the bank's check, if shown) and try again.",
                code="card_setup_incomplete",
            )
        pm = _call(self.client.v1.payment_methods.retrieve, intent.payment_method)
        if (
            customer and pm.customer != customer
        ):  # Stripe attaches it on success; a test double may not
            pm = _call(self.client.v1.payment_methods.attach, pm.id, params={"customer": customer})
        return _stored(pm)

    def card_detach(self, *, token: str) -> None:
        try:
            self.client.v1.payment_methods.detach(token)
        except stripe.InvalidRequestError:
            pass  # already detached or gone: the card is off file either way
        except stripe.StripeError as exc:
            raise error_for(exc) from exc

    # ------------------------------------------------------------ charges

    def prepare_charge(
        self,
        *,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        customer: str = "",
    ) -> str:
        """Create the PaymentIntent, unconfirmed: no money moves until `charge` confirms it."""
        params = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "payment_method": token,
            "payment_method_types": ["card"],
            "metadata": {METADATA_KEY: idempotency_key},
        }
        if customer:
            params["customer"] = customer
        intent = _call(
            self.client.v1.payment_intents.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )
        return intent.id

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
        """Confirm the prepared PaymentIntent `reference` (prepared here when none is given).
        off_session: the patient is not at the keyboard (a card on file, autopay), so a bank asking
        for authentication fails the charge with AuthenticationRequired instead of waiting."""
        if not reference:
            reference = self.prepare_charge(
                token=token,
                amount_minor=amount_minor,
                currency=currency,
                idempotency_key=idempotency_key,
                customer=customer,
            )
        try:
            intent = self.client.v1.payment_intents.confirm(
                reference,
                params={"off_session": True} if off_session else None,
                options={"idempotency_key": f"{idempotency_key}-confirm"},
            )
        except stripe.CardError as exc:
            raise error_for(exc) from exc
        except stripe.InvalidRequestError as exc:
            # Confirmed before (a retry after a lost answer): what it became.
            intent = _call(self.client.v1.payment_intents.retrieve, reference)
            if intent.status not in ("succeeded", "requires_action"):
                raise error_for(exc) from exc
        except stripe.StripeError as exc:
            raise error_for(exc) from exc
        if intent.status == "requires_action" and not off_session:
            # 3-D Secure: the patient is at the page, which completes it with Stripe.js; the
            # PaymentIntent waits (its id is already on the attempt).
            raise AuthenticationPending(reference=intent.id, client_secret=intent.client_secret)
        return self._outcome(intent, amount_minor=amount_minor, currency=currency)

    @staticmethod
    def _outcome(intent, *, amount_minor: int, currency: str) -> ChargeResult:
        if intent.status == "succeeded":
            if (intent.amount, intent.currency.upper()) != (amount_minor, currency.upper()):
                raise Conflict(
                    "Stripe's payment does not match this charge's amount.",
                    code="idempotency_key_reused",
                )
            return ChargeResult(
                charge_id=intent.id, amount_minor=intent.amount, currency=intent.currency.upper()
            )
        if intent.status == "requires_action":
            raise AuthenticationRequired()
        if intent.status in ("processing", "requires_capture"):
            raise GatewayUnavailable(
                "Stripe is still processing this payment; it is checked again shortly."
            )
        error = getattr(intent, "last_payment_error", None)
        raise decline_error(getattr(error, "code", None), getattr(error, "decline_code", None))

    def refund(self, *, charge_id: str, amount_minor: int, idempotency_key: str) -> RefundResult:
        refund = _call(
            self.client.v1.refunds.create,
            params={
                "payment_intent": charge_id,
                "amount": amount_minor,
                "metadata": {METADATA_KEY: idempotency_key},
            },
            options={"idempotency_key": idempotency_key},
        )
        if refund.status in ("failed", "canceled"):
            raise ProcessingError(
                "Stripe could not refund this card; nothing was refunded. Refund another way."
            )
        return RefundResult(refund_id=refund.id, charge_id=charge_id, amount_minor=refund.amount)

    def refunds_outside(self, *, charge_id: str) -> list[RefundResult]:
        """The refunds of a charge that Carnet did not send (made in Stripe's Dashboard: no Carnet
        key in their metadata) and that went through."""
        refunds = _call(
            self.client.v1.refunds.list, params={"payment_intent": charge_id, "limit": 100}
        )
        return [
            RefundResult(refund_id=refund.id, charge_id=charge_id, amount_minor=refund.amount)
            for refund in refunds.data
            if refund.status == "succeeded"
            and not (refund.metadata.to_dict() if refund.metadata else {}).get(METADATA_KEY)
        ]

    # ------------------------------------------------------------ reconciliation

    def retrieve(
        self,
        *,
        kind: str,
        idempotency_key: str,
        reference: str = "",
        charge_id: str = "",
        authenticating: bool = False,
    ) -> ChargeResult | RefundResult | None:
        """A charge by its PaymentIntent id (`reference`); a refund among its charge's refunds by
        the key in its metadata. None: no money moved (and a charge left unconfirmed is cancelled,
        so that it never can).

        `authenticating`: the card holder may still be confirming the charge with their bank
        (3-D Secure on the page). Then a PaymentIntent still waiting for it raises
        AuthenticationPending (left as it is), and one whose check failed is cancelled and raises
        the decline, so the page can say why."""
        if kind == "charge":
            if not reference:
                return None  # no PaymentIntent id was committed: it was never confirmed
            intent = _call(self.client.v1.payment_intents.retrieve, reference)
            if authenticating and intent.status == "requires_action":
                raise AuthenticationPending(reference=intent.id, client_secret=intent.client_secret)
            failure = getattr(intent, "last_payment_error", None)
            if authenticating and intent.status == "requires_payment_method" and failure:
                _call(self.client.v1.payment_intents.cancel, reference)
                raise decline_error(
                    getattr(failure, "code", None), getattr(failure, "decline_code", None)
                )
            if intent.status in (
                "requires_confirmation",
                "requires_payment_method",
                "requires_action",
            ):
                try:
                    intent = self.client.v1.payment_intents.cancel(reference)
                except (
                    stripe.InvalidRequestError
                ):  # it moved on meanwhile (the patient authenticated)
                    intent = _call(self.client.v1.payment_intents.retrieve, reference)
                except stripe.StripeError as exc:
                    raise error_for(exc) from exc
            if intent.status == "canceled":
                return None
            if intent.status == "succeeded":
                return ChargeResult(
                    charge_id=intent.id,
                    amount_minor=intent.amount,
                    currency=intent.currency.upper(),
                )
            raise GatewayUnavailable(
                "Stripe is still processing this payment; it is checked again later."
            )
        if not charge_id:
            return None
        refunds = _call(
            self.client.v1.refunds.list, params={"payment_intent": charge_id, "limit": 100}
        )
        for refund in refunds.data:
            metadata = refund.metadata.to_dict() if refund.metadata else {}
            if metadata.get(METADATA_KEY) == idempotency_key and refund.status not in (
                "failed",
                "canceled",
            ):
                return RefundResult(
                    refund_id=refund.id, charge_id=charge_id, amount_minor=refund.amount
                )
        return None
