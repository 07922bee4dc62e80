"""Card update requests (issue 22 point 3): staff (or a hard decline) email the patient a signed
link; the card added through it becomes the membership's autopay card and what is owed is charged
at once, through card attempts; the front desk sees "Card update requested (sent …)" until then;
a used, expired, replaced or tampered link gets a clear page; the same submit twice does it once;
two windows racing with one link add one card."""

import datetime as dt
import re

import pytest
from django.core import mail
from django.urls import reverse

from carnet.billing.models import CardAttempt, Invoice, Payment
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import Api, make_patient, race
from carnet.core import clock
from carnet.core.activity import ActivityLog
from carnet.core.errors import Conflict
from carnet.gateway.models import CardOnFile, TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import card_requests as cr
from carnet.passes.memberships import services as ms
from carnet.passes.models import CardUpdateRequest, Pass, PassInvoice
from carnet.passes.tests.factories import at, membership_template
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db

GOOD = {
    "holder": "Pat Member",
    "number": "4242 4242 4242 4242",
    "exp_month": 12,
    "exp_year": 2040,
    "cvc": "123",
}
DECLINED = "4000000000000002"


@pytest.fixture
def s(front_desk, catalog, settings):
    settings.SITE_URL = "https://clinic.example"
    clinic_set(time_zone="America/Toronto", email="desk@clinic.test")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {"fd": front_desk, "cat": catalog}


def _member(s, *, number=DECLINED, email="pat@example.test", start=None):
    """An automatic membership whose card is declined, with its cycles issued and unpaid."""
    patient = make_patient(email=email, first_name="Pat")
    card = card_store(
        actor=s["fd"].user,
        patient=patient,
        number=number,
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="Pat",
    )
    return ms.membership_sell(
        actor=s["fd"].user,
        patient=patient,
        template=membership_template(s["cat"]),
        payment_mode="automatic",
        card=card,
        start_date=start,
    )


def _link(outbox_message) -> str:
    [url] = re.findall(r"https://clinic\.example(/portal/card/\S+/)", outbox_message.body)
    return url


