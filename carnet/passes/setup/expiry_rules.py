"""Pass expiry: the default expiry date from a purchase date, and the clinic's rule (SPEC 9.10).

A pass covers visits on or before its `expires_on`. The clinic may forbid expiry (passes never
expire) or require a minimum: a pass may expire no sooner than `pass_expiry_minimum_days` after
its purchase date. The template form, the sale and the per-package expiry edit all call
`expiry_allowed()`, so the rule is enforced in one place.

On top of the rule, a jurisdiction **preset** (issue 23) names the law the clinic follows and
decides the rule for it: Quebec (CPA s.187.3: no expiry, except unlimited use over a fixed
period; a balance under 5.00 refundable on request), Ontario (no expiry), US federal (gift cards
5 years: no expiry sooner than 5 years after purchase); "none" keeps the clinic's own rule. A
sold pass keeps the terms of its sale (passes.terms): the preset, the rule, the minimum and the
disclosure line printed on its receipt and shown in the portal (a transfer keeps them). An
expiry edit must meet both those terms and the clinic's rule today: it never worsens what the
patient was sold, and never goes against the clinic's law now.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from carnet.clinic.models import Clinic
from carnet.clinic.selectors import clinic_get
from carnet.core.clock import add_months
from carnet.core.errors import ValidationFailed

Rule = Clinic.PassExpiryRule
Preset = Clinic.PassExpiryPreset
FIVE_YEARS_DAYS = 1826  # 5 × 365 + the leap day every five years hold (see shortest_duration_days)
SMALL_BALANCE_MINOR = 500  # Quebec: a balance under 5.00 is refunded on request


@dataclass(frozen=True)
class ExpiryTerms:
    preset: str
    rule: str
    minimum_days: int
    disclosure: str

    @property
    def small_balance_refund(self) -> bool:
        return self.preset == Preset.QUEBEC


def _disclosure(
    clinic: Clinic, preset: str, rule: str, minimum_days: int, *, unlimited_term: bool
) -> str:
    small = clinic.money(SMALL_BALANCE_MINOR)
    if preset == Preset.QUEBEC:
        what = (
            "Unlimited use over a fixed period: it ends with its term."
            if unlimited_term
            else "This pass does not expire."
        )
        return (
            f"Quebec Consumer Protection Act (s. 187.3): {what} A remaining balance under {small} "
            "is refunded on request."
        )
    if preset == Preset.ONTARIO:
        return "Ontario: prepaid passes and gift cards sold by this clinic do not expire."
    if preset == Preset.US_FEDERAL:
        return (
            "US federal law (CARD Act): gift cards and prepaid passes expire no sooner than 5 "
            "years after purchase."
        )
    if rule == Rule.FORBIDDEN:
        return "Passes sold by this clinic do not expire."
    if rule == Rule.MINIMUM and minimum_days:
        return (
            f"Passes sold by this clinic expire no sooner than {minimum_days} days after purchase."
        )
    return ""


def expiry_terms(clinic: Clinic | None = None, *, unlimited_term: bool = False) -> ExpiryTerms:
    """The clinic's expiry terms now: its preset's rule, or its own rule when the preset is none.
    `unlimited_term`: a membership with unlimited uses over a fixed term (Quebec lets it end)."""
    clinic = clinic or clinic_get()
    preset = clinic.pass_expiry_preset or Preset.NONE
    rule, minimum = {
        Preset.QUEBEC: (Rule.ALLOWED if unlimited_term else Rule.FORBIDDEN, 0),
        Preset.ONTARIO: (Rule.FORBIDDEN, 0),
        Preset.US_FEDERAL: (Rule.MINIMUM, FIVE_YEARS_DAYS),
    }.get(preset, (clinic.pass_expiry_rule, clinic.pass_expiry_minimum_days))
    minimum = minimum if rule == Rule.MINIMUM else 0
    return ExpiryTerms(
        preset=preset,
        rule=rule,
        minimum_days=minimum,
        disclosure=_disclosure(clinic, preset, rule, minimum, unlimited_term=unlimited_term),
    )


def pass_expiry_terms(sold, clinic: Clinic | None = None) -> ExpiryTerms:
    """The expiry terms a sold pass keeps (passes.terms copies them at its sale); one sold
    before terms were kept follows the clinic's rule."""
    if not sold.expiry_rule:
        return expiry_terms(clinic)
    return ExpiryTerms(
        preset=sold.expiry_preset or Preset.NONE,
        rule=sold.expiry_rule,
        minimum_days=sold.expiry_minimum_days,
        disclosure=sold.expiry_disclosure,
    )


