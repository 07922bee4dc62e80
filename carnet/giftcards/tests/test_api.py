import pytest

from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import Api, make_patient
from carnet.giftcards.models import GiftCard

pytestmark = pytest.mark.django_db


def test_load_read_redeem_transfer_refund_delete(front_desk, admin_staff, catalog):
    api, admin = Api(front_desk.user), Api(admin_staff.user)
    buyer, other = make_patient(), make_patient()
    made = api.post(
        "/gift-cards",
        {"code": "api-card-1", "amount_minor": 8000, "purchaser_id": buyer.pk, "method": "debit"},
        **{"Idempotency-Key": "load-1"},
    )
    assert made.status_code == 201, made.content
    gift_card = made.json()
    assert gift_card["code"] == "API-CARD-1" and gift_card["balance_minor"] == 8000
    again = api.post(
        "/gift-cards",
        {"code": "api-card-1", "amount_minor": 8000, "purchaser_id": buyer.pk, "method": "debit"},
        **{"Idempotency-Key": "load-1"},
    )
    assert (
        again.status_code == 201 and again.json()["id"] == gift_card["id"]
    )  # replayed, not loaded twice
    assert GiftCard.objects.get().balance_minor == 8000
    found = api.get("/gift-cards?code=api-card").json()
    assert [c["id"] for c in found] == [gift_card["id"]]

    invoice = manual_invoice(front_desk, other, 3000, category=catalog["income_category"])
    paid = api.post(
        "/gift-cards/redeem",
        {
            "code": "API-card-1",
            "patient_id": other.pk,
            "amount_minor": 3000,
            "allocations": [{"invoice_id": invoice.pk, "amount_minor": 3000}],
        },
        **{"Idempotency-Key": "redeem-1"},
    )
    assert paid.status_code == 201 and paid.json()["method"] == "gift_card"
    too_much = api.post(
        "/gift-cards/redeem", {"code": "API-CARD-1", "patient_id": other.pk, "amount_minor": 99999}
    )
    assert (
        too_much.status_code == 409 and too_much.json()["code"] == "gift_card_insufficient_balance"
    )

    target = api.post("/gift-cards", {"code": "API-CARD-2"}).json()
    moved = api.post(
        f"/gift-cards/{gift_card['id']}/transfer",
        {"target_code": "api-card-2", "amount_minor": 1000},
    )
    assert moved.status_code == 201 and moved.json()["balance_minor"] == 4000
    [sent] = [t for t in moved.json()["transactions"] if t["kind"] == "transfer_out"]
    # other_card_id: other_gift_card_id's old name, kept for one release (CHANGELOG.md)
    assert sent["other_gift_card_id"] == sent["other_card_id"] == target["id"]
    assert (
        api.post(f"/gift-cards/{gift_card['id']}/refund", {"amount_minor": 100}).status_code == 403
    )
    refunded = admin.post(
        f"/gift-cards/{gift_card['id']}/refund", {"amount_minor": 1500}, **{"Idempotency-Key": "r1"}
    )
    assert refunded.status_code == 201 and refunded.json()["balance_minor"] == 2500
    reloaded = api.post(
        f"/gift-cards/{gift_card['id']}/reload", {"amount_minor": 500, "payer_id": buyer.pk}
    )
    assert reloaded.status_code == 201 and reloaded.json()["balance_minor"] == 3000
    assert (
        api.patch(f"/gift-cards/{gift_card['id']}", {"notes": "wallet"}).json()["notes"] == "wallet"
    )
    assert api.delete(f"/gift-cards/{gift_card['id']}").status_code == 409
    empty = api.post("/gift-cards", {"code": "API-CARD-3"}).json()
    assert api.delete(f"/gift-cards/{empty['id']}").status_code == 204
    assert api.get(f"/gift-cards/{empty['id']}").status_code == 404
    assert target["balance_minor"] == 0
    assert_ledger_ok()


@pytest.mark.parametrize(
    "body",
    [
        {"code": "0ABCDEF"},
        {"code": "AB CDEF"},
        {"code": "ABC"},
        {"code": "GOODCODE", "amount_minor": 100},
    ],
)
def test_user_mistakes_are_problems_not_500s(front_desk, catalog, body):
    response = Api(front_desk.user).post("/gift-cards", body)
    assert response.status_code in (400, 409, 422), response.content
