"""The columns each kind of import reads, the header names they are known by (Carnet's template's,
and the names other systems' exports use, Jane's among them), and the downloadable templates."""

from __future__ import annotations

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


PATIENT_REF = ("patient id", "patient number", "client id", "patient external id", "patient_id")

COLUMNS: dict[str, list[Column]] = {
    Kind.PATIENTS: [
        Column("external_id", "External ID", True, ("id", "patient id", "patient number", "client id", "chart number"),
               "P-1001", "The patient's id in your previous system; keeps a second run from creating them twice."),
        Column("first_name", "First name", True, ("first", "given name", "legal first name"), "Ana"),
        Column("last_name", "Last name", True, ("last", "surname", "family name"), "Silva"),
        Column("preferred_name", "Preferred name", False, ("preferred", "nickname", "preferred first name"), "Annie"),
        Column("email", "Email", False, ("email address", "e-mail"), "ana@example.com"),
        Column("phone", "Phone", False, ("mobile phone", "mobile", "cell phone", "home phone", "phone number"),
               "416-555-0101"),
        Column("date_of_birth", "Date of birth", False, ("birth date", "birthdate", "dob", "birthday"), "1984-03-21"),
        Column("address", "Address", False, ("street address", "address 1", "address line 1"), "12 Queen St W"),
        Column("notes", "Notes", False, ("patient notes", "note", "alert"), ""),
        Column("guardian_external_id", "Guardian external ID", False, ("guardian id", "guardian"), "",
               "The external ID of this patient's guardian (another row of this file or an earlier import)."),
        Column("spouse_external_id", "Spouse external ID", False, ("spouse id", "spouse"), ""),
    ],
    Kind.PACKAGES: [
        Column("external_id", "External ID", False, ("id", "purchase id", "sale id", "package id"), "S-501",
               "Optional: without it a row is recognised by its patient, package, purchase date and uses."),
        Column("patient_external_id", "Patient external ID", True, PATIENT_REF, "P-1001"),
        Column("template", "Package", True, ("package", "package name", "item", "name", "template"),
               "10 massages", "The name of one of your package templates in Carnet (Settings → Packages)."),
        Column("purchase_date", "Purchase date", True, ("purchased", "purchase date", "sale date", "date purchased",
                                                         "date"), "2026-09-14"),
        Column("price", "Price", False, ("price", "total", "amount", "sale price"), "900.00",
               "What the patient paid in all; blank when unknown (then give the remaining value)."),
        Column("amount_paid", "Amount paid", False, ("paid", "amount paid", "collected"), "900.00"),
        Column("quantity", "Quantity", True, ("uses", "sessions", "number of uses", "total uses", "qty"), "10"),
        Column("remaining", "Remaining uses", True, ("remaining", "uses remaining", "sessions remaining",
                                                     "remaining uses", "left"), "4"),
        Column("remaining_value", "Remaining value", False, ("remaining value", "unused value", "balance"), "",
               "Only when the price is unknown: the value of the remaining uses."),
        Column("expiry", "Expiry date", False, ("expires", "expiry", "expiration date", "expires on",
                                                "expiry date"), "2027-09-14", "Blank: never expires."),
    ],
    Kind.CREDIT: [
        Column("patient_external_id", "Patient external ID", True, PATIENT_REF, "P-1001"),
        Column("amount", "Credit", True, ("credit", "account credit", "credit balance", "balance", "amount"), "25.00"),
    ],
    Kind.GIFT_CARDS: [
        Column("code", "Code", True, ("gift card", "gift card code", "card number", "number", "code"), "GIFT2026A"),
        Column("balance", "Balance", True, ("balance", "remaining", "amount", "remaining balance"), "50.00"),
        Column("purchaser_external_id", "Purchaser external ID", False, ("purchaser", "purchaser id", "bought by"),
               "P-1001"),
        Column("recipient_name", "Recipient", False, ("recipient", "recipient name", "to"), "Sam Lee"),
    ],
}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", (text or "").lower()).strip()


def kind_checked(kind: str) -> str:
    if kind not in COLUMNS:
        raise ValidationFailed(f"Unknown kind of import “{kind}”; choose one of: {', '.join(COLUMNS)}.",
                               code="unknown_kind")
    return kind


def mapping_guess(kind: str, headers: list[str]) -> dict[str, int]:
    """Column key -> index of the header that obviously names it (its label, key or a known alias)."""
    found: dict[str, int] = {}
    taken: set[int] = set()
    normalised = [_norm(h) for h in headers]
    for column in COLUMNS[kind_checked(kind)]:
        names = [_norm(column.label), _norm(column.key), *(_norm(a) for a in column.aliases)]
        for name in names:  # the column's own names first, in order, so "Patient ID" wins over "ID"
            index = next((i for i, h in enumerate(normalised) if h == name and i not in taken), None)
            if index is not None:
                found[column.key] = index
                taken.add(index)
                break
    return found


def mapping_checked(kind: str, headers: list[str], mapping: dict[str, str | int] | None) -> dict[str, int]:
    """The mapping to use: the guess, overridden by the clinic's choices (column key -> header name
    or position); every required column must be mapped."""
    result = mapping_guess(kind, headers)
    by_key = {c.key: c for c in COLUMNS[kind]}
    for key, header in (mapping or {}).items():
        if key not in by_key:
            raise ValidationFailed(f"“{key}” is not a column of a {kind} import.", code="unknown_column")
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
            raise ValidationFailed(f"The file has no column number {index + 1}.", code="unknown_column")
        result[key] = index
    missing = [c.label for c in COLUMNS[kind] if c.required and c.key not in result]
    if missing:
        raise ValidationFailed(f"Choose the file's column for: {', '.join(missing)}. (The file's columns are: "
                               f"{', '.join(h for h in headers if h) or 'none'}.)", code="unmapped_columns",
                               fields={"mapping": missing})
    return result


def template_csv(kind: str) -> str:
    """The documented template for a kind: its header and one example row."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([c.label for c in COLUMNS[kind_checked(kind)]])
    writer.writerow([c.example for c in COLUMNS[kind]])
    return buffer.getvalue()
