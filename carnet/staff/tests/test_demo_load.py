"""The demo loader: a complete clinic, loaded once, and logins printed every time."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from carnet.billing.models import Invoice, Payment
from carnet.billing.selectors import amount_owing, credit_balance
from carnet.clinic.models import (
    Clinic,
    Discipline,
    IncomeCategory,
    Location,
    Product,
    Tax,
    Treatment,
)
from carnet.conftest import make_patient
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.people.models import CommissionRate, FamilyLink, Patient, Shift, StaffMember
from carnet.scheduling.models import Appointment

pytestmark = pytest.mark.django_db

MODELS = [
    Clinic,
    Location,
    Discipline,
    IncomeCategory,
    Tax,
    Treatment,
    Product,
    StaffMember,
    CommissionRate,
    Shift,
    Patient,
    FamilyLink,
    ActivityLog,
    get_user_model(),
]
STAFF_LOGINS = {
    "owner": AccessLevel.ACCOUNT_OWNER,
    "fulladmin": AccessLevel.FULL_ACCESS,
    "admin": AccessLevel.ADMIN_BILLING,
    "frontdesk": AccessLevel.FRONT_DESK,
    "pfdall": AccessLevel.PRACTITIONER_FRONT_DESK_ALL,
    "pfd": AccessLevel.PRACTITIONER_FRONT_DESK,
    "practitioner": AccessLevel.PRACTITIONER_LIMITED,
    "noaccess": AccessLevel.NO_ACCESS,
}


def run() -> str:
    out = StringIO()
    call_command("demo_load", stdout=out)
    return out.getvalue()


def counts() -> dict:
    return {model.__name__: model.objects.count() for model in MODELS}


def test_loads_a_complete_clinic_once_and_prints_the_logins_every_time():
    first = run()
    loaded = counts()

    clinic = Clinic.objects.get(pk=1)
    assert (clinic.currency, clinic.time_zone, clinic.no_show_fee_minor) == (
        "CAD",
        "America/Toronto",
        4000,
    )
    assert clinic.name and clinic.address

    assert Location.objects.count() == 2
    assert Location.objects.values("time_zone").distinct().count() == 2
    assert Discipline.objects.count() == 3
    assert Tax.objects.count() == 2
    assert Treatment.objects.count() >= 8
    for kind in (Treatment.Kind.GROUP, Treatment.Kind.CLASS):
        assert Treatment.objects.filter(kind=kind, capacity__gte=2).exists()
    assert Treatment.objects.filter(online_bookable=True).exists()
    assert 3 <= Product.objects.filter(stock__gt=0).count() <= 5

    for username, level in STAFF_LOGINS.items():
        staff = StaffMember.objects.get(user__username=username)
        assert staff.access_level == level
        assert staff.user.check_password("carnet-demo-clinic")
    assert {s.access_level for s in StaffMember.objects.all()} == set(AccessLevel.values)
    practitioners = StaffMember.objects.filter(is_practitioner=True)
    assert practitioners.count() >= 2
    for staff in practitioners:
        assert staff.commission_rates.exists() and staff.shifts.exists()
        assert not staff.shifts.exclude(location__in=staff.locations.all()).exists()

    assert Patient.objects.count() == 30
    guardian_links = FamilyLink.objects.filter(kind=FamilyLink.Kind.GUARDIAN)
    guardian_ids = set(guardian_links.values_list("patient", flat=True))
    assert len(guardian_ids) == 1
    assert guardian_links.filter(patient_id=guardian_ids.pop()).count() == 2
    assert FamilyLink.objects.filter(kind=FamilyLink.Kind.SPOUSE).count() == 1
    portal = Patient.objects.filter(user__isnull=False)
    assert 2 <= portal.count() <= 3
    for patient in portal:
        assert patient.user.username == patient.email.lower()
        assert patient.user.check_password("carnet-demo-clinic")
    # Written through the services, so the activity log has the story.
    assert ActivityLog.objects.filter(object_type="people.patient").count() >= 30

    second = run()
    assert counts() == loaded
    assert "already loaded" in second

    for output in (first, second):
        assert "http://127.0.0.1:8000/login/" in output
        assert "http://127.0.0.1:8000/portal/login/" in output
        assert "carnet-demo-clinic" in output
        for username, level in STAFF_LOGINS.items():
            assert any(
                line.split()[:1] == [username] and level.label in line
                for line in output.splitlines()
            )
        for patient in portal:
            assert patient.email.lower() in output


def test_refuses_to_mix_the_demo_into_a_clinic_that_is_already_set_up():
    make_patient()
    before = counts()
    with pytest.raises(CommandError, match="not the demo"):
        run()
    assert counts() == before


def test_demo_has_a_billing_history_that_passes_ledger_check(capsys):
    call_command("demo_load")
    assert Invoice.objects.count() >= 4 and Payment.objects.filter(method="card_gateway").exists()
    arjun, rebecca = (
        Patient.objects.get(first_name="Arjun"),
        Patient.objects.get(first_name="Rebecca"),
    )
    assert amount_owing(arjun) > 0 and credit_balance(rebecca) > 0

    assert Appointment.objects.count() >= 10  # a week of visits on the schedule
    call_command("ledger_check")  # raises SystemExit on a broken invariant
    assert "A/R per patient" in capsys.readouterr().out
