"""Memberships in the patient portal (SPEC 6, 9.1, 9.7, 11): the Packages & Memberships tab shows
the patient's own and dependants' memberships only (uses this cycle, next billing, status) with
Cancel / Pause / Resume as the membership allows; self-cancel within the policy (the service's
refusal shown otherwise); and signing up online with a card kept on file, the first cycle charged
once per form key, a declined card keeping the membership unpaid with the decline shown."""

import datetime as dt

import pytest
from django.urls import reverse

from carnet.billing.models import Invoice, Payment
from carnet.billing.payments import payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import PASSWORD, make_patient, race
from carnet.core import clock
from carnet.core.errors import Conflict, NotFound, ValidationFailed
from carnet.gateway.models import CardOnFile, TestGatewayCharge
from carnet.passes.memberships import services as ms
from carnet.passes.memberships.online import membership_sign_up_online
from carnet.passes.models import Pass, PassInvoice
from carnet.passes.tests.factories import at, membership_template
from carnet.people.services import family_link_add, patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db

CARD = {
    "card_number": "4242 4242 4242 4242",
    "exp_month": 12,
    "exp_year": 2040,
    "cvc": "123",
    "holder": "Me Myself",
}
DECLINED = "4000 0000 0000 0002"


@pytest.fixture
def shop(owner, front_desk, catalog):
    clinic_set(time_zone="America/Toronto", online_sales_enabled=True)
    with clock.frozen(at("2026-05-01", "10:00")):
        me = make_patient(email="me@example.test", first_name="Me")
        patient_portal_enable(actor=owner.user, patient=me, password=PASSWORD)
        me.refresh_from_db()
        template = membership_template(
            catalog,
            name="Online monthly",
            price=6000,
            uses=2,
            sold_online=True,
            self_cancel=True,
            cancellable_after_cycles=0,
            pause_allowed=True,
            pause_max_cycles=2,
        )
        yield {
            "me": me,
            "user": me.user,
            "template": template,
            "catalog": catalog,
            "fd": front_desk,
        }


def _sign_up(s, key="k1", patient=None, template=None, **card):
    return membership_sign_up_online(
        user=s["user"],
        patient=patient or s["me"],
        template=template or s["template"],
        idempotency_key=key,
        **{**CARD, **card},
    )


def _sold(s, patient, template=None, paid=True) -> Pass:
    sold = ms.membership_sell(
        actor=s["fd"].user, patient=patient, template=template or s["template"]
    )
    if paid:
        for row in sold.pass_invoices.select_related("invoice").filter(invoice__isnull=False):
            payment_receive(
                actor=s["fd"].user,
                patient=patient,
                method="cash",
                amount_minor=row.invoice.balance_minor,
                allocations=[(row.invoice, row.invoice.balance_minor)],
            )
    return sold


def _portal(client, s):
    client.force_login(s["user"])
    return client


def _tab(client) -> str:
    return client.get(reverse("portal:passes")).content.decode()


# ---------------------------------------------------------------- signing up online (the service)


def test_signing_up_keeps_the_card_sells_automatic_and_charges_the_first_cycle_once(shop):
    sold = _sign_up(shop)
    assert (
        sold.first_charge["outcome"] == "charged"
        and "$60.00 was charged" in sold.first_charge["message"]
    )
    assert sold.kind == "membership" and sold.sold_online and sold.payment_mode == "automatic"
    card = CardOnFile.objects.get(patient=shop["me"])
    assert sold.card == card and card.last4 == "4242" and card.holder == "Me Myself"
    [charge] = TestGatewayCharge.objects.all()
    [payment] = Payment.objects.all()
    assert charge.amount_minor == 6000 and payment.card_id == card.pk
    [row] = PassInvoice.objects.filter(sold_pass=sold)
    assert row.invoice.balance_minor == 0 and row.next_attempt_on is None
    again = _sign_up(
        shop
    )  # the same form key: the same membership, no second card, no second charge
    assert again == sold and again.first_charge["outcome"] == "none"
    assert (
        Pass.objects.count() == 1
        and CardOnFile.objects.count() == 1
        and TestGatewayCharge.objects.count() == 1
    )
    assert_ledger_ok()


def test_a_declined_card_keeps_the_membership_unpaid_and_the_job_retries(shop):
    sold = _sign_up(shop, card_number=DECLINED)
    assert (
        sold.first_charge["outcome"] == "declined"
        and "tried again on 2026-05-02" in sold.first_charge["message"]
    )
    assert sold.status == "active" and not Payment.objects.exists()
    row = PassInvoice.objects.get(sold_pass=sold)
    assert (
        row.invoice.balance_minor == 6000
        and row.charge_attempts == 1
        and row.next_attempt_on == dt.date(2026, 5, 2)
    )
    again = _sign_up(
        shop, card_number="4242 4242 4242 4242"
    )  # a retry of the same form charges nothing more
    assert (
        again == sold
        and again.first_charge["outcome"] == "pending"
        and not Payment.objects.exists()
    )
    with pytest.raises(
        Conflict
    ) as twice:  # a new form for the same membership is refused meanwhile
        _sign_up(shop, key="k2")
    assert twice.value.code == "already_member"
    assert Pass.objects.count() == 1


