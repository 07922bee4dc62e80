"""Issue 17, hostile input: each of these gave a 500 (or stored something wrong) and is now a 4xx
with a sentence, through the API and the pages, on SQLite and PostgreSQL alike.
Nothing is stored."""

import csv
import io
import json
import re

import pytest
from django.test import Client
from django.urls import get_resolver, reverse
from openpyxl import load_workbook

from carnet.billing.models import Invoice, Payment
from carnet.conftest import make_catalog, make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import ValidationFailed
from carnet.core.idempotency import new_form_key
from carnet.core.permissions import AccessLevel
from carnet.giftcards.models import GiftCard
from carnet.giftcards.services import code_normalize
from carnet.passes.models import Pass
from carnet.passes.tests.factories import membership_template, package_template, sold_package
from carnet.people.models import Patient
from carnet.reports.exports import csv_response, xlsx_bytes
from carnet.reports.table import MONEY, Column, Table
from carnet.scheduling.models import Appointment, Break
from carnet.scheduling.online import horizon_check
from carnet.scheduling.tests.factories import clinic_set, practitioner

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    clinic_set(time_zone="America/Toronto")
    catalog = make_catalog()
    owner = make_staff(AccessLevel.ACCOUNT_OWNER, name="Owner")
    owner.locations.add(catalog["location"])
    client = Client(raise_request_exception=False)
    client.force_login(owner.user)
    return {
        **catalog,
        "owner": owner,
        "client": client,
        "patient": make_patient(),
        "prac": practitioner(catalog["location"]),
    }


def _post(client, path, body, **headers):
    raw = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(path, raw, content_type="application/json", **headers)


def _refused(response, status=(400, 413, 422), *words):
    assert response.status_code in status, (response.status_code, response.content[:300])
    text = response.content.decode()
    if response["Content-Type"].startswith("application/problem+json"):
        text = response.json()["detail"]
        assert text.startswith(("Please correct", "Line ", "The request body")) or len(text) > 20, (
            text
        )
    for word in words:
        assert word in text, (word, text[:300])
    return text


def _line(world, **fields):
    return {
        "description": "Massage",
        "unit_price_minor": 1000,
        "income_category_id": world["income_category"].pk,
        "tax_ids": [],
        **fields,
    }


# ---------------------------------------------------------------- 9: what gave a 500


def test_amounts_of_2_63_or_10_30_are_a_4xx(world):
    client, patient = world["client"], world["patient"]
    for amount in (2**63, 10**30, -(2**63) - 1):
        _refused(
            _post(
                client,
                "/api/v1/invoices",
                {"patient_id": patient.pk, "lines": [_line(world, unit_price_minor=amount)]},
            ),
            (422,),
            "unit_price_minor",
        )
        _refused(
            _post(
                client,
                "/api/v1/payments",
                {"patient_id": patient.pk, "method": "cash", "amount_minor": amount},
            ),
            (422,),
            "amount_minor",
        )
    assert not Invoice.objects.exists() and not Payment.objects.exists()


def test_line_totals_that_overflow_are_refused(world):
    body = {
        "patient_id": world["patient"].pk,
        "lines": [_line(world, unit_price_minor=2**62, quantity=10)],
    }
    _refused(_post(world["client"], "/api/v1/invoices", body), (422,), "the most a line can be")
    assert not Invoice.objects.exists()


