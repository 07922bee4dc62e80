import pytest
from django.core import mail

from carnet.billing.models import Payment
from carnet.billing.payments import payment_receive, payment_refund
from carnet.billing.selectors import credit_balance
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.clinic.selectors import clinic_get
from carnet.conftest import make_patient
from carnet.core.errors import Conflict, NotAllowed, NotFound, ValidationFailed
from carnet.giftcards import services
from carnet.giftcards.invariants import liability_matches_cards
from carnet.giftcards.models import GiftCard
from carnet.giftcards.services import (
    code_normalize,
    gift_card_create_and_load,
    gift_card_delete,
    gift_card_get,
    gift_card_redeem,
    gift_card_refund,
    gift_card_reload,
    gift_card_sell_online,
    gift_card_transfer,
    gift_card_update,
)
from carnet.ledger import accounts
from carnet.ledger.selectors import balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def cat(catalog):
    return catalog["income_category"]


def _load(actor, code="GIFT100", amount=10000, method="cash", **kw):
    kw.setdefault("purchaser", make_patient())
    return gift_card_create_and_load(
        actor=actor.user, code=code, amount_minor=amount, method=method, **kw
    )


@pytest.mark.parametrize("bad", ["", "ABC12", "0ABCDEF", "ABC DEF", " 0123456", "X" * 41])
def test_code_rules(bad):
    with pytest.raises(ValidationFailed):
        code_normalize(bad)


def test_code_is_stored_upper_case_unique_and_looked_up_case_insensitively(front_desk, catalog):
    gift_card = _load(front_desk, code="  spring-2026 ")
    assert gift_card.code == "SPRING-2026" and gift_card_get(code="Spring-2026").pk == gift_card.pk
    with pytest.raises(Conflict) as err:
        _load(front_desk, code="SPRING-2026")
    assert err.value.code == "gift_card_code_taken"
    with pytest.raises(NotFound):
        gift_card_get(code="NOPE-NOPE")


def test_load_posts_cash_to_gift_card_liability_not_revenue_nor_credit(front_desk, catalog):
    buyer = make_patient()
    gift_card = _load(
        front_desk, purchaser=buyer, method="debit", amount=10000, recipient_email="a@example.test"
    )
    assert gift_card.balance_minor == 10000
    assert (
        balance(accounts.cash("debit")) == 10000 and balance(accounts.GIFT_CARD_LIABILITY) == 10000
    )
    assert credit_balance(buyer) == 0 and balance(accounts.PATIENT_CREDIT, patient_id=buyer.pk) == 0
    load = gift_card.transactions.get()
    assert (
        load.kind == "load"
        and load.payment.method == "debit"
        and load.payment.gift_card_minor == 10000
    )
    assert_ledger_ok()


def test_reload_and_load_limit(front_desk, catalog):
    clinic = clinic_get()
    clinic.gift_card_load_limit_minor = 20000
    clinic.save()
    gift_card = _load(front_desk, amount=20000)
    with pytest.raises(Conflict) as err:
        gift_card_reload(
            actor=front_desk.user, gift_card=gift_card, amount_minor=20001, payer=make_patient()
        )
    assert err.value.code == "load_limit"
    gift_card = gift_card_reload(
        actor=front_desk.user,
        gift_card=gift_card,
        amount_minor=5000,
        payer=make_patient(),
        method="cheque",
    )
    assert gift_card.balance_minor == 25000 and [t.kind for t in gift_card.transactions.all()] == [
        "reload",
        "load",
    ]
    assert_ledger_ok()


def test_cards_off_refuses_loads_and_redemptions(front_desk, catalog, cat):
    gift_card = _load(front_desk)
    clinic = clinic_get()
    clinic.gift_cards_enabled = False
    clinic.save()
    with pytest.raises(Conflict):
        _load(front_desk, code="OTHER-1")
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 1000, category=cat)
    with pytest.raises(Conflict):
        gift_card_redeem(
            actor=front_desk.user,
            code=gift_card.code,
            patient=patient,
            amount_minor=1000,
            allocations=[(invoice, 1000)],
        )


