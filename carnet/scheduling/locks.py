"""Row locks for booking, always in this order: practitioner (StaffMember) → appointment.

On PostgreSQL these are SELECT … FOR UPDATE, so two bookings for one practitioner queue and the
second sees the first before its overlap check. On SQLite, BEGIN IMMEDIATE (settings) already
serialises writers, so the same read-then-write is just as safe there.
"""

from carnet.core import statements
from carnet.people.models import StaffMember

from .models import Appointment


def lock_practitioners(pks) -> None:
    list(StaffMember.objects.select_for_update(of=("self",)).filter(pk__in=set(pks)).order_by("pk"))


# What a status change reads with a locked appointment (arrival also reads it through its visits).
JOINS = ("treatment", "practitioner", "location")
# Compiled once per process (core.statements): every status change locks its appointment.
_LOCKED = statements.locked_row(Appointment, *JOINS)


def lock_appointment(pk: int) -> Appointment:
    return _LOCKED.get(pk=pk)
