"""No leaks to patients (issue 18 point 6): patient-facing API schemas without staff notes,
compensation or internal fields (field by field), and 404s about someone else's
record that name no one."""

import pytest

from carnet.billing.tests.factories import manual_invoice
from carnet.conftest import PASSWORD, Api, make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.passes.tests.factories import package_template, sold_package
from carnet.people.services import patient_portal_enable

pytestmark = pytest.mark.django_db
PATIENT_FIELDS = {
    "id",
    "first_name",
    "last_name",
    "preferred_name",
    "full_name",
    "email",
    "phone",
    "date_of_birth",
    "address",
}


@pytest.fixture
def world(catalog):
    desk = make_staff(AccessLevel.FRONT_DESK)
    me = make_patient(
        first_name="Mina", email="mina@example.test", notes="Staff only: difficult payer"
    )
    patient_portal_enable(
        actor=make_staff(AccessLevel.ACCOUNT_OWNER).user, patient=me, password=PASSWORD
    )
    me.refresh_from_db()
    other = make_patient(first_name="Zed", last_name="Neighbour", email="zed@example.test")
    return {"desk": desk, "me": me, "other": other, "catalog": catalog}


def test_me_and_own_record_carry_no_staff_notes(world):
    api = Api(world["me"].user)
    me = api.get("/me").json()
    assert set(me["patient"]) == PATIENT_FIELDS
    own = api.get(f"/patients/{world['me'].pk}").json()
    assert set(own) == PATIENT_FIELDS and "difficult" not in str(own)
    # Staff still get the whole record.
    staff_view = Api(world["desk"].user).get(f"/patients/{world['me'].pk}").json()
    assert staff_view["notes"] == "Staff only: difficult payer" and "has_portal_login" in staff_view


def test_own_package_carries_no_compensation_or_payment_internals(world):
    cat = world["catalog"]
    template = package_template(cat, items=[(cat["treatment"], 500, 4321, None)])
    sold = sold_package(world["desk"], world["me"], template)
    body = Api(world["me"].user).get(f"/passes/{sold.pk}").json()
    assert set(body) == {
        "id",
        "patient_id",
        "patient_name",
        "name",
        "status",
        "purchase_date",
        "quantity",
        "used",
        "remaining",
        "expires_on",
        "kind",
        "start_date",
        "ends_after",
        "self_cancel",
        "pause_allowed",
        "items",
        "expiry_disclosure",  # the clinic's expiry terms, for the patient
        "face_value_minor",
        "value_left_minor",
    }  # a package that holds a value: its balance
    assert [set(item) for item in body["items"]] == [
        {
            "treatment_id",
            "treatment_name",
            "additional_charge_minor",
            "limit",
            "used_count",
            "value_minor",
        }
    ]
    assert "4321" not in str(body)
    staff_body = Api(world["desk"].user).get(f"/passes/{sold.pk}").json()
    assert staff_body["items"][0]["compensation_minor"] == 4321


def test_someone_elses_invoice_pass_or_record_is_not_found_and_names_no_one(world):
    cat = world["catalog"]
    invoice = manual_invoice(world["desk"], world["other"], 1000, category=cat["income_category"])
    theirs = sold_package(world["desk"], world["other"], package_template(cat))
    api = Api(world["me"].user)
    for path, detail in [
        (f"/invoices/{invoice.pk}", f"No invoice with id {invoice.pk}."),
        (f"/passes/{theirs.pk}", f"No pass with id {theirs.pk}."),
        (f"/patients/{world['other'].pk}", f"No patient with id {world['other'].pk}."),
    ]:
        response = api.get(path)
        assert response.status_code == 404 and response.json()["detail"] == detail, path
        assert (
            "Zed" not in response.content.decode() and "Neighbour" not in response.content.decode()
        )
    other_id = str(world["other"].pk)
    assert other_id not in api.get(f"/invoices/{invoice.pk}").json()["detail"].replace(
        str(invoice.pk), ""
    )


def test_the_openapi_document_shows_the_separate_patient_schemas(world):
    schemas = Api(world["desk"].user).get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["PatientSelfOut"]["properties"]) == PATIENT_FIELDS
    assert "compensation_minor" not in schemas["MyPassItemOut"]["properties"]
    assert "notes" in schemas["PatientOut"]["properties"]