def test_null_characters_in_reference_description_and_search_are_refused(world):
    client, patient = world["client"], world["patient"]
    _refused(
        _post(
            client,
            "/api/v1/payments",
            {
                "patient_id": patient.pk,
                "method": "cash",
                "amount_minor": 100,
                "reference": "cheque\x00 12",
            },
        ),
        (422,),
        "reference",
        "null",
    )
    _refused(
        _post(
            client,
            "/api/v1/invoices",
            {"patient_id": patient.pk, "lines": [_line(world, description="Mass\x00age")]},
        ),
        (422,),
        "description",
        "null",
    )
    _refused(client.get("/api/v1/patients", {"q": "ok\x00afor"}), (400,), "q", "null")
    page = client.get(reverse("people:patients"), {"q": "ok\x00afor"})
    _refused(page, (400,), "null characters are not allowed")
    form = client.post(
        reverse("billing:payment_new", args=[patient.pk]),
        {"form_key": new_form_key(), "method": "cash", "amount": "10.00", "reference": "a\x00b"},
    )
    _refused(form, (400,), "reference")
    assert not Invoice.objects.exists() and not Payment.objects.exists()


def test_appointment_start_in_year_9999_or_0001_is_refused(world):
    client = world["client"]
    for start in ("9999-12-31T22:00:00-05:00", "0001-01-01T01:00:00+05:00"):
        _refused(
            _post(
                client,
                "/api/v1/appointments",
                {
                    "treatment_id": world["treatment"].pk,
                    "practitioner_id": world["prac"].pk,
                    "location_id": world["location"].pk,
                    "start": start,
                    "patient_ids": [world["patient"].pk],
                },
            ),
            (422,),
            "start",
            "between 1900 and 2200",
        )
    for start in ("9999-12-31T22:00", "0001-01-01T01:00"):
        page = client.post(
            reverse("scheduling:book") + f"?location={world['location'].pk}",
            {
                "form_key": new_form_key(),
                "treatment": world["treatment"].pk,
                "patient": world["patient"].pk,
                "practitioner": world["prac"].pk,
                "start": start,
                "package": "none",
            },
        )
        assert (
            page.status_code == 200
            and "Choose a date between 1900 and 2200" in page.content.decode()
        )
    assert not Appointment.objects.exists()


def test_schedule_date_9999_is_a_4xx_on_the_schedule_the_public_booking_page_and_the_api(world):
    client = world["client"]
    for day in ("9999-12-31", "0001-01-01"):
        _refused(
            client.get(reverse("scheduling:schedule"), {"date": day}),
            (422,),
            "between 1900 and 2200",
        )
        _refused(client.get("/api/v1/appointments", {"date": day}), (422,), "date")
        _refused(
            client.get(f"/api/v1/practitioners/{world['prac'].pk}/availability", {"date": day}),
            (422,),
            "date",
        )
    public = Client(raise_request_exception=False)  # nobody logged in
    book = reverse("booking:book", args=[world["location"].pk])
    _refused(public.get(book, {"day": "9999-12-31"}), (422,), "between 1900 and 2200")
    _refused(public.get(book, {"day": "not-a-day"}), (422,), "2026-05-01")
    assert public.get(book).status_code == 200


