"""Backup and restore (SPEC 13) on the database under test: what was backed up comes back,
what came after is gone, and the restored ledger passes ledger_check."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from carnet.billing.models import Invoice
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.passes.models import Pass
from carnet.passes.tests.factories import at, package_template, practitioner, sold_package
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book


@pytest.mark.django_db(transaction=True)
def test_a_restored_backup_brings_back_exactly_the_backed_up_state_and_passes_ledger_check(
    tmp_path, front_desk, catalog
):
    with clock.frozen(at("2026-05-01", "10:00")):
        patient = make_patient()
        kept = sold_package(front_desk, patient, package_template(catalog))
        appointment = appointment_book(
            actor=front_desk.user,
            treatment=catalog["treatment"],
            practitioner=practitioner(catalog["location"]),
            location=catalog["location"],
            start=at("2026-05-01", "12:00"),
            patients=[patient],
        )
        appointment_arrive(actor=front_desk.user, appointment=appointment)
        backup = tmp_path / "carnet.backup"
        call_command("backup", str(backup))
        later = sold_package(front_desk, patient, package_template(catalog, name="Later"))
        invoices = Invoice.objects.count()
        call_command("restore", str(backup), "--yes")
    assert set(Pass.objects.values_list("pk", flat=True)) == {kept.pk}
    assert not Pass.objects.filter(pk=later.pk).exists()
    assert Invoice.objects.count() == invoices - 1
    assert Pass.objects.get(pk=kept.pk).posted_count == 1
    call_command("ledger_check")  # raises CommandError if an invariant fails


@pytest.mark.django_db
def test_backup_refuses_to_overwrite_and_restore_needs_confirmation(tmp_path):
    existing = tmp_path / "x.backup"
    existing.write_text("")
    with pytest.raises(CommandError, match="already exists"):
        call_command("backup", str(existing))
    with pytest.raises(CommandError, match="--yes"):
        call_command("restore", str(existing))
    with pytest.raises(CommandError, match="no backup file"):
        call_command("restore", str(tmp_path / "missing.backup"), "--yes")
