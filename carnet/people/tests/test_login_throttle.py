"""Fair throttling of failed log-ins (issue 18 point 4): per login and per IP, growing waits, no
lockout anyone can impose on a real user, an unlock for Full Access, all in the activity log."""

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from carnet.conftest import PASSWORD, make_staff
from carnet.core import clock
from carnet.core.errors import NotAllowed
from carnet.core.models import ActivityLog
from carnet.core.permissions import AccessLevel
from carnet.people import login_throttle
from carnet.people.login_throttle import MAX_WAIT, wait_after

pytestmark = pytest.mark.django_db
LOGIN = reverse("staff:login")
T0 = clock.now().replace(microsecond=0)


def _try(client, username, password, *, ip="203.0.113.9", at=None):
    with clock.frozen(at or T0):
        return client.post(LOGIN, {"login": username, "password": password}, REMOTE_ADDR=ip)


def test_waits_grow_after_five_failures_and_are_capped():
    assert [wait_after(n, 5) for n in range(4, 11)] == [
        timedelta(0),
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(minutes=8),
        MAX_WAIT,
        MAX_WAIT,
    ]


def test_after_five_failures_the_next_try_waits_and_the_page_says_how_long(client):
    staff = make_staff()
    for i in range(5):
        assert (
            _try(client, staff.user.username, "wrong", at=T0 + timedelta(seconds=i)).status_code
            == 200
        )
    response = _try(client, staff.user.username, PASSWORD, at=T0 + timedelta(seconds=10))
    assert response.status_code == 429
    assert "Wait 1 minute and try again" in response.content.decode()
    # The right password during the wait is not checked and does not extend it:
    # at the end, it works.
    response = _try(client, staff.user.username, PASSWORD, at=T0 + timedelta(seconds=4, minutes=1))
    assert response.status_code == 302


def test_tries_during_a_wait_do_not_count():
    staff = make_staff()
    attacker = Client()
    for i in range(5):
        _try(attacker, staff.user.username, "wrong", at=T0 + timedelta(seconds=i))
    for i in range(100):  # hammering during the wait: all refused unchecked, none counted
        assert (
            _try(
                attacker, staff.user.username, "guess", at=T0 + timedelta(seconds=10 + i / 10)
            ).status_code
            == 429
        )
    assert login_throttle.LoginFailure.objects.count() == 5


def test_an_attacker_cannot_keep_the_owner_out():
    """An attacker guessing the owner's login from many addresses for an hour, trying again the
    moment each wait ends: the owner's own browser logs in at any time, and a new browser never
    waits more than 15 minutes after the attacker's last checked guess."""
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    owners_browser = Client()
    assert _try(owners_browser, owner.user.username, PASSWORD, ip="198.51.100.7").status_code == 302
    owners_browser.post(reverse("staff:logout"))
    attacker = Client()
    at, last_checked = T0, None
    for minute in range(60):
        at = T0 + timedelta(minutes=minute, seconds=1)
        response = _try(
            attacker, owner.user.username, "guess", ip=f"192.0.2.{minute % 250 + 1}", at=at
        )
        if response.status_code == 200:
            last_checked = at
        with clock.frozen(at):
            assert login_throttle.login_wait_for_user(owner.user) <= MAX_WAIT
        if minute % 7 == 0:  # the owner comes back now and then: never held
            assert (
                _try(
                    owners_browser, owner.user.username, PASSWORD, ip="198.51.100.7", at=at
                ).status_code
                == 302
            )
            owners_browser.post(reverse("staff:logout"))
    new_browser = Client()
    assert (
        _try(
            new_browser,
            owner.user.username,
            PASSWORD,
            at=last_checked + MAX_WAIT + timedelta(seconds=1),
        ).status_code
        == 302
    )


def test_per_ip_limit_across_logins():
    """Password spraying from one address: after 20 failures (any logins) that address
    waits; others do not."""
    people = [make_staff() for _ in range(10)]
    sprayer = Client()
    for i in range(20):
        _try(
            sprayer,
            people[i % 10].user.username,
            f"Spring2026-{i}",
            ip="192.0.2.50",
            at=T0 + timedelta(seconds=i),
        )
    fresh = make_staff()
    at = T0 + timedelta(seconds=30)
    assert _try(sprayer, fresh.user.username, PASSWORD, ip="192.0.2.50", at=at).status_code == 429
    assert _try(Client(), fresh.user.username, PASSWORD, ip="192.0.2.51", at=at).status_code == 302


def test_unknown_logins_are_throttled_too():
    client = Client()
    for i in range(5):
        _try(client, "nobody@example.test", "wrong", at=T0 + timedelta(seconds=i))
    assert (
        _try(client, "nobody@example.test", "wrong", at=T0 + timedelta(seconds=6)).status_code
        == 429
    )


def test_a_successful_log_in_clears_the_failures(client):
    staff = make_staff()
    for i in range(4):
        _try(client, staff.user.username, "wrong", at=T0 + timedelta(seconds=i))
    assert (
        _try(client, staff.user.username, PASSWORD, at=T0 + timedelta(seconds=5)).status_code == 302
    )
    assert not login_throttle.LoginFailure.objects.exists()


def test_full_access_unlocks_and_everything_is_in_the_activity_log(client):
    boss = make_staff(AccessLevel.FULL_ACCESS)
    staff = make_staff()
    for i in range(6):  # the sixth is refused unchecked
        _try(Client(), staff.user.username, "wrong", at=T0 + timedelta(seconds=i))
    client.force_login(boss.user)
    with clock.frozen(T0 + timedelta(seconds=10)):
        page = client.get(reverse("people:staff_edit", kwargs={"pk": staff.pk})).content.decode()
        assert "must wait 1 more minute " in page
        response = client.post(reverse("people:staff_unlock", kwargs={"pk": staff.pk}), follow=True)
        assert "can log in again now" in response.content.decode()
    assert (
        _try(Client(), staff.user.username, PASSWORD, at=T0 + timedelta(seconds=11)).status_code
        == 302
    )
    verbs = list(
        ActivityLog.objects.filter(object_id=str(staff.user.pk), object_type="auth.user")
        .values_list("verb", flat=True)
        .order_by("pk")
    )
    assert (
        verbs.count("login_failed") == 5
        and "login_throttled" in verbs
        and verbs[-1] == "login_unlocked"
    )
    unlock = ActivityLog.objects.get(verb="login_unlocked")
    assert unlock.actor_id == boss.user.pk and unlock.after == {"failures_cleared": 5}


def test_only_an_owner_unlocks_an_owner():
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    with pytest.raises(NotAllowed):
        login_throttle.login_unlock(actor=make_staff(AccessLevel.FULL_ACCESS).user, user=owner.user)
    with pytest.raises(NotAllowed):
        login_throttle.login_unlock(
            actor=make_staff(AccessLevel.ADMIN_BILLING).user, user=make_staff().user
        )
    assert (
        login_throttle.login_unlock(
            actor=make_staff(AccessLevel.ACCOUNT_OWNER).user, user=owner.user
        )
        == 0
    )


def test_a_forged_device_cookie_is_ignored():
    staff = make_staff()
    client = Client()
    client.cookies[login_throttle.DEVICE_COOKIE] = "[1,2,3]:forged"
    for i in range(5):
        _try(client, staff.user.username, "wrong", at=T0 + timedelta(seconds=i))
    assert (
        _try(client, staff.user.username, PASSWORD, at=T0 + timedelta(seconds=6)).status_code == 429
    )
