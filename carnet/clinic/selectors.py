import datetime as dt

from django.db.models import QuerySet

from carnet.core import clock, statements
from carnet.core.errors import NotFound

from .models import Clinic, Discipline, IncomeCategory, Location, Product, Tax, Treatment

# The set-up objects that share one list/create/edit shape in the API and pages.
SETUP_MODELS = {
    "locations": Location,
    "disciplines": Discipline,
    "income-categories": IncomeCategory,
    "taxes": Tax,
    "treatments": Treatment,
    "products": Product,
}


# Compiled once per process (core.statements): nearly every request reads the clinic.
_CLINIC = statements.select(lambda: Clinic.objects.filter(pk=1))


def clinic_get() -> Clinic:
    clinic = _CLINIC.get_or_none()
    if clinic is None:
        clinic = Clinic.objects.create(pk=1, name="My clinic")
    return clinic


def clinic_today(clinic: Clinic | None = None) -> dt.date:
    """Today in the clinic's time zone (SPEC: the clinic's time zone decides what "today" is)."""
    return clock.today((clinic or clinic_get()).time_zone)


def money_text(minor: int) -> str:
    """An amount in the clinic's currency as sentences show it: 1250 -> "$12.50" (Money.format)."""
    return clinic_get().money(minor).format()


_currency: str | None = None


# The models whose rows fix the currency (invoices, payments, gift cards): billing and gift cards
# build on clinic, so they register them when they load (their apps.py).
_MONEY_MODELS: list = []


def money_model_register(*models) -> None:
    _MONEY_MODELS.extend(models)


def money_recorded() -> bool:
    """Whether any invoice, payment or gift card exists: from then on the clinic's currency is
    fixed, since every stored amount is in minor units of it
    (100.00 would silently become ¥10,000)."""
    return any(model.objects.exists() for model in _MONEY_MODELS)


def clinic_currency() -> str:
    """The clinic's currency. Kept for the life of the process only once it can no longer change
    (money recorded), so a worker started before a currency change never works in the old one."""
    global _currency
    if _currency is not None:
        return _currency
    currency = clinic_get().currency
    if money_recorded():
        _currency = currency
    return currency


def clinic_currency_kept() -> str | None:
    """The currency this process keeps for its life (once money is recorded), else None."""
    return _currency


def forget_clinic_currency(**kwargs) -> None:
    global _currency
    _currency = None


def setup_list(kind: str) -> QuerySet:
    model = SETUP_MODELS[kind]
    qs = model.objects.all()
    if model in (Treatment, Product):
        qs = qs.select_related("income_category").prefetch_related("taxes")
    if model is Treatment:
        qs = qs.select_related("discipline")
    return qs


def setup_get(kind: str, pk: int):
    obj = setup_list(kind).filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"No {SETUP_MODELS[kind]._meta.verbose_name} with id {pk}.")
    return obj


def locations_active() -> QuerySet:
    return Location.objects.filter(is_active=True).order_by("name")


def location_default(*, staff=None) -> Location | None:
    """Where a desk sale happens unless the desk says otherwise: the staff member's only location,
    else the clinic's only active location (None when it is a real choice)."""
    if staff is not None:
        mine = [loc for loc in staff.locations.all() if loc.is_active]
        if len(mine) == 1:
            return mine[0]
    active = list(locations_active()[:2])
    return active[0] if len(active) == 1 else None
