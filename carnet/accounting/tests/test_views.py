"""The accounting pages: mapping, export download (one file or a zip), overlap warning, reports."""

import datetime as dt
import io
import zipfile

import pytest

from carnet.accounting import formats
from carnet.accounting.models import AccountMapping, JournalExport
from carnet.billing.payments import payment_receive
from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.ledger.models import Account
from carnet.passes.tests.factories import at

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, catalog):
    admin = make_staff(AccessLevel.ADMIN_BILLING)
    client.force_login(admin.user)
    with clock.frozen(at("2026-05-04", "10:00")):
        payment_receive(actor=admin.user, patient=make_patient(), method="cash", amount_minor=2500)
    return client


def _map(client):
    data = {}
    for n, a in enumerate(Account.objects.all()):
        data[f"name:{a.code}"] = f"Carnet {a.name}"
        data[f"code:{a.code}"] = str(300 + n)
    return client.post("/accounting/mapping/", data)


def test_mapping_is_saved_and_a_formula_is_refused_on_the_page(admin_client):
    assert _map(admin_client).status_code == 302
    assert AccountMapping.objects.count() == Account.objects.count()
    bad = admin_client.post("/accounting/mapping/", {"name:cash:cash": "=1+1"})
    assert bad.status_code == 400 and b"cannot start with" in bad.content


def test_export_downloads_the_file_then_warns_on_an_overlapping_period(admin_client):
    form = {"format": "qbo", "start": "2026-05-01", "end": "2026-05-31"}
    refused = admin_client.post("/accounting/", form)
    assert refused.status_code == 400 and b"Map every account" in refused.content
    _map(admin_client)
    response = admin_client.post("/accounting/", form)
    assert response["Content-Disposition"].endswith('.csv"') and response.content.startswith(
        b"Journal No,"
    )
    again = admin_client.post("/accounting/", form)
    assert again.status_code == 400 and b"overlaps what was already exported" in again.content
    assert b"Export even though" in again.content
    forced = admin_client.post("/accounting/", {**form, "allow_overlap": "on", "format": "iif"})
    assert forced.content.startswith(b"!TRNS") and JournalExport.objects.count() == 2
    page = admin_client.get("/accounting/")
    assert b"unchanged" in page.content


def test_xero_parts_come_as_one_zip(admin_client, monkeypatch):
    with clock.frozen(at("2026-05-05", "10:00")):
        payment_receive(
            actor=make_staff(AccessLevel.ADMIN_BILLING).user,
            patient=make_patient(),
            method="debit",
            amount_minor=1000,
        )
    _map(admin_client)
    monkeypatch.setattr(formats, "XERO_MAX_LINES", 2)
    response = admin_client.post(
        "/accounting/",
        {"format": "xero", "start": "2026-05-01", "end": "2026-05-31", "detailed": "on"},
    )
    assert response["Content-Type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert len(names) == 2 and all(n.endswith(".csv") for n in names)


def test_trial_balance_and_general_ledger_pages_with_downloads(admin_client):
    page = admin_client.get("/accounting/trial-balance/?start=2026-05-01&end=2026-05-31")
    assert page.status_code == 200 and b"Patient credit" in page.content
    assert (
        b"/accounting/general-ledger/?start=2026-05-01&amp;end=2026-05-31&amp;account=patient_credit"
        in page.content
    )
    xlsx = admin_client.get(
        "/accounting/trial-balance/?start=2026-05-01&end=2026-05-31&format=xlsx"
    )
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    gl = admin_client.get(
        "/accounting/general-ledger/?start=2026-05-01&end=2026-05-31&account=patient_credit&format=csv"
    )
    assert b"payment_received" in gl.content
    bad = admin_client.get("/accounting/trial-balance/?start=2026-05-31&end=2026-05-01")
    assert bad.status_code == 400 and dt.date
