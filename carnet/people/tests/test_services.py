import datetime as dt
import hashlib
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from carnet.conftest import PASSWORD, make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import Conflict, NotAllowed, ValidationFailed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel, Action, can
from carnet.people import selectors, services
from carnet.people.models import ApiToken, CommissionRate, FamilyLink, Patient, Shift, StaffMember

User = get_user_model()
T = dt.time


@pytest.fixture
def full_access(db):
    return make_staff(AccessLevel.FULL_ACCESS, name="Full")


def log_for(obj) -> list[ActivityLog]:
    return list(
        ActivityLog.objects.filter(
            object_type=obj._meta.label_lower, object_id=str(obj.pk)
        ).order_by("id")
    )


def new_staff(actor, **overrides) -> StaffMember:
    data = {
        "username": "jo",
        "email": "jo@example.test",
        "password": PASSWORD,
        "display_name": "Jo",
        "access_level": AccessLevel.FRONT_DESK,
    }
    data.update(overrides)
    return services.staff_create(actor=actor.user, **data)


# ---------------------------------------------------------------- staff create


def test_staff_create_makes_a_login_and_logs_it(full_access, catalog):
    staff = new_staff(full_access, location_ids=[catalog["location"].pk], is_practitioner=True)
    staff.refresh_from_db()
    assert staff.user.username == "jo" and staff.user.email == "jo@example.test"
    assert staff.user.check_password(PASSWORD)
    assert PASSWORD not in staff.user.password
    assert staff.access_level == AccessLevel.FRONT_DESK and staff.is_practitioner
    assert list(staff.locations.all()) == [catalog["location"]]
    [entry] = log_for(staff)
    assert entry.verb == "created" and entry.actor == full_access.user
    assert entry.after["locations"] == [catalog["location"].pk]
    assert "password" not in entry.after


@pytest.mark.parametrize("password", ["short", "password123", "12345678"])
def test_staff_create_validates_the_password(full_access, password):
    with pytest.raises(ValidationFailed) as exc:
        new_staff(full_access, password=password)
    assert "password" in exc.value.fields
    assert not User.objects.filter(username="jo").exists()


@pytest.mark.parametrize("username", ["jo", "JO", " jo "])
def test_staff_create_login_taken(full_access, username):
    new_staff(full_access)
    with pytest.raises(Conflict) as exc:
        new_staff(full_access, username=username, display_name="Other Jo")
    assert exc.value.code == "login_taken"
    assert exc.value.status == 409
    assert StaffMember.objects.filter(display_name="Other Jo").count() == 0


def test_staff_create_needs_a_username(full_access):
    with pytest.raises(ValidationFailed) as exc:
        new_staff(full_access, username="   ")
    assert "username" in exc.value.fields


def test_staff_create_refuses_a_bad_email(full_access):
    with pytest.raises(ValidationFailed) as exc:
        new_staff(full_access, email="not-an-email")
    assert set(exc.value.fields) == {"email"}
    assert not User.objects.filter(username="jo").exists()


def test_staff_create_refuses_unknown_locations_naming_the_field(full_access):
    with pytest.raises(ValidationFailed) as exc:
        new_staff(full_access, location_ids=[424242])
    assert set(exc.value.fields) == {"location_ids"}
    assert not User.objects.filter(username="jo").exists()


def test_staff_create_refuses_an_unknown_access_level(full_access):
    with pytest.raises(ValidationFailed) as exc:
        new_staff(full_access, access_level=55)
    assert "access_level" in exc.value.fields
    assert not User.objects.filter(username="jo").exists()


@pytest.mark.parametrize("level", [AccessLevel.ADMIN_BILLING, AccessLevel.FRONT_DESK])
def test_staff_create_needs_full_access(db, level):
    actor = make_staff(level)
    with pytest.raises(NotAllowed) as exc:
        new_staff(actor)
    assert "Full Access or higher" in exc.value.message
    assert not User.objects.filter(username="jo").exists()


def test_only_an_account_owner_can_grant_account_owner(full_access, owner):
    with pytest.raises(NotAllowed) as exc:
        new_staff(full_access, access_level=AccessLevel.ACCOUNT_OWNER)
    assert "Account Owner" in exc.value.message
    assert (
        new_staff(owner, access_level=AccessLevel.ACCOUNT_OWNER).access_level
        == AccessLevel.ACCOUNT_OWNER
    )


