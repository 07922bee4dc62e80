"""Imports of other systems' exports (Jane's patient list and Package & Membership sales, matched by
their column names), described packages and packages partly paid before the switch."""

import datetime as dt

import pytest

from carnet.billing.models import Invoice, Payment
from carnet.billing.payments import payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.core.errors import Conflict, ValidationFailed
from carnet.imports.columns import mapping_guess
from carnet.imports.services import import_commit, import_preview, import_undo
from carnet.ledger import accounts
from carnet.ledger.selectors import balance
from carnet.passes.models import Pass, PassTemplate
from carnet.passes.packages.ending import (
    pass_delete,
    pass_refund,
    pass_transfer,
    passes_expire,
    refund_suggestions,
)
from carnet.passes.redeeming.eligibility import pass_check
from carnet.passes.tests.factories import package_template
from carnet.people.models import Patient

pytestmark = pytest.mark.django_db

# Jane's patient list export names its columns like this (its address in parts, three phones).
JANE_PATIENTS = (
    "Patient ID,First Name,Preferred Name,Last Name,Email,Mobile Phone,Home "
    "Phone,Address,City,Province,Postal Code,Country,Birth "
    "Date\n101,Ana,,Silva,ana@example.com,,416-555-0101,12 Queen St W,Toronto,ON,M5H "
    "2N2,Canada,1984-03-21\n102,Ben,Benny,Okafor,,647-555-0102,,,,,,,1990-01-02\n"
)
# Jane's Package & Membership sales export: the patient by name, sessions remaining and redeemed.
JANE_PACKAGES = (
    "Patient,Package,Purchase Date,Price,Paid,Remaining Sessions,Redeemed Sessions,"
    "Expiration Date\n"
    "Ana Silva,10 massages,2026-01-10,900.00,900.00,6,4,2026-12-31\n"
    '"Okafor, Ben",10 massages,2026-02-01,900.00,300.00,10,0,\n'
)


def _commit(user, kind, text, **kw):
    return import_commit(
        actor=user,
        kind=kind,
        data=text.encode(),
        file_name=f"{kind}.csv",
        cut_over=dt.date(2026, 5, 1),
        **kw,
    )


def test_jane_patient_and_sales_headers_are_matched_without_hand_work(owner_user):
    patients = mapping_guess("patients", JANE_PATIENTS.splitlines()[0].split(","))
    assert {
        "external_id",
        "first_name",
        "last_name",
        "preferred_name",
        "email",
        "phone",
        "other_phone",
        "address",
        "city",
        "province",
        "postal_code",
        "country",
        "date_of_birth",
    } <= set(patients)
    packages = mapping_guess("packages", JANE_PACKAGES.splitlines()[0].split(","))
    assert packages == {
        "patient_name": 0,
        "template": 1,
        "purchase_date": 2,
        "price": 3,
        "amount_paid": 4,
        "remaining": 5,
        "redeemed": 6,
        "expiry": 7,
    }


def test_a_jane_patient_list_comes_in_with_its_address_and_a_phone(owner_user):
    _commit(owner_user, "patients", JANE_PATIENTS)
    ana = Patient.objects.get(first_name="Ana")
    assert ana.address == "12 Queen St W, Toronto, ON, M5H 2N2, Canada"
    assert ana.phone == "416-555-0101"  # no mobile: the home phone
    assert Patient.objects.get(first_name="Ben").phone == "647-555-0102"


def test_a_jane_sales_export_finds_patients_by_name_and_the_quantity_from_the_sessions(
    owner_user, catalog
):
    _commit(owner_user, "patients", JANE_PATIENTS)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    batch = _commit(owner_user, "packages", JANE_PACKAGES)
    ana = Pass.objects.get(patient__first_name="Ana")
    assert (ana.quantity, ana.remaining, ana.expires_on) == (10, 6, dt.date(2026, 12, 31))
    ben = Pass.objects.get(patient__first_name="Ben")
    assert (ben.quantity, ben.remaining) == (10, 10)
    assert batch.money_minor == 54000 + 90000
    assert_ledger_ok()
    again = _commit(owner_user, "packages", JANE_PACKAGES)
    assert (again.created, again.skipped) == (0, 2)


