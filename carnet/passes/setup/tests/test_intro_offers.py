"""Intro offers (issue 23 point 1): "new patients only" and "once per patient" templates are
refused at the desk (the sell page and the checkout), through the API and online (a package bought
or a membership signed up for in the portal) with the reason; Administrative/All Billing staff may
override, and the override is in the activity log."""

import pytest
from django.urls import reverse

from carnet.conftest import PASSWORD, Api, make_patient
from carnet.core import clock
from carnet.core.errors import Conflict, NotAllowed
from carnet.core.models import ActivityLog
from carnet.gateway.models import TestGatewayCharge
from carnet.passes.memberships import services as ms
from carnet.passes.memberships.online import membership_sign_up_online
from carnet.passes.models import Pass
from carnet.passes.packages.online import package_buy_online
from carnet.passes.packages.selling import package_sell
from carnet.passes.setup.intro_offers import intro_refusal
from carnet.passes.tests.factories import at, membership_template, package_template, practitioner
from carnet.people.services import patient_portal_enable
from carnet.scheduling.models import Status, Visit
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db

CARD = {
    "card_number": "4242 4242 4242 4242",
    "exp_month": 12,
    "exp_year": 2040,
    "cvc": "123",
    "holder": "Me Myself",
}


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto", online_sales_enabled=True)
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "patient": make_patient(),
            "intro": package_template(
                catalog,
                name="Intro 3 for 99",
                price=9900,
                quantity=3,
                new_patients_only=True,
                sold_online=True,
            ),
            "once": package_template(
                catalog, name="First-timer class", price=1000, quantity=1, once_per_patient=True
            ),
            "plain": package_template(catalog, name="10 massages"),
        }


def _arrive(s, patient):
    appointment = appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=practitioner(s["cat"]["location"]),
        location=s["cat"]["location"],
        start=at("2026-04-20", "09:00"),
        patients=[patient],
    )
    Visit.objects.filter(appointment=appointment).update(status=Status.ARRIVED)


def _portal_patient_who_came(s, owner):
    """A patient with a portal login and an arrived visit: no longer new."""
    me = make_patient(email="me@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    _arrive(s, me)
    return me


def test_a_new_patient_may_have_the_intro_offer_once_and_a_plain_template_has_no_rule(s):
    assert intro_refusal(s["intro"], s["patient"]) is None
    package_sell(actor=s["fd"].user, patient=s["patient"], template=s["once"])
    with pytest.raises(Conflict) as refused:
        package_sell(actor=s["fd"].user, patient=s["patient"], template=s["once"])
    assert refused.value.code == "intro_once_per_patient"
    assert "First-timer class is an intro offer sold once per patient" in refused.value.message
    package_sell(actor=s["fd"].user, patient=s["patient"], template=s["plain"])
    package_sell(
        actor=s["fd"].user, patient=s["patient"], template=s["plain"]
    )  # no rule: sold again


def test_new_patients_only_is_refused_after_an_arrived_visit_or_an_earlier_purchase(s):
    came, bought, booked_only = (
        make_patient(first_name="Came"),
        make_patient(first_name="Bought"),
        make_patient(),
    )
    _arrive(s, came)
    appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=practitioner(s["cat"]["location"]),
        location=s["cat"]["location"],
        start=at("2026-05-20", "09:00"),
        patients=[booked_only],
    )
    package_sell(actor=s["fd"].user, patient=bought, template=s["plain"])
    for patient, why in (
        (came, "has already visited the clinic"),
        (bought, "has bought a package or membership"),
    ):
        with pytest.raises(Conflict) as refused:
            package_sell(actor=s["fd"].user, patient=patient, template=s["intro"])
        assert refused.value.code == "intro_new_patients_only"
        assert "Intro 3 for 99 is an intro offer for new patients only" in refused.value.message
        assert why in refused.value.message and "override" in refused.value.message
    package_sell(
        actor=s["fd"].user, patient=booked_only, template=s["intro"]
    )  # booked, not yet arrived: new


def test_a_deleted_pass_was_a_mistake_and_does_not_count(s):
    first = package_sell(actor=s["fd"].user, patient=s["patient"], template=s["once"])
    Pass.objects.filter(pk=first.pk).update(status=Pass.Status.DELETED)
    assert intro_refusal(s["once"], s["patient"]) is None


def test_admin_billing_may_override_and_the_override_is_logged_front_desk_may_not(s):
    _arrive(s, s["patient"])
    with pytest.raises(NotAllowed):
        package_sell(
            actor=s["fd"].user, patient=s["patient"], template=s["intro"], intro_override=True
        )
    assert not Pass.objects.filter(template=s["intro"]).exists()
    sold = package_sell(
        actor=s["admin"].user, patient=s["patient"], template=s["intro"], intro_override=True
    )
    [log] = ActivityLog.objects.filter(verb="intro_offer_overridden")
    assert log.object_id == str(sold.pk) and log.actor == s["admin"].user
    assert "has already visited the clinic" in log.after["reason"]


def test_an_override_not_needed_is_not_logged(s):
    package_sell(
        actor=s["admin"].user, patient=s["patient"], template=s["intro"], intro_override=True
    )
    assert not ActivityLog.objects.filter(verb="intro_offer_overridden").exists()