def test_full_access_can_grant_full_access(full_access):
    assert (
        new_staff(full_access, access_level=AccessLevel.FULL_ACCESS).access_level
        == AccessLevel.FULL_ACCESS
    )


# ---------------------------------------------------------------- staff update


def test_staff_update_changes_fields_and_logs_before_and_after(full_access, front_desk, catalog):
    services.staff_update(
        actor=full_access.user,
        staff=front_desk,
        data={
            "display_name": "Front Desk Sam",
            "can_access_billing": False,
            "location_ids": [catalog["location"].pk],
        },
    )
    front_desk.refresh_from_db()
    assert front_desk.display_name == "Front Desk Sam" and not front_desk.can_access_billing
    assert list(front_desk.locations.all()) == [catalog["location"]]
    [entry] = log_for(front_desk)
    changed = {name for name, _, _ in entry.changes()}
    assert changed == {"display_name", "can_access_billing", "locations"}


def test_staff_update_changes_the_email_and_logs_it(full_access, front_desk):
    services.staff_update(
        actor=full_access.user, staff=front_desk, data={"email": "new@example.test"}
    )
    front_desk.user.refresh_from_db()
    assert front_desk.user.email == "new@example.test"
    entries = log_for(front_desk)
    assert any(e.after and e.after.get("email") == "new@example.test" for e in entries)


def test_staff_update_refuses_a_bad_email(full_access, front_desk):
    with pytest.raises(ValidationFailed) as exc:
        services.staff_update(actor=full_access.user, staff=front_desk, data={"email": "nope"})
    assert set(exc.value.fields) == {"email"}
    front_desk.user.refresh_from_db()
    assert front_desk.user.email != "nope"


def test_full_access_cannot_edit_an_owner(full_access, owner):
    with pytest.raises(NotAllowed):
        services.staff_update(actor=full_access.user, staff=owner, data={"display_name": "Demoted"})
    with pytest.raises(NotAllowed):
        services.staff_update(
            actor=full_access.user, staff=owner, data={"access_level": AccessLevel.FRONT_DESK}
        )
    owner.refresh_from_db()
    assert owner.display_name == "Owner" and owner.access_level == AccessLevel.ACCOUNT_OWNER


def test_owner_can_edit_another_owner_and_promote(owner):
    other = make_staff(AccessLevel.ACCOUNT_OWNER)
    services.staff_update(
        actor=owner.user, staff=other, data={"access_level": AccessLevel.FULL_ACCESS}
    )
    promoted = make_staff(AccessLevel.FRONT_DESK)
    services.staff_update(
        actor=owner.user, staff=promoted, data={"access_level": AccessLevel.ACCOUNT_OWNER}
    )
    other.refresh_from_db()
    promoted.refresh_from_db()
    assert other.access_level == AccessLevel.FULL_ACCESS
    assert promoted.access_level == AccessLevel.ACCOUNT_OWNER


def test_full_access_cannot_promote_anyone_to_owner(full_access, front_desk):
    with pytest.raises(NotAllowed):
        services.staff_update(
            actor=full_access.user,
            staff=front_desk,
            data={"access_level": AccessLevel.ACCOUNT_OWNER},
        )
    with pytest.raises(NotAllowed):
        services.staff_update(
            actor=full_access.user,
            staff=full_access,
            data={"access_level": AccessLevel.ACCOUNT_OWNER},
        )


@pytest.mark.parametrize("level", [AccessLevel.FULL_ACCESS, AccessLevel.ACCOUNT_OWNER])
def test_you_cannot_lower_your_own_level(db, level):
    me = make_staff(level)
    with pytest.raises(NotAllowed) as exc:
        services.staff_update(
            actor=me.user, staff=me, data={"access_level": AccessLevel.FRONT_DESK}
        )
    assert exc.value.code == "own_access_level"
    me.refresh_from_db()
    assert me.access_level == level


def test_you_can_edit_your_own_name(full_access):
    services.staff_update(
        actor=full_access.user,
        staff=full_access,
        data={"display_name": "Renamed", "access_level": AccessLevel.FULL_ACCESS},
    )
    full_access.refresh_from_db()
    assert full_access.display_name == "Renamed"


