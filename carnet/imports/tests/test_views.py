"""The import page: upload, the mapping step and dry run, commit, templates, undo."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from carnet.conftest import make_staff
from carnet.core.permissions import AccessLevel
from carnet.imports.models import ImportBatch, ImportFile
from carnet.passes.models import Pass
from carnet.passes.tests.factories import membership_template
from carnet.people.models import Patient

pytestmark = pytest.mark.django_db
OTHER_SYSTEM = "Ref,Given,Family,Birthday\nA1,Ana,Silva,1984-03-21\nA2,Ben,Silva,\n"


@pytest.fixture
def owner_client(client, catalog):
    client.force_login(make_staff(AccessLevel.FULL_ACCESS).user)
    return client


def _upload(client, text, kind="patients"):
    response = client.post(
        "/imports/",
        {
            "kind": kind,
            "file": SimpleUploadedFile("x.csv", text.encode()),
            "cut_over": "2026-05-01",
        },
    )
    assert response.status_code == 302
    return response["Location"]


def test_unmatched_columns_are_chosen_on_the_mapping_step_then_imported(owner_client):
    url = _upload(owner_client, OTHER_SYSTEM)
    page = owner_client.get(url)
    assert (
        page.status_code == 400
        and b"Choose the file&#x27;s column for: External ID, First name, Last name" in page.content
    )
    mapped = owner_client.get(
        url + "&map_external_id=0&map_first_name=1&map_last_name=2&map_date_of_birth=3"
    )
    assert mapped.status_code == 200 and b"would create <strong>2</strong>" in mapped.content
    assert Patient.objects.count() == 0
    upload = ImportFile.objects.get()
    done = owner_client.post(
        f"/imports/files/{upload.pk}/commit/",
        {
            "kind": "patients",
            "cut_over": "2026-05-01",
            "map_external_id": "0",
            "map_first_name": "1",
            "map_last_name": "2",
            "map_date_of_birth": "3",
            "map_notes": "",
        },
        follow=True,
    )
    assert b"Imported: 2 created" in done.content and Patient.objects.count() == 2
    assert not ImportFile.objects.exists()
    again = owner_client.post(
        f"/imports/files/{upload.pk}/commit/", {"kind": "patients"}, follow=True
    )
    assert b"already been imported" in again.content and Patient.objects.count() == 2


def test_problems_are_listed_with_their_lines_and_there_is_no_import_button(owner_client):
    url = _upload(owner_client, "External ID,First name,Last name\nP1,Ana,\nP2,Ben,Li\n")
    page = owner_client.get(url)
    assert b"1 problem" in page.content and b"This is required." in page.content
    assert b"Import 1 row" not in page.content


def test_templates_download_and_undo_from_the_list(owner_client):
    template = owner_client.get("/imports/template/?kind=gift_cards")
    assert template["Content-Type"].startswith("text/csv") and template.content.startswith(
        "\ufeffCode,Balance".encode()
    )
    url = _upload(owner_client, "External ID,First name,Last name\nP1,Ana,Silva\n")
    upload = ImportFile.objects.get()
    owner_client.post(f"/imports/files/{upload.pk}/commit/", {"kind": "patients"})
    batch = ImportBatch.objects.get()
    listing = owner_client.get("/imports/")
    assert b"Undo" in listing.content and batch.file_sha256[:10].encode() in listing.content
    owner_client.post(f"/imports/{batch.pk}/undo/")
    assert Patient.objects.count() == 0 and url


def test_another_persons_upload_is_not_reachable(owner_client, client):
    _upload(owner_client, OTHER_SYSTEM)
    upload = ImportFile.objects.get()

    other = Client()
    other.force_login(make_staff(AccessLevel.FULL_ACCESS).user)
    response = other.get(f"/imports/files/{upload.pk}/?kind=patients")
    assert response.status_code == 302


def test_a_bad_file_gets_a_message_not_an_error(owner_client):
    url = _upload(owner_client, "\x00\x01binary")
    assert owner_client.get(url).status_code == 400
    empty = owner_client.post(
        "/imports/", {"kind": "patients", "file": SimpleUploadedFile("e.csv", b"")}
    )
    assert empty.status_code == 400


def test_a_combined_sales_export_goes_in_as_memberships_from_the_page(owner_client, catalog):
    membership_template(catalog, name="Wellness monthly", price=6000, uses=2)
    _upload(owner_client, "External ID,First name,Last name\nP1,Ana,Silva\n")
    owner_client.post(
        f"/imports/files/{ImportFile.objects.get().pk}/commit/",
        {"kind": "patients", "cut_over": "2026-05-01"},
    )
    sales = (
        "Patient ID,Type,Item,Start Date,Next Billing Date,Auto Pay\n"
        "P1,Membership,Wellness monthly,2026-03-20,2026-05-20,yes\n"
        "P1,Package,10 massages,,,\n"
    )
    page = owner_client.get(_upload(owner_client, sales, kind="memberships"))
    assert page.status_code == 200, page.content.decode()[-2000:]
    assert (
        b"would create <strong>1</strong>" in page.content
        and b"1 of the other kind" in page.content
    )
    assert b"Next cycle date" in page.content  # the mapping step names the columns it read
    upload = ImportFile.objects.get()
    done = owner_client.post(
        f"/imports/files/{upload.pk}/commit/",
        {"kind": "memberships", "cut_over": "2026-05-01"},
        follow=True,
    )
    assert b"Imported: 1 created" in done.content
    assert Pass.objects.get(kind="membership").payment_mode == "automatic"