def test_json_body_over_the_size_limit_is_a_413_with_or_without_an_idempotency_key(world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = json.dumps({"first_name": "A" * 20_000, "last_name": "B"}).encode()
    _refused(_post(world["client"], "/api/v1/patients", body), (413,), "The request body is over")
    _refused(
        _post(world["client"], "/api/v1/patients", body, HTTP_IDEMPOTENCY_KEY="k-1"),
        (413,),
        "The request body is over",
    )
    assert not Patient.objects.filter(last_name="B").exists()


# ---------------------------------------------------------------- 10: limits and strict parsing


def test_money_limit_per_line_and_per_payment_defaults_to_one_million(world, settings):
    client, patient = world["client"], world["patient"]
    ok = _post(
        client,
        "/api/v1/invoices",
        {"patient_id": patient.pk, "lines": [_line(world, unit_price_minor=100_000_000)]},
    )
    assert ok.status_code == 201  # 1,000,000.00 exactly is allowed
    _refused(
        _post(
            client,
            "/api/v1/invoices",
            {"patient_id": patient.pk, "lines": [_line(world, unit_price_minor=100_000_001)]},
        ),
        (422,),
        "$1,000,000.00 is the most a line can be",
    )
    _refused(
        _post(
            client,
            "/api/v1/payments",
            {"patient_id": patient.pk, "method": "cash", "amount_minor": 100_000_001},
        ),
        (422,),
        "$1,000,000.00",
        "payment",
    )
    settings.MAX_PAYMENT_AMOUNT = 5_000  # configurable
    _refused(
        _post(
            client,
            "/api/v1/payments",
            {"patient_id": patient.pk, "method": "cash", "amount_minor": 500_001},
        ),
        (422,),
        "$5,000.00",
    )
    owing = (
        Invoice.objects.get()
    )  # applied to the open invoice, so the page asks nothing about credit
    page = client.post(
        reverse("billing:payment_new", args=[patient.pk]),
        {
            "form_key": new_form_key(),
            "method": "cash",
            "amount": "5000.01",
            f"apply_{owing.pk}": "5000.01",
        },
    )
    assert "$5,000.00 is the most a payment can be" in page.content.decode()
    assert Invoice.objects.count() == 1 and not Payment.objects.exists()


@pytest.mark.parametrize("amount", [True, "100", "1e2", "1_000", 1.0, "١٠٠", None])
def test_strict_amount_parsing_on_the_api(world, amount):
    body = {"patient_id": world["patient"].pk, "method": "cash", "amount_minor": amount}
    _refused(_post(world["client"], "/api/v1/payments", body), (422,), "amount_minor")
    assert not Payment.objects.exists()


@pytest.mark.parametrize("amount", ["1e2", "1_000", "١٠٠", "１００", "10.001", "true", "Infinity"])
def test_strict_amount_parsing_on_forms(world, amount):
    page = world["client"].post(
        reverse("billing:payment_new", args=[world["patient"].pk]),
        {"form_key": new_form_key(), "method": "cash", "amount": amount},
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "Enter an amount like 85.00" in html or "more decimals than" in html, amount
    assert not Payment.objects.exists()


def test_dates_are_within_1900_and_2200(world):
    client = world["client"]
    _refused(
        client.get(reverse("reports:billing_transactions"), {"start": "9999-01-01"}),
        (400,),
        "between 1900",
    )
    _refused(
        client.get("/api/v1/reports/billing/transactions", {"start": "1066-10-14"}),
        (422,),
        "between 1900",
    )
    _refused(
        _post(
            client,
            "/api/v1/patients",
            {"first_name": "Old", "last_name": "Date", "date_of_birth": "1850-01-01"},
        ),
        (422,),
        "date_of_birth",
    )


def test_membership_start_is_at_most_a_year_ago_and_within_1900_and_2200(world):
    """Past cycles are invoiced at once: a start in 1900 issued some 1,500 invoices in one request
    (the page took year 0001 too)."""
    client, patient, template = world["client"], world["patient"], membership_template(world)
    for start in (
        "1900-01-01",
        (clock.today("America/Toronto") - __import__("datetime").timedelta(days=400)).isoformat(),
    ):
        _refused(
            _post(
                client,
                f"/api/v1/patients/{patient.pk}/memberships",
                {"template_id": template.pk, "start_date": start},
            ),
            (422,),
            "at most a year ago",
        )
    for start in ("0001-01-01", "1900-01-01"):
        page = client.post(
            reverse("memberships:sell", args=[patient.pk]),
            {
                "form_key": new_form_key(),
                "template": template.pk,
                "start_date": start,
                "payment_mode": "manual",
            },
        )
        assert page.status_code in (200, 400, 422), page.status_code
        html = page.content.decode().lower()
        assert (
            "between 1900 and 2200" in html
            or "at most a year ago: every past cycle is invoiced" in html
        )
    assert not Pass.objects.exists() and not Invoice.objects.exists()
    recent = (
        clock.today("America/Toronto") - __import__("datetime").timedelta(days=60)
    ).isoformat()
    sold = _post(
        client,
        f"/api/v1/patients/{patient.pk}/memberships",
        {"template_id": template.pk, "start_date": recent},
    )
    assert sold.status_code == 201, sold.content


def test_dates_on_forms_are_within_1900_and_2200(world):
    """A package's expiry, a membership's start, an accounting export's period: year 9999 or 0001 is
    a message on the page, not a date stored to overflow later."""
    client, patient = world["client"], world["patient"]
    template = package_template(world)
    pages = [
        (
            reverse("passes:sell", args=[patient.pk]),
            {"template": template.pk, "expiry": "date", "expires_on": "9999-12-31", "pay": "later"},
        ),
        (
            reverse("accounting:index"),
            {"format": "qbo", "start": "0001-01-01", "end": "9999-12-31"},
        ),
    ]
    for url, data in pages:
        page = client.post(url, {"form_key": new_form_key(), **data})
        assert page.status_code in (200, 400), (url, page.status_code)
        assert "Choose a date between 1900 and 2200" in page.content.decode(), url
    assert not Pass.objects.exists()
    sold = sold_package(world["owner"], patient, template)
    expiry = client.post(
        reverse("passes:expiry", args=[sold.pk]), {"expires_on": "9999-12-31"}, follow=True
    )
    assert "Choose a date between 1900 and 2200" in expiry.content.decode()
    sold.refresh_from_db()
    assert sold.expires_on is None or sold.expires_on.year < 9999


def test_no_date_of_birth_in_the_future(world):
    client = world["client"]
    tomorrow = (
        clock.today("Pacific/Kiritimati").replace(year=clock.today("UTC").year + 1).isoformat()
    )
    _refused(
        _post(
            client,
            "/api/v1/patients",
            {"first_name": "Not", "last_name": "Born", "date_of_birth": tomorrow},
        ),
        (422,),
        "future",
    )
    page = client.post(
        reverse("people:patient_new"),
        {"first_name": "Not", "last_name": "Born", "date_of_birth": tomorrow},
    )
    assert page.status_code == 200 and "Cannot be in the future" in page.content.decode()
    assert not Patient.objects.filter(last_name="Born").exists()
    today = _post(
        client,
        "/api/v1/patients",
        {
            "first_name": "Just",
            "last_name": "Born",
            "date_of_birth": clock.today("America/Toronto").isoformat(),
        },
    )
    assert today.status_code == 201


def test_online_booking_beyond_the_horizon_is_refused(world, settings):
    settings.ONLINE_BOOKING_HORIZON_DAYS = 30
    today = clock.today("America/Toronto")
    horizon_check(day=today.replace(day=1) if today.day > 1 else today, location=world["location"])
    with pytest.raises(ValidationFailed, match="30 days ahead"):
        horizon_check(
            day=today + __import__("datetime").timedelta(days=31), location=world["location"]
        )
    public = Client(raise_request_exception=False)
    far = (today + __import__("datetime").timedelta(days=45)).isoformat()
    _refused(
        public.get(reverse("booking:book", args=[world["location"].pk]), {"day": far}),
        (422,),
        "30 days ahead",
    )


def test_too_long_text_is_a_4xx_naming_the_limit_never_cut(world):
    client, patient = world["client"], world["patient"]
    _refused(
        _post(
            client,
            "/api/v1/payments",
            {
                "patient_id": patient.pk,
                "method": "cash",
                "amount_minor": 100,
                "reference": "r" * 121,
            },
        ),
        (422,),
        "at most 120 characters",
    )
    _refused(
        _post(
            client,
            "/api/v1/invoices",
            {"patient_id": patient.pk, "lines": [_line(world, description="d" * 201)]},
        ),
        (422,),
        "At most 200 characters",
    )
    paid = _post(
        client,
        "/api/v1/payments",
        {"patient_id": patient.pk, "method": "cash", "amount_minor": 100, "reference": "r" * 120},
    )
    assert paid.status_code == 201 and paid.json()["reference"] == "r" * 120
    _refused(
        _post(
            client,
            f"/api/v1/payments/{paid.json()['id']}/refunds",
            {"amount_minor": 50, "reason": "x" * 201},
        ),
        (422,),
        "at most 200 characters",
    )
    assert Payment.objects.get().refunded_minor == 0


def test_too_long_gift_card_recipient_or_break_reason_is_a_4xx_naming_the_limit_never_cut(world):
    """These were cut to their column's length without a word (SQLite) or a 500
    (PostgreSQL, the email)."""
    client = world["client"]
    _refused(
        _post(client, "/api/v1/gift-cards", {"code": "GIFT2026", "recipient_name": "n" * 121}),
        (422,),
        "at most 120 characters (this is 121)",
    )
    _refused(
        _post(
            client,
            "/api/v1/gift-cards",
            {"code": "GIFT2026", "recipient_email": "e" * 250 + "@example.test"},
        ),
        (422,),
        "at most 254 characters",
    )
    card = _post(client, "/api/v1/gift-cards", {"code": "GIFT2026", "recipient_name": "n" * 120})
    assert card.status_code == 201 and card.json()["recipient_name"] == "n" * 120
    patch = client.patch(
        f"/api/v1/gift-cards/{card.json()['id']}",
        json.dumps({"recipient_name": "m" * 121}),
        content_type="application/json",
    )
    _refused(patch, (422,), "at most 120 characters")
    assert GiftCard.objects.get().recipient_name == "n" * 120
    _refused(
        _post(
            client,
            f"/api/v1/practitioners/{world['prac'].pk}/breaks",
            {
                "location_id": world["location"].pk,
                "start": "2026-05-12T12:00:00-04:00",
                "end": "2026-05-12T13:00:00-04:00",
                "reason": "r" * 121,
            },
        ),
        (422,),
        "at most 120 characters",
    )
    assert not Break.objects.exists()


# ---------------------------------------------------------------- 11: gift-card codes


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("ＧＩＦＴ２０２６", "GIFT2026"),  # full-width letters and digits
        ("gift\u200b2026", "GIFT2026"),  # a zero-width space inside
        ("\ufeffgift2026\u200d", "GIFT2026"),  # a BOM and a zero-width joiner around it
        ("ﬁlet-42", "FILET-42"),  # a ligature
    ],
)
def test_gift_card_codes_are_normalised_before_the_rules(typed, stored):
    assert code_normalize(typed) == stored


