"""What an online booking will cost the patient (SPEC 5.3, 11): the treatment's price with its
taxes, or, when one of their passes will cover the visit, which one, what is left of it afterwards
and the additional charge. The pass is the one auto-select picks (eligibility.auto_candidates with
online=True), the same rule the booking then applies, so the page never promises another."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from carnet.billing.tax import line_amounts
from carnet.clinic.selectors import clinic_get
from carnet.core.money import Money
from carnet.passes.cycles import cycle_preview
from carnet.passes.models import Pass, Redemption
from carnet.passes.selectors import passes_usable_by

from .eligibility import auto_candidates, visit_value
from .redemption import uncovered_minor


@dataclass(frozen=True)
class Quote:
    price: Money  # the treatment's price with its taxes
    pays: Money  # what the patient pays for this visit
    pass_pk: int | None = None
    sentence: str = ""
    # The pass and what is left of it after this visit, for the desk ("10 Massages — 7 left …").
    cover: str = ""


def price_with_tax_minor(priced, charge_minor: int | None = None) -> int:
    """A line's total: the price of `priced` (a treatment, or a membership's cycle) or a pass's
    additional charge, with the taxes of `priced`."""
    gross = priced.price_minor if charge_minor is None else charge_minor
    amounts = line_amounts(
        gross=gross,
        rates=[t.rate for t in priced.taxes.all()],
        inclusive=priced.tax_inclusive,
        currency=clinic_get().currency,
    )
    return amounts.total


def _left_after(sold: Pass, visit_date: dt.date, taken: int) -> str:
    """What is left of the pass once this visit has its use (`taken`:
    1 before it is reserved, 0 after)."""
    if sold.kind == Pass.Kind.MEMBERSHIP:
        _state, _row, left = cycle_preview(sold, visit_date)
        if left is None:
            return "unlimited uses this cycle"
        left -= taken
        return f"{left} use{'s' if left != 1 else ''} left this cycle after this visit"
    if (
        sold.face_value_minor is not None
    ):  # a value package: `taken` is the amount this visit will draw
        return f"{clinic_get().money(sold.value_left - taken)} left after this visit"
    if sold.remaining is None:
        return "unlimited uses"
    return f"{sold.remaining - taken} left after this visit"


def visit_quote(
    *,
    patient,
    treatment,
    visit_date: dt.date,
    booked: bool = False,
    reserved=None,
    location=None,
    start: dt.datetime | None = None,
    online: bool = True,
) -> Quote:
    """The price of an online booking of `treatment` on `visit_date` for `patient` (None: not known
    yet, the price alone). Before booking: the pass auto-select would use (`online`: the rule of an
    online booking; False: of the desk's). Once `booked`: the use the booking `reserved` (a
    Redemption, or None when no pass covers it)."""
    clinic = clinic_get()
    price = clinic.money(price_with_tax_minor(treatment))
    tax_note = " (tax included)" if treatment.taxes.exists() else ""
    sold, item, taken = None, None, 1
    if booked:
        if reserved is not None:
            sold, item, taken = reserved.sold_pass, reserved.item, 0
    elif patient is not None:
        usable = auto_candidates(
            passes_usable_by(patient),
            patient=patient,
            treatment=treatment,
            visit_date=visit_date,
            online=online,
            location=location,
            start=start,
        )
        sold = usable[0] if usable else None
        item = (
            next((i for i in sold.items.all() if i.treatment_id == treatment.pk), None)
            if sold
            else None
        )
    if sold is None or item is None:
        return Quote(price=price, pays=price, sentence=f"You pay {price}{tax_note} at the clinic.")
    charge_minor = item.additional_charge_minor
    if (
        sold.face_value_minor is not None
    ):  # a value package draws the visit's value, or what is left of it
        if booked:
            held = reserved
        else:
            full = visit_value(item, treatment)
            held = Redemption(full_value_minor=full, drawn_minor=min(full, sold.value_left))
            taken = held.drawn_minor
        charge_minor += uncovered_minor(held, treatment.price_minor)
    pays = clinic.money(price_with_tax_minor(treatment, charge_minor))
    what = (
        "the part its balance does not cover"
        if charge_minor != item.additional_charge_minor
        else "the additional charge"
    )
    charge = "" if not pays.minor else f" ({what}" + (", tax included)" if tax_note else ")")
    return Quote(
        price=price,
        pays=pays,
        pass_pk=sold.pk,
        cover=f"{sold.name} — {_left_after(sold, visit_date, taken)}",
        sentence=(
            f"Covered by {sold.name} — {_left_after(sold, visit_date, taken)}; "
            f"you pay {pays}{charge}."
        ),
    )