def test_a_null_access_level_is_a_validation_error(full_access):
    with pytest.raises(ValidationFailed) as exc:
        services.staff_update(
            actor=full_access.user, staff=full_access, data={"access_level": None}
        )
    assert "access_level" in exc.value.fields


def test_staff_update_needs_full_access(admin_staff, front_desk):
    with pytest.raises(NotAllowed):
        services.staff_update(actor=admin_staff.user, staff=front_desk, data={"display_name": "X"})


def test_deactivated_staff_lose_their_access(full_access, front_desk):
    assert can(front_desk.user, Action.PATIENT_VIEW)
    services.staff_update(actor=full_access.user, staff=front_desk, data={"is_active": False})
    front_desk.refresh_from_db()
    assert not can(front_desk.user, Action.PATIENT_VIEW)


# ---------------------------------------------------------------- commission rates


def test_commission_rate_set_is_an_upsert(full_access, front_desk, catalog):
    cat = catalog["income_category"].pk
    first = services.commission_rate_set(
        actor=full_access.user, staff=front_desk, income_category_id=cat, rate="40"
    )
    second = services.commission_rate_set(
        actor=full_access.user, staff=front_desk, income_category_id=cat, rate=Decimal("45.5")
    )
    assert first.pk == second.pk
    assert CommissionRate.objects.get(staff=front_desk).rate == Decimal("45.500")
    assert [e.verb for e in log_for(first)] == ["created", "updated"]
    assert log_for(first)[1].changes() == [("rate", "40.000", "45.500")]


def test_commission_rates_are_per_staff_member(full_access, front_desk, catalog):
    other = make_staff()
    cat = catalog["income_category"].pk
    services.commission_rate_set(
        actor=full_access.user, staff=front_desk, income_category_id=cat, rate=40
    )
    services.commission_rate_set(
        actor=full_access.user, staff=other, income_category_id=cat, rate=50
    )
    assert CommissionRate.objects.count() == 2


@pytest.mark.parametrize("rate", ["-1", "100.5"])
def test_commission_rate_must_be_a_percentage(full_access, front_desk, catalog, rate):
    with pytest.raises(ValidationFailed) as exc:
        services.commission_rate_set(
            actor=full_access.user,
            staff=front_desk,
            income_category_id=catalog["income_category"].pk,
            rate=rate,
        )
    assert "rate" in exc.value.fields


def test_commission_rate_unknown_category(full_access, front_desk):
    with pytest.raises(ValidationFailed) as exc:
        services.commission_rate_set(
            actor=full_access.user, staff=front_desk, income_category_id=424242, rate=10
        )
    assert set(exc.value.fields) == {"income_category_id"}


def test_commission_rate_needs_full_access(admin_staff, front_desk, catalog):
    with pytest.raises(NotAllowed):
        services.commission_rate_set(
            actor=admin_staff.user,
            staff=front_desk,
            income_category_id=catalog["income_category"].pk,
            rate=10,
        )


# ---------------------------------------------------------------- shifts


@pytest.fixture
def practitioner(catalog):
    staff = make_staff(AccessLevel.PRACTITIONER_FRONT_DESK, practitioner=True)
    staff.locations.set([catalog["location"]])
    return staff


def add_shift(actor, staff, location, weekday=0, start=T(9), end=T(17)):
    return services.shift_create(
        actor=actor.user,
        staff=staff,
        location_id=location.pk,
        weekday=weekday,
        start_time=start,
        end_time=end,
    )


def test_shift_create_and_delete_are_logged(full_access, practitioner, catalog):
    shift = add_shift(full_access, practitioner, catalog["location"])
    assert (shift.weekday, shift.start_time, shift.end_time) == (0, T(9), T(17))
    pk = shift.pk
    services.shift_delete(actor=full_access.user, shift=shift)
    assert not Shift.objects.filter(pk=pk).exists()
    entries = ActivityLog.objects.filter(object_type="people.shift", object_id=str(pk)).order_by(
        "id"
    )
    assert [e.verb for e in entries] == ["created", "deleted"]
    assert entries[1].before["start_time"] == "09:00:00" and entries[1].after is None


