import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from carnet.billing.invoicing import LineInput, invoice_create, invoice_delete
from carnet.billing.models import Invoice
from carnet.billing.payments import payment_receive
from carnet.billing.tests.factories import manual_invoice, product
from carnet.conftest import make_patient, make_staff
from carnet.core.errors import Conflict, NotAllowed, ValidationFailed
from carnet.core.permissions import AccessLevel
from carnet.ledger import accounts
from carnet.ledger.invariants import discover, run_all
from carnet.ledger.selectors import balance

pytestmark = pytest.mark.django_db


def assert_ledger_ok():
    discover()
    assert {name: problems for name, problems in run_all().items() if problems} == {}


def test_invoice_numbers_are_sequential(front_desk, catalog):
    patient = make_patient()
    numbers = [
        manual_invoice(front_desk, patient, 1000, category=catalog["income_category"]).number
        for _ in range(3)
    ]
    assert numbers == [numbers[0], numbers[0] + 1, numbers[0] + 2]


def test_invoice_posts_ar_revenue_and_tax(front_desk, catalog):
    patient = make_patient()
    invoice = invoice_create(
        actor=front_desk.user,
        patient=patient,
        lines=[
            LineInput(treatment_id=catalog["treatment"].pk),  # 90.00 + 13 % HST
            LineInput(
                description="Hot towel",
                unit_price_minor=1000,
                quantity=2,
                adjustment_minor=500,
                income_category_id=catalog["income_category"].pk,
                tax_ids=[],
            ),
        ],
    )
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (10500, 1170, 11670)
    assert invoice.status == "unpaid"
    assert balance(accounts.AR, patient_id=patient.pk) == 11670
    assert balance(accounts.revenue(catalog["income_category"].pk)) == 10500
    assert balance(accounts.tax_payable(catalog["tax"].pk)) == 1170
    assert_ledger_ok()


@pytest.mark.parametrize("taxed", [True, False])
def test_a_one_line_invoice_is_stored_as_the_usual_inserts_store_it(front_desk, catalog, taxed):
    """On PostgreSQL an invoice of one line (a visit's) goes in with its line and the line's taxes
    in one statement (statements.insert_chain), once those inserts are compiled."""
    patient = make_patient()
    line = LineInput(treatment_id=catalog["treatment"].pk, tax_ids=None if taxed else [])
    earlier = invoice_create(actor=front_desk.user, patient=patient, lines=[line])  # compiles
    with CaptureQueriesContext(connection) as queries:
        invoice = invoice_create(actor=front_desk.user, patient=patient, lines=[line], notes="n")
    inserts = [q["sql"] for q in queries if 'INSERT INTO "billing_invoice' in q["sql"]]
    if connection.vendor == "postgresql":  # the number taken in the same statement
        assert len(inserts) == 1 and inserts[0].startswith('WITH t AS (UPDATE "billing_invoicec')
        assert not [q for q in queries if q["sql"].startswith('UPDATE "billing_invoicecounter"')]
    stored = Invoice.objects.get(pk=invoice.pk)
    assert not invoice._state.adding and invoice.number == stored.number == earlier.number + 1
    assert (stored.notes, stored.subtotal_minor, stored.tax_minor) == ("n", 9000, 1170 * taxed)
    [kept] = stored.lines.all()
    assert (kept.invoice_id, kept.unit_price_minor, kept.quantity) == (invoice.pk, 9000, 1)
    taxes = list(kept.line_taxes.values_list("tax_id", "amount_minor"))
    assert taxes == ([(catalog["tax"].pk, 1170)] if taxed else [])
    assert balance(accounts.AR, patient_id=patient.pk) == 2 * (9000 + 1170 * taxed)
    assert_ledger_ok()


def test_no_charge_invoice_counts_as_paid_and_moves_no_money(front_desk, catalog):
    invoice = manual_invoice(front_desk, make_patient(), 0, category=catalog["income_category"])
    assert invoice.status == "no_charge" and invoice.balance_minor == 0
    assert balance(accounts.AR) == 0


def test_product_sale_takes_stock_and_refuses_more_than_is_left(front_desk, catalog):
    oil = product(catalog["income_category"], stock=2, taxes=[catalog["tax"]])
    invoice = invoice_create(
        actor=front_desk.user,
        patient=make_patient(),
        lines=[LineInput(product_id=oil.pk, quantity=2)],
    )
    oil.refresh_from_db()
    assert oil.stock == 0 and invoice.total_minor == 2 * 2500 + 650
    with pytest.raises(Conflict) as exc:
        invoice_create(
            actor=front_desk.user, patient=make_patient(), lines=[LineInput(product_id=oil.pk)]
        )
    assert exc.value.code == "out_of_stock"


def test_bad_lines_name_the_field(front_desk, catalog):
    with pytest.raises(ValidationFailed) as exc:
        invoice_create(
            actor=front_desk.user,
            patient=make_patient(),
            lines=[LineInput(description="x", unit_price_minor=-1)],
        )
    assert "lines.0.unit_price_minor" in exc.value.fields
    with pytest.raises(ValidationFailed):
        invoice_create(actor=front_desk.user, patient=make_patient(), lines=[])
    with pytest.raises(ValidationFailed) as exc:
        invoice_create(
            actor=front_desk.user,
            patient=make_patient(),
            lines=[
                LineInput(
                    description="x",
                    unit_price_minor=100,
                    adjustment_minor=200,
                    income_category_id=catalog["income_category"].pk,
                )
            ],
        )
    assert "lines.0.adjustment_minor" in exc.value.fields


def test_selling_needs_billing_access(catalog):
    desk = make_staff(AccessLevel.FRONT_DESK, billing=False)
    with pytest.raises(NotAllowed):
        manual_invoice(desk, make_patient(), 100, category=catalog["income_category"])


def test_delete_only_while_no_payment_is_applied(front_desk, admin_staff, catalog):
    patient = make_patient()
    oil = product(catalog["income_category"], stock=5)
    invoice = invoice_create(
        actor=front_desk.user, patient=patient, lines=[LineInput(product_id=oil.pk)]
    )
    payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="cash",
        amount_minor=100,
        allocations=[(invoice, 100)],
    )
    with pytest.raises(Conflict) as exc:
        invoice_delete(actor=admin_staff.user, invoice=Invoice.objects.get(pk=invoice.pk))
    assert (
        exc.value.code == "invoice_has_payments"
        and "Unapply those payments first" in exc.value.message
    )
    other = invoice_create(
        actor=front_desk.user, patient=patient, lines=[LineInput(product_id=oil.pk)]
    )
    with pytest.raises(NotAllowed):
        invoice_delete(actor=front_desk.user, invoice=other)
    invoice_delete(actor=admin_staff.user, invoice=other)
    oil.refresh_from_db()
    assert oil.stock == 4  # the deleted sale's stock is back
    assert balance(accounts.AR, patient_id=patient.pk) == invoice.total_minor - 100
    assert_ledger_ok()


def test_ledger_check_command_passes_after_billing(front_desk, catalog, capsys):
    patient = make_patient()
    invoice = manual_invoice(front_desk, patient, 5000, category=catalog["income_category"])
    payment_receive(
        actor=front_desk.user,
        patient=patient,
        method="debit",
        amount_minor=8000,
        allocations=[(invoice, 5000)],
    )
    call_command("ledger_check")
    out = capsys.readouterr().out
    assert "A/R per patient" in out and "credit per patient" in out
