"""Idempotency keyed by who asked, not by how they spelled it (issue 15, item 5).

A key belongs to the user behind the request (bearer token in any spelling, or session), the
request is its path, query string and body, card money through the API needs a key, keys expire
(IDEMPOTENCY_KEY_HOURS, purged by the daily job), and an answer holding a secret is never kept.
"""

import datetime as dt
import json

import pytest
from django.test import Client

from carnet.billing.models import Payment, Refund
from carnet.clinic.models import IncomeCategory
from carnet.conftest import Api, make_patient, make_staff, race
from carnet.core import clock
from carnet.core.models import IdempotencyRecord
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.passes.jobs import passes_daily
from carnet.people.models import ApiToken, Patient
from carnet.people.services import api_token_create

pytestmark = pytest.mark.django_db

KEY = {"Idempotency-Key": "same-key"}
PATIENT = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.test"}


class TokenApi:
    """/api/v1 with `Authorization: <scheme> <token>` and no session."""

    def __init__(self, raw: str, scheme: str = "Bearer"):
        self.client, self.auth = Client(), f"{scheme} {raw}"

    def post(self, path, body=None, **headers):
        return self.client.post(
            f"/api/v1{path}",
            data=json.dumps(body or {}),
            content_type="application/json",
            headers={"Authorization": self.auth, **headers},
        )


def _token(staff) -> str:
    return api_token_create(actor=staff.user, name="till")[1]


def _card_payment(staff):
    patient = make_patient()
    card = card_store(
        actor=staff.user,
        patient=patient,
        number="4242424242424242",
        exp_month=12,
        exp_year=2099,
        cvc="123",
        holder="Pat Test",
    )
    return {
        "patient_id": patient.pk,
        "method": "card_gateway",
        "amount_minor": 4321,
        "card_id": card.pk,
    }


