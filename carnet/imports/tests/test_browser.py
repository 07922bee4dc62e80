"""In a real browser: Full Access uploads another system's patient file, matches its columns, reads
the dry run and imports it; then an Admin exports the month to QuickBooks Online. Each page passes
axe-core's checks, at phone, tablet and desktop widths."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from carnet.billing.payments import payment_receive
from carnet.conftest import log_in, make_catalog, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.models import Patient

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SIZES = [(390, 844), (820, 1180), (1366, 900)]
FILE = "Ref,Given,Family,Birth Date\nA1,Ana,Silva,1984-03-21\nA2,Ben,Silva,21/07/2015\n"


def _accessible(page):
    # The page's own content: the layout's navigation bar and message list (base.html) are left to
    # the layout's own tests.
    results = Axe().run(page, context={"include": [["main"]], "exclude": [[".messages"]]})
    assert results.violations_count == 0, results.generate_report()


def _no_sideways_scroll(page):
    """The page's content fits its width (wide tables scroll inside their own box)."""
    wide = page.evaluate("""() => [...document.querySelectorAll('main *')]
        .filter(e => !e.closest('.table-scroll')
            && e.getBoundingClientRect().right > window.innerWidth + 1)
        .map(e => e.tagName + '.' + e.className)""")
    assert wide == []


@pytest.mark.parametrize("width,height", SIZES)
def test_import_another_systems_patients_through_the_mapping_step(page, tmp_path, width, height):
    make_catalog()
    owner = make_staff(AccessLevel.FULL_ACCESS, name="Olive Owner")
    page.set_viewport_size({"width": width, "height": height})
    path = tmp_path / "other-system.csv"
    path.write_text(FILE, encoding="utf-8")
    log_in(page, owner.user)
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Import data").click()
    _accessible(page)
    page.get_by_label("What the file holds").select_option("patients")
    page.get_by_label("CSV or XLSX file").set_input_files(str(path))
    page.get_by_role("button", name="Check the file").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Choose the file's column for: External ID, First name"
    )
    page.locator("#map_external_id").select_option(label="Ref")
    page.get_by_label("First name").select_option(label="Given")
    page.get_by_label("Last name *", exact=True).select_option(label="Family")
    page.get_by_role("button", name="Check again").click()
    expect(page.get_by_test_id("summary")).to_contain_text("would create 2")
    _accessible(page)
    _no_sideways_scroll(page)
    page.get_by_role("button", name="Import 2 rows").click()
    expect(page.get_by_role("status")).to_contain_text("Imported: 2 created")
    assert sorted(Patient.objects.values_list("first_name", flat=True)) == ["Ana", "Ben"]
    assert Patient.objects.get(first_name="Ben").date_of_birth.isoformat() == "2015-07-21"
    _accessible(page)


def test_export_the_month_to_quickbooks_online(page):
    make_catalog()
    admin = make_staff(AccessLevel.ADMIN_BILLING, name="Ada Admin")
    payment_receive(actor=admin.user, patient=make_patient(), method="cash", amount_minor=2500)
    log_in(page, admin.user)
    page.get_by_role("link", name="Reports").click()
    page.get_by_role("link", name="Journal export").click()
    page.get_by_role("link", name="Account mapping").click()
    _accessible(page)
    page.get_by_label("QuickBooks account name for Cash – cash").fill("Undeposited Funds")
    page.get_by_label("QuickBooks account name for Patient credit").fill("Customer deposits")
    page.get_by_role("button", name="Save mapping").click()
    expect(page.get_by_role("status")).to_contain_text("Account mapping saved")
    page.get_by_role("link", name="Accounting").click()
    today = page.evaluate("new Date().toLocaleDateString('en-CA')")
    page.get_by_label("Format").select_option("qbo")
    page.get_by_label("From").fill(today[:8] + "01")
    page.get_by_label("To (included)").fill(today)
    with page.expect_download() as download:
        page.get_by_role("button", name="Export").click()
    text = open(download.value.path(), encoding="utf-8").read()
    assert text.startswith(
        "Journal No,Journal Date,Account Name,Debits,Credits,Description,Name,Location"
    )
    assert "Undeposited Funds" in text and "Customer deposits" in text
    page.goto("/accounting/")
    _accessible(page)
    expect(page.get_by_role("cell", name="unchanged")).to_be_visible()
