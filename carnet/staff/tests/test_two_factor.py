"""Two-factor log-in (issue 18 point 3): TOTP enrolment with a QR code, the code after the password,
ten single-use recovery codes, "remember this browser", who must use it,
the owner's reset, and the API."""

import importlib
import re

import pytest
from django.apps import apps
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from carnet.clinic.services import clinic_update
from carnet.conftest import PASSWORD, make_patient, make_staff
from carnet.core.errors import NotAllowed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.people import two_factor
from carnet.people.services import api_token_create, patient_portal_enable

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _enforced(settings):
    settings.TWO_FACTOR_ENFORCED = True


def code_for(device: TOTPDevice, step_ahead: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = totp.time + step_ahead * device.step
    return f"{totp.token():06d}"


def log_in(client, who, door="staff"):
    user = getattr(who, "user", who)  # a StaffMember or a User
    return client.post(reverse(f"{door}:login"), {"login": user.username, "password": PASSWORD})


def enrol(client, user, door="staff"):
    page = client.get(reverse(f"{door}:two_factor")).content.decode()
    assert "<svg" in page and "<script" not in page.split("<main")[1].split("</main>")[0]
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    response = client.post(
        reverse(f"{door}:two_factor"), {"action": "enrol", "code": code_for(device)}
    )
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", response.content.decode())
    assert len(codes) == 10
    return TOTPDevice.objects.get(user=user, confirmed=True), codes


def test_an_owner_must_set_up_two_factor_before_anything_else(client):
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    assert log_in(client, owner).status_code == 302
    response = client.get(reverse("people:patients"))
    assert response["Location"].startswith(reverse("staff:two_factor"))  # held on the set-up page
    api = client.get("/api/v1/patients")
    assert api.status_code == 403 and api.json()["code"] == "second_factor_required"
    page = client.get(reverse("staff:two_factor")).content.decode()
    assert "Your account needs two-factor log-in" in page and "two-factor-secret" in page
    device = TOTPDevice.objects.get(user=owner.user, confirmed=False)
    wrong_code = "000000" if code_for(device) != "000000" else "111111"
    wrong = client.post(reverse("staff:two_factor"), {"action": "enrol", "code": wrong_code})
    assert "Not the code the app shows now" in wrong.content.decode()
    _, codes = enrol(client, owner.user)
    assert len(set(codes)) == 10
    assert client.get(reverse("people:patients")).status_code == 200
    assert client.get("/api/v1/patients").status_code == 200
    assert ActivityLog.objects.filter(verb="two_factor_enabled").count() == 1


def test_the_code_after_the_password_and_recovery_codes_work_once(client):
    owner = make_staff(AccessLevel.FULL_ACCESS)
    log_in(client, owner)
    _, codes = enrol(client, owner.user)
    client.post(reverse("staff:logout"))
    log_in(client, owner)
    response = client.get(reverse("staff:dashboard"))
    assert response["Location"].startswith(reverse("staff:two_factor_verify"))
    assert client.get(reverse("staff:two_factor"))["Location"].startswith(
        reverse("staff:two_factor_verify")
    )
    bad = client.post(reverse("staff:two_factor_verify"), {"code": "zzzzzzzz"})
    assert "That code is not right" in bad.content.decode()
    held = client.post(reverse("staff:two_factor_verify"), {"code": codes[0]})
    assert "Wait a few seconds" in held.content.decode()  # a wrong code makes the next check wait
    assert two_factor.recovery_codes_left(owner.user) == 10  # and the refused try used nothing
    # Skip the wait (a second after one wrong code: django-otp's throttle).
    StaticDevice.objects.filter(user=owner.user).update(
        throttling_failure_count=0, throttling_failure_timestamp=None
    )
    ok = client.post(reverse("staff:two_factor_verify"), {"code": codes[0].upper()})
    assert ok.status_code == 302 and client.get(reverse("staff:dashboard")).status_code == 200
    assert two_factor.recovery_codes_left(owner.user) == 9
    client.post(reverse("staff:logout"))
    log_in(client, owner)
    again = client.post(reverse("staff:two_factor_verify"), {"code": codes[0]})
    assert "That code is not right" in again.content.decode()  # used up
    assert client.get(reverse("staff:dashboard")).status_code == 302


def test_recovery_codes_are_stored_only_as_salted_digests(client):
    """A copy of the database (a backup) holds no code a thief could type: each is a PBKDF2 digest
    salted with its login, so the same code of two logins is stored differently."""
    owner = make_staff(AccessLevel.FULL_ACCESS)
    log_in(client, owner)
    _, codes = enrol(client, owner.user)
    stored = set(StaticToken.objects.values_list("token", flat=True))
    assert len(stored) == 10 and not stored & set(codes)
    assert stored == {two_factor.recovery_digest(owner.user.pk, c) for c in codes}
    assert all(re.fullmatch(r"[0-9a-f]{16}", token) for token in stored)
    other = make_staff(AccessLevel.FRONT_DESK)
    assert two_factor.recovery_digest(other.user.pk, codes[0]) not in stored
    # Renewed codes are digests too, and the old ones stop working.
    renewed = two_factor.recovery_codes_renew(user=owner.user)
    stored = set(StaticToken.objects.values_list("token", flat=True))
    assert stored == {two_factor.recovery_digest(owner.user.pk, c) for c in renewed}
    assert two_factor.two_factor_check(user=owner.user, code=codes[1]) is None


def test_the_migration_turns_codes_kept_as_typed_into_digests_that_still_work():
    """Codes handed out before recovery codes were hashed keep working after the migration, and
    the database no longer holds them; a digest already stored is left alone."""
    migration = importlib.import_module("carnet.people.migrations.0007_recovery_codes_hashed")
    owner = make_staff(AccessLevel.FULL_ACCESS)
    TOTPDevice.objects.create(user=owner.user, name="Authenticator app", confirmed=True)
    device = StaticDevice.objects.create(user=owner.user, name="Recovery codes", confirmed=True)
    old = [StaticToken.random_token() for _ in range(3)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=c) for c in old])
    kept = two_factor.recovery_digest(owner.user.pk, "abcdefgh")
    StaticToken.objects.create(device=device, token=kept)
    migration.hash_codes(apps, None)
    migration.hash_codes(apps, None)  # run twice (a re-run): nothing is hashed again
    stored = set(StaticToken.objects.values_list("token", flat=True))
    assert stored == {two_factor.recovery_digest(owner.user.pk, c) for c in old} | {kept}
    assert two_factor.two_factor_check(user=owner.user, code=old[0]) is not None
    assert two_factor.recovery_codes_left(owner.user) == 3
    assert two_factor.two_factor_check(user=owner.user, code=old[0]) is None  # used up


