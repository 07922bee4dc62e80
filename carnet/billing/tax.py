"""Per-line tax, rounded per line, never losing a cent (SPEC 3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from carnet.core.money import Money, round_minor


@dataclass(frozen=True)
class LineAmounts:
    net: int
    taxes: list[int]  # one amount per rate, same order
    total: int


def line_amounts(
    *, gross: int, rates: list[Decimal], inclusive: bool, currency: str = "CAD"
) -> LineAmounts:
    """Split a line's price (after discount) into net, each tax, and total.

    Exclusive: each tax is rate × price, rounded half-up; total = price + taxes.
    Inclusive: the price is the total; net = price ÷ (1 + Σrates) rounded, and the tax part
    (price − net) is split over the taxes by their rates with Money.allocate, so the parts
    always add back to the price.
    """
    if not rates or gross == 0:
        return LineAmounts(net=gross, taxes=[0] * len(rates), total=gross)
    if not inclusive:
        taxes = [round_minor(Decimal(gross) * rate / 100) for rate in rates]
        return LineAmounts(net=gross, taxes=taxes, total=gross + sum(taxes))
    total_rate = sum(rates, Decimal(0))
    net = round_minor(Decimal(gross) * 100 / (100 + total_rate))
    weights = [int(rate * 1000) for rate in rates]
    if sum(weights) == 0:
        return LineAmounts(net=gross, taxes=[0] * len(rates), total=gross)
    taxes = [m.minor for m in Money(gross - net, currency).allocate(weights)]
    return LineAmounts(net=net, taxes=taxes, total=gross)