@pytest.mark.parametrize(
    ("start", "end"), [(T(8), T(10)), (T(16), T(18)), (T(10), T(11)), (T(8), T(18)), (T(9), T(17))]
)
def test_overlapping_shifts_are_refused(full_access, practitioner, catalog, start, end):
    add_shift(full_access, practitioner, catalog["location"])
    with pytest.raises(Conflict) as exc:
        add_shift(full_access, practitioner, catalog["location"], start=start, end=end)
    assert exc.value.code == "shift_overlap"
    assert practitioner.shifts.count() == 1


def test_overlap_counts_shifts_at_other_locations(full_access, practitioner, catalog):
    other = catalog["location"].__class__.objects.create(name="Second", time_zone="America/Toronto")
    practitioner.locations.add(other)
    add_shift(full_access, practitioner, catalog["location"])
    with pytest.raises(Conflict):
        add_shift(full_access, practitioner, other, start=T(12), end=T(13))


@pytest.mark.parametrize(
    ("weekday", "start", "end"), [(0, T(17), T(20)), (0, T(6), T(9)), (1, T(9), T(17))]
)
def test_adjacent_or_other_day_shifts_are_fine(
    full_access, practitioner, catalog, weekday, start, end
):
    add_shift(full_access, practitioner, catalog["location"])
    add_shift(full_access, practitioner, catalog["location"], weekday=weekday, start=start, end=end)
    assert practitioner.shifts.count() == 2


def test_other_staff_shifts_do_not_overlap(full_access, practitioner, catalog):
    colleague = make_staff(practitioner=True)
    colleague.locations.set([catalog["location"]])
    add_shift(full_access, practitioner, catalog["location"])
    add_shift(full_access, colleague, catalog["location"])
    assert Shift.objects.count() == 2


def test_shift_location_must_be_one_of_the_staff_members(full_access, practitioner):
    elsewhere = practitioner.locations.model.objects.create(
        name="Elsewhere", time_zone="America/Toronto"
    )
    with pytest.raises(ValidationFailed) as exc:
        add_shift(full_access, practitioner, elsewhere)
    assert set(exc.value.fields) == {"location_id"}


def test_shift_must_end_after_it_starts(full_access, practitioner, catalog):
    with pytest.raises(ValidationFailed) as exc:
        add_shift(full_access, practitioner, catalog["location"], start=T(17), end=T(9))
    assert "end_time" in exc.value.fields


def test_shift_needs_full_access(admin_staff, practitioner, catalog):
    with pytest.raises(NotAllowed):
        add_shift(admin_staff, practitioner, catalog["location"])


# ---------------------------------------------------------------- API tokens


def test_api_token_create_returns_the_secret_once_and_stores_only_its_hash(front_desk):
    token, raw = services.api_token_create(actor=front_desk.user, name="Zapier")
    assert raw.startswith("crn_") and len(raw) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert stored.prefix == raw[:10]
    assert stored.staff == front_desk
    row = [str(v) for v in ApiToken.objects.filter(pk=token.pk).values().get().values()]
    assert all(raw not in value for value in row)
    assert all(raw not in str(e.after) for e in ActivityLog.objects.all())


def test_api_tokens_are_unique(front_desk):
    _, a = services.api_token_create(actor=front_desk.user, name="a")
    _, b = services.api_token_create(actor=front_desk.user, name="b")
    assert a != b


def test_api_token_revoke(front_desk):
    token, _ = services.api_token_create(actor=front_desk.user, name="a")
    with clock.frozen(dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)):
        services.api_token_revoke(actor=front_desk.user, token=token)
    token.refresh_from_db()
    assert token.revoked_at == dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)
    assert log_for(token)[-1].verb == "revoked"


def test_revoking_someone_elses_token_needs_full_access(front_desk, full_access):
    token, _ = services.api_token_create(actor=front_desk.user, name="a")
    with pytest.raises(NotAllowed):
        services.api_token_revoke(actor=make_staff().user, token=token)
    services.api_token_revoke(actor=full_access.user, token=token)
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_no_access_staff_cannot_create_tokens(db):
    with pytest.raises(NotAllowed):
        services.api_token_create(actor=make_staff(AccessLevel.NO_ACCESS).user, name="x")


# ---------------------------------------------------------------- patients


