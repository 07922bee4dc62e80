import pytest

from carnet.ledger import accounts as acc


def test_cash_accounts_one_per_method_and_gateway_goes_to_card_clearing():
    assert acc.cash("cheque") == "cash:cheque"
    assert acc.cash("card_gateway") == acc.CARD_CLEARING
    assert {acc.describe(acc.cash(m))[0] for m in acc.PAYMENT_METHODS} == {acc.ASSET}
    with pytest.raises(ValueError):
        acc.cash("bitcoin")


def test_revenue_and_tax_codes_take_positive_integer_ids():
    assert acc.revenue(7) == "revenue:7" and acc.describe("revenue:7")[0] == acc.REVENUE
    assert (
        acc.tax_payable(2) == "tax_payable:2" and acc.describe("tax_payable:2")[0] == acc.LIABILITY
    )
    for bad in (0, -1, True, "7", None):
        with pytest.raises(ValueError):
            acc.revenue(bad)


@pytest.mark.parametrize(
    "code", ["", "cash", "cash:bitcoin", "revenue:", "revenue:07", "revenue:0", "tax:1", "ar"]
)
def test_codes_outside_the_chart_are_refused(code):
    with pytest.raises(ValueError):
        acc.describe(code)