def test_a_patient_name_that_is_unknown_or_shared_is_a_line_numbered_problem(owner_user, catalog):
    _commit(owner_user, "patients", JANE_PATIENTS + "103,Ana,,Silva,,,,,,,,,1999-09-09\n")
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    text = (
        "Patient,Package,Purchase Date,Price,Remaining Sessions\n"
        "Ana Silva,10 massages,2026-01-10,900.00,6\n"
        "Zed Nobody,10 massages,2026-01-10,900.00,6\n"
        ",10 massages,2026-01-10,900.00,6\n"
    )
    problems = {
        (p.line, p.column): p.message
        for p in import_preview(
            actor=owner_user, kind="packages", data=text.encode(), file_name="x.csv"
        ).plan.problems
    }
    assert "2 patients are named “Ana Silva”" in problems[(2, "Patient name")]
    assert "No patient named “Zed Nobody”" in problems[(3, "Patient name")]
    assert "external ID or name" in problems[(4, "Patient name")]


def test_a_file_without_any_patient_column_is_refused_before_its_rows(owner_user):
    with pytest.raises(ValidationFailed, match="Patient external ID or Patient name"):
        import_preview(
            actor=owner_user,
            kind="packages",
            file_name="y.csv",
            data=b"Package,Purchase date,Remaining uses\n10 massages,2026-01-01,1\n",
        )


def test_a_partly_paid_package_owes_the_rest_on_an_invoice_and_covers_visits_once_paid(
    owner_user, catalog
):
    _commit(owner_user, "patients", JANE_PATIENTS)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    _commit(owner_user, "packages", JANE_PACKAGES)
    ben = Pass.objects.get(patient__first_name="Ben")
    invoice = Invoice.objects.get(patient=ben.patient)
    assert (invoice.total_minor, invoice.applied_minor, invoice.balance_minor) == (
        90000,
        30000,
        60000,
    )
    assert balance(accounts.AR, patient_id=ben.patient_id) == 60000
    # Deferred holds the whole value of the uses left; equity the value less what is owed.
    assert balance(accounts.DEFERRED_PACKAGES) == 54000 + 90000
    assert balance(accounts.OPENING_BALANCE_EQUITY) == -(54000 + 90000 - 60000)
    assert_ledger_ok()
    verdict = pass_check(
        ben, patient=ben.patient, treatment=catalog["treatment"], visit_date=dt.date(2026, 5, 2)
    )
    assert verdict.code == "not_paid" and "600.00" in verdict.message
    payment_receive(
        actor=owner_user,
        patient=ben.patient,
        method="cash",
        amount_minor=60000,
        allocations=[(invoice, 60000)],
    )
    ben = Pass.objects.get(pk=ben.pk)
    assert pass_check(
        ben, patient=ben.patient, treatment=catalog["treatment"], visit_date=dt.date(2026, 5, 2)
    ).ok
    assert balance(accounts.AR, patient_id=ben.patient_id) == 0
    assert_ledger_ok()


def test_amounts_paid_or_owed_that_cannot_be_are_refused(owner_user, catalog):
    _commit(owner_user, "patients", JANE_PATIENTS)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    text = (
        "Patient ID,Package,Purchase Date,Price,Amount paid,Balance owing,Quantity,Remaining "
        "uses,Remaining value\n101,10 massages,2026-01-10,900.00,1000.00,,10,5,\n101,10 "
        "massages,2026-01-10,,100.00,,10,5,50.00\n101,10 "
        "massages,2026-01-10,900.00,,-5,10,5,\n102,10 massages,2026-01-10,900.00,,100.00,10,5,\n"
    )
    plan = import_preview(
        actor=owner_user, kind="packages", data=text.encode(), file_name="x.csv"
    ).plan
    said = {(p.line, p.column): p.message for p in plan.problems}
    assert "more than the price" in said[(2, "Amount paid")]
    assert "Give the price too" in said[(3, "Price")]
    assert "negative" in said[(4, "Balance owing")]
    assert set(said) == {(2, "Amount paid"), (3, "Price"), (4, "Balance owing")}
    assert plan.rows[-1].values["paid"] == 80000  # the balance owing counts against the price