def test_only_memberships_offered_online_and_only_for_the_family(shop):
    desk_only = membership_template(shop["catalog"], name="Desk only", sold_online=False)
    with pytest.raises(Conflict) as refused:
        _sign_up(shop, template=desk_only)
    assert refused.value.code == "not_sold_online"
    with pytest.raises(NotFound):
        _sign_up(shop, patient=make_patient())
    clinic_set(online_sales_enabled=False)
    with pytest.raises(Conflict) as off:
        _sign_up(shop)
    assert off.value.code == "online_sales_off"
    assert (
        not Pass.objects.exists()
        and not CardOnFile.objects.exists()
        and not TestGatewayCharge.objects.exists()
    )


def test_a_bad_card_number_stops_before_anything(shop):
    with pytest.raises(ValidationFailed):
        _sign_up(shop, card_number="4242 4242 4242 4241")
    assert not Pass.objects.exists() and not CardOnFile.objects.exists()


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_racing_twin_sign_ups_sell_and_charge_once(shop):
    results = race(2, lambda i: _sign_up(shop))
    sold = [r for r in results if isinstance(r, Pass)]
    assert sold and all(p == sold[0] for p in sold), results
    assert (
        Pass.objects.count() == 1
        and TestGatewayCharge.objects.count() == 1
        and Payment.objects.count() == 1
    )


# ---------------------------------------------------------------- the tab and its buttons


def test_the_tab_shows_own_and_dependants_memberships_only(client, shop):
    child, stranger = make_patient(first_name="Kid"), make_patient()
    family_link_add(actor=shop["fd"].user, patient=shop["me"], relative=child, kind="guardian")
    mine = _sold(shop, shop["me"])
    kids = _sold(
        shop, child, membership_template(shop["catalog"], name="Kid plan", uses=None), paid=False
    )
    _sold(shop, stranger, membership_template(shop["catalog"], name="Stranger plan"))
    page = _tab(_portal(client, shop))
    assert (
        f'data-testid="membership-{mine.pk}"' in page
        and f'data-testid="membership-{kids.pk}"' in page
    )
    assert "Stranger plan" not in page and "Kid plan" in page
    assert "0 of 2" in page and "0 used (unlimited)" in page
    assert 'data-testid="membership-next-billing">2026-06-01<' in page
    assert "Awaiting payment" in page  # the child's unpaid cycle
    assert (
        reverse("portal:membership_sign_up", kwargs={"pk": shop["template"].pk}) in page
    )  # Sign up online
    assert reverse("portal:membership_cancel", kwargs={"pk": mine.pk}) in page
    assert reverse("portal:membership_pause", kwargs={"pk": mine.pk}) in page


def test_buttons_follow_the_membership(client, shop):
    locked = _sold(
        shop, shop["me"], membership_template(shop["catalog"], name="Locked plan")
    )  # no self-cancel, no pause
    page = _tab(_portal(client, shop))
    assert f'data-testid="membership-{locked.pk}"' in page
    assert reverse("portal:membership_cancel", kwargs={"pk": locked.pk}) not in page
    assert reverse("portal:membership_pause", kwargs={"pk": locked.pk}) not in page


def test_self_cancel_within_policy_ends_at_the_cycle_end(client, shop):
    sold = _sold(shop, shop["me"])
    portal = _portal(client, shop)
    response = portal.post(reverse("portal:membership_cancel", kwargs={"pk": sold.pk}), follow=True)
    page = response.content.decode()
    assert "is cancelled: it covers visits until 2026-05-31" in page
    assert "Cancelled, covers visits until 2026-05-31" in page
    assert (
        reverse("portal:membership_cancel", kwargs={"pk": sold.pk}) not in page
    )  # no second cancel
    sold.refresh_from_db()
    assert sold.ends_after == dt.date(2026, 5, 31)


def test_self_cancel_inside_the_policy_shows_the_services_refusal(client, shop):
    strict = membership_template(
        shop["catalog"], name="Strict plan", self_cancel=True, cancellable_after_cycles=3
    )
    sold = _sold(shop, shop["me"], strict)
    response = _portal(client, shop).post(
        reverse("portal:membership_cancel", kwargs={"pk": sold.pk}), follow=True
    )
    assert (
        "can be cancelled after 3 cycles; please contact the clinic." in response.content.decode()
    )
    sold.refresh_from_db()
    assert sold.ends_after is None and sold.status == "active"