def test_memberships_follow_the_same_rules(s):
    trial = membership_template(s["cat"], name="Trial month", once_per_patient=True)
    ms.membership_sell(actor=s["fd"].user, patient=s["patient"], template=trial)
    with pytest.raises(Conflict) as refused:
        ms.membership_sell(actor=s["fd"].user, patient=s["patient"], template=trial)
    assert refused.value.code == "intro_once_per_patient"
    ms.membership_sell(
        actor=s["admin"].user, patient=s["patient"], template=trial, intro_override=True
    )
    assert ActivityLog.objects.filter(verb="intro_offer_overridden").count() == 1


def test_online_purchase_is_refused_with_the_reason_before_the_card_is_charged(s, owner, client):
    me = _portal_patient_who_came(s, owner)
    with pytest.raises(Conflict) as refused:
        package_buy_online(
            user=me.user, patient=me, template=s["intro"], idempotency_key="k1", **CARD
        )
    assert refused.value.code == "intro_new_patients_only"
    assert not TestGatewayCharge.objects.exists() and not Pass.objects.filter(patient=me).exists()
    client.force_login(me.user)
    page = client.post(
        reverse("portal:pass_buy", kwargs={"pk": s["intro"].pk}),
        {
            "form_key": "k2",
            "patient": me.pk,
            "number": CARD["card_number"],
            "exp_month": 12,
            "exp_year": 2040,
            "cvc": "123",
            "holder": "Me Myself",
        },
    )
    assert page.status_code == 200
    assert "Intro 3 for 99 is an intro offer for new patients only" in page.content.decode()
    assert not TestGatewayCharge.objects.exists()


def test_the_sell_page_offers_the_override_only_to_admin_billing_and_it_works(s, client):
    _arrive(s, s["patient"])
    url = reverse("passes:sell", kwargs={"pk": s["patient"].pk})
    client.force_login(s["fd"].user)
    assert "intro_override" not in client.get(url).content.decode()
    data = {
        "form_key": "k1",
        "template": s["intro"].pk,
        "expiry": "default",
        "expires_on": "",
        "sold_by": "",
        "pay": "later",
        "method": "cash",
        "amount": "",
        "reference": "",
        "intro_override": "on",
    }
    page = client.post(url, data)
    assert "intro offer for new patients only" in page.content.decode()
    assert not Pass.objects.filter(template=s["intro"]).exists()
    client.force_login(s["admin"].user)
    assert "intro_override" in client.get(url).content.decode()
    client.post(url, {**data, "form_key": "k2"})
    assert Pass.objects.filter(template=s["intro"], patient=s["patient"]).count() == 1
    assert ActivityLog.objects.filter(verb="intro_offer_overridden").count() == 1


def test_the_api_refuses_with_the_reason_and_takes_the_override(s):
    _arrive(s, s["patient"])
    url = f"/patients/{s['patient'].pk}/passes"
    refused = Api(s["admin"].user).post(url, {"template_id": s["intro"].pk})
    assert refused.status_code == 409 and "new patients only" in refused.content.decode()
    assert (
        Api(s["fd"].user)
        .post(url, {"template_id": s["intro"].pk, "intro_override": True})
        .status_code
        == 403
    )
    sold = Api(s["admin"].user).post(url, {"template_id": s["intro"].pk, "intro_override": True})
    assert sold.status_code == 201


def test_the_checkout_refuses_with_the_reason_and_admin_billing_may_override_there(s, client):
    """Billing → New purchase (the desk's usual way to sell) follows the same rule."""
    _arrive(s, s["patient"])
    url = reverse("billing:purchase_new", kwargs={"pk": s["patient"].pk})
    data = {"form_key": "c1", "method": "cash", "package_0": s["intro"].pk, "intro_override": "on"}
    client.force_login(s["fd"].user)
    assert 'name="intro_override"' not in client.get(url).content.decode()
    page = client.post(url, data)
    assert page.status_code == 200
    assert "Intro 3 for 99 is an intro offer for new patients only" in page.content.decode()
    assert not Pass.objects.filter(template=s["intro"]).exists()
    client.force_login(s["admin"].user)
    assert 'name="intro_override"' in client.get(url).content.decode()
    assert client.post(url, {**data, "form_key": "c2"}).status_code == 302
    assert Pass.objects.filter(template=s["intro"], patient=s["patient"]).count() == 1
    [log] = ActivityLog.objects.filter(verb="intro_offer_overridden")
    assert log.actor == s["admin"].user


def test_online_membership_sign_up_is_refused_with_the_reason_before_the_card(s, owner, client):
    trial = membership_template(
        s["cat"], name="Trial month", new_patients_only=True, sold_online=True
    )
    me = _portal_patient_who_came(s, owner)
    with pytest.raises(Conflict) as refused:
        membership_sign_up_online(
            user=me.user, patient=me, template=trial, idempotency_key="m1", **CARD
        )
    assert refused.value.code == "intro_new_patients_only"
    client.force_login(me.user)
    page = client.post(
        reverse("portal:membership_sign_up", kwargs={"pk": trial.pk}),
        {
            "form_key": "m2",
            "holder": "Me",
            "number": CARD["card_number"],
            "exp_month": 12,
            "exp_year": 2040,
            "cvc": "123",
        },
    )
    assert page.status_code == 200
    assert "Trial month is an intro offer for new patients only" in page.content.decode()
    assert not TestGatewayCharge.objects.exists() and not Pass.objects.filter(patient=me).exists()
