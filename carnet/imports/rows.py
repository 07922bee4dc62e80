"""Checking an import's rows: each cell parsed and every rule checked, nothing written. The result
is a plan (what would be created, with its money) and the problems, each with its line, column and
a sentence saying what to fix."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field

from carnet.core.bulk import chunks
from carnet.core.errors import ValidationFailed
from carnet.core.money import Money

from .columns import COLUMNS
from .models import ImportedRecord, Kind
from .reading import Sheet


@dataclass
class Problem:
    line: int
    column: str
    message: str

    def __str__(self):
        where = f"line {self.line}" + (f", {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass
class Row:
    line: int
    external_id: str
    values: dict
    money_minor: int = 0


@dataclass
class Plan:
    kind: str
    encoding: str
    rows: list[Row] = field(default_factory=list)       # to create
    skipped: list[Row] = field(default_factory=list)    # imported by an earlier batch: left alone
    problems: list[Problem] = field(default_factory=list)
    total_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def money_minor(self) -> int:
        return sum(r.money_minor for r in self.rows)


class _Bad(Exception):
    pass


_SLASHED = re.compile(r"(\d{1,4})[/.-](\d{1,2})[/.-](\d{1,4})")
_WORDY = ("%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%d %B %Y", "%d-%b-%Y")


def parse_date(text: str) -> dt.date:
    text = text.strip()
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        pass
    for fmt in _WORDY:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    match = _SLASHED.fullmatch(text)
    if match:
        a, b, c = (int(x) for x in match.groups())
        if a > 31:  # year first: 2026/09/14
            return dt.date(a, b, c)
        # d/m/y or m/d/y: only when the numbers say which; otherwise the clinic must write it plainly.
        if a > 12 >= b:
            return dt.date(c, b, a)
        if b > 12 >= a:
            return dt.date(c, a, b)
        if a == b:
            return dt.date(c, a, b)
        raise _Bad(f"“{text}” could be day/month or month/day; write it as YYYY-MM-DD.")
    raise _Bad(f"“{text}” is not a date; write it as YYYY-MM-DD.")


def _date(text: str) -> dt.date:
    try:
        return parse_date(text)
    except ValueError:  # e.g. 31/02/2026
        raise _Bad(f"“{text}” is not a real date; write it as YYYY-MM-DD.") from None


def _money(text: str, currency: str) -> int:
    cleaned = re.sub(r"^[^\d\-(]+", "", text.strip())  # a leading currency sign: "$12.50", "CA$12.50"
    negative = cleaned.startswith("(") and cleaned.endswith(")")  # accounting style
    try:
        minor = Money.parse(cleaned.strip("()"), currency).minor
    except (ValueError, TypeError):
        raise _Bad(f"“{text}” is not an amount; write it like 12.50.") from None
    return -minor if negative else minor


def _count(text: str) -> int:
    if not re.fullmatch(r"\d{1,6}", text.strip()):
        raise _Bad(f"“{text}” is not a whole number of uses.")
    return int(text)


class _Reader:
    """Cells of one row by column key, collecting problems instead of stopping at the first."""

    def __init__(self, plan: Plan, kind: str, line: int, cells: list[str], mapping: dict[str, int]):
        self.plan, self.line, self.cells, self.mapping = plan, line, cells, mapping
        self.labels = {c.key: c.label for c in COLUMNS[kind]}
        self.bad = False

    def text(self, key: str) -> str:
        index = self.mapping.get(key)
        return self.cells[index].strip() if index is not None and index < len(self.cells) else ""

    def problem(self, key: str, message: str) -> None:
        self.plan.problems.append(Problem(self.line, self.labels.get(key, key), message))
        self.bad = True

    def get(self, key: str, parse=None, *, required: bool = False, max_length: int | None = None):
        raw = self.text(key)
        if not raw:
            if required:
                self.problem(key, "This is required.")
            return None
        if max_length and len(raw) > max_length:
            self.problem(key, f"At most {max_length} characters.")
            return None
        if parse is None:
            return raw
        try:
            return parse(raw)
        except _Bad as exc:
            self.problem(key, str(exc))
            return None


def _already(kind: str, external_ids: list[str]) -> set[str]:
    found = set()
    for part in chunks(external_ids):
        found |= set(ImportedRecord.objects.filter(kind=kind, live=True, external_id__in=part)
                     .values_list("external_id", flat=True))
    return found


def imported_ids(kind: str, external_ids) -> dict[str, int]:
    """External id -> object id of live imported records of a kind."""
    external_ids = sorted(set(external_ids))
    found = {}
    for part in chunks(external_ids):
        found.update(ImportedRecord.objects.filter(kind=kind, live=True, external_id__in=part)
                     .values_list("external_id", "object_id"))
    return found


_DECLARED = {
    Kind.PATIENTS: lambda r: r.text("external_id"),
    Kind.PACKAGES: lambda r: r.text("external_id"),
    Kind.CREDIT: lambda r: r.text("patient_external_id") and f"credit:{r.text('patient_external_id')}",
    Kind.GIFT_CARDS: lambda r: r.text("code").upper(),
}
_ID_COLUMN = {Kind.PATIENTS: "External ID", Kind.PACKAGES: "External ID", Kind.CREDIT: "Patient external ID",
              Kind.GIFT_CARDS: "Code"}


def _repeats(plan: Plan, rows: list[Row]) -> None:
    """The same id on two rows of the file is a problem, since one of the two would be lost."""
    first_line: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: r.line):
        if row.external_id in first_line:
            shown = row.external_id.removeprefix("credit:")
            plan.problems.append(Problem(row.line, _ID_COLUMN[plan.kind], f"“{shown}” is also on line "
                                         f"{first_line[row.external_id]}; each row needs its own."))
        first_line.setdefault(row.external_id, row.line)


def _split_known(plan: Plan, rows: list[Row]) -> None:
    """Rows already imported (same kind, same external id) are skipped: a re-run creates nothing twice."""
    known = _already(plan.kind, sorted({r.external_id for r in rows}))
    for row in rows:
        (plan.skipped if row.external_id in known else plan.rows).append(row)


def _row_hash(*parts) -> str:
    """A stable id for a row that has none of its own, from what identifies it."""
    return "row-" + hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


def plan_rows(*, kind: str, sheet: Sheet, mapping: dict[str, int], currency: str) -> Plan:
    plan = Plan(kind=kind, encoding=sheet.encoding, total_rows=len(sheet.rows))
    checker = {Kind.PATIENTS: _patients, Kind.PACKAGES: _packages, Kind.CREDIT: _credit,
               Kind.GIFT_CARDS: _gift_cards}.get(kind)
    if checker is None:
        raise ValidationFailed(f"Importing {kind} is not available yet.", code="unknown_kind")
    rows, declared = [], []
    for line, cells in sheet.rows:
        reader = _Reader(plan, kind, line, cells, mapping)
        row = checker(reader, currency)
        if row is not None and not reader.bad:
            rows.append(row)
        elif _DECLARED[kind](reader):  # a bad row still holds its id: a repeat of it is a problem too
            declared.append(Row(line, _DECLARED[kind](reader), {}))
    _repeats(plan, rows + declared)
    _split_known(plan, rows)
    _cross_checks(plan)
    plan.problems.sort(key=lambda p: p.line)
    return plan


# ---------------------------------------------------------------- per kind

def _patients(r: _Reader, currency: str) -> Row | None:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    ext = r.get("external_id", required=True, max_length=120)
    values = {"first_name": r.get("first_name", required=True, max_length=80),
              "last_name": r.get("last_name", required=True, max_length=80),
              "preferred_name": r.get("preferred_name", max_length=80) or "",
              "email": r.get("email", max_length=254) or "",
              "phone": r.get("phone", max_length=40) or "",
              "date_of_birth": r.get("date_of_birth", _date),
              "address": r.get("address", max_length=500) or "",
              "notes": r.get("notes", max_length=5000) or "",
              "guardian": r.get("guardian_external_id", max_length=120),
              "spouse": r.get("spouse_external_id", max_length=120)}
    if values["email"]:
        try:
            validate_email(values["email"])
        except ValidationError:
            r.problem("email", f"“{values['email']}” is not an email address.")
    born = values["date_of_birth"]
    if born and not dt.date(1880, 1, 1) <= born <= dt.date.today():
        r.problem("date_of_birth", f"{born} is not a plausible date of birth.")
    if ext and ext in (values["guardian"], values["spouse"]):
        r.problem("guardian_external_id" if ext == values["guardian"] else "spouse_external_id",
                  "A patient cannot be linked to themselves.")
    return Row(r.line, ext, values) if ext else None


def _packages(r: _Reader, currency: str) -> Row | None:
    values = {"patient": r.get("patient_external_id", required=True, max_length=120),
              "template": r.get("template", required=True, max_length=160),
              "purchase_date": r.get("purchase_date", _date, required=True),
              "price": r.get("price", lambda t: _money(t, currency)),
              "amount_paid": r.get("amount_paid", lambda t: _money(t, currency)),
              "quantity": r.get("quantity", _count, required=True),
              "remaining": r.get("remaining", _count, required=True),
              "remaining_value": r.get("remaining_value", lambda t: _money(t, currency)),
              "expiry": r.get("expiry", _date)}
    price, paid, quantity, remaining = (values[k] for k in ("price", "amount_paid", "quantity", "remaining"))
    for key in ("price", "amount_paid", "remaining_value"):
        if values[key] is not None and values[key] < 0:
            r.problem(key, "A negative amount cannot be imported.")
    if quantity == 0:
        r.problem("quantity", "A package has at least one use.")
    if quantity and remaining is not None and remaining > quantity:
        r.problem("remaining", f"{remaining} remaining is more than the quantity ({quantity}).")
    if price is None and values["remaining_value"] is None and remaining:
        r.problem("price", "Give the price, or the remaining value when the price is unknown.")
    if price is not None and paid is not None and paid != price and not r.bad:
        r.problem("amount_paid", f"Only fully paid packages are imported ({Money(paid, currency)} paid of "
                  f"{Money(price, currency)}). Import it with the amount paid equal to the price and bill the "
                  "balance owing as an invoice in Carnet.")
    if values["expiry"] and values["purchase_date"] and values["expiry"] < values["purchase_date"]:
        r.problem("expiry", "The expiry date is before the purchase date.")
    if r.bad:
        return None
    value = remaining_value(price=price, quantity=quantity, remaining=remaining, given=values["remaining_value"],
                            currency=currency)
    ext = r.text("external_id")[:120] or _row_hash(values["patient"], values["template"].lower(),
                                                   values["purchase_date"], price, quantity, remaining)
    return Row(r.line, ext, values, money_minor=value)


def remaining_value(*, price: int | None, quantity: int, remaining: int, given: int | None, currency: str) -> int:
    """The rule for an imported package's opening value: the price split over its uses as a sale
    would split it (remainder to the last uses), and the shares of the uses still left; when the
    price is unknown, the remaining value the file gives (each use then takes its share of that)."""
    if price is None:
        return given or 0
    parts = Money(price, currency).allocate(quantity)
    return sum(p.minor for p in parts[quantity - remaining:])


def _credit(r: _Reader, currency: str) -> Row | None:
    patient = r.get("patient_external_id", required=True, max_length=120)
    amount = r.get("amount", lambda t: _money(t, currency), required=True)
    if amount is not None and amount <= 0:
        r.problem("amount", "Account credit must be more than zero (a negative balance is owed money: "
                  "bill it as an invoice instead).")
    if r.bad:
        return None
    return Row(r.line, f"credit:{patient}", {"patient": patient, "amount": amount}, money_minor=amount)


_CODE = re.compile(r"[^\s0]\S{5,39}")


def _gift_cards(r: _Reader, currency: str) -> Row | None:
    code = r.get("code", required=True)
    if code and not _CODE.fullmatch(code):
        r.problem("code", f"“{code}” breaks the gift card code rules: at least 6 characters, no spaces, not "
                  "starting with 0 (at most 40).")
    balance = r.get("balance", lambda t: _money(t, currency), required=True)
    if balance is not None and balance < 0:
        r.problem("balance", "A negative balance cannot be imported.")
    values = {"code": (code or "").upper(), "balance": balance,
              "purchaser": r.get("purchaser_external_id", max_length=120),
              "recipient_name": r.get("recipient_name", max_length=120) or ""}
    if r.bad:
        return None
    return Row(r.line, values["code"], values, money_minor=balance)


# ---------------------------------------------------------------- checks across rows and the database

def _cross_checks(plan: Plan) -> None:
    {Kind.PATIENTS: _patients_cross, Kind.PACKAGES: _packages_cross, Kind.CREDIT: _patient_refs,
     Kind.GIFT_CARDS: _gift_cards_cross}[plan.kind](plan)


def _patients_cross(plan: Plan) -> None:
    from carnet.people.models import Patient

    in_file = {r.external_id for r in plan.rows} | {r.external_id for r in plan.skipped}
    refs = {v for r in plan.rows for v in (r.values["guardian"], r.values["spouse"]) if v}
    known = imported_ids(Kind.PATIENTS, refs - in_file)
    for row in plan.rows:
        for key, label in (("guardian", "Guardian external ID"), ("spouse", "Spouse external ID")):
            ref = row.values[key]
            if ref and ref not in in_file and ref not in known:
                plan.problems.append(Problem(row.line, label, f"No patient with external ID “{ref}” in this file "
                                             "or an earlier import."))
    # The same person twice: same names and date of birth, in the file or already in Carnet.
    keyed = {}
    for row in plan.rows:
        v = row.values
        if not v["date_of_birth"]:
            continue
        key = (v["first_name"].lower(), v["last_name"].lower(), v["date_of_birth"])
        if key in keyed:
            plan.problems.append(Problem(row.line, "", f"Duplicate patient: {v['first_name']} {v['last_name']}, "
                                         f"born {v['date_of_birth']}, is also on line {keyed[key]}."))
        keyed.setdefault(key, row.line)
    births = sorted({k[2] for k in keyed})
    existing = {}
    for part in chunks(births):
        for pk, first, last, born in Patient.objects.filter(date_of_birth__in=part).values_list(
                "pk", "first_name", "last_name", "date_of_birth"):
            existing[(first.lower(), last.lower(), born)] = pk
    for key, line in keyed.items():
        if key in existing:
            plan.problems.append(Problem(line, "", f"Duplicate patient: {key[0].title()} {key[1].title()}, born "
                                         f"{key[2]}, is already in Carnet (patient #{existing[key]}). Remove the "
                                         "row, or give it that patient's details if it is someone else."))


def _patient_refs(plan: Plan, key: str = "patient", label: str = "Patient external ID", required: bool = True):
    known = imported_ids(Kind.PATIENTS, (r.values[key] for r in plan.rows if r.values[key]))
    for row in plan.rows:
        ref = row.values[key]
        if ref and ref not in known:
            plan.problems.append(Problem(row.line, label, f"No imported patient has external ID “{ref}”; import "
                                         "the patients first."))
        row.values[f"{key}_id"] = known.get(ref)


def _packages_cross(plan: Plan) -> None:
    from carnet.passes.models import Kind as PassKind
    from carnet.passes.models import PassTemplate

    _patient_refs(plan)
    by_name: dict[str, list] = {}
    for template in PassTemplate.objects.filter(kind=PassKind.PACKAGE).prefetch_related("items"):
        by_name.setdefault(template.name.strip().lower(), []).append(template)
    for row in plan.rows:
        found = by_name.get(row.values["template"].strip().lower(), [])
        if len(found) != 1:
            plan.problems.append(Problem(row.line, "Package", (
                f"Unknown package template “{row.values['template']}”; create it in Settings → Packages & "
                "Memberships (with its eligible items), or correct the name.") if not found else (
                f"{len(found)} package templates are named “{row.values['template']}”; rename all but one.")))
            continue
        if not found[0].items.all():
            plan.problems.append(Problem(row.line, "Package", f"“{found[0].name}” has no eligible items; add them "
                                         "in Settings before importing its packages."))
        row.values["template_id"] = found[0].pk


def _gift_cards_cross(plan: Plan) -> None:
    from carnet.giftcards.models import GiftCard

    _patient_refs(plan, "purchaser", "Purchaser external ID")
    codes = [r.values["code"] for r in plan.rows]
    taken = set()
    for part in chunks(codes):
        taken |= {c.upper() for c in GiftCard.objects.filter(code__in=part).values_list("code", flat=True)}
    for row in plan.rows:
        if row.values["code"] in taken:
            plan.problems.append(Problem(row.line, "Code", f"The code {row.values['code']} is already used by a gift "
                                         "card in Carnet."))
