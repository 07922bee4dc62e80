"""A keyed arrival is one database transaction (core.atomic): its services take no savepoints of
their own, so a refusal after they wrote rolls back the whole request, and the refusal is still
kept for replay under its key; without a key the service is its own transaction as before."""

import pytest
from django.db import transaction

from carnet.billing.models import Invoice
from carnet.conftest import Api, make_patient
from carnet.core import atomic
from carnet.core.errors import Conflict
from carnet.core.models import ActivityLog, IdempotencyRecord
from carnet.ledger.models import JournalTransaction
from carnet.passes.models import Pass, Redemption
from carnet.passes.tests.factories import package_template, sold_package
from carnet.scheduling import arrival
from carnet.scheduling.models import Appointment

from .factories import at, book, practitioner

pytestmark = pytest.mark.django_db


@pytest.fixture
def covered(front_desk, admin_staff, catalog):
    """A booked visit a package covers (a reserved use), and an API client."""
    patient = make_patient()
    sold = sold_package(admin_staff, patient, package_template(catalog))
    appointment = book(
        front_desk, catalog, practitioner(catalog["location"]), at("2026-05-12", "10:00"), [patient]
    )
    assert Redemption.objects.get().status == "reserved"  # booking chose the package
    return Api(front_desk.user), appointment, sold


def _refuse_after_billing(monkeypatch):
    """The arrival refuses at its very end, once the use is posted and the invoice issued."""

    def refuse(appointment, everyone, writes):
        raise Conflict("Refused at the end, for the test.", code="late_refusal")

    monkeypatch.setattr(arrival, "_set", refuse)


def _state(sold: Pass):
    sold.refresh_from_db()
    return (
        Invoice.objects.count(),
        JournalTransaction.objects.count(),
        ActivityLog.objects.count(),
        sold.reserved_count,
        sold.posted_count,
        sold.recognised_minor,
        list(Redemption.objects.values_list("status", flat=True)),
        list(Appointment.objects.values_list("status", flat=True)),
    )


@pytest.mark.parametrize("keyed", [True, False])
def test_a_refusal_after_the_arrival_wrote_leaves_nothing_and_is_replayed(
    covered, monkeypatch, keyed
):
    api, appointment, sold = covered
    before = _state(sold)
    _refuse_after_billing(monkeypatch)
    headers = {"Idempotency-Key": "arrive"} if keyed else {}

    refused = api.post(f"/appointments/{appointment.pk}/arrive", **headers)

    assert refused.status_code == 409, refused.content
    assert refused.json()["code"] == "late_refusal"
    assert _state(sold) == before  # no invoice, no posting, no activity, the use still reserved
    if keyed:
        stored = IdempotencyRecord.objects.get(key="arrive")
        assert stored.status_code == 409 and bytes(stored.body) == refused.content
        monkeypatch.undo()  # it would go through now, but the key's answer is the refusal
        again = api.post(f"/appointments/{appointment.pk}/arrive", **headers)
        assert again.status_code == 409 and again.headers["Idempotent-Replayed"] == "true"
        assert again.content == refused.content
        assert _state(sold) == before


def test_the_arrival_commits_whole_when_it_goes_through(covered):
    api, appointment, sold = covered
    arrived = api.post(f"/appointments/{appointment.pk}/arrive", **{"Idempotency-Key": "a"})
    assert arrived.status_code == 200, arrived.content
    sold.refresh_from_db()
    assert (sold.reserved_count, sold.posted_count) == (0, 1)
    assert Redemption.objects.get().status == "posted"
    assert Invoice.objects.filter(pk=arrived.json()["visits"][0]["invoice_id"]).exists()


def test_a_service_joins_only_a_keyed_requests_transaction_with_no_savepoint_between(db):
    assert not atomic.joins_request()
    with transaction.atomic():
        assert not atomic.joins_request()  # a page's or a job's transaction: savepoints as before
    with atomic.request():
        assert atomic.joins_request()
        with transaction.atomic(savepoint=False):
            assert atomic.joins_request()
        with transaction.atomic():  # someone's savepoint, to catch a refusal and go on
            assert not atomic.joins_request()
    assert not atomic.joins_request()