def test_any_patient_redeems_part_combined_with_cash(front_desk, catalog, cat):
    gift_card = _load(front_desk, amount=3000)
    other = make_patient()  # not the purchaser
    invoice = manual_invoice(front_desk, other, 5000, category=cat)
    payment = gift_card_redeem(
        actor=front_desk.user,
        code=gift_card.code.lower(),
        patient=other,
        amount_minor=2000,
        allocations=[(invoice, 2000)],
    )
    payment_receive(
        actor=front_desk.user,
        patient=other,
        method="cash",
        amount_minor=3000,
        allocations=[(invoice, 3000)],
    )
    invoice.refresh_from_db(), gift_card.refresh_from_db()
    assert invoice.status == "paid" and gift_card.balance_minor == 1000
    assert payment.method == Payment.Method.GIFT_CARD and payment.unapplied_minor == 0
    assert (
        balance(accounts.GIFT_CARD_LIABILITY) == 1000
        and balance(accounts.AR, patient_id=other.pk) == 0
    )
    redeem = gift_card.transactions.first()
    assert (redeem.kind, redeem.amount_minor, redeem.invoice_id, redeem.balance_after_minor) == (
        "redeem",
        -2000,
        invoice.pk,
        1000,
    )
    assert_ledger_ok()


def test_cannot_redeem_more_than_the_balance(front_desk, catalog, cat):
    gift_card = _load(front_desk, amount=1000)
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 5000, category=cat)
    with pytest.raises(Conflict) as err:
        gift_card_redeem(
            actor=front_desk.user,
            code=gift_card.code,
            patient=patient,
            amount_minor=1500,
            allocations=[(invoice, 1500)],
        )
    assert err.value.code == "gift_card_insufficient_balance"
    invoice.refresh_from_db()
    assert invoice.applied_minor == 0 and not Payment.objects.filter(method="gift_card").exists()
    assert_ledger_ok()


def test_a_redemption_that_lost_a_race_is_told_the_cards_balance(
    front_desk, catalog, cat, monkeypatch
):
    """The losing side of a race (test_races): the card read before another redemption committed,
    so its plain check passes and the ledger's guard refuses the posting. The desk is told what is
    left on the card, not the ledger's words, and nothing of the loser is kept."""
    gift_card = _load(front_desk, amount=5000)
    stale = GiftCard.objects.get(pk=gift_card.pk)
    first, second = make_patient(), make_patient()
    invoices = [manual_invoice(front_desk, p, 3000, category=cat) for p in (first, second)]
    gift_card_redeem(
        actor=front_desk.user,
        code=gift_card.code,
        patient=first,
        amount_minor=3000,
        allocations=[(invoices[0], 3000)],
    )
    monkeypatch.setattr(services, "gift_card_get", lambda code: stale)  # read before that commit
    with pytest.raises(Conflict) as err:
        gift_card_redeem(
            actor=front_desk.user,
            code=gift_card.code,
            patient=second,
            amount_minor=3000,
            allocations=[(invoices[1], 3000)],
        )
    assert err.value.code == "gift_card_insufficient_balance"
    assert "only $20.00 left" in str(err.value)
    invoices[1].refresh_from_db()
    assert invoices[1].applied_minor == 0
    assert Payment.objects.filter(method="gift_card").count() == 1
    assert_ledger_ok()


def test_gift_card_method_only_through_a_code(front_desk, admin_staff, catalog):
    patient = make_patient()
    with pytest.raises(ValidationFailed):
        payment_receive(
            actor=front_desk.user, patient=patient, method="gift_card", amount_minor=100
        )
    payment = payment_receive(
        actor=front_desk.user, patient=patient, method="cash", amount_minor=100
    )
    with pytest.raises(ValidationFailed):
        payment_refund(
            actor=admin_staff.user, payment=payment, amount_minor=100, method="gift_card"
        )
    with pytest.raises(ValidationFailed):
        _load(front_desk, method="gift_card")


def test_transfer_between_cards(front_desk, catalog):
    a, b = (
        _load(front_desk, code="CARD-A1", amount=5000),
        _load(front_desk, code="CARD-B1", amount=1000),
    )
    gift_card_transfer(actor=front_desk.user, source=b, target=a, amount_minor=1000)
    gift_card_transfer(actor=front_desk.user, source=a, target=b, amount_minor=2500)
    a.refresh_from_db(), b.refresh_from_db()
    assert (a.balance_minor, b.balance_minor) == (3500, 2500)
    with pytest.raises(Conflict):
        gift_card_transfer(actor=front_desk.user, source=b, target=a, amount_minor=2501)
    with pytest.raises(ValidationFailed):
        gift_card_transfer(actor=front_desk.user, source=a, target=a, amount_minor=1)
    assert {t.kind for t in a.transactions.all()} == {"load", "transfer_in", "transfer_out"}
    assert_ledger_ok()


