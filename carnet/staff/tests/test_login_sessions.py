"""Your sessions (issue 18 point 8): a login sees where it is logged in and ends the others."""

import pytest
from django.test import Client
from django.urls import reverse

from carnet.conftest import PASSWORD, make_patient, make_staff
from carnet.core.models import ActivityLog
from carnet.people.login_sessions import device_label
from carnet.people.models import LoginSession
from carnet.people.services import patient_portal_enable

pytestmark = pytest.mark.django_db
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def browser(user, door, ua, ip):
    client = Client(HTTP_USER_AGENT=ua, REMOTE_ADDR=ip)
    assert (
        client.post(
            reverse(f"{door}:login"), {"login": user.username, "password": PASSWORD}
        ).status_code
        == 302
    )
    return client


def test_device_labels():
    assert device_label(FIREFOX) == "Firefox on Windows"
    assert device_label(IPHONE) == "Safari on iPhone"
    assert device_label("") == "Unknown browser"


@pytest.mark.parametrize("door", ["staff", "portal"])
def test_a_login_sees_its_sessions_and_ends_another(door):
    if door == "staff":
        user, home = (
            make_staff().user,
            reverse("staff:tokens"),
        )  # (/ is a public page when logged out)
    else:
        user = patient_portal_enable(
            actor=make_staff(70).user, patient=make_patient(), password=PASSWORD
        ).user
        home = reverse("portal:home")
    desk = browser(user, door, FIREFOX, "192.0.2.10")
    phone = browser(user, door, IPHONE, "198.51.100.7")
    assert phone.get(home).status_code == 200
    page = desk.get(reverse(f"{door}:sessions")).content.decode()
    assert "Firefox on Windows <strong>(this session)</strong>" in page
    assert "Safari on iPhone" in page and "198.51.100.7" in page
    other = LoginSession.objects.get(user=user, ip="198.51.100.7")
    response = desk.post(reverse(f"{door}:sessions"), {"end": other.pk}, follow=True)
    assert "Ended the session on Safari on iPhone" in response.content.decode()
    assert phone.get(home).status_code == 302  # logged out there
    assert desk.get(home).status_code == 200  # still in here
    assert ActivityLog.objects.filter(verb="session_ended").count() == 1


def test_one_cannot_end_someone_elses_session_nor_this_one_from_the_list():
    me, them = make_staff(), make_staff()
    mine = browser(me.user, "staff", FIREFOX, "192.0.2.1")
    theirs = browser(them.user, "staff", IPHONE, "192.0.2.2")
    theirs.get(reverse("staff:tokens"))
    row = LoginSession.objects.get(user=them.user)
    response = mine.post(reverse("staff:sessions"), {"end": row.pk}, follow=True)
    assert "already ended" in response.content.decode()
    assert theirs.get(reverse("staff:tokens")).status_code == 200
    own = LoginSession.objects.get(user=me.user)
    response = mine.post(reverse("staff:sessions"), {"end": own.pk}, follow=True)
    assert "use Log out" in response.content.decode()


def test_end_all_other_sessions_and_log_out_forgets_the_row():
    user = make_staff().user
    clients = [browser(user, "staff", FIREFOX, f"192.0.2.{n}") for n in range(3)]
    for c in clients:
        c.get(reverse("staff:tokens"))
    clients[0].post(reverse("staff:sessions"), {"end": "others"})
    assert [c.get(reverse("staff:tokens")).status_code for c in clients] == [200, 302, 302]
    clients[0].post(reverse("staff:logout"))
    assert not LoginSession.objects.filter(user=user).exists()