def test_an_unpaid_imported_package_is_undone_with_its_invoice_but_not_once_paid(
    owner_user, catalog
):
    _commit(owner_user, "patients", JANE_PATIENTS)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    batch = _commit(owner_user, "packages", JANE_PACKAGES)
    ben = Pass.objects.get(patient__first_name="Ben")
    with pytest.raises(Conflict, match="imported from the previous system"):
        pass_delete(actor=owner_user, sold_pass=ben)
    import_undo(actor=owner_user, batch=batch)
    assert (
        not Pass.objects.exists() and not Invoice.objects.exists() and not Payment.objects.exists()
    )
    assert balance(accounts.AR) == 0 and balance(accounts.DEFERRED_PACKAGES) == 0
    assert balance(accounts.OPENING_BALANCE_EQUITY) == 0
    assert_ledger_ok()

    batch = _commit(owner_user, "packages", JANE_PACKAGES)
    invoice = Invoice.objects.get(patient__first_name="Ben")
    payment_receive(
        actor=owner_user,
        patient=invoice.patient,
        method="cash",
        amount_minor=100,
        allocations=[(invoice, 100)],
    )
    with pytest.raises(Conflict, match="paid or changed in Carnet"):
        import_undo(actor=owner_user, batch=batch)
    assert_ledger_ok()


def test_a_described_package_gets_an_archived_template_of_its_own(owner_user, catalog):
    _commit(owner_user, "patients", JANE_PATIENTS)
    text = (
        "Patient ID,Package,Eligible treatments,Purchase date,Price,Quantity,Remaining uses\n"
        "101,Old 5-pack,Massage 60,2025-11-01,250.00,5,3\n"
        "102,Old 5-pack,massage 60,2025-12-01,250.00,5,5\n"
    )
    batch = _commit(owner_user, "packages", text)
    template = PassTemplate.objects.get(name="Old 5-pack")
    assert template.archived and [i.treatment_id for i in template.items.all()] == [
        catalog["treatment"].pk
    ]
    ana = Pass.objects.get(patient__first_name="Ana")
    assert (ana.template_id, ana.quantity, ana.remaining) == (template.pk, 5, 3)
    assert batch.money_minor == 15000 + 25000
    assert pass_check(
        ana, patient=ana.patient, treatment=catalog["treatment"], visit_date=dt.date(2026, 5, 2)
    ).ok
    assert_ledger_ok()


def test_a_described_package_needs_treatments_carnet_knows_and_its_quantity(owner_user, catalog):
    _commit(owner_user, "patients", JANE_PATIENTS)
    text = (
        "Patient ID,Package,Eligible treatments,Purchase date,Price,Remaining uses\n"
        "101,Old 5-pack,Reiki,2025-11-01,250.00,3\n"
        "101,Mystery,,2025-11-01,250.00,3\n"
    )
    said = {
        (p.line, p.column): p.message
        for p in import_preview(
            actor=owner_user, kind="packages", data=text.encode(), file_name="d.csv"
        ).plan.problems
    }
    assert "No treatment named “Reiki”" in said[(2, "Eligible treatments")]
    assert "needs its quantity" in said[(2, "Quantity")]
    assert "Unknown package template “Mystery”" in said[(3, "Package")]
    assert not PassTemplate.objects.exists()