def test_the_authenticator_code_logs_in_and_remember_this_browser_is_off_unless_ticked(client):
    staff = make_staff(AccessLevel.FULL_ACCESS)
    log_in(client, staff)
    device, _ = enrol(client, staff.user)
    client.post(reverse("staff:logout"))
    log_in(client, staff)
    page = client.get(reverse("staff:two_factor_verify")).content.decode()
    assert 'name="remember"' in page and 'name="remember" checked' not in page
    ok = client.post(
        reverse("staff:two_factor_verify"), {"code": code_for(device, 1), "remember": "on"}
    )
    assert ok.status_code == 302
    assert client.cookies[two_factor.REMEMBER_COOKIE]["httponly"]
    client.post(reverse("staff:logout"))
    log_in(client, staff)
    assert client.get(reverse("staff:dashboard")).status_code == 200  # remembered: no code asked
    # An owner's reset ends the remembered browser too.
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    two_factor.two_factor_reset(actor=owner.user, staff=staff)
    client.post(reverse("staff:logout"))
    log_in(client, staff)
    assert client.get(reverse("staff:dashboard"))["Location"].startswith(
        reverse("staff:two_factor")
    )


def test_optional_below_full_access_unless_the_clinic_requires_it_for_everyone(client):
    desk = make_staff(AccessLevel.FRONT_DESK)
    log_in(client, desk)
    assert client.get(reverse("staff:dashboard")).status_code == 200
    clinic_update(
        actor=make_staff(AccessLevel.FULL_ACCESS).user, data={"two_factor_all_staff": True}
    )
    client.post(reverse("staff:logout"))
    log_in(client, desk)
    assert client.get(reverse("staff:dashboard"))["Location"].startswith(
        reverse("staff:two_factor")
    )


