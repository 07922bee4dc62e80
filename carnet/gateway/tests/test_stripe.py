"""Stripe as the card processor, against localstripe (a stateful fake Stripe on a loopback port).

Stripe.js's part (turning a typed card into a PaymentMethod, confirming a SetupIntent in the
browser) is played here by direct calls to localstripe: Carnet itself only ever sees the ids."""

import json
import os
import subprocess
import sys

import pytest
import stripe as stripe_lib
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from carnet.billing import card_attempts
from carnet.billing.emails import pay_link_patient
from carnet.billing.models import CardAttempt, Payment, Refund
from carnet.billing.payments import allocation_unapply, payment_receive, payment_refund
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.activity import ActivityLog
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.core.middleware import CSP
from carnet.core.permissions import AccessLevel
from carnet.core.tests.live_server import free_port
from carnet.gateway import stripe as stripe_gateway
from carnet.gateway.base import (
    AuthenticationRequired,
    CardDeclined,
    CardExpired,
    GatewayUnavailable,
    InsufficientFunds,
    ProcessingError,
    StoredCard,
    get_gateway,
)
from carnet.gateway.models import CardOnFile, GatewayCustomer
from carnet.gateway.services import (
    card_file_stored,
    card_remove,
    card_setup_begin,
    card_setup_complete,
    card_store,
    customer_for,
    gateway_uses_stripe_js,
    stripe_csp,
    stripe_js_url,
)
from carnet.passes import charging
from carnet.passes.models import PassInvoice
from carnet.passes.tests.factories import package_template, sold_package

THREE_D_SECURE = "4000002500003155"
DECLINED_ON_CHARGE = "4000000000000341"


class Crash(BaseException):
    """The process dies (not an error any code may catch): nothing after it runs."""


def crash_in(monkeypatch, owner, name):
    """`owner.name` kills the process when called (monkeypatch.undo() brings it back)."""

    def dies(*args, **kwargs):
        raise Crash()

    monkeypatch.setattr(owner, name, dies)


@pytest.fixture
def desk(stripe_gateway, db, catalog):
    staff = make_staff(AccessLevel.ADMIN_BILLING)
    return {"staff": staff, "user": staff.user, "cat": catalog["income_category"]}


def stripe_client():
    return get_gateway().client


def browser_payment_method(number="4242424242424242"):
    """What Stripe.js does in the browser: the card number goes to Stripe, a pm_ id comes back."""
    return (
        stripe_client()
        .v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"},
            }
        )
        .id
    )


def save_card(desk, patient, number="4242424242424242"):
    """Staff's "add a card": a SetupIntent, confirmed by Stripe.js, then completed by Carnet."""
    setup = card_setup_begin(actor=desk["user"], patient=patient)
    assert setup["publishable_key"] == "pk_test_carnet" and setup["client_secret"].startswith(
        "seti_"
    )
    stripe_client().v1.setup_intents.confirm(
        setup["setup_intent"],
        params={
            "client_secret": setup["client_secret"],
            "payment_method": browser_payment_method(number),
        },
    )
    return card_setup_complete(
        actor=desk["user"], patient=patient, setup_intent=setup["setup_intent"]
    )


def card_on_file_without_setup(desk, patient, number):
    """A card saved earlier whose bank now asks for authentication
    (localstripe cannot authenticate a SetupIntent)."""
    pm = stripe_client().v1.payment_methods.attach(
        browser_payment_method(number), params={"customer": customer_for(patient)}
    )
    return CardOnFile.objects.create(
        patient=patient,
        token=pm.id,
        brand="visa",
        last4=number[-4:],
        exp_month=12,
        exp_year=2040,
        holder="Pat",
        created_at=clock.now(),
    )


def card_payment(desk, patient, card, amount=5000, key="k1"):
    invoice = manual_invoice(desk["staff"], patient, amount, category=desk["cat"])
    return payment_receive(
        actor=desk["user"],
        patient=patient,
        method="card_gateway",
        amount_minor=amount,
        allocations=[(invoice, amount)],
        card=card,
        idempotency_key=key,
    )