def expiry_date(*, purchase_date: dt.date, value: int | None, unit: str) -> dt.date | None:
    """The default expiry of a pass bought on `purchase_date`: `value` `unit`s later; None = never.

    Days and weeks add plainly; months and years keep the day of the month, clamped to the month's
    end (a pass bought 31 January for one month expires 28 February, or 29 in a leap year)."""
    if value is None:
        return None
    if unit == "days":
        return purchase_date + dt.timedelta(days=value)
    if unit == "weeks":
        return purchase_date + dt.timedelta(weeks=value)
    if unit == "months":
        return add_months(purchase_date, value)
    if unit == "years":
        return add_months(purchase_date, 12 * value)
    raise ValidationFailed(
        f"“{unit}” is not an expiry unit; use days, weeks, months or years.",
        fields={"expiry_unit": ["Use days, weeks, months or years."]},
    )


def shortest_duration_days(*, value: int, unit: str) -> int:
    """The fewest days `value` `unit`s can last, whatever the purchase date.

    Months and years vary with the start (1 month is 28 to 31 days; 12 months 365 or 366), so a
    template's expiry is checked against the clinic's minimum at its shortest: every start date of
    a four-year leap cycle is tried, which covers every month length and 29 February."""
    if unit in ("days", "weeks"):
        return value * (7 if unit == "weeks" else 1)
    start = dt.date(2027, 1, 1)
    return min(
        (expiry_date(purchase_date=d, value=value, unit=unit) - d).days
        for d in (start + dt.timedelta(days=i) for i in range(4 * 366))
    )


_PRESET_WHY = {
    Preset.QUEBEC: " (Quebec preset)",
    Preset.ONTARIO: " (Ontario preset)",
    Preset.US_FEDERAL: " (US federal preset)",
}


def _minimum_message(terms: ExpiryTerms) -> str:
    return (
        f"The clinic's expiry rule{_PRESET_WHY.get(terms.preset, '')} requires a pass to last at "
        f"least {terms.minimum_days} days from its purchase date."
    )


def forbidden_message(terms: ExpiryTerms | None = None) -> str:
    why = _PRESET_WHY.get(terms.preset, "") if terms else ""
    return f"The clinic's expiry rule{why} forbids expiry: passes never expire. Clear the expiry."


def expiry_allowed(
    *,
    purchase_date: dt.date,
    expires_on: dt.date | None,
    clinic: Clinic | None = None,
    field: str = "expires_on",
    terms: ExpiryTerms | None = None,
) -> None:
    """Raise ValidationFailed (naming `field`) if the expiry terms (a sold pass's own, else the
    clinic's now) do not allow this expiry date."""
    if expires_on is None:
        return
    terms = terms or expiry_terms(clinic)
    if expires_on < purchase_date:
        raise ValidationFailed(
            "A pass cannot expire before its purchase date.",
            fields={field: ["Must be on or after the purchase date."]},
        )
    if terms.rule == Rule.FORBIDDEN:
        raise ValidationFailed(
            forbidden_message(terms), fields={field: ["The clinic's rule forbids expiry."]}
        )
    if terms.rule == Rule.MINIMUM and (expires_on - purchase_date).days < terms.minimum_days:
        earliest = purchase_date + dt.timedelta(days=terms.minimum_days)
        raise ValidationFailed(
            f"{_minimum_message(terms)} Choose {earliest.isoformat()} or later, or no expiry.",
            fields={field: [_minimum_message(terms)]},
        )


def template_expiry_allowed(*, value: int | None, unit: str, clinic: Clinic | None = None) -> None:
    """A template's default expiry against the clinic's terms now, at its shortest (see above)."""
    if value is None:
        return
    terms = expiry_terms(clinic)
    if terms.rule == Rule.FORBIDDEN:
        raise ValidationFailed(
            forbidden_message(terms), fields={"expiry_value": ["The clinic's rule forbids expiry."]}
        )
    if terms.rule == Rule.MINIMUM:
        shortest = shortest_duration_days(value=value, unit=unit)
        if shortest < terms.minimum_days:
            raise ValidationFailed(
                f"{_minimum_message(terms)} {value} {unit} can be as short as {shortest} days; "
                "choose a longer expiry, or none.",
                fields={"expiry_value": [_minimum_message(terms)]},
            )


def small_balance_offer(sold, balance_minor: int) -> int | None:
    """Quebec (CPA s.187.3): a pass sold under the preset with a balance under 5.00 left has that
    balance refunded on request; the refund form offers it. None when it does not apply."""
    if pass_expiry_terms(sold).small_balance_refund and 0 < balance_minor < SMALL_BALANCE_MINOR:
        return balance_minor
    return None