@pytest.mark.parametrize(
    ("typed", "rule"),
    [
        ("ＡＢ１", "at least 6 characters"),
        (
            "AB\u200b\u200b\u200b\u200bC",
            "at least 6 characters",
        ),  # invisible characters do not count
        ("ＧＩＦＴ　２０２６", "cannot contain spaces"),  # an ideographic space
        ("０GIFT26", "cannot start with 0"),  # a full-width zero
        ("G" * 41, "at most 40 characters"),
        ("GIFT\x0726", "control characters"),
    ],
)
def test_gift_card_code_error_names_the_one_rule_broken(typed, rule):
    with pytest.raises(ValidationFailed) as caught:
        code_normalize(typed)
    assert rule in caught.value.message
    [named] = caught.value.fields["code"]  # one rule, the one broken
    assert rule in named


def test_gift_card_codes_are_normalised_when_created_redeemed_and_searched(world):
    """However the code is typed (full-width, an invisible character pasted in), it is one card."""
    client, patient = world["client"], world["patient"]
    made = _post(
        client,
        "/api/v1/gift-cards",
        {"code": "gift\u200b2026", "amount_minor": 5000, "purchaser_id": patient.pk},
    )
    assert made.status_code == 201 and made.json()["code"] == "GIFT2026"
    _refused(
        _post(client, "/api/v1/gift-cards", {"code": "ＧＩＦＴ２０２６"}), (409,)
    )  # the same code
    found = client.get("/api/v1/gift-cards", {"code": "ｇｉｆｔ\u200d２０"}).json()
    assert [c["code"] for c in found] == ["GIFT2026"]
    page = client.get(reverse("giftcards:list"), {"q": "\ufeffＧＩＦＴ２０２６"}).content.decode()
    assert "GIFT2026" in page
    paid = _post(
        client,
        "/api/v1/gift-cards/redeem",
        {"code": "ＧＩＦＴ\u200b２０２６", "patient_id": patient.pk, "amount_minor": 1000},
    )
    assert paid.status_code == 201, paid.content


