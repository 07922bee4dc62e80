"""Two people committing the same file at once: its rows are created once."""

import pytest

from carnet.conftest import make_staff, race
from carnet.core.errors import Conflict
from carnet.core.permissions import AccessLevel
from carnet.imports.models import ImportedRecord
from carnet.imports.services import import_commit
from carnet.people.models import Patient

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]
FILE = "".join(
    ["External ID,First name,Last name\n", *(f"R{n},First{n},Last{n}\n" for n in range(50))]
).encode()


def test_the_same_file_committed_twice_at_once_creates_its_patients_once(catalog):
    owner = make_staff(AccessLevel.FULL_ACCESS)
    results = race(
        4,
        lambda i: import_commit(actor=owner.user, kind="patients", data=FILE, file_name=f"{i}.csv"),
    )
    created = [r.created for r in results if not isinstance(r, Exception)]
    errors = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(e, Conflict) for e in errors), errors
    assert sorted(created, reverse=True)[0] == 50 and sum(created) == 50
    assert Patient.objects.count() == 50 and ImportedRecord.objects.filter(live=True).count() == 50