def test_patient_create_strips_and_logs(front_desk):
    patient = services.patient_create(
        actor=front_desk.user,
        data={
            "first_name": "  Ada ",
            "last_name": "Lovelace",
            "email": "ada@example.test",
            "phone": "(555) 010-1234",
            "date_of_birth": dt.date(1990, 12, 10),
        },
    )
    patient.refresh_from_db()
    assert patient.first_name == "Ada"
    assert patient.phone_digits == "5550101234"
    assert patient.created_at is not None
    [entry] = log_for(patient)
    assert entry.verb == "created" and entry.after["date_of_birth"] == "1990-12-10"


def test_patient_update_logs_before_and_after(front_desk):
    patient = make_patient(first_name="Ada")
    services.patient_update(
        actor=front_desk.user,
        patient=patient,
        data={"preferred_name": "Addie", "phone": "555 999 0000"},
    )
    patient.refresh_from_db()
    assert patient.preferred_name == "Addie" and patient.phone_digits == "5559990000"
    [entry] = log_for(patient)
    assert ("preferred_name", "", "Addie") in entry.changes()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"first_name": "", "last_name": "X"}, "first_name"),
        ({"first_name": "A", "last_name": "   "}, "last_name"),
        ({"first_name": "A", "last_name": "B", "email": "nope"}, "email"),
        ({"first_name": "A", "last_name": "B", "user_id": 1}, "user_id"),
        ({"first_name": "A", "last_name": "B", "phone_digits": "1"}, "phone_digits"),
    ],
)
def test_patient_create_refuses_bad_data(front_desk, data, field):
    with pytest.raises(ValidationFailed) as exc:
        services.patient_create(actor=front_desk.user, data=data)
    assert field in exc.value.fields
    assert not Patient.objects.exists()


def test_patient_edit_needs_practitioner_front_desk(db):
    with pytest.raises(NotAllowed) as exc:
        services.patient_create(
            actor=make_staff(AccessLevel.PRACTITIONER_LIMITED).user,
            data={"first_name": "A", "last_name": "B"},
        )
    assert "Practitioner/Front Desk" in exc.value.message


def test_patient_search(db):
    ada = make_patient(
        first_name="Ada",
        last_name="Lovelace",
        preferred_name="Addie",
        email="ada@math.test",
        phone="555-0101",
    )
    grace = make_patient(
        first_name="Grace", last_name="Hopper", email="grace@navy.test", phone="555-0202"
    )
    assert list(selectors.patient_search(query="ada")) == [ada]
    assert list(selectors.patient_search(query="LOVE")) == [ada]
    assert list(selectors.patient_search(query="addie")) == [ada]
    assert list(selectors.patient_search(query="navy.test")) == [grace]
    assert list(selectors.patient_search(query="555 0101")) == [ada]
    assert list(selectors.patient_search(query="5550101")) == [ada]
    assert list(selectors.patient_search(query="(555) 0202")) == [grace]
    assert list(selectors.patient_search(query="grace hopper")) == [grace]
    assert list(selectors.patient_search(query="grace lovelace")) == []
    assert list(selectors.patient_search(query="")) == [grace, ada]  # ordered by last name
    assert list(selectors.patient_search(query="nobody")) == []


def test_patient_search_ignores_too_short_digit_fragments(db):
    # An email without digits: the generated one (patN@…) would contain "01" once N reaches 101.
    make_patient(first_name="Ada", phone="555-0101", email="ada@example.test")
    assert list(selectors.patient_search(query="01")) == []


def test_patient_search_limit(db):
    for _ in range(5):
        make_patient(last_name="Smith")
    assert len(selectors.patient_search(query="smith", limit=3)) == 3


# ---------------------------------------------------------------- family links


def test_guardian_link_and_labels(front_desk):
    parent, child = make_patient(first_name="Parent"), make_patient(first_name="Child")
    link = services.family_link_add(
        actor=front_desk.user, patient=parent, relative=child, kind="guardian"
    )
    assert [(label, other) for label, other, _ in selectors.patient_family(parent)] == [
        ("Dependant", child)
    ]
    assert [(label, other) for label, other, _ in selectors.patient_family(child)] == [
        ("Guardian", parent)
    ]
    assert selectors.patients_managed_by(parent) == [parent, child]
    assert selectors.patients_managed_by(child) == [child]
    assert log_for(link)[0].after["kind"] == "guardian"


