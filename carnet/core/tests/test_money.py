from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carnet.core.money import EXPONENTS, ISO_4217, CurrencyMismatch, Money, exponent


def cad(minor: int) -> Money:
    return Money(minor, "CAD")


# ---------------------------------------------------------------- construction and parsing


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.5", "CAD", 1250),
        ("12.50", "CAD", 1250),
        ("12", "CAD", 1200),
        (" 7.05 ", "CAD", 705),
        ("0.01", "CAD", 1),
        ("-0.01", "CAD", -1),
        ("1,234.56", "USD", 123456),
        ("1,234,567", "USD", 123456700),
        (12, "CAD", 1200),
        (Decimal("3.10"), "EUR", 310),
        ("1500", "JPY", 1500),
        ("1.234", "BHD", 1234),
        (
            Decimal("100e-2"),
            "CAD",
            100,
        ),  # a Decimal from code may carry an exponent; typed text may not
        ("1.00000000000000000000000000000000", "CAD", 100),  # trailing zeros are not decimals
        ("-0.00", "CAD", 0),
        ("92233720368547758.07", "CAD", 2**63 - 1),  # the largest amount a column holds
    ],
)
def test_parse_reads_amounts_in_minor_units(text, currency, minor):
    assert Money.parse(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("abc", "CAD"),
        ("", "CAD"),
        ("NaN", "CAD"),
        ("Infinity", "CAD"),
        ("--1", "CAD"),
        ("1.005", "CAD"),  # more decimals than cents
        ("1.5", "JPY"),  # yen has no minor unit
        ("0.0001", "BHD"),
        ("12,50", "CAD"),  # a decimal comma must not become 1,250.00
        ("1,2,3", "CAD"),
        ("1,23.00", "CAD"),
        ("1.0000000000000000000000000000001", "CAD"),  # must not be rounded to 1.00
        ("1e-999999999", "CAD"),  # must not underflow to 0.00
        ("1e999999999", "CAD"),
        ("92233720368547758.08", "CAD"),
        ("-92233720368547758.08", "CAD"),
        # Issue 17: strict parsing, only what a person types as an amount.
        ("1e2", "CAD"),
        ("100e-2", "CAD"),
        ("1_000", "CAD"),
        ("١٠٠", "CAD"),
        ("１００", "CAD"),
        ("true", "CAD"),
        ("0x10", "CAD"),
        ("12.50\x00", "CAD"),
    ],
)
def test_parse_refuses_what_is_not_an_exact_amount(text, currency):
    with pytest.raises(ValueError):
        Money.parse(text, currency)


def test_parse_refuses_floats():
    with pytest.raises(TypeError):
        Money.parse(0.1, "CAD")


@pytest.mark.parametrize("minor", [1.0, 12.5, Decimal("1"), "100", True, None])
def test_money_needs_integer_minor_units(minor):
    with pytest.raises(TypeError):
        Money(minor, "CAD")


@pytest.mark.parametrize("currency", ["cad", "CA", "CADX", "C4D", ""])
def test_money_needs_an_iso_currency_code(currency):
    with pytest.raises(ValueError):
        Money(100, currency)


def test_exponents():
    assert (exponent("CAD"), exponent("JPY"), exponent("KWD")) == (2, 0, 3)
    assert (exponent("UGX"), exponent("XOF"), exponent("JOD"), exponent("CLF")) == (0, 0, 3, 4)
    assert Money.parse("1500", "UGX") == Money(1500, "UGX")
    assert Money(1500, "UGX").format() == "1,500 UGX"
    assert Money(1234, "KWD").amount() == Decimal("1.234")
    assert Money(1234, "CAD").amount() == Decimal("12.34")


def test_iso_4217_list():
    assert {"CAD", "USD", "EUR", "JPY", "GBP", "AUD", "CHF", "KWD"} <= ISO_4217
    assert not {"XYZ", "cad", "XAU", "XTS", "HRK"} & ISO_4217
    assert all(len(code) == 3 and code.isupper() for code in ISO_4217)
    assert set(EXPONENTS) <= ISO_4217


# ---------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(1250, "CAD"), "$12.50"),
        (Money(0, "CAD"), "$0.00"),
        (Money(5, "USD"), "$0.05"),
        (Money(123456789, "USD"), "$1,234,567.89"),
        (Money(-123456, "EUR"), "-€1,234.56"),
        (Money(-5, "GBP"), "-£0.05"),
        (Money(1500, "JPY"), "¥1,500"),
        (Money(1234, "BHD"), "1.234 BHD"),
        (Money(5, "CHF"), "0.05 CHF"),
    ],
)
def test_format(money, text):
    assert money.format() == text
    assert str(money) == text


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from(["CAD", "JPY", "BHD", "CHF"]),
)
def test_format_then_parse_round_trips(minor, currency):
    money = Money(minor, currency)
    text = money.format()
    for symbol in ("$", "€", "£", "¥", currency):
        text = text.replace(symbol, "")
    assert Money.parse(text, currency) == money


