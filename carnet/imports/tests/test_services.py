"""Imports: dry run, all-or-nothing commit, re-runs, opening balances in the ledger, undo."""

import datetime as dt
import io

import pytest
from openpyxl import Workbook

from carnet.billing.payments import credit_apply
from carnet.billing.tests.factories import manual_invoice
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient, make_staff
from carnet.core.errors import Conflict, NotAllowed, ValidationFailed
from carnet.core.permissions import AccessLevel
from carnet.giftcards.models import GiftCard
from carnet.imports.models import ImportBatch, ImportedRecord
from carnet.imports.services import import_commit, import_preview, import_undo
from carnet.ledger import accounts
from carnet.ledger.models import JournalTransaction
from carnet.ledger.selectors import balance
from carnet.passes.models import Pass
from carnet.passes.tests.factories import at, package_template, practitioner
from carnet.people.models import FamilyLink, Patient
from carnet.reports.pass_reports import deferred_revenue_rollforward
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book

pytestmark = pytest.mark.django_db

PATIENTS = (
    "External ID,First name,Last name,Preferred name,Email,Phone,Date of birth,"
    "Guardian external ID\n"
    "P1,Ana,Silva,Annie,ana@example.com,416-555-0101,1984-03-21,\n"
    "P2,Ben,Silva,,,,2015-06-01,P1\n"
    "P3,Chloé,Martin,,chloe@example.com,,21/07/1990,\n"
)
PACKAGES = (
    "External ID,Patient external ID,Package,Purchase date,Price,Quantity,Remaining uses,"
    "Expiry date\n"
    "S1,P1,10 massages,2026-01-10,100.00,3,2,2026-12-31\n"
    "S2,P3,10 massages,2026-02-01,,5,4,\n"
)


def _commit(user, kind, text, **kw):
    return import_commit(actor=user, kind=kind, data=text.encode(), file_name=f"{kind}.csv", **kw)


def _patients(user):
    return _commit(user, "patients", PATIENTS, cut_over=dt.date(2026, 5, 1))


def test_the_dry_run_shows_what_would_be_created_and_writes_nothing(owner_user):
    preview = import_preview(
        actor=owner_user, kind="patients", data=PATIENTS.encode(), file_name="p.csv"
    )
    assert preview.ok and preview.plan.encoding == "UTF-8" and len(preview.plan.rows) == 3
    assert preview.first_rows(1)[0]["first_name"] == "Ana"
    assert ("Date of birth", "Date of birth") in preview.mapped()
    assert Patient.objects.count() == 0 and ImportBatch.objects.count() == 0


def test_patients_come_in_with_family_links_and_a_second_run_creates_nothing(owner_user):
    batch = _patients(owner_user)
    assert (batch.created, batch.skipped, batch.rows) == (3, 0, 3)
    ben = Patient.objects.get(first_name="Ben")
    assert FamilyLink.objects.get(relative=ben).patient.first_name == "Ana"
    assert Patient.objects.get(first_name="Chloé").date_of_birth == dt.date(1990, 7, 21)
    again = _patients(owner_user)
    assert (again.created, again.skipped) == (0, 3) and Patient.objects.count() == 3


def test_windows_encoding_and_a_bom_are_detected_and_said(owner_user):
    text = "External ID,First name,Last name\nP9,Zoë,Müller\n"
    windows = import_preview(
        actor=owner_user, kind="patients", data=text.encode("cp1252"), file_name="w.csv"
    )
    assert (
        windows.plan.encoding == "Windows-1252"
        and windows.plan.rows[0].values["first_name"] == "Zoë"
    )
    bom = import_preview(
        actor=owner_user, kind="patients", data=b"\xef\xbb\xbf" + text.encode(), file_name="b.csv"
    )
    assert bom.plan.encoding == "UTF-8 with BOM" and bom.mapping["external_id"] == 0


def test_an_xlsx_file_is_read_like_a_csv(owner_user):
    book = Workbook()
    sheet = book.active
    sheet.append(["Patient ID", "First Name", "Last Name", "Birth Date"])
    sheet.append(["J-7", "Dana", "Li", dt.datetime(1979, 1, 2)])
    buffer = io.BytesIO()
    book.save(buffer)
    preview = import_preview(
        actor=owner_user, kind="patients", data=buffer.getvalue(), file_name="jane.xlsx"
    )
    assert preview.ok and preview.plan.encoding == "XLSX"
    assert preview.plan.rows[0].values["date_of_birth"] == dt.date(1979, 1, 2)
    assert preview.plan.rows[0].external_id == "J-7"


