"""{{ amount_minor|money }}: an amount in the clinic's currency. A builtin (settings.TEMPLATES), so
every template has it; it lives in clinic because the currency is the clinic's (core's own tags
know no app)."""

from django import template

from carnet.clinic.selectors import clinic_currency
from carnet.core.money import Money

register = template.Library()


@register.filter
def money(minor) -> str:
    if minor in (None, ""):
        return ""
    return Money(int(minor), clinic_currency()).format()
