"""The columns each kind of import reads, the header names they are known by (Carnet's template's,
and the names other systems' exports use, Jane's among them), and the downloadable templates."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from carnet.core.errors import ValidationFailed

from .models import Kind


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    required: bool = False
    aliases: tuple[str, ...] = ()
    example: str = ""
    help: str = ""


PATIENT_REF = (
    "patient id",
    "patient number",
    "client id",
    "patient external id",
    "patient_id",
    "patient guid",
)
# Exports that name the patient only by name (Jane's Package & Membership sales):
# "Ana Silva" or "Silva, Ana".
PATIENT_NAME = ("patient name", "patient", "client", "client name", "customer", "customer name")
# Sales exports name the patient one way or the other.
PATIENT_COLUMNS = (
    Column(
        "patient_external_id",
        "Patient external ID",
        False,
        PATIENT_REF,
        "P-1001",
        "The patient's External ID from the patients import (or give Patient name instead).",
    ),
    Column(
        "patient_name",
        "Patient name",
        False,
        PATIENT_NAME,
        "",
        "When the file has no patient ID: “First Last” or “Last, First” of exactly one "
        "patient in Carnet.",
    ),
)
# A combined sales export (Jane's Package & Membership sales) says which each row is.
ROW_TYPE = Column(
    "row_type",
    "Type",
    False,
    ("type", "item type", "pass type", "sale type", "purchase type"),
    "",
    "In a file of packages and memberships together: the rows of the other kind are left for its "
    "own import (also without this column, when the name is one of the other kind's templates).",
)
# At least one column of each group must be mapped (the rows then need one of them filled).
ONE_OF: dict[str, list[tuple[str, ...]]] = {
    # A package counts uses (Remaining uses) or holds a value (Value left, issue 23).
    "packages": [("patient_external_id", "patient_name"), ("remaining", "value_left")],
    "memberships": [("patient_external_id", "patient_name")],
}

COLUMNS: dict[str, list[Column]] = {
    Kind.PATIENTS: [
        Column(
            "external_id",
            "External ID",
            True,
            ("id", "patient id", "patient number", "client id", "chart number"),
            "P-1001",
            "The patient's id in your previous system; keeps a second run from creating them "
            "twice.",
        ),
        Column(
            "first_name", "First name", True, ("first", "given name", "legal first name"), "Ana"
        ),
        Column("last_name", "Last name", True, ("last", "surname", "family name"), "Silva"),
        Column(
            "preferred_name",
            "Preferred name",
            False,
            ("preferred", "nickname", "preferred first name"),
            "Annie",
        ),
        Column("email", "Email", False, ("email address", "e-mail"), "ana@example.com"),
        Column(
            "phone",
            "Phone",
            False,
            ("mobile phone", "mobile", "cell phone", "cell", "phone number", "primary phone"),
            "416-555-0101",
        ),
        Column(
            "other_phone",
            "Other phone",
            False,
            ("home phone", "work phone", "other phone", "phone 2"),
            "",
            "Used when Phone is blank (Jane's Home Phone, Work Phone).",
        ),
        Column(
            "date_of_birth",
            "Date of birth",
            False,
            ("birth date", "birthdate", "dob", "birthday"),
            "1984-03-21",
        ),
        Column(
            "address",
            "Address",
            False,
            ("street address", "address 1", "address line 1", "street"),
            "12 Queen St W",
        ),
        Column(
            "address_2",
            "Address line 2",
            False,
            ("address 2", "address line 2", "unit", "suite"),
            "",
        ),
        Column("city", "City", False, ("town", "municipality"), "Toronto"),
        Column(
            "province",
            "Province",
            False,
            ("state", "region", "province state", "state province"),
            "ON",
        ),
        Column(
            "postal_code",
            "Postal code",
            False,
            ("postal", "zip", "zip code", "postcode", "post code"),
            "M5H 2N2",
        ),
        Column(
            "country",
            "Country",
            False,
            (),
            "",
            "Address, line 2, city, province, postal code and country are kept together as "
            "the address.",
        ),
        Column("notes", "Notes", False, ("patient notes", "note", "alert"), ""),
        Column(
            "guardian_external_id",
            "Guardian external ID",
            False,
            ("guardian id", "guardian"),
            "",
            "The external ID of this patient's guardian (another row of this file or an "
            "earlier import).",
        ),
        Column("spouse_external_id", "Spouse external ID", False, ("spouse id", "spouse"), ""),
    ],
    Kind.PACKAGES: [
        Column(
            "external_id",
            "External ID",
            False,
            (
                "id",
                "purchase id",
                "sale id",
                "package id",
                "invoice number",
                "invoice",
                "invoice #",
                "invoice no",
            ),
            "S-501",
            "Optional: without it a row is recognised by its patient, package, "
            "purchase date and uses.",
        ),
        *PATIENT_COLUMNS,
        Column(
            "template",
            "Package",
            True,
            ("package", "package name", "item", "item name", "template", "product", "description"),
            "10 massages",
            "A package template's name in Carnet (Settings → Packages), or a package described "
            "by this row: then give its Eligible treatments too.",
        ),
        ROW_TYPE,
        Column(
            "treatments",
            "Eligible treatments",
            False,
            ("treatments", "eligible items", "covers", "services"),
            "",
            "Only for a package not in Carnet: the treatments it covers, by name, "
            "separated by “;”.",
        ),
        Column(
            "purchase_date",
            "Purchase date",
            True,
            ("purchased", "purchase date", "sale date", "date purchased", "date"),
            "2026-09-14",
        ),
        Column(
            "price",
            "Price",
            False,
            ("price", "total", "amount", "sale price"),
            "900.00",
            "What the patient paid in all; blank when unknown (then give the remaining value).",
        ),
        Column(
            "amount_paid",
            "Amount paid",
            False,
            ("paid", "amount paid", "collected", "total paid", "payments"),
            "900.00",
            "Blank: paid in full. Less than the price: the rest is owed on an invoice, "
            "and the package covers visits once that invoice is paid.",
        ),
        Column(
            "quantity",
            "Quantity",
            False,
            (
                "uses",
                "sessions",
                "number of uses",
                "total uses",
                "qty",
                "total sessions",
                "number of sessions",
            ),
            "10",
            "Blank: remaining + redeemed uses, or the template's quantity.",
        ),
        Column(
            "redeemed",
            "Redeemed uses",
            False,
            (
                "redeemed",
                "redeemed sessions",
                "used",
                "used sessions",
                "sessions used",
                "uses redeemed",
            ),
            "",
            "Only when the quantity is not given.",
        ),
        Column(
            "remaining",
            "Remaining uses",
            False,
            (
                "remaining",
                "uses remaining",
                "sessions remaining",
                "remaining uses",
                "remaining sessions",
                "left",
            ),
            "4",
            "For a package that counts uses (required for those).",
        ),
        Column(
            "value_left",
            "Value left",
            False,
            ("value left", "balance left", "value remaining", "remaining balance"),
            "",
            "For a package that holds a value (required for those): the value of treatments it "
            "still covers, e.g. 350.00 of 1,000.00.",
        ),
        Column(
            "value_held",
            "Value held",
            False,
            ("value held", "face value"),
            "",
            "For a package that holds a value: what it held when bought (blank: its template's).",
        ),
        Column(
            "balance_owing",
            "Balance owing",
            False,
            (
                "balance",
                "balance owing",
                "outstanding",
                "amount owing",
                "owing",
                "outstanding balance",
                "balance due",
            ),
            "",
            "Instead of Amount paid: what the patient still owes on it.",
        ),
        Column(
            "remaining_value",
            "Remaining value",
            False,
            ("remaining value", "unused value"),
            "",
            "Only when the price is unknown: the value of the remaining uses.",
        ),
        Column(
            "expiry",
            "Expiry date",
            False,
            ("expires", "expiry", "expiration date", "expires on", "expiry date", "expiration"),
            "2027-09-14",
            "Blank: never expires.",
        ),
    ],
    Kind.MEMBERSHIPS: [
        Column(
            "external_id",
            "External ID",
            False,
            ("id", "membership id", "sale id", "purchase id"),
            "M-77",
            "Optional: without it a row is recognised by its patient, membership and start date.",
        ),
        *PATIENT_COLUMNS,
        Column(
            "template",
            "Membership",
            True,
            ("membership", "membership name", "plan", "item", "item name", "template"),
            "Monthly wellness",
            "A membership template's name in Carnet (Settings → Packages & Memberships).",
        ),
        ROW_TYPE,
        Column(
            "start_date",
            "Start date",
            True,
            ("start date", "started", "start", "member since", "purchase date", "date"),
            "2026-01-15",
        ),
        Column(
            "next_cycle_date",
            "Next cycle date",
            True,
            (
                "next cycle",
                "next billing date",
                "next bill date",
                "next payment date",
                "next charge date",
                "renewal date",
                "next renewal",
                "next invoice date",
            ),
            "2026-06-15",
            "When Carnet invoices the next cycle; the cycle before it was paid in your "
            "previous system.",
        ),
        Column(
            "uses_this_cycle",
            "Uses this cycle",
            False,
            (
                "used this cycle",
                "uses this cycle",
                "sessions used this cycle",
                "visits this cycle",
                "redeemed this cycle",
            ),
            "1",
            "Uses already taken in the current cycle (blank: none).",
        ),
        Column(
            "cycle_price",
            "Cycle price",
            False,
            ("price", "amount", "cycle price", "recurring amount", "price per cycle", "fee"),
            "60.00",
            "What the patient pays per cycle, tax included, if not the template's price.",
        ),
        Column(
            "payment",
            "Payment",
            False,
            (
                "payment mode",
                "payment method",
                "billing",
                "auto pay",
                "autopay",
                "auto renew",
                "automatic payment",
            ),
            "manual",
            "manual or automatic (charged to a card on file; it waits until the patient's "
            "card is added).",
        ),
    ],
    Kind.CREDIT: [
        Column("patient_external_id", "Patient external ID", True, PATIENT_REF, "P-1001"),
        Column(
            "amount",
            "Credit",
            True,
            ("credit", "account credit", "credit balance", "balance", "amount"),
            "25.00",
        ),
    ],
    Kind.GIFT_CARDS: [
        Column(
            "code",
            "Code",
            True,
            ("gift card", "gift card code", "card number", "number", "code"),
            "GIFT2026A",
        ),
        Column(
            "balance",
            "Balance",
            True,
            ("balance", "remaining", "amount", "remaining balance"),
            "50.00",
        ),
        Column(
            "purchaser_external_id",
            "Purchaser external ID",
            False,
            ("purchaser", "purchaser id", "bought by"),
            "P-1001",
        ),
        Column(
            "recipient_name", "Recipient", False, ("recipient", "recipient name", "to"), "Sam Lee"
        ),
    ],
}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", (text or "").lower()).strip()


def kind_checked(kind: str) -> str:
    if kind not in COLUMNS:
        raise ValidationFailed(
            f"Unknown kind of import “{kind}”; choose one of: {', '.join(COLUMNS)}.",
            code="unknown_kind",
        )
    return kind


def mapping_guess(kind: str, headers: list[str]) -> dict[str, int]:
    """Column key -> index of the header that obviously names it (its label,
    key or a known alias)."""
    found: dict[str, int] = {}
    taken: set[int] = set()
    normalised = [_norm(h) for h in headers]
    for column in COLUMNS[kind_checked(kind)]:
        names = [_norm(column.label), _norm(column.key), *(_norm(a) for a in column.aliases)]
        for name in names:  # the column's own names first, in order, so "Patient ID" wins over "ID"
            index = next(
                (i for i, h in enumerate(normalised) if h == name and i not in taken), None
            )
            if index is not None:
                found[column.key] = index
                taken.add(index)
                break
    return found


def mapping_checked(
    kind: str, headers: list[str], mapping: dict[str, str | int] | None
) -> dict[str, int]:
    """The mapping to use: the guess, overridden by the clinic's choices (column key -> header name
    or position); every required column must be mapped."""
    result = mapping_guess(kind, headers)
    by_key = {c.key: c for c in COLUMNS[kind]}
    for key, header in (mapping or {}).items():
        if key not in by_key:
            raise ValidationFailed(
                f"“{key}” is not a column of a {kind} import.", code="unknown_column"
            )
        if header in ("", None):
            result.pop(key, None)
            continue
        if isinstance(header, int) or str(header).isdigit():
            index = int(header)
        elif header in headers:
            index = headers.index(header)
        else:
            raise ValidationFailed(f"The file has no column “{header}”.", code="unknown_column")
        if not 0 <= index < len(headers):
            raise ValidationFailed(
                f"The file has no column number {index + 1}.", code="unknown_column"
            )
        result[key] = index
    missing = [c.label for c in COLUMNS[kind] if c.required and c.key not in result]
    labels = {c.key: c.label for c in COLUMNS[kind]}
    missing += [
        " or ".join(labels[k] for k in group)
        for group in ONE_OF.get(kind, [])
        if not any(k in result for k in group)
    ]
    if missing:
        raise ValidationFailed(
            f"Choose the file's column for: {', '.join(missing)}. (The file's columns are: "
            f"{', '.join(h for h in headers if h) or 'none'}.)",
            code="unmapped_columns",
            fields={"mapping": missing},
        )
    return result


def template_csv(kind: str) -> str:
    """The documented template for a kind: its header and one example row."""

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([c.label for c in COLUMNS[kind_checked(kind)]])
    writer.writerow([c.example for c in COLUMNS[kind]])
    return buffer.getvalue()
