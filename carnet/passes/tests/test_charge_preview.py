"""Tomorrow's automatic charges (issue 22 point 8): the page and the owner's nightly email list
exactly what the daily job then charges — checked by running the job with the clock moved past
midnight in the clinic's time zone (Toronto: the preview is made at 21:00 on 31 May, already 1 June
in UTC, so a preview reading UTC's date would list 2 June's charges)."""

import datetime as dt

import pytest
from django.core import mail
from django.urls import reverse

from carnet.billing.models import CardAttempt
from carnet.billing.payments import payment_receive
from carnet.billing.tests.test_invoicing import assert_ledger_ok
from carnet.conftest import make_patient
from carnet.core import clock
from carnet.gateway.services import card_remove, card_store
from carnet.passes import memberships as ms
from carnet.passes.charge_preview import charges_preview, charges_preview_email_send
from carnet.passes.jobs import passes_daily
from carnet.passes.models import PassInvoice
from carnet.passes.plan_change import membership_plan_change
from carnet.passes.selling import package_sell
from carnet.scheduling.tests.factories import clinic_set

from .factories import at, membership_template, package_template

pytestmark = pytest.mark.django_db
MAY_1, MAY_31, JUNE_1 = dt.date(2026, 5, 1), dt.date(2026, 5, 31), dt.date(2026, 6, 1)


def _card(fd, patient, number="4242424242424242"):
    return card_store(actor=fd.user, patient=patient, number=number, exp_month=12, exp_year=2030, cvc="123",
                      holder=patient.first_name)


def _auto(s, name, *, number="4242424242424242", start=None, **template):
    patient = make_patient(first_name=name, last_name="Member", email=f"{name.lower()}@example.test")
    return ms.membership_sell(actor=s["fd"].user, patient=patient, payment_mode="automatic",
                              card=_card(s["fd"], patient, number), start_date=start,
                              template=membership_template(s["cat"], name=f"{name} plan", **template))


@pytest.fixture
def world(owner, front_desk, catalog, settings):
    """On 31 May: memberships and a payment plan in every state tomorrow's charges depend on."""
    clinic_set(time_zone="America/Toronto", email="desk@clinic.test")
    s = {"fd": front_desk, "cat": catalog, "owner": owner}
    with clock.frozen(at("2026-05-01", "10:00")):
        s["taxed"] = _auto(s, "Ana", taxes=[catalog["tax"]])  # June's cycle, with its tax
        s["manual"] = ms.membership_sell(actor=front_desk.user, patient=make_patient(first_name="Bo"),
                                         template=membership_template(catalog, name="Bo plan"))
        s["paused"] = _auto(s, "Cy", pause_allowed=True, pause_max_cycles=2)
        s["ending"] = _auto(s, "Di")
        s["future"] = _auto(s, "Ed", start=JUNE_1)  # its first cycle starts tomorrow
        s["weekly"] = _auto(s, "Fay", cycle="weekly", start=dt.date(2026, 5, 25))
        s["removed"] = _auto(s, "Gus")
        s["yearly"] = _auto(s, "Hal", cycle="yearly")
        plan_patient = make_patient(first_name="Ivy", last_name="Planner")
        s["plan"] = package_sell(actor=front_desk.user, patient=plan_patient, card=_card(front_desk, plan_patient),
                                 template=package_template(catalog, name="Plan", price=40000, instalments=2))
        first = s["plan"].instalment_rows.get(seq=1).invoice
        payment_receive(actor=front_desk.user, patient=plan_patient, method="cash", amount_minor=first.balance_minor,
                        allocations=[(first, first.balance_minor)])
        s["changing"] = _auto(s, "Kim")  # moves to a weekly plan at its next cycle
        passes_daily(today=MAY_1)
        membership_plan_change(actor=front_desk.user, sold_pass=s["changing"], when="next_cycle",
                               template=membership_template(catalog, name="Kim weekly", cycle="weekly", price=2500,
                                                            taxes=[catalog["tax"]]))
        ms.membership_pause(actor=front_desk.user, sold_pass=s["paused"], cycles=1)
        ms.membership_cancel(actor=front_desk.user, sold_pass=s["ending"], at_cycle_end=True)
    with clock.frozen(at("2026-05-31", "10:00")):
        s["declined"] = _auto(s, "Jo", number="4000000000009995")  # declined today: tried again tomorrow
        passes_daily(today=MAY_31)
        card_remove(actor=front_desk.user, card=s["removed"].card)
    assert PassInvoice.objects.get(sold_pass=s["declined"]).next_attempt_on == JUNE_1
    return s