def test_spouse_link_is_symmetric(front_desk):
    a, b = make_patient(), make_patient()
    services.family_link_add(actor=front_desk.user, patient=a, relative=b, kind="spouse")
    assert [label for label, _, _ in selectors.patient_family(a)] == ["Spouse"]
    assert [label for label, _, _ in selectors.patient_family(b)] == ["Spouse"]
    # A spouse is not a dependant: neither manages the other's records.
    assert selectors.patients_managed_by(a) == [a]


def test_no_self_link(front_desk):
    a = make_patient()
    with pytest.raises(ValidationFailed) as exc:
        services.family_link_add(actor=front_desk.user, patient=a, relative=a, kind="spouse")
    assert "relative_id" in exc.value.fields
    assert not FamilyLink.objects.exists()


@pytest.mark.parametrize(
    ("first", "second", "reverse"),
    [
        ("guardian", "guardian", False),
        ("guardian", "guardian", True),
        ("spouse", "guardian", True),
        ("guardian", "spouse", False),
        ("spouse", "spouse", True),
    ],
)
def test_no_duplicate_link_in_either_direction(front_desk, first, second, reverse):
    a, b = make_patient(), make_patient()
    services.family_link_add(actor=front_desk.user, patient=a, relative=b, kind=first)
    with pytest.raises(Conflict) as exc:
        services.family_link_add(
            actor=front_desk.user,
            patient=b if reverse else a,
            relative=a if reverse else b,
            kind=second,
        )
    assert exc.value.code == "already_linked"
    assert FamilyLink.objects.count() == 1


def test_unknown_link_kind(front_desk):
    with pytest.raises(ValidationFailed) as exc:
        services.family_link_add(
            actor=front_desk.user, patient=make_patient(), relative=make_patient(), kind="cousin"
        )
    assert "kind" in exc.value.fields


def test_family_link_remove_is_logged(front_desk):
    a, b = make_patient(), make_patient()
    link = services.family_link_add(actor=front_desk.user, patient=a, relative=b, kind="spouse")
    pk = link.pk
    services.family_link_remove(actor=front_desk.user, link=link)
    assert not FamilyLink.objects.exists()
    assert ActivityLog.objects.filter(
        object_type="people.familylink", object_id=str(pk), verb="deleted"
    ).exists()
    # And they can be linked again afterwards.
    services.family_link_add(actor=front_desk.user, patient=b, relative=a, kind="guardian")


# ---------------------------------------------------------------- portal login


def test_portal_enable_creates_a_login_named_by_the_email(front_desk):
    patient = make_patient(email="Ada@Example.test")
    services.patient_portal_enable(actor=front_desk.user, patient=patient, password=PASSWORD)
    patient.refresh_from_db()
    assert patient.user.username == "ada@example.test"
    assert patient.user.check_password(PASSWORD)
    assert log_for(patient)[-1].verb == "portal_login_enabled"


def test_portal_enable_twice_is_a_conflict(front_desk):
    patient = make_patient()
    services.patient_portal_enable(actor=front_desk.user, patient=patient, password=PASSWORD)
    with pytest.raises(Conflict) as exc:
        services.patient_portal_enable(actor=front_desk.user, patient=patient, password=PASSWORD)
    assert exc.value.code == "portal_login_exists"


def test_portal_enable_needs_an_email(front_desk):
    with pytest.raises(ValidationFailed) as exc:
        services.patient_portal_enable(
            actor=front_desk.user, patient=make_patient(email=""), password=PASSWORD
        )
    assert "email" in exc.value.fields


def test_portal_enable_validates_the_password(front_desk):
    patient = make_patient()
    with pytest.raises(ValidationFailed) as exc:
        services.patient_portal_enable(actor=front_desk.user, patient=patient, password="password")
    assert "password" in exc.value.fields
    patient.refresh_from_db()
    assert patient.user is None
    assert not User.objects.filter(username=patient.email).exists()


def test_portal_enable_when_the_email_is_already_a_login(front_desk):
    a = make_patient(email="shared@example.test")
    b = make_patient(email="SHARED@example.test")
    services.patient_portal_enable(actor=front_desk.user, patient=a, password=PASSWORD)
    with pytest.raises(Conflict) as exc:
        services.patient_portal_enable(actor=front_desk.user, patient=b, password=PASSWORD)
    assert exc.value.code == "login_taken"
