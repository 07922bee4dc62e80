"""Who may book and arrive where (SPEC section 8): everywhere with SCHEDULE_ALL_LOCATIONS, at
their own locations with SCHEDULE_LOCATION, and on their own schedule with SCHEDULE_OWN."""

from __future__ import annotations

from django.db.models import Q

from carnet.core.errors import NotAllowed
from carnet.core.permissions import Action, can, require, staff_of


def schedule_require(actor, *, practitioner_id: int, location_id: int) -> None:
    """Raise a 403 with a sentence unless `actor` may work on this practitioner's schedule here."""
    require(actor, Action.SCHEDULE_OWN)  # patients, anonymous and No Access stop here
    staff = staff_of(actor)
    if can(actor, Action.SCHEDULE_ALL_LOCATIONS) or staff.pk == practitioner_id:
        return
    if can(actor, Action.SCHEDULE_LOCATION):
        if staff.locations.filter(pk=location_id).exists():
            return
        raise NotAllowed(
            "You can book and arrive only at your own locations, and this appointment is at "
            "another one. Ask someone with Full Access to add the location to your profile."
        )
    raise NotAllowed(
        "You can book and arrive only on your own schedule (Practitioner (Limited) access). "
        "Ask the front desk, or ask someone with Full Access to change your access level."
    )


def schedule_scope(actor) -> Q:
    """A filter on Appointment for what `actor` may see in lists."""
    require(actor, Action.SCHEDULE_OWN)
    staff = staff_of(actor)
    if can(actor, Action.SCHEDULE_ALL_LOCATIONS):
        return Q()
    own = Q(practitioner_id=staff.pk)
    if can(actor, Action.SCHEDULE_LOCATION):
        return own | Q(location__in=staff.locations.all())
    return own
