import pytest

from carnet.conftest import make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.scheduling.tests.factories import at, clinic_set


@pytest.fixture
def owner_user(db, catalog):
    """A Full Access user on 1 May 2026, 10:00 in a Toronto clinic (the clock frozen there)."""
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield make_staff(AccessLevel.FULL_ACCESS).user