def _key(sold_pass_id, seq, amount, card_id):
    return (sold_pass_id, seq, amount, card_id)


def test_the_preview_lists_exactly_what_the_job_charges_after_midnight(world, django_capture_on_commit_callbacks):
    with clock.frozen(at("2026-05-31", "21:00")):  # 01:00 on 1 June in UTC
        planned = charges_preview()
    listed = {_key(p.sold_pass.pk, p.seq, p.amount_minor, p.card.pk) for p in planned}
    names = {p.patient.first_name for p in planned}
    assert names == {"Ana", "Ed", "Fay", "Gus", "Ivy", "Jo", "Kim"}, names  # not manual, paused, ending or yearly
    assert len(planned) == len(listed) == 7
    ana = next(p for p in planned if p.patient.first_name == "Ana")
    assert ana.amount_minor == 6780 and ana.what == "Membership cycle 2026-06-01 to 2026-06-30"  # 60.00 + 13 %
    assert next(p for p in planned if p.patient.first_name == "Jo").retry
    assert "removed" in next(p for p in planned if p.patient.first_name == "Gus").problem
    assert next(p for p in planned if p.patient.first_name == "Ivy").what == "Instalment 2 of 2"
    kim = next(p for p in planned if p.patient.first_name == "Kim")  # on the new plan's terms
    assert kim.amount_minor == 2825 and kim.what == "Membership cycle 2026-06-01 to 2026-06-07"

    before = set(CardAttempt.objects.values_list("pk", flat=True))
    with clock.frozen(at("2026-06-01", "00:30")):  # the job's run just past midnight, in Toronto
        passes_daily()
    made = CardAttempt.objects.exclude(pk__in=before).filter(kind="charge")
    charged = set()
    for attempt in made:
        row = PassInvoice.objects.get(pk=attempt.context["pass_invoice"])
        charged.add(_key(row.sold_pass_id, row.seq, attempt.amount_minor, attempt.card_id))
    assert charged == listed
    assert made.filter(status="succeeded").count() == 5  # Jo's card declines again, Gus's was removed
    assert_ledger_ok()


def test_the_owner_gets_the_list_once_a_night_when_the_clinic_opts_in(world, django_capture_on_commit_callbacks):
    with clock.frozen(at("2026-05-31", "21:00")):
        assert charges_preview_email_send() == 0  # not opted in
    clinic_set(charges_preview_email=True)
    with clock.frozen(at("2026-05-31", "21:00")):
        with django_capture_on_commit_callbacks(execute=True):
            assert charges_preview_email_send() == 7
            assert charges_preview_email_send() == 0  # a second run the same night sends nothing
    [message] = [m for m in mail.outbox if "automatic charges" in m.subject]
    assert message.to == [world["owner"].user.email] and "2026-06-01" in message.subject
    assert "Ana Member: $67.80 to Visa •••• 4242" in message.body
    assert "1 of them will fail" in message.body
    clinic_set(charges_preview_email=False)
    with clock.frozen(at("2026-06-01", "21:00")):
        assert charges_preview_email_send() == 0


def test_the_daily_job_sends_it_after_the_day_s_charges(world, django_capture_on_commit_callbacks):
    clinic_set(charges_preview_email=True)
    with clock.frozen(at("2026-05-31", "23:00")):
        with django_capture_on_commit_callbacks(execute=True):
            result = passes_daily()
    assert result["charges_previewed"] == 7 and not result["errors"]
    assert any("automatic charges" in m.subject for m in mail.outbox)


def test_the_page_shows_tomorrow_in_the_clinic_s_time_zone(world, client):
    client.force_login(world["fd"].user)
    with clock.frozen(at("2026-05-31", "21:00")):
        page = client.get(reverse("memberships:charges_preview")).content.decode()
    assert "Monday 1 June 2026" in page and page.count('data-testid="charge"') == 7
    assert "Ana Member" in page and "$67.80" in page and "Visa •••• 4242" in page
    assert "1 of them will fail" in page and "Bo " not in page
    assert reverse("memberships:charges_preview") in client.get(reverse("staff:dashboard")).content.decode()