# ---------------------------------------------------------------- 12: exports

HOSTILE = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


def _hostile_table():
    return Table(
        title="Hostile",
        columns=[Column("name", "Patient"), Column("amount", "Amount", MONEY, total=True)],
        rows=[{"name": name, "amount": -1250 + i} for i, name in enumerate(HOSTILE)]
        + [{"name": "Léa Bélanger — Ltée", "amount": 0}],
    )


def test_csv_export_neutralises_formulas_and_starts_with_a_bom(db):
    raw = csv_response(_hostile_table()).content
    assert raw.startswith("\ufeff".encode())  # so Excel reads UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    names = [row[0] for row in rows[1:-1]]
    assert names == ["'" + name for name in HOSTILE] + ["Léa Bélanger — Ltée"]
    assert [row[1] for row in rows[1:3]] == ["-12.50", "-12.49"]  # negative amounts stay numbers


def test_xlsx_export_writes_formula_like_text_as_text(db):
    sheet = load_workbook(io.BytesIO(xlsx_bytes(_hostile_table()))).active
    cells = [sheet.cell(row=r, column=1) for r in range(2, 2 + len(HOSTILE))]
    # exactly what was typed (XML reads a lone CR back as a line feed) …
    assert [c.value for c in cells] == [h.replace("\r", "\n") for h in HOSTILE]
    assert all(c.data_type == "s" for c in cells)  # … as text, never a formula


