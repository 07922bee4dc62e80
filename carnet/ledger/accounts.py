"""The chart of accounts (SPEC 3.5) as codes. Accounts are rows created on first use.

Pure Python on purpose: other apps import these codes without touching the database.
"""

from __future__ import annotations

ASSET, LIABILITY, REVENUE, EXPENSE, EQUITY = "asset", "liability", "revenue", "expense", "equity"
TYPES = (ASSET, LIABILITY, REVENUE, EXPENSE, EQUITY)
# Assets and expenses grow with debits; the others grow with credits.
DEBIT_NORMAL = frozenset({ASSET, EXPENSE})

CARD_CLEARING = "card_clearing"  # asset
AR = "accounts_receivable"  # asset, per patient
PATIENT_CREDIT = "patient_credit"  # liability, per patient
GIFT_CARD_LIABILITY = "gift_card_liability"
DEFERRED_PACKAGES = "deferred_revenue_packages"
DEFERRED_MEMBERSHIPS = "deferred_revenue_memberships"
BREAKAGE = "breakage_revenue"  # revenue
# Breakage recognised ahead of expiry, in proportion to redemptions (ASC 606-10-55-48): a contra
# account to deferred revenue – packages (a debit balance), so that account keeps
# the unredeemed value.
EXPECTED_BREAKAGE = "deferred_revenue_packages_expected_breakage"
# Balances brought in from the clinic's previous system (SPEC 15) are posted against this.
OPENING_BALANCE_EQUITY = "opening_balance_equity"

# Postings to these accounts must name the patient (the A/R and credit sub-ledgers).
PER_PATIENT = frozenset({AR, PATIENT_CREDIT})

PAYMENT_METHODS = ("cash", "cheque", "debit", "card_manual", "etransfer", "other")
GATEWAY_METHOD = "card_gateway"  # paid through the gateway: settles via card clearing
GIFT_CARD_METHOD = "gift_card"  # paid from a gift card: the "cash" side is the gift-card liability

_FIXED = {
    CARD_CLEARING: (ASSET, "Card clearing"),
    AR: (ASSET, "Accounts receivable"),
    PATIENT_CREDIT: (LIABILITY, "Patient credit"),
    GIFT_CARD_LIABILITY: (LIABILITY, "Gift-card liability"),
    DEFERRED_PACKAGES: (LIABILITY, "Deferred revenue – packages"),
    DEFERRED_MEMBERSHIPS: (LIABILITY, "Deferred revenue – memberships"),
    BREAKAGE: (REVENUE, "Breakage revenue"),
    EXPECTED_BREAKAGE: (
        ASSET,
        "Deferred revenue – packages: expected breakage recognised (contra)",
    ),
    OPENING_BALANCE_EQUITY: (EQUITY, "Opening balance equity"),
}


def _positive_id(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive integer id, got {value!r}")
    return value


def cash(method: str) -> str:
    """The cash/undeposited-funds account for a payment method."""
    if method == GATEWAY_METHOD:
        return CARD_CLEARING
    if method == GIFT_CARD_METHOD:
        return GIFT_CARD_LIABILITY
    if method not in PAYMENT_METHODS:
        raise ValueError(
            f"Unknown payment method {method!r}; expected one of {', '.join(PAYMENT_METHODS)}"
        )
    return f"cash:{method}"


def revenue(income_category_id: int) -> str:
    return f"revenue:{_positive_id(income_category_id, 'income_category_id')}"


def tax_payable(tax_id: int) -> str:
    return f"tax_payable:{_positive_id(tax_id, 'tax_id')}"


def describe(code: str) -> tuple[str, str]:
    """(type, name) of an account code; ValueError for a code outside the chart."""
    if code in _FIXED:
        return _FIXED[code]
    prefix, _, rest = str(code).partition(":")
    if prefix == "cash" and rest in PAYMENT_METHODS:
        return ASSET, f"Cash – {rest.replace('_', ' ')}"
    # Ids must be written canonically ("revenue:7", not "revenue:07") so one id is one account.
    if rest.isdigit() and rest == str(int(rest)) and int(rest) > 0:
        if prefix == "revenue":
            return REVENUE, f"Revenue – income category {rest}"
        if prefix == "tax_payable":
            return LIABILITY, f"Sales tax payable – tax {rest}"
    raise ValueError(f"{code!r} is not an account in the chart of accounts")


def normal_sign(account_type: str) -> int:
    """+1 when the account's balance is debits - credits, -1 when credits - debits."""
    return 1 if account_type in DEBIT_NORMAL else -1