def test_token_auth_is_separate_from_the_session_step(client):
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    _, secret = api_token_create(actor=owner.user, name="integration")
    log_in(client, owner)  # a session held at the set-up step
    assert client.get("/api/v1/patients").status_code == 403
    assert client.get("/api/v1/patients", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    wrong = client.get("/api/v1/patients", HTTP_AUTHORIZATION="Bearer crn_wrong")
    assert wrong.status_code == 401  # never falls back to the held session


def test_an_owner_resets_another_staff_members_second_factor_and_it_is_logged(client):
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    member = make_staff(AccessLevel.FULL_ACCESS, name="Lost Phone")
    log_in(client, member)
    enrol(client, member.user)
    with pytest.raises(NotAllowed):
        two_factor.two_factor_reset(actor=make_staff(AccessLevel.FULL_ACCESS).user, staff=member)
    owner_client = type(client)()
    owner_client.force_login(owner.user)
    session = owner_client.session
    session["carnet_no_second_factor"] = (
        owner.user.pk
    )  # (this test is about the reset, not the owner's own step)
    session.save()
    page = owner_client.get(reverse("people:staff_edit", args=[member.pk])).content.decode()
    assert "Two-factor log-in is on" in page
    response = owner_client.post(
        reverse("people:staff_two_factor_reset", args=[member.pk]), follow=True
    )
    assert "must set up two-factor log-in again" in response.content.decode()
    assert two_factor.authenticator(member.user) is None
    entry = ActivityLog.objects.get(verb="two_factor_reset")
    assert entry.actor_id == owner.user.pk
    # The member's session, verified by the removed device, is held again.
    assert client.get(reverse("staff:dashboard"))["Location"].startswith(
        reverse("staff:two_factor")
    )


def test_a_patient_may_turn_it_on_and_off(client):
    patient = patient_portal_enable(
        actor=make_staff(AccessLevel.FULL_ACCESS).user, patient=make_patient(), password=PASSWORD
    )
    user = patient.user
    log_in(client, user, door="portal")
    assert client.get(reverse("portal:home")).status_code == 200  # optional: not asked
    device, _ = enrol(client, user, door="portal")
    client.post(reverse("staff:logout"))
    log_in(client, user, door="portal")
    assert client.get(reverse("portal:home"))["Location"].startswith(
        reverse("portal:two_factor_verify")
    )
    assert (
        client.post(reverse("portal:two_factor_verify"), {"code": code_for(device, 1)}).status_code
        == 302
    )
    assert client.get(reverse("portal:home")).status_code == 200
    off = client.post(reverse("portal:two_factor"), {"action": "disable", "password": "wrong"})
    assert "not your current password" in off.content.decode()
    client.post(reverse("portal:two_factor"), {"action": "disable", "password": PASSWORD})
    assert two_factor.authenticator(user) is None


def test_required_two_factor_cannot_be_turned_off(client):
    staff = make_staff(AccessLevel.FULL_ACCESS)
    log_in(client, staff)
    enrol(client, staff.user)
    response = client.post(reverse("staff:two_factor"), {"action": "disable", "password": PASSWORD})
    assert (
        "so it stays on" in response.content.decode()
        and "Turn off" not in response.content.decode()
    )
    assert two_factor.authenticator(staff.user) is not None