# ---------------------------------------------------------------- arithmetic


def test_arithmetic():
    assert cad(1000) + cad(250) == cad(1250)
    assert cad(1000) - cad(1250) == cad(-250)
    assert -cad(300) == cad(-300)
    assert cad(300) * 3 == cad(900)
    assert 3 * cad(300) == cad(900)
    assert Money.zero("CAD") == cad(0)
    assert not Money.zero("CAD") and cad(1)


def test_comparisons():
    assert cad(1) < cad(2) <= cad(2) < cad(3)
    assert cad(3) > cad(2) >= cad(2)
    assert sorted([cad(3), cad(-1), cad(2)]) == [cad(-1), cad(2), cad(3)]


def test_money_is_immutable_and_hashable():
    money = cad(100)
    with pytest.raises(AttributeError):
        money.minor = 5
    assert {cad(100), cad(100), Money(100, "USD")} == {cad(100), Money(100, "USD")}


def test_different_currencies_are_unequal_and_cannot_combine():
    usd = Money(100, "USD")
    assert cad(100) != usd
    for op in (
        lambda: cad(100) + usd,
        lambda: cad(100) - usd,
        lambda: cad(100) < usd,
        lambda: cad(100) <= usd,
        lambda: cad(100) > usd,
        lambda: cad(100) >= usd,
    ):
        with pytest.raises(CurrencyMismatch):
            op()


@pytest.mark.parametrize("other", [100, 1.5, Decimal("1"), None])
def test_money_does_not_add_plain_numbers(other):
    with pytest.raises(TypeError):
        cad(100) + other
    with pytest.raises(TypeError):
        cad(100) - other


@pytest.mark.parametrize("factor", [1.5, Decimal("2"), True, cad(2)])
def test_money_multiplies_only_by_integers(factor):
    with pytest.raises(TypeError):
        cad(100) * factor


# ---------------------------------------------------------------- allocate


def test_allocate_gives_the_remainder_to_the_last_parts():
    assert cad(10000).allocate(3) == [cad(3333), cad(3333), cad(3334)]
    assert cad(10001).allocate(3) == [cad(3333), cad(3334), cad(3334)]
    assert cad(200).allocate(3) == [cad(66), cad(67), cad(67)]


def test_allocate_more_parts_than_units():
    assert cad(2).allocate(5) == [cad(0), cad(0), cad(0), cad(1), cad(1)]
    assert cad(0).allocate(3) == [cad(0)] * 3


def test_allocate_negative_amounts_mirror_positive_ones():
    assert cad(-10000).allocate(3) == [cad(-3333), cad(-3333), cad(-3334)]


def test_allocate_by_weights():
    assert cad(10000).allocate([1, 1, 2]) == [cad(2500), cad(2500), cad(5000)]
    assert cad(100).allocate([1, 2]) == [cad(33), cad(67)]
    # Zero weights get nothing, not even a leftover cent.
    assert cad(101).allocate([1, 1, 0]) == [cad(50), cad(51), cad(0)]
    assert cad(101).allocate([0, 1, 1]) == [cad(0), cad(50), cad(51)]


def test_allocate_keeps_the_currency():
    assert {m.currency for m in Money(1000, "JPY").allocate(3)} == {"JPY"}


@pytest.mark.parametrize("ratios", [0, [], [0, 0], [1, -1], [-1]])
def test_allocate_refuses_impossible_splits(ratios):
    with pytest.raises(ValueError):
        cad(100).allocate(ratios)


amounts = st.integers(min_value=-(10**15), max_value=10**15)


@given(amounts, st.integers(min_value=1, max_value=50))
def test_allocate_equal_parts_preserves_the_sum_and_differs_by_at_most_one(minor, n):
    parts = cad(minor).allocate(n)
    values = [p.minor for p in parts]
    assert len(parts) == n
    assert sum(values) == minor
    assert max(values) - min(values) <= 1
    # The larger magnitudes (the leftover units) sit at the end.
    magnitudes = [abs(v) for v in values]
    assert magnitudes == sorted(magnitudes)
    assert all((v >= 0) == (minor >= 0) or v == 0 for v in values)


@given(
    amounts,
    st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=20).filter(
        lambda ws: sum(ws) > 0
    ),
)
def test_allocate_by_weights_preserves_the_sum_and_stays_within_one_unit_of_exact(minor, weights):
    parts = cad(minor).allocate(weights)
    total = sum(weights)
    assert len(parts) == len(weights)
    assert sum(p.minor for p in parts) == minor
    for part, weight in zip(parts, weights):
        exact = Decimal(minor) * weight / total
        assert abs(part.minor - exact) < 1
        if weight == 0:
            assert part.minor == 0


@given(amounts, st.integers(min_value=1, max_value=30))
def test_allocate_negative_is_the_mirror_of_positive(minor, n):
    assert [-p for p in cad(minor).allocate(n)] == cad(-minor).allocate(n)
