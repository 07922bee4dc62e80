"""Form pieces shared by pages: money typed as 85.00, stored as 8500 minor units."""

from django import forms

from .limits import FIRST_YEAR, LAST_YEAR
from .money import Money, exponent, major


class MoneyField(forms.CharField):
    def __init__(self, *, currency: str, **kwargs):
        self.currency = currency
        kwargs.setdefault(
            "widget", forms.TextInput(attrs={"inputmode": "decimal", "class": "money"})
        )
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            places = exponent(self.currency)
            return f"{major(value, places):.{places}f}"
        return value

    def to_python(self, value):
        value = super().to_python(value)
        if value in ("", None):
            return None
        try:
            money = Money.parse(
                value.replace("$", "").replace("€", "").replace("£", ""), self.currency
            )
        except ValueError as exc:
            raise forms.ValidationError(f"Enter an amount like 85.00 ({exc}).") from None
        if money.minor < 0:
            raise forms.ValidationError("Enter an amount of zero or more.")
        return money.minor


class DayField(forms.DateField):
    """A day within the years Carnet accepts (core.limits): 0001 or 9999 would overflow once a day
    or a time zone is added to it (an expiry's next day, a period's end), a 500 later."""

    def validate(self, value):

        super().validate(value)
        if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise forms.ValidationError(f"Choose a date between {FIRST_YEAR} and {LAST_YEAR}.")