BAD = {
    "patients": (
        "External ID,First name,Last name,Date of birth,Email\n"
        "P1,Ana,Silva,1984-13-01,\n"
        "P2,,Silva,,\n"
        "P3,Cy,Ng,03/04/1990,\n"
        "P4,Di,Ng,,not-an-email\n"
        "P4,Ed,Ng,,\n",
        [
            (2, "Date of birth"),
            (3, "First name"),
            (4, "Date of birth"),
            (5, "Email"),
            (6, "External ID"),
        ],
    ),
}


def test_every_bad_row_is_named_with_its_line_and_column_and_nothing_is_written(owner_user):
    text, expected = BAD["patients"]
    preview = import_preview(
        actor=owner_user, kind="patients", data=text.encode(), file_name="bad.csv"
    )
    assert [(p.line, p.column) for p in preview.plan.problems] == expected
    assert all(p.message for p in preview.plan.problems)
    with pytest.raises(ValidationFailed, match="Nothing was imported: 5 problem"):
        _commit(owner_user, "patients", text)
    assert Patient.objects.count() == 0 and ImportBatch.objects.count() == 0


def test_package_rows_are_checked_against_templates_patients_and_their_own_numbers(
    owner_user, catalog
):
    _patients(owner_user)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    text = (
        "Patient external ID,Package,Purchase date,Price,Quantity,Remaining uses\n"
        "P1,Unknown pack,2026-01-01,10,5,1\n"
        "P1,10 massages,2026-01-01,10,5,6\n"
        "P404,10 massages,2026-01-01,10,5,1\n"
        "P1,10 massages,2026-01-01,-10,5,1\n"
        "P1,10 massages,yesterday,10,5,1\n"
    )
    problems = import_preview(
        actor=owner_user, kind="packages", data=text.encode(), file_name="x.csv"
    ).plan.problems
    said = {(p.line, p.column): p.message for p in problems}
    assert "Unknown package template" in said[(2, "Package")]
    assert "more than the quantity" in said[(3, "Remaining uses")]
    assert "import the patients first" in said[(4, "Patient external ID")]
    assert "negative" in said[(5, "Price")]
    assert "not a date" in said[(6, "Purchase date")]


def test_a_duplicate_patient_already_in_carnet_is_refused(owner_user):
    make_patient(first_name="Ana", last_name="Silva", date_of_birth=dt.date(1984, 3, 21))
    problems = import_preview(
        actor=owner_user, kind="patients", data=PATIENTS.encode(), file_name="p.csv"
    ).plan.problems
    assert [p.line for p in problems] == [2] and "Duplicate patient" in problems[0].message


def test_imported_packages_open_deferred_revenue_and_redeem_like_sold_ones(owner_user, catalog):
    _patients(owner_user)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    text = PACKAGES.replace(
        "S2,P3,10 massages,2026-02-01,,5,4,", "S2,P3,10 massages,2026-02-01,,5,4,"
    )
    header, s1, s2 = text.strip().splitlines()
    text = "\n".join([header + ",Remaining value", s1 + ",", s2 + ",80.00"]) + "\n"
    batch = _commit(owner_user, "packages", text, cut_over=dt.date(2026, 5, 1))
    # 100.00 over 3 uses is 33.33/33.33/33.34: two left are worth 66.67; the second has 80.00 left.
    assert batch.money_minor == 6667 + 8000
    assert balance(accounts.DEFERRED_PACKAGES) == 14667
    assert balance(accounts.OPENING_BALANCE_EQUITY) == -14667  # equity's normal balance is a credit
    opening = JournalTransaction.objects.filter(kind="opening_balance").order_by("pk").first()
    assert opening.at == dt.datetime(2026, 5, 1, tzinfo=dt.timezone(dt.timedelta(hours=-4)))
    ana_pass = Pass.objects.get(patient__first_name="Ana")
    assert (ana_pass.quantity, ana_pass.remaining, ana_pass.expires_on) == (
        3,
        2,
        dt.date(2026, 12, 31),
    )
    assert_ledger_ok()

    prac = practitioner(catalog["location"])
    values = []
    for hhmm in ("09:00", "10:00"):
        appointment = appointment_book(
            actor=owner_user,
            treatment=catalog["treatment"],
            practitioner=prac,
            location=catalog["location"],
            start=at("2026-05-12", hhmm),
            patients=[ana_pass.patient],
        )
        appointment_arrive(actor=owner_user, appointment=appointment)
        values.append(appointment.visits.get().redemptions.get().value_minor)
    assert values == [3333, 3334]
    ana_pass.refresh_from_db()
    assert ana_pass.remaining == 0
    assert balance(accounts.DEFERRED_PACKAGES) == 8000
    assert_ledger_ok()


