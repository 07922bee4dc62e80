"""Checking an import's rows: each cell parsed and every rule checked, nothing written. The result
is a plan (what would be created, with its money) and the problems, each with its line, column and
a sentence saying what to fix."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from carnet.billing.tax import line_amounts
from carnet.clinic.models import Treatment
from carnet.core.bulk import chunks
from carnet.core.errors import ValidationFailed
from carnet.core.money import Money
from carnet.giftcards.models import GiftCard
from carnet.passes.cycles import cycle_earned_minor
from carnet.passes.memberships.opening import current_cycle
from carnet.passes.models import Kind as PassKind
from carnet.passes.models import PassInvoice, PassTemplate
from carnet.people.models import Patient

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
    rows: list[Row] = field(default_factory=list)  # to create
    elsewhere: list[int] = field(
        default_factory=list
    )  # lines of the other kind (a combined sales export)
    skipped: list[Row] = field(default_factory=list)  # imported by an earlier batch: left alone
    problems: list[Problem] = field(default_factory=list)
    total_rows: int = 0
    currency: str = ""
    cut_over: dt.date | None = None

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
        # d/m/y or m/d/y: only when the numbers say which; otherwise the clinic
        # must write it plainly.
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


def _money_parse(text: str, currency: str) -> int:
    """A cell's amount in minor units (Money.parse), also as written in a spreadsheet: after a
    currency sign ("$12.50", "CA$12.50") or negative in brackets ("(12.50)")."""
    cleaned = re.sub(
        r"^[^\d\-(]+", "", text.strip()
    )  # a leading currency sign: "$12.50", "CA$12.50"
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
        found |= set(
            ImportedRecord.objects.filter(kind=kind, live=True, external_id__in=part).values_list(
                "external_id", flat=True
            )
        )
    return found


def imported_ids(kind: str, external_ids) -> dict[str, int]:
    """External id -> object id of live imported records of a kind."""
    external_ids = sorted(set(external_ids))
    found = {}
    for part in chunks(external_ids):
        found.update(
            ImportedRecord.objects.filter(kind=kind, live=True, external_id__in=part).values_list(
                "external_id", "object_id"
            )
        )
    return found


_DECLARED = {
    Kind.PATIENTS: lambda r: r.text("external_id"),
    Kind.PACKAGES: lambda r: r.text("external_id"),
    Kind.MEMBERSHIPS: lambda r: r.text("external_id"),
    Kind.CREDIT: lambda r: (
        r.text("patient_external_id") and f"credit:{r.text('patient_external_id')}"
    ),
    Kind.GIFT_CARDS: lambda r: r.text("code").upper(),
}
_ID_COLUMN = {
    Kind.PATIENTS: "External ID",
    Kind.PACKAGES: "External ID",
    Kind.MEMBERSHIPS: "External ID",
    Kind.CREDIT: "Patient external ID",
    Kind.GIFT_CARDS: "Code",
}


def _repeats(plan: Plan, rows: list[Row]) -> None:
    """The same id on two rows of the file is a problem, since one of the two would be lost."""
    first_line: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: r.line):
        if row.external_id in first_line:
            shown = row.external_id.removeprefix("credit:")
            plan.problems.append(
                Problem(
                    row.line,
                    _ID_COLUMN[plan.kind],
                    f"“{shown}” is also on line "
                    f"{first_line[row.external_id]}; each row needs its own.",
                )
            )
        first_line.setdefault(row.external_id, row.line)


def _split_known(plan: Plan, rows: list[Row]) -> None:
    """Rows already imported (same kind, same external id) are skipped:
    a re-run creates nothing twice."""
    known = _already(plan.kind, sorted({r.external_id for r in rows}))
    for row in rows:
        (plan.skipped if row.external_id in known else plan.rows).append(row)


def _row_hash(*parts) -> str:
    """A stable id for a row that has none of its own, from what identifies it."""
    return "row-" + hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


def plan_rows(
    *,
    kind: str,
    sheet: Sheet,
    mapping: dict[str, int],
    currency: str,
    cut_over: dt.date | None = None,
) -> Plan:
    plan = Plan(
        kind=kind,
        encoding=sheet.encoding,
        total_rows=len(sheet.rows),
        currency=currency,
        cut_over=cut_over or dt.date.today(),
    )
    checker = {
        Kind.PATIENTS: _patients,
        Kind.PACKAGES: _packages,
        Kind.MEMBERSHIPS: _memberships,
        Kind.CREDIT: _credit,
        Kind.GIFT_CARDS: _gift_cards,
    }.get(kind)
    if checker is None:
        raise ValidationFailed(f"Importing {kind} is not available yet.", code="unknown_kind")
    rows, declared = [], []
    other = _other_kind(kind, mapping)
    for line, cells in sheet.rows:
        reader = _Reader(plan, kind, line, cells, mapping)
        if other and other(reader):
            plan.elsewhere.append(line)
            continue
        row = checker(reader, currency)
        if row is not None and not reader.bad:
            rows.append(row)
        elif _DECLARED[kind](
            reader
        ):  # a bad row still holds its id: a repeat of it is a problem too
            declared.append(Row(line, _DECLARED[kind](reader), {}))
    _repeats(plan, rows + declared)
    _split_known(plan, rows)
    _cross_checks(plan)
    plan.problems.sort(key=lambda p: p.line)
    return plan


def _other_kind(kind: str, mapping: dict[str, int]):
    """For packages and memberships: a test that a row is of the other kind (its Type says so, or
    its name is only a template of the other kind), so a combined export imports as each kind."""

    if kind not in (Kind.PACKAGES, Kind.MEMBERSHIPS):
        return None
    mine, theirs = ("package", "membership") if kind == Kind.PACKAGES else ("membership", "package")
    names: dict[str, set[str]] = {}
    for name, template_kind in PassTemplate.objects.values_list("name", "kind"):
        names.setdefault(name.strip().lower(), set()).add(template_kind)

    def test(r: _Reader) -> bool:
        said = r.text("row_type").lower()
        if said:
            return theirs in said and mine not in said
        return names.get(r.text("template").strip().lower()) == {theirs}

    return test


# ---------------------------------------------------------------- per kind


def _patients(r: _Reader, currency: str) -> Row | None:

    ext = r.get("external_id", required=True, max_length=120)
    values = {
        "first_name": r.get("first_name", required=True, max_length=80),
        "last_name": r.get("last_name", required=True, max_length=80),
        "preferred_name": r.get("preferred_name", max_length=80) or "",
        "email": r.get("email", max_length=254) or "",
        "phone": r.get("phone", max_length=40) or r.get("other_phone", max_length=40) or "",
        "date_of_birth": r.get("date_of_birth", _date),
        # An export's address parts are kept together, as the address is one text in Carnet.
        "address": ", ".join(
            p
            for p in (
                r.get(k, max_length=500)
                for k in ("address", "address_2", "city", "province", "postal_code", "country")
            )
            if p
        ),
        "notes": r.get("notes", max_length=5000) or "",
        "guardian": r.get("guardian_external_id", max_length=120),
        "spouse": r.get("spouse_external_id", max_length=120),
    }
    if values["email"]:
        try:
            validate_email(values["email"])
        except ValidationError:
            r.problem("email", f"“{values['email']}” is not an email address.")
    born = values["date_of_birth"]
    if born and not dt.date(1880, 1, 1) <= born <= dt.date.today():
        r.problem("date_of_birth", f"{born} is not a plausible date of birth.")
    if ext and ext in (values["guardian"], values["spouse"]):
        r.problem(
            "guardian_external_id" if ext == values["guardian"] else "spouse_external_id",
            "A patient cannot be linked to themselves.",
        )
    return Row(r.line, ext, values) if ext else None


def _patient_of(r: _Reader) -> dict:
    """The patient a row names: by external ID, or by name when the file has no ID
    (Jane's sales exports)."""
    values = {
        "patient": r.get("patient_external_id", max_length=120),
        "patient_name": r.get("patient_name", max_length=200),
    }
    if not values["patient"] and not values["patient_name"] and not r.bad:
        r.problem(
            "patient_external_id" if "patient_external_id" in r.mapping else "patient_name",
            "This is required: the patient's external ID or name.",
        )
    return values


def _packages(r: _Reader, currency: str) -> Row | None:
    def money(text):
        return _money_parse(text, currency)

    values = {
        **_patient_of(r),
        "template": r.get("template", required=True, max_length=160),
        "treatments": r.get("treatments", max_length=2000),
        "purchase_date": r.get("purchase_date", _date, required=True),
        "price": r.get("price", money),
        "amount_paid": r.get("amount_paid", money),
        "balance_owing": r.get("balance_owing", money),
        "quantity": r.get("quantity", _count),
        "redeemed": r.get("redeemed", _count),
        # Required by the template's kind (_packages_cross): uses left, or a value package's value.
        "remaining": r.get("remaining", _count),
        "remaining_value": r.get("remaining_value", money),
        "value_left": r.get("value_left", money),
        "value_held": r.get("value_held", money),
        "expiry": r.get("expiry", _date),
    }
    price, paid, owing, remaining = (
        values[k] for k in ("price", "amount_paid", "balance_owing", "remaining")
    )
    for key in ("price", "amount_paid", "balance_owing", "remaining_value", "value_left"):
        if values[key] is not None and values[key] < 0:
            r.problem(key, "A negative amount cannot be imported.")
    if values["value_held"] is not None and values["value_held"] <= 0:
        r.problem("value_held", "The value held must be more than zero.")
    if values["quantity"] is None and values["redeemed"] is not None and remaining is not None:
        values["quantity"] = remaining + values["redeemed"]  # Jane: remaining + redeemed sessions
    if values["quantity"] == 0:
        r.problem("quantity", "A package has at least one use.")
    if price is None and values["remaining_value"] is None and remaining:
        r.problem("price", "Give the price, or the remaining value when the price is unknown.")
    if paid is None and owing is not None and price is not None:
        paid = price - owing
    if price is None and (paid is not None or owing):
        r.problem("price", "Give the price too: what was paid counts against it.")
    elif paid is not None and price is not None and paid > price and not r.bad:
        r.problem(
            "amount_paid" if values["amount_paid"] is not None else "balance_owing",
            f"{Money(paid, currency)} paid is more than the price ({Money(price, currency)}); "
            "import the difference as account credit.",
        )
    values["paid"] = paid if paid is not None and price is not None and paid < price else None
    if values["expiry"] and values["purchase_date"] and values["expiry"] < values["purchase_date"]:
        r.problem("expiry", "The expiry date is before the purchase date.")
    if r.bad:
        return None
    ext = r.text("external_id")[:120] or _row_hash(
        values["patient"] or values["patient_name"].lower(),
        values["template"].lower(),
        values["purchase_date"],
        price,
        values["quantity"],
        remaining,
        # A value package's row (a count package's id is as it always was).
        *(() if values["value_left"] is None else (values["value_left"],)),
    )
    return Row(r.line, ext, values)


_MODES = {
    "manual": "manual",
    "no": "manual",
    "false": "manual",
    "off": "manual",
    "invoice": "manual",
    "automatic": "automatic",
    "auto": "automatic",
    "yes": "automatic",
    "true": "automatic",
    "on": "automatic",
    "card": "automatic",
    "card on file": "automatic",
    "autopay": "automatic",
}


def _mode(text: str) -> str:
    mode = _MODES.get(" ".join(text.lower().split()))
    if mode is None:
        raise _Bad(f"“{text}” is neither manual nor automatic.")
    return mode


def _memberships(r: _Reader, currency: str) -> Row | None:
    values = {
        **_patient_of(r),
        "template": r.get("template", required=True, max_length=160),
        "start_date": r.get("start_date", _date, required=True),
        "next_cycle_date": r.get("next_cycle_date", _date, required=True),
        "uses_this_cycle": r.get("uses_this_cycle", _count) or 0,
        "cycle_price": r.get("cycle_price", lambda t: _money_parse(t, currency)),
        "payment": r.get("payment", _mode) or "manual",
    }
    if values["cycle_price"] is not None and values["cycle_price"] < 0:
        r.problem("cycle_price", "A negative amount cannot be imported.")
    if r.bad:
        return None
    ext = r.text("external_id")[:120] or _row_hash(
        values["patient"] or values["patient_name"].lower(),
        values["template"].lower(),
        values["start_date"],
    )
    return Row(r.line, ext, values)


def remaining_value(
    *,
    price: int | None,
    quantity: int | None,
    remaining: int,
    given: int | None,
    currency: str,
    held: int | None = None,
) -> int:
    """The rule for an imported package's opening value: the price split over its uses as a sale
    would split it (remainder to the last uses), and the shares of the uses still left; when the
    price is unknown, the remaining value the file gives (each use then takes its share of that).
    A package that holds a value (`held`, `remaining` its value left): the price's share of the
    value left, rounded down as a draw's share is (passes.redemption.value_share)."""
    if price is None:
        return given or 0
    if held is not None:
        return price * remaining // held
    parts = Money(price, currency).allocate(quantity)
    return sum(p.minor for p in parts[quantity - remaining :])


def _credit(r: _Reader, currency: str) -> Row | None:
    patient = r.get("patient_external_id", required=True, max_length=120)
    amount = r.get("amount", lambda t: _money_parse(t, currency), required=True)
    if amount is not None and amount <= 0:
        r.problem(
            "amount",
            "Account credit must be more than zero (a negative balance is owed money: "
            "bill it as an invoice instead).",
        )
    if r.bad:
        return None
    return Row(
        r.line, f"credit:{patient}", {"patient": patient, "amount": amount}, money_minor=amount
    )


_CODE = re.compile(r"[^\s0]\S{5,39}")


def _gift_cards(r: _Reader, currency: str) -> Row | None:
    code = r.get("code", required=True)
    if code and not _CODE.fullmatch(code):
        r.problem(
            "code",
            f"“{code}” breaks the gift card code rules: at least 6 characters, no spaces, not "
            "starting with 0 (at most 40).",
        )
    balance = r.get("balance", lambda t: _money_parse(t, currency), required=True)
    if balance is not None and balance < 0:
        r.problem("balance", "A negative balance cannot be imported.")
    values = {
        "code": (code or "").upper(),
        "balance": balance,
        "purchaser": r.get("purchaser_external_id", max_length=120),
        "recipient_name": r.get("recipient_name", max_length=120) or "",
    }
    if r.bad:
        return None
    return Row(r.line, values["code"], values, money_minor=balance)


# -------------------------------------------------------------- checks across rows and the database


def _cross_checks(plan: Plan) -> None:
    {
        Kind.PATIENTS: _patients_cross,
        Kind.PACKAGES: _packages_cross,
        Kind.MEMBERSHIPS: _memberships_cross,
        Kind.CREDIT: _patient_refs,
        Kind.GIFT_CARDS: _gift_cards_cross,
    }[plan.kind](plan)


def _patients_cross(plan: Plan) -> None:

    in_file = {r.external_id for r in plan.rows} | {r.external_id for r in plan.skipped}
    refs = {v for r in plan.rows for v in (r.values["guardian"], r.values["spouse"]) if v}
    known = imported_ids(Kind.PATIENTS, refs - in_file)
    for row in plan.rows:
        for key, label in (("guardian", "Guardian external ID"), ("spouse", "Spouse external ID")):
            ref = row.values[key]
            if ref and ref not in in_file and ref not in known:
                plan.problems.append(
                    Problem(
                        row.line,
                        label,
                        f"No patient with external ID “{ref}” in this file or an earlier import.",
                    )
                )
    # The same person twice: same names and date of birth, in the file or already in Carnet.
    keyed = {}
    for row in plan.rows:
        v = row.values
        if not v["date_of_birth"]:
            continue
        key = (v["first_name"].lower(), v["last_name"].lower(), v["date_of_birth"])
        if key in keyed:
            plan.problems.append(
                Problem(
                    row.line,
                    "",
                    f"Duplicate patient: {v['first_name']} {v['last_name']}, "
                    f"born {v['date_of_birth']}, is also on line {keyed[key]}.",
                )
            )
        keyed.setdefault(key, row.line)
    births = sorted({k[2] for k in keyed})
    existing = {}
    for part in chunks(births):
        for pk, first, last, born in Patient.objects.filter(date_of_birth__in=part).values_list(
            "pk", "first_name", "last_name", "date_of_birth"
        ):
            existing[(first.lower(), last.lower(), born)] = pk
    for key, line in keyed.items():
        if key in existing:
            plan.problems.append(
                Problem(
                    line,
                    "",
                    f"Duplicate patient: {key[0].title()} {key[1].title()}, born "
                    f"{key[2]}, is already in Carnet (patient #{existing[key]}). Remove the "
                    "row, or give it that patient's details if it is someone else.",
                )
            )


def _patient_refs(plan: Plan, key: str = "patient", label: str = "Patient external ID"):
    known = imported_ids(Kind.PATIENTS, (r.values[key] for r in plan.rows if r.values[key]))
    for row in plan.rows:
        ref = row.values[key]
        if ref and ref not in known:
            plan.problems.append(
                Problem(
                    row.line,
                    label,
                    f"No imported patient has external ID “{ref}”; import the patients first.",
                )
            )
        row.values[f"{key}_id"] = known.get(ref)


def _name_key(text: str) -> str:
    """ "Silva, Ana" and "Ana Silva" alike: lower-cased words, "Last, First" turned around."""
    if "," in text:
        last, _, first = text.partition(",")
        text = f"{first} {last}"
    return " ".join(text.lower().split())


def _patients_by_name(plan: Plan, key: str = "patient", label: str = "Patient name") -> None:
    """Rows naming their patient by name instead of external ID:
    exactly one patient of that name."""

    rows = [r for r in plan.rows if not r.values[key] and r.values.get(f"{key}_name")]
    if not rows:
        return
    found: dict[str, set[int]] = {}
    for pk, first, preferred, last in Patient.objects.values_list(
        "pk", "first_name", "preferred_name", "last_name"
    ):
        for given in {first, preferred} - {""}:
            found.setdefault(_name_key(f"{given} {last}"), set()).add(pk)
    for row in rows:
        name = row.values[f"{key}_name"]
        pks = found.get(_name_key(name), set())
        if len(pks) == 1:
            row.values[f"{key}_id"] = next(iter(pks))
        else:
            plan.problems.append(
                Problem(
                    row.line,
                    label,
                    (
                        f"No patient named “{name}” in Carnet; import the patients first, "
                        "or correct the name."
                    )
                    if not pks
                    else (
                        f"{len(pks)} patients are named “{name}”; give this row a Patient "
                        "external ID instead."
                    ),
                )
            )


def _templates(plan: Plan, kind: str, label: str, *, describable: bool = False) -> None:
    """Each row's template, by name; for packages a name not in Carnet may be
    described by the row."""

    by_name: dict[str, list] = {}
    for template in PassTemplate.objects.filter(kind=kind).prefetch_related("items", "taxes"):
        by_name.setdefault(template.name.strip().lower(), []).append(template)
    for row in plan.rows:
        name = row.values["template"]
        found = by_name.get(name.strip().lower(), [])
        if not found and describable and row.values.get("treatments"):
            row.values["template_id"] = None  # described: made at commit (passes.opening)
            continue
        if len(found) != 1:
            where = "Settings → Packages & Memberships"
            plan.problems.append(
                Problem(
                    row.line,
                    label,
                    (
                        (
                            f"Unknown {kind} template “{name}”; create it in {where} (with its "
                            "eligible items), "
                        )
                        + (
                            (
                                "describe it in this row (its Eligible treatments, "
                                "quantity and price), "
                            )
                            if describable
                            else ""
                        )
                        + "or correct the name."
                    )
                    if not found
                    else (f"{len(found)} {kind} templates are named “{name}”; rename all but one."),
                )
            )
            continue
        if not found[0].items.all():
            plan.problems.append(
                Problem(
                    row.line,
                    label,
                    f"“{found[0].name}” has no eligible items; add them "
                    f"in Settings before importing its {kind}s.",
                )
            )
        row.values["template_id"] = found[0].pk
        row.values["template_obj"] = found[0]


def _described(plan: Plan) -> None:
    """Described packages: their treatments must be the clinic's, the same on every row of a name,
    and the quantity and price given (there is no template to take them from)."""

    by_name = {}
    for pk, name in Treatment.objects.values_list("pk", "name"):
        by_name.setdefault(name.strip().lower(), []).append(pk)
    first_of: dict[str, tuple[int, tuple]] = {}
    for row in plan.rows:
        v = row.values
        if "template_id" not in v or v["template_id"] is not None:
            continue
        ids, bad = [], False
        for name in (n.strip() for n in v["treatments"].split(";")):
            if not name:
                continue
            pks = by_name.get(name.lower(), [])
            if len(pks) != 1:
                plan.problems.append(
                    Problem(
                        row.line,
                        "Eligible treatments",
                        (f"No treatment named “{name}” in Carnet (Settings → Treatments).")
                        if not pks
                        else f"{len(pks)} treatments are named “{name}”; rename all but one.",
                    )
                )
                bad = True
            else:
                ids.append(pks[0])
        if not ids and not bad:
            plan.problems.append(
                Problem(row.line, "Eligible treatments", "Name at least one treatment it covers.")
            )
        if v["quantity"] is None:
            plan.problems.append(
                Problem(
                    row.line,
                    "Quantity",
                    "A described package needs its quantity (or its remaining and redeemed uses).",
                )
            )
        v["treatment_ids"] = tuple(dict.fromkeys(ids))
        key = v["template"].strip().lower()
        if key in first_of and first_of[key][1] != v["treatment_ids"] and not bad:
            plan.problems.append(
                Problem(
                    row.line,
                    "Eligible treatments",
                    f"“{v['template']}” covers other "
                    f"treatments on line {first_of[key][0]}; describe it the same way.",
                )
            )
        first_of.setdefault(key, (row.line, v["treatment_ids"]))


def _packages_cross(plan: Plan) -> None:

    _patient_refs(plan)
    _patients_by_name(plan)
    _templates(plan, PassKind.PACKAGE, "Package", describable=True)
    _described(plan)
    currency = plan.currency
    for row in plan.rows:
        v = row.values
        template = v.pop("template_obj", None)
        if template is not None and template.face_value_minor is not None:
            _value_package(plan, row, template)
            continue
        if v["remaining"] is None:
            plan.problems.append(Problem(row.line, "Remaining uses", "This is required."))
            continue
        if v["quantity"] is None and template is not None:
            v["quantity"] = template.quantity
        if not v["quantity"]:
            continue  # a problem already says so
        if v["remaining"] > v["quantity"]:
            plan.problems.append(
                Problem(
                    row.line,
                    "Remaining uses",
                    f"{v['remaining']} remaining is more than the quantity ({v['quantity']}).",
                )
            )
            continue
        row.money_minor = remaining_value(
            price=v["price"],
            quantity=v["quantity"],
            remaining=v["remaining"],
            given=v["remaining_value"],
            currency=currency,
        )
        if v["expiry"] and v["expiry"] < plan.cut_over:
            # Expired before the switch (a sales export lists those too): history, with nothing left
            # to defer; otherwise the first expiry run would book the previous
            # system's breakage in Carnet.
            row.money_minor = 0


def _value_package(plan: Plan, row: Row, template: PassTemplate) -> None:
    """A row of a package that holds a value (issue 23): its value left (and held, by default its
    template's), and the price paid for it (blank: the template's, when it held the template's
    value). Its opening balance is the price's share of the value left, as each draw in Carnet
    then recognises: price × value left ÷ value held."""
    v = row.values

    def money(minor: int) -> Money:
        return Money(minor, plan.currency)

    held = v["value_held"] if v["value_held"] is not None else template.face_value_minor
    v.update(value_held=held, quantity=None)
    if v["value_left"] is None:
        plan.problems.append(
            Problem(
                row.line,
                "Value left",
                f"“{template.name}” holds a value, not uses: give the value it still covers "
                f"(of {money(held)}).",
            )
        )
        return
    if v["value_left"] > held:
        plan.problems.append(
            Problem(
                row.line,
                "Value left",
                f"{money(v['value_left'])} left is more than the value held ({money(held)}).",
            )
        )
        return
    price = v["price"]
    if price is None and v["remaining_value"] is None:
        if held != template.face_value_minor:
            plan.problems.append(
                Problem(
                    row.line,
                    "Price",
                    f"Give the price paid for {money(held)} of value (the template's is for "
                    f"{money(template.face_value_minor)}).",
                )
            )
            return
        price = v["price"] = template.price_minor
    row.money_minor = remaining_value(
        price=price,
        quantity=None,
        remaining=v["value_left"],
        given=v["remaining_value"],
        currency=plan.currency,
        held=held,
    )
    if v["expiry"] and v["expiry"] < plan.cut_over:
        row.money_minor = 0  # history, as for a package that counts uses


def _memberships_cross(plan: Plan) -> None:

    _patient_refs(plan)
    _patients_by_name(plan)
    _templates(plan, PassKind.MEMBERSHIP, "Membership")
    cut_over = plan.cut_over
    for row in plan.rows:
        v = row.values
        template = v.pop("template_obj", None)
        if template is None:
            continue  # a problem already says so
        if v["start_date"] > cut_over:
            plan.problems.append(
                Problem(
                    row.line,
                    "Start date",
                    f"It starts after the cut-over ({cut_over}): sell it in Carnet instead.",
                )
            )
            continue
        current = current_cycle(
            template, start_date=v["start_date"], next_cycle=v["next_cycle_date"]
        )
        if current.problem:
            plan.problems.append(Problem(row.line, "Next cycle date", current.problem))
            continue
        if current.start > cut_over:
            plan.problems.append(
                Problem(
                    row.line,
                    "Next cycle date",
                    f"The cycle before {current.end} starts after "
                    f"the cut-over ({cut_over}): Carnet brings in the cycle running on the "
                    f"cut-over day. Give the date the cycle after it starts.",
                )
            )
            continue
        if template.uses_per_cycle is not None and v["uses_this_cycle"] > template.uses_per_cycle:
            plan.problems.append(
                Problem(
                    row.line,
                    "Uses this cycle",
                    f"{v['uses_this_cycle']} is more than the "
                    f"{template.uses_per_cycle} uses a cycle of “{template.name}” allows.",
                )
            )
            continue
        v["current"] = current
        if v["cycle_price"] is None:
            v["cycle_price"] = template.price_minor
        row.money_minor = _unearned(template, current, v["cycle_price"], cut_over, plan.currency)


def _unearned(template, current, price: int, cut_over: dt.date, currency: str) -> int:
    """The current cycle's part not yet earned at the cut-over (before tax): the opening balance."""

    net = line_amounts(
        gross=price,
        rates=[t.rate for t in template.taxes.all()],
        inclusive=template.tax_inclusive,
        currency=currency,
    ).net
    row = PassInvoice(period_start=current.start, period_end=current.end, net_minor=net)
    return net - cycle_earned_minor(row, cut_over)


def _gift_cards_cross(plan: Plan) -> None:

    _patient_refs(plan, "purchaser", "Purchaser external ID")
    codes = [r.values["code"] for r in plan.rows]
    taken = set()
    for part in chunks(codes):
        taken |= {
            c.upper() for c in GiftCard.objects.filter(code__in=part).values_list("code", flat=True)
        }
    for row in plan.rows:
        if row.values["code"] in taken:
            plan.problems.append(
                Problem(
                    row.line,
                    "Code",
                    f"The code {row.values['code']} is already used by a gift card in Carnet.",
                )
            )