# ---------------------------------------------------------------- configuration


def start_carnet(**stripe) -> subprocess.CompletedProcess:
    """Start Django in a new process with Stripe on and these STRIPE_ settings only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    env.update(
        stripe,
        CARNET_GATEWAY="carnet.gateway.stripe.StripeGateway",
        DJANGO_SETTINGS_MODULE="carnet.test_settings",
    )
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


KEYS = {
    "STRIPE_SECRET_KEY": "sk_test_x",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
}


@pytest.mark.parametrize("missing", stripe_gateway.KEY_SETTINGS)
def test_a_missing_stripe_key_stops_carnet_at_start_naming_the_variable(missing):
    run = start_carnet(**{name: value for name, value in KEYS.items() if name != missing})
    assert run.returncode != 0
    assert f"ImproperlyConfigured: CARNET_GATEWAY is Stripe but {missing} is not set" in run.stderr


def test_a_fake_stripes_address_is_refused_with_live_keys():
    fake = "http://127.0.0.1:1"
    live = {**KEYS, "STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_PUBLISHABLE_KEY": "pk_live_x"}
    run = start_carnet(**live, STRIPE_API_BASE=fake)
    assert run.returncode != 0 and "STRIPE_API_BASE is set with a live Stripe key" in run.stderr
    assert start_carnet(**KEYS, STRIPE_API_BASE=fake).returncode == 0  # test keys: a fake is fine
    assert start_carnet(**live).returncode == 0


def test_the_gateway_refuses_to_work_without_its_keys(settings):
    settings.CARNET_GATEWAY = "carnet.gateway.stripe.StripeGateway"
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(ImproperlyConfigured, match="STRIPE_SECRET_KEY is not set"):
        get_gateway()


def test_stripe_never_takes_a_card_number(desk):
    assert gateway_uses_stripe_js()
    with pytest.raises(ValidationFailed) as refused:
        card_store(
            actor=desk["user"],
            patient=make_patient(),
            number="4242424242424242",
            exp_month=12,
            exp_year=2040,
            cvc="123",
            holder="Pat",
        )
    assert refused.value.code == "card_entry_by_stripe_js"


@pytest.mark.parametrize(
    "code, decline, error",
    [
        ("card_declined", "insufficient_funds", InsufficientFunds),
        ("expired_card", None, CardExpired),
        ("card_declined", "generic_decline", CardDeclined),
        ("authentication_required", "authentication_required", AuthenticationRequired),
        ("processing_error", None, ProcessingError),
        ("card_declined", "something_new", CardDeclined),
    ],
)
def test_stripe_decline_codes_become_carnet_errors_with_plain_sentences(code, decline, error):
    found = stripe_gateway.decline_error(code, decline)
    assert type(found) is error and found.status == 402
    assert found.message.endswith(".") and "_" not in found.message


@pytest.mark.parametrize(
    "error, carnet_error, words",
    [
        (
            {"code": "card_declined", "decline_code": "generic_decline"},
            CardDeclined,
            "declined",
        ),
        (
            {"code": "card_declined", "decline_code": "insufficient_funds"},
            InsufficientFunds,
            "insufficient funds",
        ),
        ({"code": "expired_card"}, CardExpired, "has expired"),
        (
            {"code": "authentication_required", "decline_code": "authentication_required"},
            AuthenticationRequired,
            "confirm this payment",
        ),
        ({"code": "processing_error"}, ProcessingError, "nothing was charged"),
    ],
)
def test_stripes_card_errors_as_it_sends_them_read_as_carnets_sentences(error, carnet_error, words):
    """The decline code sits in the error object of Stripe's 402 body (`error.decline_code`), not on
    the exception: read from a CardError built the way stripe-python builds it from the body."""
    body = {"error": {"type": "card_error", "message": "Your card was declined.", **error}}
    raised = stripe_lib.CardError(
        body["error"]["message"],
        None,
        error["code"],
        http_body=json.dumps(body),
        http_status=402,
        json_body=body,
    )
    found = stripe_gateway.error_for(raised)
    assert type(found) is carnet_error and found.status == 402
    assert words in found.message and "Your card was declined" not in found.message
    assert found.decline_code == error.get("decline_code", error["code"])
    # Online, the patient reads it addressed to them, told once that nothing was charged.
    patient = found.for_patient
    assert patient.lower().count("nothing was charged") == 1 and words in patient.lower()
    assert not any(staff in patient for staff in ("the patient", "at the desk", "Billing tab"))


# ---------------------------------------------------------------- cards on file


def test_a_card_saved_with_a_setup_intent_keeps_only_stripe_ids_and_what_the_patient_sees(desk):
    patient = make_patient()
    card = save_card(desk, patient)
    assert card.token.startswith("pm_") and (
        card.brand,
        card.last4,
        card.exp_month,
        card.exp_year,
    ) == ("visa", "4242", 12, 2040)
    customer = GatewayCustomer.objects.get(patient=patient)
    assert customer.customer_id.startswith("cus_")
    assert stripe_client().v1.payment_methods.retrieve(card.token).customer == customer.customer_id
    second = save_card(desk, patient, "5555555555554444")
    assert (
        second.last4 == "4444" and GatewayCustomer.objects.count() == 1
    )  # one customer per patient


def test_completing_a_setup_twice_keeps_one_card_and_another_patients_setup_is_refused(desk):
    patient, other = make_patient(), make_patient()
    setup = card_setup_begin(actor=desk["user"], patient=patient)
    stripe_client().v1.setup_intents.confirm(
        setup["setup_intent"],
        params={
            "client_secret": setup["client_secret"],
            "payment_method": browser_payment_method(),
        },
    )
    first = card_setup_complete(
        actor=desk["user"], patient=patient, setup_intent=setup["setup_intent"]
    )
    assert (
        card_setup_complete(actor=desk["user"], patient=patient, setup_intent=setup["setup_intent"])
        == first
    )
    card_setup_begin(actor=desk["user"], patient=other)
    with pytest.raises(NotFound):
        card_setup_complete(actor=desk["user"], patient=other, setup_intent=setup["setup_intent"])
    assert CardOnFile.objects.count() == 1


def test_a_card_kept_twice_is_one_row_and_is_never_another_patients(desk):
    patient = make_patient()
    card = save_card(desk, patient)
    stored = StoredCard(
        token=card.token, brand="visa", last4="4242", exp_month=12, exp_year=2040
    )  # the same PaymentMethod again: a form posted twice, the webhook after the page
    again = card_file_stored(actor=desk["user"], patient=patient, stored=stored, holder="Pat")
    assert again == card and CardOnFile.objects.count() == 1
    with pytest.raises(Conflict) as refused:
        card_file_stored(actor=desk["user"], patient=make_patient(), stored=stored, holder="X")
    assert refused.value.status == 409 and CardOnFile.objects.count() == 1
    assert ActivityLog.objects.filter(verb="card_stored").count() == 1


def test_removing_a_card_detaches_it_at_stripe(desk):
    card = save_card(desk, make_patient())
    card_remove(actor=desk["user"], card=card)
    card.refresh_from_db()
    assert (
        card.removed_at is not None
        and stripe_client().v1.payment_methods.retrieve(card.token).customer is None
    )


# ---------------------------------------------------------------- charges and refunds


def test_a_charge_is_a_payment_intent_whose_id_is_committed_before_it_is_confirmed(
    desk, monkeypatch
):
    patient = make_patient()
    card = save_card(desk, patient)
    seen = []
    real_charge = stripe_gateway.StripeGateway.charge

    def charge(self, **kwargs):
        seen.append(
            CardAttempt.objects.values_list("gateway_id", flat=True).get()
        )  # what a crash would leave
        return real_charge(self, **kwargs)

    monkeypatch.setattr(stripe_gateway.StripeGateway, "charge", charge)
    payment = card_payment(desk, patient, card)
    assert seen[0].startswith("pi_") and payment.gateway_charge_id == seen[0]
    intent = stripe_client().v1.payment_intents.retrieve(seen[0])
    assert (intent.status, intent.amount, intent.metadata["carnet_key"]) == (
        "succeeded",
        5000,
        CardAttempt.objects.get().gateway_key,
    )
    assert (
        card_payment(desk, patient, card) == payment
    )  # the same request again: no second PaymentIntent
    assert_ledger_ok()


def test_a_declined_card_records_a_failed_attempt_and_no_money(desk):
    patient = make_patient()
    card = save_card(desk, patient, DECLINED_ON_CHARGE)
    with pytest.raises(CardDeclined) as declined:
        card_payment(desk, patient, card)
    assert declined.value.status == 402 and "declined" in declined.value.message
    attempt = CardAttempt.objects.get()
    assert attempt.status == "failed" and attempt.gateway_id.startswith("pi_")
    assert not Payment.objects.exists()


def test_an_off_session_charge_the_bank_wants_authenticated_fails_as_authentication_required(desk):
    patient = make_patient()
    card = card_on_file_without_setup(desk, patient, THREE_D_SECURE)
    with pytest.raises(AuthenticationRequired) as asked:
        card_payment(desk, patient, card)
    assert CardAttempt.objects.get().status == "failed" and not Payment.objects.exists()
    # At the desk nothing has been sent: the sentence says what staff can do instead.
    assert "Send them a Pay Balance request from the Billing tab" in asked.value.message
    assert "emailed" not in asked.value.message


def test_a_refund_goes_through_stripe_refunds(desk):
    patient = make_patient()
    card = save_card(desk, patient)
    payment = card_payment(desk, patient, card, amount=5000)
    unapply_all(desk, payment)
    refund = payment_refund(
        actor=desk["user"],
        payment=payment,
        amount_minor=2000,
        method="card_gateway",
        reason="Moved away",
        idempotency_key="r1",
    )
    found = stripe_client().v1.refunds.retrieve(refund.gateway_refund_id)
    assert (found.amount, found.payment_intent) == (2000, payment.gateway_charge_id)
    assert_ledger_ok()


def unapply_all(desk, payment):
    for allocation in payment.allocations.all():  # a refund returns unapplied money only
        allocation_unapply(actor=desk["user"], allocation=allocation)


# --------------------------------------------------------------- reconciliation by PaymentIntent id


def _reconcile():
    call_command("payments_reconcile", "--older-than-minutes=0", stdout=open(os.devnull, "w"))


def charge_then_crash(desk, monkeypatch) -> CardAttempt:
    """A card charge Stripe confirmed, whose process died before Carnet recorded it: its attempt."""
    patient = make_patient()
    card = save_card(desk, patient)
    crash_in(monkeypatch, card_attempts, "charge_record")
    with pytest.raises(Crash):
        card_payment(desk, patient, card)
    monkeypatch.undo()
    attempt = CardAttempt.objects.get()
    assert attempt.status == "pending" and not Payment.objects.exists()
    return attempt


def test_a_crash_after_stripe_confirmed_is_recorded_once_by_reconciliation(desk, monkeypatch):
    attempt = charge_then_crash(desk, monkeypatch)
    assert stripe_client().v1.payment_intents.retrieve(attempt.gateway_id).status == "succeeded"
    _reconcile()
    _reconcile()
    attempt.refresh_from_db()
    assert attempt.status == "succeeded" and attempt.reconciled_at is not None
    assert Payment.objects.get().gateway_charge_id == attempt.gateway_id
    assert_ledger_ok()


def test_a_crash_before_confirming_cancels_the_payment_intent_and_moves_no_money(desk, monkeypatch):
    patient = make_patient()
    card = save_card(desk, patient)
    crash_in(monkeypatch, stripe_gateway.StripeGateway, "charge")
    with pytest.raises(Crash):
        card_payment(desk, patient, card)
    monkeypatch.undo()
    _reconcile()
    attempt = CardAttempt.objects.get()
    assert attempt.status == "failed" and not Payment.objects.exists()
    assert stripe_client().v1.payment_intents.retrieve(attempt.gateway_id).status == "canceled"


def test_a_crash_after_a_stripe_refund_is_recorded_once_by_reconciliation(desk, monkeypatch):
    patient = make_patient()
    payment = card_payment(desk, patient, save_card(desk, patient))
    unapply_all(desk, payment)
    crash_in(monkeypatch, card_attempts, "refund_record")
    with pytest.raises(Crash):
        payment_refund(
            actor=desk["user"],
            payment=payment,
            amount_minor=1500,
            method="card_gateway",
            reason="Overpaid",
            idempotency_key="r-crash",
        )
    monkeypatch.undo()
    _reconcile()
    _reconcile()
    refund = Refund.objects.get()
    assert refund.amount_minor == 1500 and refund.gateway_refund_id.startswith("re_")
    assert_ledger_ok()


def test_stripe_unreachable_is_a_503_and_the_attempt_waits_for_reconciliation(desk, settings):
    patient = make_patient()
    card = save_card(desk, patient)

    settings.STRIPE_API_BASE = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    with pytest.raises(GatewayUnavailable):
        card_payment(desk, patient, card)
    assert CardAttempt.objects.get().status == "unknown" and not Payment.objects.exists()
    assert isinstance(stripe_lib.APIConnectionError("x"), stripe_lib.StripeError)


# -------------------------------------------------------- autopay (off-session, merchant-initiated)


def _instalment_plan(desk, catalog, patient, card):
    template = package_template(catalog, price=30000, quantity=6, instalments=3)
    return sold_package(desk["staff"], patient, template, paid=False, card=card)


def test_autopay_charges_a_stripe_card_off_session(desk, catalog):
    patient = make_patient(email="pat@example.test")
    sold = _instalment_plan(desk, catalog, patient, save_card(desk, patient))
    run = charging.pass_invoices_bill(today=clock.today("America/Toronto"))
    assert run.charged
    row = PassInvoice.objects.get(pk=run.charged[0])
    assert row.invoice.balance_minor == 0 and sold.card.token.startswith("pm_")
    assert Payment.objects.get().gateway_charge_id.startswith("pi_")
    assert_ledger_ok()


def test_autopay_the_bank_wants_authenticated_leaves_it_unpaid_and_emails_the_pay_link(
    desk, catalog, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "https://clinic.example"
    patient = make_patient(email="pat@example.test")
    _instalment_plan(
        desk, catalog, patient, card_on_file_without_setup(desk, patient, THREE_D_SECURE)
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = charging.pass_invoices_bill(today=clock.today("America/Toronto"))
    assert run.declined and not Payment.objects.exists()
    row = PassInvoice.objects.get(pk=run.declined[0])
    assert (
        row.invoice.balance_minor > 0 and row.next_attempt_on is None
    )  # no blind retries: the patient must act
    assert (
        row.last_error == AuthenticationRequired.SENT_MESSAGE
    )  # staff see that the patient was told
    [to_patient] = [m for m in mailoutbox if m.to == ["pat@example.test"]]
    assert "your bank asks you to confirm this payment yourself" in to_patient.body
    assert "https://clinic.example/portal/pay/" in to_patient.body
    token = to_patient.body.split("https://clinic.example/portal/pay/")[1].split("/")[0]

    assert pay_link_patient(token) == patient


def test_the_csp_of_a_card_page_admits_exactly_stripes_origins(settings):
    settings.STRIPE_API_BASE = ""
    csp = stripe_csp()
    assert "script-src 'self' https://js.stripe.com;" in csp
    assert "frame-src https://js.stripe.com https://hooks.stripe.com;" in csp
    assert "connect-src 'self' https://api.stripe.com;" in csp
    assert stripe_js_url() == "https://js.stripe.com/v3/"
    # Everything else is Carnet's own policy, unchanged.
    for part in CSP.split("; "):
        if not part.startswith("script-src"):
            assert part in csp