def test_refund_goes_back_to_the_original_payment(front_desk, admin_staff, catalog):
    buyer = make_patient()
    gift_card = _load(front_desk, purchaser=buyer, method="cheque", amount=6000)
    with pytest.raises(NotAllowed):
        gift_card_refund(actor=front_desk.user, gift_card=gift_card, amount_minor=1000)
    rows = gift_card_refund(
        actor=admin_staff.user, gift_card=gift_card, amount_minor=2500, reason="changed mind"
    )
    gift_card.refresh_from_db()
    assert gift_card.balance_minor == 3500 and rows[0].kind == "refund"
    refund = rows[0].payment.refunds.get()
    assert refund.method == "cheque" and refund.amount_minor == 2500
    assert (
        balance(accounts.cash("cheque")) == 3500 and balance(accounts.GIFT_CARD_LIABILITY) == 3500
    )
    with pytest.raises(Conflict):
        gift_card_refund(actor=admin_staff.user, gift_card=gift_card, amount_minor=3501)
    assert_ledger_ok()


def test_refund_of_transferred_in_value_is_refused(front_desk, admin_staff, catalog):
    a, b = (
        _load(front_desk, code="CARD-A2", amount=1000),
        _load(front_desk, code="CARD-B2", amount=1000),
    )
    gift_card_transfer(actor=front_desk.user, source=a, target=b, amount_minor=1000)
    with pytest.raises(Conflict) as err:
        gift_card_refund(actor=admin_staff.user, gift_card=b, amount_minor=2000)
    assert err.value.code == "refund_exceeds_load"
    b.refresh_from_db()
    assert b.balance_minor == 2000
    assert_ledger_ok()


def test_delete_only_without_transactions_and_notes(front_desk, catalog):
    empty = gift_card_create_and_load(actor=front_desk.user, code="EMPTY-1")
    gift_card_update(actor=front_desk.user, gift_card=empty, notes="Wallet for Ann's massages")
    assert GiftCard.objects.get(pk=empty.pk).notes == "Wallet for Ann's massages"
    gift_card_delete(actor=front_desk.user, gift_card=empty)
    assert not GiftCard.objects.filter(pk=empty.pk).exists()
    used = _load(front_desk)
    with pytest.raises(Conflict) as err:
        gift_card_delete(actor=front_desk.user, gift_card=used)
    assert err.value.code == "gift_card_has_transactions"


def test_liability_invariant_catches_a_drift(front_desk, catalog):
    gift_card = _load(front_desk)
    assert list(liability_matches_cards()) == []
    GiftCard.objects.filter(pk=gift_card.pk).update(balance_minor=1)
    assert list(liability_matches_cards())


def _online(patient, **kw):
    data = dict(
        patient=patient,
        amount_minor=5000,
        recipient_name="Ann",
        recipient_email="ann@example.test",
        card_number="4242424242424242",
        exp_month=12,
        exp_year=2040,
        cvc="123",
        holder="Bo",
        idempotency_key="k1",
    )
    data.update(kw)
    return gift_card_sell_online(**data)


def test_online_sale_needs_the_setting_and_the_minimum_and_emails_the_code(
    catalog, django_capture_on_commit_callbacks
):
    patient = make_patient()
    with pytest.raises(Conflict):
        _online(patient)
    clinic = clinic_get()
    clinic.gift_card_online_sales_enabled, clinic.gift_card_online_minimum_minor = True, 5000
    clinic.save()
    with pytest.raises(ValidationFailed):
        _online(patient, amount_minor=4999)
    with django_capture_on_commit_callbacks(execute=True):
        gift_card = _online(patient)
    assert gift_card.balance_minor == 5000 and gift_card.purchaser == patient
    assert _online(patient).pk == gift_card.pk  # a double submit: same card, charged once
    assert GiftCard.objects.count() == 1 and Payment.objects.get().method == "card_gateway"
    assert mail.outbox[-1].to == ["ann@example.test"] and gift_card.code in mail.outbox[-1].body
    assert_ledger_ok()