def test_case_changed_authorization_header_is_one_caller_one_payment_one_charge(front_desk):
    raw, body = _token(front_desk), _card_payment(front_desk)
    first = TokenApi(raw, "Bearer").post("/payments", body, **KEY)
    second = TokenApi(raw, "bearer").post("/payments", body, **KEY)
    third = TokenApi(raw, "BEARER").post("/payments", body, **KEY)

    assert first.status_code == second.status_code == third.status_code == 201, first.content
    assert second.headers["Idempotent-Replayed"] == third.headers["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Payment.objects.count() == 1 and TestGatewayCharge.objects.count() == 1


def test_token_and_session_of_the_same_user_are_one_caller(front_desk):
    raw, body = _token(front_desk), _card_payment(front_desk)
    by_token = TokenApi(raw).post("/payments", body, **KEY)
    by_session = Api(front_desk.user).post("/payments", body, **KEY)

    assert by_token.status_code == by_session.status_code == 201
    assert (
        by_session.headers["Idempotent-Replayed"] == "true"
        and by_session.content == by_token.content
    )
    assert Payment.objects.count() == 1 and TestGatewayCharge.objects.count() == 1


def test_another_user_with_the_same_key_is_independent(front_desk):
    other = make_staff(AccessLevel.FRONT_DESK)
    body = _card_payment(front_desk)
    mine = TokenApi(_token(front_desk)).post("/payments", body, **KEY)
    theirs = TokenApi(_token(other)).post("/payments", body, **KEY)

    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers and mine.json()["id"] != theirs.json()["id"]
    assert Payment.objects.count() == 2 and TestGatewayCharge.objects.count() == 2


def test_a_wrong_token_is_refused_and_takes_no_key(front_desk):
    response = TokenApi("crn_not-a-token", "bearer").post("/patients", PATIENT, **KEY)
    assert response.status_code == 401
    assert not IdempotencyRecord.objects.exists() and not Patient.objects.exists()


def test_the_same_key_with_another_query_string_is_another_request_409(front_desk):
    invoice_id = _invoice(front_desk)
    api = Api(front_desk.user)
    first = api.post(f"/invoices/{invoice_id}/receipt/email?form=quick", **KEY)
    other = api.post(f"/invoices/{invoice_id}/receipt/email?form=detailed", **KEY)
    again = api.post(f"/invoices/{invoice_id}/receipt/email?form=quick", **KEY)

    assert first.status_code == 202, first.content
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert "query string" in other.json()["detail"]
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"


def _invoice(staff) -> int:
    category = IncomeCategory.objects.create(name="Massage")
    response = Api(staff.user).post(
        "/invoices",
        {
            "patient_id": make_patient().pk,
            "lines": [
                {
                    "description": "Consultation",
                    "unit_price_minor": 5000,
                    "income_category_id": category.pk,
                }
            ],
        },
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


# ---------------------------------------------------------------- card money needs a key


def test_a_card_payment_without_a_key_is_a_400_saying_why(front_desk):
    response = Api(front_desk.user).post("/payments", _card_payment(front_desk))
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "idempotency_key_required"
    assert "Idempotency-Key" in problem["detail"] and "twice" in problem["detail"]
    assert not Payment.objects.exists() and not TestGatewayCharge.objects.exists()


def test_a_card_refund_without_a_key_is_a_400_and_other_methods_need_none(front_desk, admin_staff):
    paid = Api(front_desk.user).post("/payments", _card_payment(front_desk), **KEY)
    assert paid.status_code == 201
    admin = Api(admin_staff.user)
    refused = admin.post(f"/payments/{paid.json()['id']}/refunds", {"amount_minor": 1000})
    assert refused.status_code == 400 and refused.json()["code"] == "idempotency_key_required"
    assert not Refund.objects.exists()
    assert (
        admin.post(
            f"/payments/{paid.json()['id']}/refunds", {"amount_minor": 1000, "method": "cash"}
        ).status_code
        == 201
    )
    keyed = admin.post(
        f"/payments/{paid.json()['id']}/refunds",
        {"amount_minor": 1000},
        **{"Idempotency-Key": "r-1"},
    )
    assert keyed.status_code == 201
    assert list(Refund.objects.order_by("pk").values_list("method", flat=True)) == [
        "cash",
        "card_gateway",
    ]


def test_a_gift_card_load_by_card_without_a_key_is_a_400(front_desk):
    body = _card_payment(front_desk)
    response = Api(front_desk.user).post(
        "/gift-cards",
        {
            "code": "GIFT-ABC123",
            "amount_minor": 5000,
            "purchaser_id": body["patient_id"],
            "method": "card_gateway",
            "card_id": body["card_id"],
        },
    )
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_required"
    assert not TestGatewayCharge.objects.exists()


# ---------------------------------------------------------------- expiry and secrets


def test_keys_expire_after_the_setting_and_the_daily_job_purges_them(front_desk, settings):
    settings.IDEMPOTENCY_KEY_HOURS = 72
    api = Api(front_desk.user)
    start = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    with clock.frozen(start):
        assert api.post("/patients", PATIENT, **KEY).status_code == 201
    with clock.frozen(start + dt.timedelta(hours=71)):
        assert api.post("/patients", PATIENT, **KEY).headers["Idempotent-Replayed"] == "true"
        assert passes_daily()["idempotency_keys_purged"] == 0
    assert IdempotencyRecord.objects.count() == 1
    with clock.frozen(start + dt.timedelta(hours=73)):
        assert passes_daily()["idempotency_keys_purged"] == 1
    assert not IdempotencyRecord.objects.exists()


def test_an_expired_key_not_yet_purged_counts_as_new(front_desk, settings):
    settings.IDEMPOTENCY_KEY_HOURS = 1
    api = Api(front_desk.user)
    start = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    with clock.frozen(start):
        assert api.post("/patients", PATIENT, **KEY).status_code == 201
    with clock.frozen(start + dt.timedelta(hours=2)):
        again = api.post("/patients", PATIENT, **KEY)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert Patient.objects.count() == 2 and IdempotencyRecord.objects.count() == 1


def test_an_answer_holding_a_new_api_token_is_never_stored(front_desk):
    api = Api(front_desk.user)
    created = api.post("/tokens", {"name": "till"}, **KEY)
    assert created.status_code == 201 and "no-store" in created["Cache-Control"]
    secret = created.json()["token"]

    record = IdempotencyRecord.objects.get()
    assert (
        record.secret_withheld
        and bytes(record.body) == b""
        and secret.encode() not in bytes(record.body)
    )
    retried = api.post("/tokens", {"name": "till"}, **KEY)
    assert (
        retried.status_code == 409 and retried.json()["code"] == "idempotency_secret_not_replayed"
    )
    assert secret not in retried.content.decode()
    assert ApiToken.objects.count() == 1  # the key still makes the retry create nothing


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_racing_token_and_session_requests_of_one_user_with_one_key_create_once():
    staff = make_staff(AccessLevel.FRONT_DESK)
    raw = _token(staff)
    n = 6

    def post(i):
        if i % 2:
            response = TokenApi(raw, "bearer" if i % 4 == 1 else "Bearer").post(
                "/patients", PATIENT, **KEY
            )
        else:
            client = Client()
            client.force_login(staff.user)
            response = client.post(
                "/api/v1/patients",
                data=json.dumps(PATIENT),
                content_type="application/json",
                headers=KEY,
            )
        return response.status_code, response.content

    results = race(n, post)
    assert all(isinstance(r, tuple) for r in results), results
    assert {r for r in results} == {(201, results[0][1])}
    assert Patient.objects.count() == 1 and IdempotencyRecord.objects.count() == 1
