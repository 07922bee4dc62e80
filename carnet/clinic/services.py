from django.db import transaction

from carnet.core.crud import model_save
from carnet.core.errors import Conflict
from carnet.core.permissions import Action, require

from .models import Clinic, Location
from .selectors import clinic_get, money_recorded


def _action_for(model) -> Action:
    # Locations belong to the clinic's settings (Full Access); the catalog is set-up (Admin).
    return Action.CLINIC_SETTINGS if model in (Location, Clinic) else Action.SETUP_MANAGE


@transaction.atomic
def setup_save(*, actor, obj, data: dict):
    """Create (obj unsaved) or update a location, discipline, income category, tax,
    treatment or product.

    Taxes may be given as `taxes` (instances or ids) or `tax_ids`; errors name the key given."""
    require(actor, _action_for(type(obj)))
    data = dict(data)
    aliases = None
    if "tax_ids" in data:  # the API's name for a priced item's taxes
        data["taxes"] = data.pop("tax_ids")
        aliases = {"taxes": "tax_ids"}
    return model_save(actor=actor, obj=obj, data=data, aliases=aliases)


@transaction.atomic
def clinic_update(*, actor, data: dict) -> Clinic:
    require(actor, Action.CLINIC_SETTINGS)
    clinic = clinic_get()
    wanted = data.get("currency")
    if wanted is not None and wanted != clinic.currency and money_recorded():
        raise Conflict(
            f"The currency stays {clinic.currency}: invoices, payments or gift cards are already "
            f"recorded in it, and their amounts would change meaning in {wanted}.",
            code="currency_locked",
        )
    return model_save(actor=actor, obj=clinic, data=data)
