from django.db import transaction

from carnet.core.crud import model_save
from carnet.core.permissions import Action, require

from .models import Clinic, Location
from .selectors import clinic_get


def _action_for(model) -> Action:
    # Locations belong to the clinic's settings (Full Access); the catalog is set-up (Admin).
    return Action.CLINIC_SETTINGS if model in (Location, Clinic) else Action.SETUP_MANAGE


@transaction.atomic
def setup_save(*, actor, obj, data: dict):
    """Create (obj unsaved) or update a location, discipline, income category, tax, treatment or product."""
    require(actor, _action_for(type(obj)))
    return model_save(actor=actor, obj=obj, data=data)


@transaction.atomic
def clinic_update(*, actor, data: dict) -> Clinic:
    require(actor, Action.CLINIC_SETTINGS)
    return model_save(actor=actor, obj=clinic_get(), data=data)
