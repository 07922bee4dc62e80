"""Issue 17: the database itself keeps an invoice's applied amount between 0 and its total
(check constraint invoice_applied_within_total), whatever code writes it."""

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F

from carnet.billing.models import Invoice
from carnet.billing.payments import payment_receive
from carnet.conftest import make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel

from .factories import manual_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice():
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    patient = make_patient()
    invoice = manual_invoice(owner, patient, 10000, category=make_catalog()["income_category"])
    payment_receive(
        actor=owner.user,
        patient=patient,
        method="cash",
        amount_minor=4000,
        allocations=[(invoice, 4000)],
    )
    return invoice


@pytest.mark.parametrize(
    "change",
    [
        {"applied_minor": F("total_minor") + 1},  # more applied than the invoice's total
        {"applied_minor": -1},  # less than nothing
        {"total_minor": 3999},  # the total cut below what payments already cover
    ],
)
def test_invoice_applied_stays_between_zero_and_total(invoice, change):
    with pytest.raises(IntegrityError, match="invoice_applied_within_total"), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(**change)
    invoice.refresh_from_db()
    assert (invoice.applied_minor, invoice.total_minor) == (4000, 10000)
    Invoice.objects.filter(pk=invoice.pk).update(
        applied_minor=F("total_minor")
    )  # fully paid is within
