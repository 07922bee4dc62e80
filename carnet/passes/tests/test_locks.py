"""passes.locks: `lock_pass(with_rules=True)` leaves what `prefetch_related` would, read by
compiled statements (issue 25)."""

import pytest
from django.db import connection, transaction
from django.db.models import Prefetch
from django.test.utils import CaptureQueriesContext

from carnet.conftest import make_patient
from carnet.passes.locks import lock_pass
from carnet.passes.models import Pass, PassInvoice

from .factories import package_template, sold_package

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("paid", [True, False])
def test_the_rules_come_as_django_prefetches_them(catalog, owner, paid):
    sold = sold_package(owner, make_patient(), package_template(catalog), paid=paid)
    plain = Pass.objects.prefetch_related(
        "items", Prefetch("pass_invoices", queryset=PassInvoice.objects.select_related("invoice"))
    ).get(pk=sold.pk)
    with transaction.atomic():
        locked = lock_pass(sold.pk, with_rules=True)
        with CaptureQueriesContext(connection) as read:
            items = list(locked.items.all())
            rows = list(locked.pass_invoices.all())
            balances = [r.invoice.balance_minor for r in rows]
            backs = [i.sold_pass for i in items] + [r.sold_pass for r in rows]
        assert len(read) == 0  # all answered by what the lock left behind
        assert items == list(plain.items.all()) and items
        assert rows == list(plain.pass_invoices.all()) and rows
        assert balances == [r.invoice.balance_minor for r in plain.pass_invoices.all()]
        assert all(b is locked for b in backs)
        # A further filter is still a query on the database, not on the list.
        assert list(locked.items.filter(pk=-1)) == []
        assert list(locked.items.filter(pk=items[0].pk)) == items[:1]
