"""Patient and staff pages: forms keep input and show inline errors; actions show messages."""

import pytest
from django.urls import reverse

from carnet.clinic.models import Location
from carnet.conftest import make_patient, make_staff
from carnet.core.permissions import AccessLevel
from carnet.people.models import FamilyLink, Patient, Shift

pytestmark = pytest.mark.django_db


@pytest.fixture
def desk_client(client):
    client.force_login(make_staff(AccessLevel.FRONT_DESK).user)
    return client


def test_new_patient_form_shows_inline_errors_and_keeps_input(desk_client):
    response = desk_client.post(
        reverse("people:patient_new"), {"first_name": "Ana", "last_name": "", "email": "nope"}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert 'value="Ana"' in page and "This field is required" in page and "valid email" in page
    assert not Patient.objects.exists()


def test_new_patient_saves_and_opens_the_profile(desk_client):
    response = desk_client.post(
        reverse("people:patient_new"),
        {"first_name": "Ana", "last_name": "Silva", "phone": "(416) 555-0142"},
    )
    patient = Patient.objects.get()
    assert response["Location"] == reverse("people:patient", kwargs={"pk": patient.pk})
    assert patient.phone_digits == "4165550142"


def test_search_page_and_live_search_fragment(desk_client):
    make_patient(first_name="Marguerite", last_name="Okafor")
    make_patient(first_name="Leon", last_name="Brandt")
    page = desk_client.get(reverse("people:patients"), {"q": "okaf"}).content.decode()
    assert "Marguerite" in page and "Leon" not in page and "<html" in page
    fragment = desk_client.get(
        reverse("people:patients"), {"q": "brandt"}, headers={"HX-Request": "true"}
    )
    assert "Leon" in fragment.content.decode() and "<html" not in fragment.content.decode()
    empty = desk_client.get(reverse("people:patients"), {"q": "zzz"}).content.decode()
    assert "No patient matches" in empty


def test_family_links_from_the_profile(desk_client):
    parent, child = make_patient(first_name="Parent"), make_patient(first_name="Child")
    desk_client.post(
        reverse("people:family_add", kwargs={"pk": child.pk}),
        {"kind": "dependant", "relative": parent.pk},
    )
    link = FamilyLink.objects.get()
    assert (link.patient, link.relative, link.kind) == (parent, child, "guardian")
    profile = desk_client.get(reverse("people:patient", kwargs={"pk": parent.pk})).content.decode()
    assert "Dependant" in profile and "Child" in profile
    again = desk_client.post(
        reverse("people:family_add", kwargs={"pk": parent.pk}),
        {"kind": "spouse", "relative": child.pk},
        follow=True,
    )
    assert "already linked" in again.content.decode()
    assert FamilyLink.objects.count() == 1


def test_staff_management_page_flow(client):
    boss = make_staff(AccessLevel.FULL_ACCESS)
    client.force_login(boss.user)
    response = client.post(
        reverse("people:staff_new"),
        {
            "display_name": "Pat Physio",
            "username": "pat",
            "password": "password",
            "access_level": 20,
        },
    )
    assert "too common" in response.content.decode()  # the password validators speak on the form
    response = client.post(
        reverse("people:staff_new"),
        {
            "display_name": "Pat Physio",
            "username": "pat",
            "password": "a long enough password",
            "access_level": 20,
            "is_practitioner": "on",
        },
    )
    member = boss.__class__.objects.get(user__username="pat")
    assert response["Location"] == reverse("people:staff_edit", kwargs={"pk": member.pk})
    owner_grant = client.post(
        reverse("people:staff_edit", kwargs={"pk": member.pk}),
        {
            "display_name": "Pat Physio",
            "access_level": AccessLevel.ACCOUNT_OWNER,
            "is_active": "on",
        },
    )
    assert owner_grant.status_code == 403  # only an Account Owner can make an Account Owner

    loc = Location.objects.create(name="Uptown", time_zone="America/Toronto")
    refused = client.post(
        reverse("people:shift_add", kwargs={"pk": member.pk}),
        {"location": loc.pk, "weekday": 0, "start_time": "09:00", "end_time": "17:00"},
        follow=True,
    )
    assert "does not work at that location" in refused.content.decode()
    member.locations.add(loc)
    client.post(
        reverse("people:shift_add", kwargs={"pk": member.pk}),
        {"location": loc.pk, "weekday": 0, "start_time": "09:00", "end_time": "17:00"},
    )
    assert Shift.objects.filter(staff=member).count() == 1