def test_credit_and_gift_cards_open_their_liabilities_against_equity(owner_user):
    _patients(owner_user)
    _commit(owner_user, "credit", "Patient external ID,Credit\nP1,25.00\nP3,$10.50\n")
    _commit(
        owner_user,
        "gift_cards",
        "Code,Balance,Purchaser external ID\ngift2026a,50.00,P1\nZERO123,0,\n",
    )
    ana = Patient.objects.get(first_name="Ana")
    assert balance(accounts.PATIENT_CREDIT, patient_id=ana.pk) == 2500
    assert balance(accounts.GIFT_CARD_LIABILITY) == 5000
    assert GiftCard.objects.get(code="GIFT2026A").balance_minor == 5000
    assert balance(accounts.OPENING_BALANCE_EQUITY) == -(2500 + 1050 + 5000)
    assert_ledger_ok()
    bad = import_preview(
        actor=owner_user,
        kind="gift_cards",
        data=b"Code,Balance\n012345,5\nab c,5\nGIFT2026A,5\n",
        file_name="g.csv",
    ).plan
    assert [p.line for p in bad.problems] == [2, 3] and len(bad.skipped) == 1


def test_undo_reverses_the_opening_balances_and_lets_the_file_come_in_again(owner_user, catalog):
    _patients(owner_user)
    batch = _commit(owner_user, "credit", "Patient external ID,Credit\nP1,25.00\n")
    undone = import_undo(actor=owner_user, batch=batch)
    assert undone.undone_at is not None
    assert balance(accounts.PATIENT_CREDIT) == 0 and balance(accounts.OPENING_BALANCE_EQUITY) == 0
    assert JournalTransaction.objects.filter(kind="opening_balance_undone").count() == 1
    assert not ImportedRecord.objects.filter(batch=batch, live=True).exists()
    assert_ledger_ok()
    with pytest.raises(Conflict, match="already undone"):
        import_undo(actor=owner_user, batch=batch)
    again = _commit(owner_user, "credit", "Patient external ID,Credit\nP1,25.00\n")
    assert again.created == 1


def test_undo_is_refused_once_something_imported_has_been_used(owner_user, catalog):
    patients = _patients(owner_user)
    _commit(owner_user, "credit", "Patient external ID,Credit\nP1,25.00\n")
    ana = Patient.objects.get(first_name="Ana")
    invoice = manual_invoice(
        make_staff(AccessLevel.FULL_ACCESS), ana, 1000, category=catalog["income_category"]
    )
    credit_apply(actor=owner_user, patient=ana, invoice=invoice)
    credit_batch = ImportBatch.objects.get(kind="credit")
    with pytest.raises(Conflict, match="has been used"):
        import_undo(actor=owner_user, batch=credit_batch)
    with pytest.raises(Conflict, match="cannot be undone"):
        import_undo(actor=owner_user, batch=patients)
    assert balance(accounts.PATIENT_CREDIT, patient_id=ana.pk) == 1500
    assert_ledger_ok()


def test_only_full_access_imports(owner_user):
    admin = make_staff(AccessLevel.ADMIN_BILLING).user
    with pytest.raises(NotAllowed):
        import_preview(actor=admin, kind="patients", data=PATIENTS.encode(), file_name="p.csv")


def test_the_roll_forward_shows_imported_value_in_its_own_column_and_ties_out(owner_user, catalog):
    _patients(owner_user)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    _commit(
        owner_user,
        "packages",
        PACKAGES.replace(",,5,4,", ",40.00,5,4,"),
        cut_over=dt.date(2026, 5, 1),
    )
    report = deferred_revenue_rollforward(actor=owner_user, start="2026-05-01", end="2026-05-31")
    assert report.ties_out, report.mismatches
    row = next(r for r in report.table.rows if r["template"] == "10 massages")
    assert (row["opening"], row["imported"], row["closing"]) == (0, 6667 + 3200, 6667 + 3200)
    later = deferred_revenue_rollforward(actor=owner_user, start="2026-06-01", end="2026-06-30")
    assert later.ties_out and "imported" not in [c.key for c in later.table.columns]
