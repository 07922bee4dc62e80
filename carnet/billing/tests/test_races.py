"""Real threads racing on one invoice: it is never over-applied, and numbers stay gap-free."""

import pytest

from carnet.billing.invoicing import LineInput, invoice_create
from carnet.billing.models import Invoice
from carnet.billing.payments import payment_apply, payment_receive
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_catalog, make_patient, make_staff, race
from carnet.core.errors import CarnetError

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]


def _race(n, work):
    """Each result as ("ok", value) or ("refused", error code)."""
    results = race(n, work)
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, CarnetError)]
    assert not unexpected, unexpected
    return [("refused", r.code) if isinstance(r, CarnetError) else ("ok", r) for r in results]


def test_two_payments_racing_for_one_invoice_never_over_apply():
    catalog, desk, patient = make_catalog(), make_staff(), make_patient()
    invoice = manual_invoice(desk, patient, 5000, category=catalog["income_category"])
    payments = [
        payment_receive(actor=desk.user, patient=patient, method="cash", amount_minor=5000)
        for _ in range(4)
    ]
    results = _race(
        4,
        lambda i: payment_apply(
            actor=desk.user, payment=payments[i], invoice=invoice, amount_minor=5000
        ),
    )
    assert sorted(r[0] for r in results) == ["ok", "refused", "refused", "refused"]
    invoice.refresh_from_db()
    assert invoice.applied_minor == 5000
    assert_ledger_ok()


def test_invoices_created_at_the_same_moment_get_gap_free_numbers():
    catalog, desk = make_catalog(), make_staff()
    patients = [make_patient() for _ in range(6)]
    category = catalog["income_category"].pk
    results = _race(
        6,
        lambda i: (
            invoice_create(
                actor=desk.user,
                patient=patients[i],
                lines=[
                    LineInput(
                        description="Visit",
                        unit_price_minor=1000,
                        income_category_id=category,
                        tax_ids=[],
                    )
                ],
            ).number
        ),
    )
    assert all(kind == "ok" for kind, _ in results)
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == list(range(numbers[0], numbers[0] + 6))
