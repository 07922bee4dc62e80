"""manage.py import_data: a dry run by default that exits non-zero on any invalid row."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from carnet.imports.models import ImportBatch
from carnet.people.models import Patient

pytestmark = pytest.mark.django_db


def _run(*args):
    out = StringIO()
    call_command("import_data", *args, stdout=out)
    return out.getvalue()


def test_the_command_dry_runs_then_commits_then_skips_what_it_has(tmp_path, catalog):
    path = tmp_path / "patients.csv"
    path.write_text(
        "Patient ID,First Name,Last Name,Email\nJ1,Ana,Silva,ana@example.com\n", encoding="utf-8"
    )
    out = _run("patients", str(path))
    assert "Would create 1 patients" in out and "Dry run: nothing was written" in out
    assert "External ID ← Patient ID" in out and Patient.objects.count() == 0
    assert "1 created" in _run("patients", str(path), "--commit")
    assert "0 created, 1 already imported" in _run("patients", str(path), "--commit")
    assert Patient.objects.count() == 1
    batch = ImportBatch.objects.order_by("pk").first()
    assert "Undone" in _run("undo", str(batch.pk)) and Patient.objects.count() == 0


def test_an_invalid_row_fails_the_command_with_its_line(tmp_path, catalog):
    path = tmp_path / "bad.csv"
    path.write_text("External ID,First name,Last name\nP1,Ana,\n", encoding="utf-8")
    with pytest.raises(CommandError, match="1 problem"):
        _run("patients", str(path), "--commit")
    assert Patient.objects.count() == 0


def test_a_column_can_be_mapped_by_hand(tmp_path, catalog):
    path = tmp_path / "other.csv"
    path.write_text("Ref,Given,Family\n7,Ana,Silva\n", encoding="utf-8")
    with pytest.raises(
        CommandError, match="Choose the file's column for: External ID, First name, Last name"
    ):
        _run("patients", str(path))
    out = _run(
        "patients",
        str(path),
        "--map",
        "external_id=Ref",
        "--map",
        "first_name=Given",
        "--map",
        "last_name=Family",
        "--commit",
    )
    assert "1 created" in out and Patient.objects.get().first_name == "Ana"