def test_report_downloads_are_neutralised_end_to_end(world):
    client = world["client"]
    url = reverse("reports:billing_transactions")
    response = client.get(url, {"format": "csv"})
    assert response.status_code == 200 and response.content.startswith("\ufeff".encode())


HUGE = (
    127958745510579956426473472  # beyond 64 bits: SQLite raised OverflowError (found by the fuzzer)
)


def test_an_id_beyond_64_bits_is_a_404_in_the_api_and_on_pages(world):
    client = world["client"]
    for path in [
        f"/api/v1/appointments/{HUGE}/patients/{HUGE}/explain",
        f"/api/v1/appointments/{HUGE}",
    ]:
        response = client.get(path)
        assert response.status_code == 404, (path, response.content[:300])
        assert response.json()["code"] == "not_found"
    response = client.delete(f"/api/v1/appointments/{HUGE}/patients/537317/pass")
    assert response.status_code == 404, response.content[:300]
    # Every page whose address holds an id, with that id beyond 64 bits: never a 500.
    tried = 0
    for path in _page_paths_with_ids(HUGE):
        response = client.get(path)
        assert response.status_code < 500, (path, response.status_code)
        tried += 1
    assert tried > 30, tried


def _page_paths_with_ids(number):
    """Every page route with an <int:…> part, filled with `number` (other parts with "x")."""

    def walk(patterns, prefix):
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if hasattr(entry, "url_patterns"):
                yield from walk(entry.url_patterns, route)
            elif "<int:" in route and not route.startswith("api/"):
                filled = re.sub(r"<(str|slug|path):\w+>", "x", route)
                yield "/" + re.sub(r"<int:\w+>", str(number), filled)

    return sorted(set(walk(get_resolver().url_patterns, "")))