def test_imported_packages_refund_transfer_and_expire_like_sold_ones(owner_user, catalog):
    _commit(owner_user, "patients", JANE_PATIENTS)
    package_template(catalog, name="10 massages", price=90000, quantity=10, transferable=True)
    text = (
        "Patient ID,Package,Purchase date,Price,Quantity,Remaining uses,Expiry date\n"
        "101,10 massages,2026-01-10,900.00,10,6,\n"
        "102,10 massages,2026-01-10,900.00,10,5,\n"
        "102,10 massages,2026-01-11,900.00,10,2,2026-05-31\n"
    )
    _commit(owner_user, "packages", text)
    ana, ben, ben_expiring = Pass.objects.order_by("patient__first_name", "purchase_date")
    # Collected before the switch: the suggestion is price ÷ quantity × uses left, as for a sale.
    assert refund_suggestions(ana)["suggested"] == 54000
    pass_refund(actor=owner_user, sold_pass=ana, amount_minor=50000)
    assert balance(accounts.PATIENT_CREDIT, patient_id=ana.patient_id) == 50000
    assert Payment.objects.get(patient=ana.patient).amount_minor == 50000
    new = pass_transfer(actor=owner_user, sold_pass=ben, to_patient=ana.patient)
    assert (new.remaining, new.deferred_minor) == (5, 45000)
    assert passes_expire(today=dt.date(2026, 6, 1)) >= 1
    assert Pass.objects.get(pk=ben_expiring.pk).status == Pass.Status.EXPIRED
    # What is left deferred: the transferred 450.00 only (the refund kept 40.00 as breakage).
    assert balance(accounts.DEFERRED_PACKAGES) == 45000
    assert_ledger_ok()


def test_a_package_expired_before_the_switch_comes_in_with_nothing_deferred(owner_user, catalog):
    _commit(owner_user, "patients", JANE_PATIENTS)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    text = (
        "Patient ID,Package,Purchase date,Price,Quantity,Remaining uses,Expiry date\n"
        "101,10 massages,2025-01-10,900.00,10,4,2026-01-10\n"
    )
    batch = _commit(owner_user, "packages", text)
    assert batch.money_minor == 0 and balance(accounts.DEFERRED_PACKAGES) == 0
    passes_expire(today=dt.date(2026, 5, 2))
    assert Pass.objects.get().status == Pass.Status.EXPIRED
    assert balance(accounts.BREAKAGE) == 0  # the previous system's breakage is not Carnet's revenue
    assert_ledger_ok()


def test_a_partly_paid_imported_package_refunds_what_was_paid_and_cancels_what_is_owed(
    owner_user, catalog
):
    _commit(owner_user, "patients", JANE_PATIENTS)
    package_template(catalog, name="10 massages", price=90000, quantity=10)
    _commit(owner_user, "packages", JANE_PACKAGES)
    ben = Pass.objects.get(patient__first_name="Ben")
    assert refund_suggestions(ben)["collected"] == 30000
    pass_refund(actor=owner_user, sold_pass=ben, amount_minor=30000)
    assert balance(accounts.PATIENT_CREDIT, patient_id=ben.patient_id) == 30000
    assert balance(accounts.AR, patient_id=ben.patient_id) == 0
    assert_ledger_ok()


def test_the_clinics_windows_code_page_is_read_and_named(owner_user, settings):
    text = "External ID,First name,Last name\nP9,Łucja,Wałęsa\n"
    settings.IMPORT_WINDOWS_ENCODING = "cp1250"
    preview = import_preview(
        actor=owner_user, kind="patients", data=text.encode("cp1250"), file_name="pl.csv"
    )
    assert (
        preview.plan.encoding == "Windows-1250"
        and preview.plan.rows[0].values["last_name"] == "Wałęsa"
    )
    settings.IMPORT_WINDOWS_ENCODING = "cp1253"  # Greek: 0xAA is not a character in it
    with pytest.raises(ValidationFailed, match="neither UTF-8 nor Windows-1253"):
        import_preview(
            actor=owner_user,
            kind="patients",
            data=b"External ID,First name,Last name\nP9,\xaa,X\n",
            file_name="gr.csv",
        )
