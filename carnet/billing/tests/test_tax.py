from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from carnet.billing.tax import line_amounts

RATES = st.lists(st.decimals(min_value=0, max_value=30, places=3), max_size=3)


def test_exclusive_taxes_round_half_up_per_tax():
    amounts = line_amounts(gross=9999, rates=[Decimal("13"), Decimal("5")], inclusive=False)
    assert amounts.taxes == [1300, 500] and amounts.net == 9999 and amounts.total == 9999 + 1800


def test_inclusive_price_is_the_total_and_parts_add_up():
    amounts = line_amounts(gross=11300, rates=[Decimal("13")], inclusive=True)
    assert (amounts.net, amounts.taxes, amounts.total) == (10000, [1300], 11300)
    split = line_amounts(gross=10000, rates=[Decimal("5"), Decimal("9.975")], inclusive=True)
    assert split.net + sum(split.taxes) == 10000


def test_no_taxes_or_zero_price():
    assert line_amounts(gross=0, rates=[Decimal("13")], inclusive=False).total == 0
    assert line_amounts(gross=500, rates=[], inclusive=True).net == 500


@given(gross=st.integers(min_value=0, max_value=10**9), rates=RATES, inclusive=st.booleans())
def test_never_loses_a_cent(gross, rates, inclusive):
    amounts = line_amounts(gross=gross, rates=rates, inclusive=inclusive)
    assert amounts.net + sum(amounts.taxes) == amounts.total
    assert all(t >= 0 for t in amounts.taxes)
    assert amounts.total == gross if inclusive else amounts.net == gross