def test_pause_then_resume_from_the_tab(client, shop):
    sold = _sold(shop, shop["me"])
    portal = _portal(client, shop)
    page = portal.post(
        reverse("portal:membership_pause", kwargs={"pk": sold.pk}), {"cycles": "2"}, follow=True
    ).content.decode()
    assert "is paused for 2 cycles" in page and 'data-testid="membership-status">Paused<' in page
    assert 'data-testid="membership-next-billing">2026-08-01<' in page
    assert reverse("portal:membership_resume", kwargs={"pk": sold.pk}) in page
    page = portal.post(
        reverse("portal:membership_resume", kwargs={"pk": sold.pk}), follow=True
    ).content.decode()
    assert "is resumed" in page and 'data-testid="membership-next-billing">2026-06-01<' in page
    refused = portal.post(
        reverse("portal:membership_pause", kwargs={"pk": sold.pk}), {"cycles": "9"}, follow=True
    )
    assert "can be paused for at most 2 cycles at a time" in refused.content.decode()


def test_another_patients_membership_is_not_found(client, shop):
    theirs = _sold(shop, make_patient())
    portal = _portal(client, shop)
    for name in ("membership_cancel", "membership_pause", "membership_resume"):
        assert (
            portal.post(
                reverse(f"portal:{name}", kwargs={"pk": theirs.pk}), {"cycles": "1"}
            ).status_code
            == 404
        )
    theirs.refresh_from_db()
    assert theirs.ends_after is None and not theirs.pauses.exists()
    desk_only = membership_template(shop["catalog"], name="Desk only")
    assert (
        portal.get(reverse("portal:membership_sign_up", kwargs={"pk": desk_only.pk})).status_code
        == 404
    )


def test_membership_pages_need_a_patient_login(client, shop):
    sold = _sold(shop, shop["me"])
    url = reverse("portal:membership_sign_up", kwargs={"pk": shop["template"].pk})
    assert client.get(url)["Location"].startswith(reverse("portal:login"))
    assert client.post(reverse("portal:membership_cancel", kwargs={"pk": sold.pk}))[
        "Location"
    ].startswith(reverse("portal:login"))
    client.force_login(shop["fd"].user)  # staff have no portal record
    assert client.get(url)["Location"].startswith(reverse("portal:login"))


# ---------------------------------------------------------------- the sign-up page


def _form(key="w1", number="4242 4242 4242 4242", **more):
    return {
        "form_key": key,
        "holder": "Me",
        "number": number,
        "exp_month": 12,
        "exp_year": 2040,
        "cvc": "123",
        **more,
    }


def test_sign_up_page_charges_the_first_cycle_once_per_form(client, shop):
    url = reverse("portal:membership_sign_up", kwargs={"pk": shop["template"].pk})
    portal = _portal(client, shop)
    page = portal.get(url).content.decode()
    assert "$60.00" in page and "kept on file" in page and "You can cancel it here" in page
    response = portal.post(url, _form(), follow=True)
    text = response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("portal:passes")
    assert (
        "You are signed up for Online monthly, starting 2026-05-01. $60.00 was charged to "
        "Visa •••• 4242 (exp. 12/2040)."
    ) in text
    sold = Pass.objects.get()
    assert f'data-testid="membership-{sold.pk}"' in text and "0 of 2" in text
    assert portal.post(url, _form()).status_code == 302  # a double submit
    assert (
        Pass.objects.count() == 1
        and TestGatewayCharge.objects.count() == 1
        and Payment.objects.count() == 1
    )
    assert Invoice.objects.get().balance_minor == 0


def test_sign_up_page_shows_a_decline_and_keeps_the_membership_unpaid(client, shop):
    url = reverse("portal:membership_sign_up", kwargs={"pk": shop["template"].pk})
    text = _portal(client, shop).post(url, _form(number=DECLINED), follow=True).content.decode()
    assert "You are signed up for Online monthly, but the card was declined:" in text
    assert "tried again on 2026-05-02" in text and "Please contact the clinic" in text
    assert "Awaiting payment" in text
    assert Pass.objects.get().status == "active" and not Payment.objects.exists()


def test_a_guardian_signs_up_a_dependant(client, shop):
    child = make_patient(first_name="Kid")
    family_link_add(actor=shop["fd"].user, patient=shop["me"], relative=child, kind="guardian")
    url = reverse("portal:membership_sign_up", kwargs={"pk": shop["template"].pk})
    portal = _portal(client, shop)
    assert child.full_name in portal.get(url).content.decode()
    assert portal.post(url, _form(key="w2", patient=child.pk)).status_code == 302
    sold = Pass.objects.get()
    assert sold.patient == child and sold.card.patient == child
