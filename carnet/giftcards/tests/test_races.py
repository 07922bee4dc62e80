"""Real threads racing to spend one gift card: the balance and the liability never go negative."""

import pytest

from carnet.billing.models import Payment
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_catalog, make_patient, make_staff, race
from carnet.core.errors import CarnetError
from carnet.giftcards.models import GiftCard
from carnet.giftcards.services import (
    gift_card_create_and_load,
    gift_card_redeem,
    gift_card_transfer,
)
from carnet.ledger import accounts
from carnet.ledger.selectors import balance

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]


def test_invoices_racing_for_one_balance_never_overspend_it():
    catalog, desk = make_catalog(), make_staff()
    gift_card = gift_card_create_and_load(
        actor=desk.user, code="RACE-01", amount_minor=5000, purchaser=make_patient()
    )
    patients = [make_patient() for _ in range(4)]
    invoices = [
        manual_invoice(desk, p, 3000, category=catalog["income_category"]) for p in patients
    ]
    results = race(
        4,
        lambda i: gift_card_redeem(
            actor=desk.user,
            code="race-01",
            patient=patients[i],
            amount_minor=3000,
            allocations=[(invoices[i], 3000)],
        ),
    )
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, CarnetError)]
    assert not unexpected, unexpected
    assert sum(isinstance(r, Payment) for r in results) == 1
    assert {r.code for r in results if isinstance(r, CarnetError)} == {
        "gift_card_insufficient_balance"
    }
    gift_card.refresh_from_db()
    assert gift_card.balance_minor == 2000 == balance(accounts.GIFT_CARD_LIABILITY)
    assert_ledger_ok()


def test_opposite_transfers_do_not_deadlock_or_overspend():
    desk = make_staff()
    a = gift_card_create_and_load(
        actor=desk.user, code="RACE-A", amount_minor=1000, purchaser=make_patient()
    )
    b = gift_card_create_and_load(
        actor=desk.user, code="RACE-B", amount_minor=1000, purchaser=make_patient()
    )
    pairs = [(a, b), (b, a)] * 3
    results = race(
        6,
        lambda i: gift_card_transfer(
            actor=desk.user, source=pairs[i][0], target=pairs[i][1], amount_minor=700
        ),
    )
    assert not [
        r for r in results if isinstance(r, Exception) and not isinstance(r, CarnetError)
    ], results
    assert sum(GiftCard.objects.values_list("balance_minor", flat=True)) == 2000
    assert min(GiftCard.objects.values_list("balance_minor", flat=True)) >= 0
    assert_ledger_ok()
