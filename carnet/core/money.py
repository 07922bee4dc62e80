"""Money: integer minor units plus an ISO 4217 currency. Never floats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Sequence

# ISO 4217 minor-unit exponents that differ from the usual 2.
EXPONENTS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
# Active ISO 4217 currency codes (funds, metals and test codes left out).
ISO_4217 = frozenset(
    """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR
FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
UAH UGX USD UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
""".split()
)
# Commas are accepted only as thousands separators ("1,234.50"), never as a decimal comma.
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?", re.ASCII)
# What a person types: ASCII digits, an optional sign and one decimal point.
_TYPED = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)", re.ASCII)
_SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "NZD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
# The largest amount a database column (signed 64-bit minor units) can hold.
MAX_MINOR = 2**63 - 1


def exponent(currency: str) -> int:
    return EXPONENTS.get(currency, 2)


def round_minor(value: Decimal) -> int:
    """A computed amount (a rate times a price) to whole minor units, half up: the rounding taxes
    and commissions share."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def major(minor: int, places: int) -> Decimal:
    """Minor units as a Decimal with the currency's places (1250, 2 -> 12.50): a number, not text,
    for spreadsheets, journal files, charts and form fields."""
    return Decimal(minor).scaleb(-places)


class CurrencyMismatch(ValueError):
    pass


@dataclass(frozen=True, slots=True, order=False)
class Money:
    minor: int
    currency: str

    def __post_init__(self):
        if not isinstance(self.minor, int) or isinstance(self.minor, bool):
            raise TypeError(f"Money needs integer minor units, got {self.minor!r}")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError(f"Not an ISO 4217 currency code: {self.currency!r}")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str | int | Decimal, currency: str) -> Money:
        """'12.5' -> 1250 minor units. Refuses more decimals than the currency has, and floats."""
        if isinstance(text, float):
            raise TypeError("Money.parse takes text, an int or a Decimal, never a float")
        typed = isinstance(text, str)
        text = str(text).strip()
        if typed and not _TYPED.fullmatch(text.replace(",", "")):
            # Decimal() would also take "1e2", "1_000", "١٠٠" and "Infinity": nobody types money so.
            raise ValueError(
                f"{text[:40]!r} is not an amount; type digits with a point for decimals, like 12.50"
            )
        if "," in text:
            if not _GROUPED.fullmatch(text):
                raise ValueError(f"{text!r} is not an amount; use a point for decimals, like 12.50")
            text = text.replace(",", "")
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{text!r} is not an amount") from None
        if not value.is_finite():
            raise ValueError(f"{text!r} is not an amount")
        # Exact integer arithmetic: Decimal.scaleb would round long inputs to 28 digits and
        # silently turn tiny exponents ("1e-999999999") into zero.
        sign, digits, exp = value.as_tuple()
        digits = list(digits)
        shift = exp + exponent(currency)
        while shift < 0 and len(digits) > 1 and digits[-1] == 0:
            digits.pop()
            shift += 1
        coefficient = int("".join(map(str, digits)))
        if coefficient == 0:
            return cls(0, currency)
        if shift < 0:
            raise ValueError(f"{text} has more decimals than {currency} allows")
        if len(digits) + shift > 19 or coefficient * 10**shift > MAX_MINOR:
            raise ValueError(f"{text} is too large an amount")
        minor = coefficient * 10**shift
        return cls(-minor if sign else minor, currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"Cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency} and {other.currency} cannot be combined")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __mul__(self, factor: int) -> Money:
        if not isinstance(factor, int) or isinstance(factor, bool):
            raise TypeError("Money can only be multiplied by an integer; use allocate() to split")
        return Money(self.minor * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def __bool__(self) -> bool:
        return self.minor != 0

    def allocate(self, ratios: int | Sequence[int]) -> list[Money]:
        """Split without losing a cent.

        An int n splits into n equal parts; a sequence splits by those weights. Leftover
        minor units go one each to the *last* parts (SPEC 3.5: "allocate the remainder to
        the last sessions"), so 100.00 over 3 gives 33.33, 33.33, 33.34.
        """
        weights = [1] * ratios if isinstance(ratios, int) else list(ratios)
        if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
            raise ValueError("allocate needs at least one non-negative weight and a positive total")
        total = sum(weights)
        sign = -1 if self.minor < 0 else 1
        amount = abs(self.minor)
        parts = [amount * w // total for w in weights]
        leftover = amount - sum(parts)
        # Only parts whose exact share has a fraction receive a leftover unit, so each part
        # stays within one unit of its exact share; among those, the last ones get it.
        receivers = [i for i, w in enumerate(weights) if amount * w % total]
        for i in receivers[len(receivers) - leftover :] if leftover else []:
            parts[i] += 1
        return [Money(sign * p, self.currency) for p in parts]

    def amount(self) -> Decimal:
        return major(self.minor, exponent(self.currency))

    def format(self) -> str:
        exp = exponent(self.currency)
        text = f"{abs(self.amount()):,.{exp}f}"
        symbol = _SYMBOLS.get(self.currency)
        body = f"{symbol}{text}" if symbol else f"{text} {self.currency}"
        return f"-{body}" if self.minor < 0 else body

    def __str__(self) -> str:
        return self.format()
