"""POST /api/v1/patients/{id}/cards/setup (and …/complete) with Stripe on, against localstripe:
a SetupIntent for Stripe.js on the patient's Stripe customer; staff who take payments for anyone, a
patient for themself (or a dependant) only; Idempotency-Key replays are scoped to who asked."""

import pytest

from carnet.conftest import PASSWORD, Api, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import CardOnFile, GatewayCustomer
from carnet.gateway.tests.test_stripe import browser_payment_method, stripe_client
from carnet.people.services import patient_portal_enable


@pytest.fixture
def patient(db):
    return make_patient(email="pat@example.test")


def _portal(patient):
    patient_portal_enable(
        actor=make_staff(AccessLevel.ACCOUNT_OWNER).user, patient=patient, password=PASSWORD
    )
    patient.refresh_from_db()
    return Api(patient.user)


def _confirm_in_browser(started, number="4242424242424242"):
    stripe_client().v1.setup_intents.confirm(
        started["setup_intent"],
        params={
            "client_secret": started["client_secret"],
            "payment_method": browser_payment_method(number),
        },
    )


def test_staff_start_and_complete_saving_a_card_with_stripe_js(stripe_gateway, patient):
    api = Api(make_staff(AccessLevel.FRONT_DESK).user)
    started = api.post(f"/patients/{patient.pk}/cards/setup", **{"Idempotency-Key": "s1"})
    assert started.status_code == 201, started.content
    body = started.json()
    assert body["setup_intent"].startswith("seti_") and body["client_secret"].startswith(
        body["setup_intent"]
    )
    assert (
        body["publishable_key"] == "pk_test_carnet"
        and body["js_url"] == f"{stripe_gateway}/js.stripe.com/v3/"
    )
    intent = stripe_client().v1.setup_intents.retrieve(body["setup_intent"])
    assert intent.customer == GatewayCustomer.objects.get(patient=patient).customer_id
    _confirm_in_browser(body)
    done = api.post(
        f"/patients/{patient.pk}/cards/setup/complete",
        {"setup_intent": body["setup_intent"], "holder": "Pat Test"},
    )
    assert (
        done.status_code == 201
        and done.json()["last4"] == "4242"
        and done.json()["holder"] == "Pat Test"
    )
    assert "token" not in done.json()
    again = api.post(
        f"/patients/{patient.pk}/cards/setup/complete", {"setup_intent": body["setup_intent"]}
    )
    assert again.status_code == 201 and CardOnFile.objects.count() == 1


def test_the_same_idempotency_key_is_the_same_setup_intent_for_the_same_caller_only(
    stripe_gateway, patient
):
    desk, other = (
        Api(make_staff(AccessLevel.FRONT_DESK).user),
        Api(make_staff(AccessLevel.FRONT_DESK).user),
    )
    url = f"/patients/{patient.pk}/cards/setup"
    first = desk.post(url, **{"Idempotency-Key": "same"}).json()["setup_intent"]
    assert desk.post(url, **{"Idempotency-Key": "same"}).json()["setup_intent"] == first
    assert other.post(url, **{"Idempotency-Key": "same"}).json()["setup_intent"] != first
    assert desk.post(url, **{"Idempotency-Key": "new"}).json()["setup_intent"] != first


def test_a_patient_saves_their_own_card_and_no_one_elses(stripe_gateway, patient):
    api = _portal(patient)
    started = api.post(f"/patients/{patient.pk}/cards/setup", **{"Idempotency-Key": "p1"})
    assert started.status_code == 201
    _confirm_in_browser(started.json())
    done = api.post(
        f"/patients/{patient.pk}/cards/setup/complete",
        {"setup_intent": started.json()["setup_intent"]},
    )
    assert done.status_code == 201 and CardOnFile.objects.get().patient == patient
    stranger = make_patient()
    assert api.post(f"/patients/{stranger.pk}/cards/setup").status_code == 404
    # Someone else's SetupIntent id is not theirs to complete.
    theirs = (
        Api(make_staff(AccessLevel.FRONT_DESK).user)
        .post(f"/patients/{stranger.pk}/cards/setup")
        .json()
    )
    _confirm_in_browser(theirs)
    refused = api.post(
        f"/patients/{patient.pk}/cards/setup/complete", {"setup_intent": theirs["setup_intent"]}
    )
    assert refused.status_code == 404 and CardOnFile.objects.count() == 1


def test_who_may_not_take_payments_is_refused_and_anonymous_must_log_in(stripe_gateway, patient):
    url = f"/patients/{patient.pk}/cards/setup"
    response = Api(make_staff(AccessLevel.PRACTITIONER_LIMITED).user).post(url)
    assert response.status_code == 403 and response.json()["code"] == "not_allowed"
    assert Api().post(url).status_code == 401
    assert not GatewayCustomer.objects.exists()


def test_an_unconfirmed_or_bad_setup_is_a_clear_4xx(stripe_gateway, patient):
    api = Api(make_staff(AccessLevel.FRONT_DESK).user)
    started = api.post(f"/patients/{patient.pk}/cards/setup").json()
    pending = api.post(
        f"/patients/{patient.pk}/cards/setup/complete", {"setup_intent": started["setup_intent"]}
    )
    assert pending.status_code == 409 and "not saved" in pending.json()["detail"]
    assert (
        api.post(f"/patients/{patient.pk}/cards/setup/complete", {"setup_intent": ""}).status_code
        == 422
    )
    assert (
        api.post(
            f"/patients/{patient.pk}/cards/setup/complete", {"setup_intent": "seti_nope"}
        ).status_code
        == 404
    )


def test_with_the_test_gateway_the_route_says_to_use_the_card_form(patient):
    response = Api(make_staff(AccessLevel.FRONT_DESK).user).post(
        f"/patients/{patient.pk}/cards/setup"
    )
    assert response.status_code == 409 and response.json()["code"] == "card_setup_unavailable"