def _request(s, sold, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        req = cr.card_update_request(sold_pass=sold, actor=s["fd"].user)
    return req, _link(mail.outbox[-1])


def _post(client, url, key="k1", **card):
    return client.post(url, {"form_key": key, **GOOD, **card})


# ---------------------------------------------------------------- asking


def test_staff_request_emails_a_signed_link_and_the_desk_sees_it_until_a_card_is_added(
    s, client, django_capture_on_commit_callbacks
):
    sold = _member(s, start=dt.date(2026, 4, 1))  # April and May cycles owed
    passes_daily(today=dt.date(2026, 5, 1))  # the current cycle's charge is declined
    assert Invoice.objects.filter(pass_invoice__sold_pass=sold, applied_minor=0).count() == 2
    req, url = _request(s, sold, django_capture_on_commit_callbacks)
    message = mail.outbox[-1]
    assert message.to == ["pat@example.test"] and sold.name in message.subject
    assert (
        "$120.00" in message.body and "2026-05-15" in message.body
    )  # what is owed, until when the link works
    assert req.emailed_to == "pat@example.test" and req.reason == "staff"
    assert ActivityLog.objects.filter(verb="card update requested").count() == 1

    client.force_login(s["fd"].user)
    detail = client.get(reverse("memberships:detail", args=[sold.pk])).content.decode()
    assert "Card update requested (sent 2026-05-01)" in detail
    profile = client.get(reverse("people:patient", args=[sold.patient_id])).content.decode()
    assert "Card update requested (sent 2026-05-01)" in profile
    client.logout()

    page = client.get(url)
    assert page.status_code == 200 and "$120.00" in page.content.decode()
    charges_before = TestGatewayCharge.objects.count()
    response = _post(client, url)
    assert response.status_code == 302 and response["Location"].endswith("/done/")
    sold.refresh_from_db()
    card = CardOnFile.objects.get(patient=sold.patient, last4="4242")
    assert sold.card == card and sold.payment_mode == "automatic"
    # Both owed cycles charged at once, each through its own card attempt.
    assert TestGatewayCharge.objects.count() == charges_before + 2
    assert CardAttempt.objects.filter(status="succeeded", card=card).count() == 2
    assert not Invoice.objects.filter(pass_invoice__sold_pass=sold, applied_minor=0).exists()
    assert PassInvoice.objects.filter(sold_pass=sold, next_attempt_on__isnull=False).count() == 0
    done = client.get(response["Location"]).content.decode()
    assert "Visa •••• 4242 (exp. 12/2040) now pays for" in done and "Nothing is owed" in done
    req.refresh_from_db()
    assert req.completed_at is not None and req.card == card
    client.force_login(s["fd"].user)
    assert (
        "Card update requested"
        not in client.get(reverse("memberships:detail", args=[sold.pk])).content.decode()
    )
    assert_ledger_ok()


def test_the_same_submit_twice_adds_one_card_and_charges_once(
    s, client, django_capture_on_commit_callbacks
):
    sold = _member(s)
    _, url = _request(s, sold, django_capture_on_commit_callbacks)
    first, again = _post(client, url, key="same"), _post(client, url, key="same")
    assert first.status_code == again.status_code == 302 and again["Location"] == first["Location"]
    assert CardOnFile.objects.filter(patient=sold.patient, last4="4242").count() == 1
    assert TestGatewayCharge.objects.count() == 1 and Payment.objects.count() == 1
    other = _post(client, url, key="another")  # a new submit of a used link: the page says so
    assert other.status_code == 410 and "already used" in other.content.decode()
    assert CardOnFile.objects.filter(patient=sold.patient, last4="4242").count() == 1


def test_a_declined_new_card_is_said_on_the_form_and_the_request_stays_open(
    s, client, django_capture_on_commit_callbacks
):
    sold = _member(s)
    req, url = _request(s, sold, django_capture_on_commit_callbacks)
    response = _post(client, url, number="4000000000009995")  # insufficient funds
    assert (
        response.status_code == 302
    )  # the card is kept and the membership paid by it; the charge failed
    done = client.get(response["Location"]).content.decode()
    assert "still owed" in done and "$60.00" in done
    sold.refresh_from_db()
    assert sold.card.last4 == "9995"
    row = PassInvoice.objects.get(sold_pass=sold)
    assert row.charge_attempts == 1 and row.next_attempt_on == dt.date(
        2026, 5, 2
    )  # retried on the schedule
    bad = _post(
        client,
        reverse(
            "portal:card_update",
            args=[cr.card_update_token(cr.card_update_request(sold_pass=sold, actor=s["fd"].user))],
        ),
        number="4242 4242 4242 4241",
    )
    assert bad.status_code == 200 and "valid card number" in bad.content.decode()
    assert cr.card_request_open(sold) is not None  # a card refused by the form: nothing changed
    assert_ledger_ok()


@pytest.mark.parametrize(
    "how, status, words",
    [
        ("tampered", 400, "not valid"),
        ("expired", 410, "expired"),
        ("replaced", 410, "newer link"),
        ("cancelled", 400, "no longer active"),
        ("used", 410, "already used"),
    ],
)
def test_a_link_that_no_longer_works_gets_a_clear_page(
    s, client, django_capture_on_commit_callbacks, how, status, words
):
    sold = _member(s, number="4242424242424242")
    passes_daily(today=dt.date(2026, 5, 1))
    req, url = _request(s, sold, django_capture_on_commit_callbacks)
    if how == "tampered":
        url = url[:-3] + ("A" if url[-3] != "A" else "B") + url[-2:]
    elif how == "replaced":
        cr.card_update_request(sold_pass=sold, actor=s["fd"].user)
    elif how == "cancelled":
        ms.membership_cancel(actor=s["fd"].user, sold_pass=sold, at_cycle_end=False)
    elif how == "used":
        assert _post(client, url).status_code == 302
    with clock.frozen(at("2026-05-16", "10:00") if how == "expired" else clock.now()):
        for response in (client.get(url), _post(client, url, key="later")):
            assert response.status_code == status and words in response.content.decode(), how
    assert client.get(reverse("portal:card_update", args=["garbage"])).status_code == 400


def test_a_link_is_only_for_its_own_membership(s, client, django_capture_on_commit_callbacks):
    """The token names one request: another patient's membership id cannot be swapped in."""
    mine, theirs = _member(s), _member(s, email="other@example.test")
    req, url = _request(s, mine, django_capture_on_commit_callbacks)
    signed = cr.card_update_token(req)
    forged = signed.replace(f"{req.pk}.", f"{req.pk + 1}.", 1)
    assert client.get(reverse("portal:card_update", args=[forged])).status_code == 400
    assert _post(client, url).status_code == 302
    theirs.refresh_from_db()
    assert theirs.card.last4 == "0002" and not CardOnFile.objects.filter(
        patient=theirs.patient, last4="4242"
    )


def test_a_hard_decline_records_a_request_even_without_an_email_and_staff_are_told_why(s, client):
    sold = _member(s, email="")
    req = cr.card_update_request(
        sold_pass=sold, reason="hard_decline", note="The card was reported lost."
    )
    assert req.emailed_to == "" and not mail.outbox
    assert "not emailed (the patient has no email address)" in cr.card_request_label(req)
    with pytest.raises(Conflict) as refused:  # staff asking gets the refusal to act on
        cr.card_update_request(sold_pass=sold, actor=s["fd"].user)
    assert refused.value.code == "no_email"
    client.force_login(s["fd"].user)
    assert (
        "The card was reported lost."
        in client.get(reverse("memberships:detail", args=[sold.pk])).content.decode()
    )


def test_staff_choosing_a_card_closes_the_request(s, django_capture_on_commit_callbacks):
    sold = _member(s)
    req, _ = _request(s, sold, django_capture_on_commit_callbacks)
    card = card_store(
        actor=s["fd"].user,
        patient=sold.patient,
        number="4242424242424242",
        exp_month=1,
        exp_year=2031,
        cvc="123",
        holder="Pat",
    )
    ms.membership_payment_set(
        actor=s["fd"].user, sold_pass=sold, payment_mode="automatic", card=card
    )
    req.refresh_from_db()
    assert req.completed_at is not None and req.card == card and cr.card_request_open(sold) is None


def test_the_staff_button_sends_once_per_click(s, client, django_capture_on_commit_callbacks):
    sold = _member(s)
    client.force_login(s["fd"].user)
    url = reverse("memberships:card_request", args=[sold.pk])
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(url, {"form_key": "click-1"})
    assert CardUpdateRequest.objects.filter(sold_pass=sold).count() == 1 and len(mail.outbox) == 1
    client.post(url, {"form_key": "click-2"})  # "send again": a new link, the old one replaced
    assert CardUpdateRequest.objects.filter(sold_pass=sold).count() == 2
    assert CardUpdateRequest.objects.filter(sold_pass=sold, superseded_at__isnull=True).count() == 1


def test_the_api_requests_a_card_once_per_idempotency_key(s, django_capture_on_commit_callbacks):
    sold = _member(s)
    api = Api(s["fd"].user)
    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(f"/passes/{sold.pk}/card-update-request", **{"Idempotency-Key": "abc"})
        again = api.post(f"/passes/{sold.pk}/card-update-request", **{"Idempotency-Key": "abc"})
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    assert first.json()["emailed_to"] == "pat@example.test" and len(mail.outbox) == 1
    nobody = make_patient(email="")
    sold.patient, sold.patient_id = nobody, nobody.pk
    Pass.objects.filter(pk=sold.pk).update(patient=nobody)
    refused = api.post(f"/passes/{sold.pk}/card-update-request")
    assert refused.status_code == 409 and refused.json()["code"] == "no_email"


@pytest.fixture
def racing(front_desk, catalog, settings):
    """A member for real threads (no frozen clock: the threads would not share it)."""
    settings.SITE_URL = "https://clinic.example"
    clinic_set(time_zone="America/Toronto")
    return _member({"fd": front_desk, "cat": catalog})


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_two_windows_racing_with_one_link_add_one_card_and_charge_once(racing, front_desk):
    sold = racing
    token = cr.card_update_token(cr.card_update_request(sold_pass=sold, actor=front_desk.user))
    results = race(
        4,
        lambda i: cr.card_update_complete(
            token=token,
            holder="Pat",
            idempotency_key=f"window-{i}",
            card_number="4242424242424242",
            exp_month=12,
            exp_year=2040,
            cvc="123",
        ),
    )
    won = [r for r in results if isinstance(r, cr.CardUpdated)]
    assert len(won) == 1 and all(isinstance(r, cr.CardLinkUsed) for r in results if r not in won), (
        results
    )
    sold.refresh_from_db()
    assert sold.card == won[0].request.card
    assert TestGatewayCharge.objects.count() == Payment.objects.count() == 1
    assert_ledger_ok()


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_two_requests_at_once_leave_one_open(racing, front_desk):
    sold = racing
    results = race(4, lambda i: cr.card_update_request(sold_pass=sold, actor=front_desk.user))
    assert all(isinstance(r, CardUpdateRequest) for r in results), results
    assert (
        CardUpdateRequest.objects.filter(
            sold_pass=sold, completed_at__isnull=True, superseded_at__isnull=True
        ).count()
        == 1
    )
