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
from carnet.passes.jobs import passes_daily
from carnet.passes.memberships import services as ms
from carnet.passes.memberships.charge_preview import charges_preview, charges_preview_email_send
from carnet.passes.memberships.plan_change import membership_plan_change
from carnet.passes.models import PassInvoice
from carnet.passes.packages.selling import package_sell
from carnet.passes.tests.factories import at, membership_template, package_template
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db
MAY_1, MAY_31, JUNE_1 = dt.date(2026, 5, 1), dt.date(2026, 5, 31), dt.date(2026, 6, 1)


def _card(fd, patient, number="4242424242424242"):
    return card_store(
        actor=fd.user,
        patient=patient,
        number=number,
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder=patient.first_name,
    )


def _auto(s, name, *, number="4242424242424242", start=None, **template):
    patient = make_patient(
        first_name=name, last_name="Member", email=f"{name.lower()}@example.test"
    )
    return ms.membership_sell(
        actor=s["fd"].user,
        patient=patient,
        payment_mode="automatic",
        card=_card(s["fd"], patient, number),
        start_date=start,
        template=membership_template(s["cat"], name=f"{name} plan", **template),
    )


@pytest.fixture
def world(owner, front_desk, catalog, settings):
    """On 31 May: memberships and a payment plan in every state tomorrow's charges depend on."""
    clinic_set(time_zone="America/Toronto", email="desk@clinic.test")
    s = {"fd": front_desk, "cat": catalog, "owner": owner}
    with clock.frozen(at("2026-05-01", "10:00")):
        s["taxed"] = _auto(s, "Ana", taxes=[catalog["tax"]])  # June's cycle, with its tax
        s["manual"] = ms.membership_sell(
            actor=front_desk.user,
            patient=make_patient(first_name="Bo"),
            template=membership_template(catalog, name="Bo plan"),
        )
        s["paused"] = _auto(s, "Cy", pause_allowed=True, pause_max_cycles=2)
        s["ending"] = _auto(s, "Di")
        s["future"] = _auto(s, "Ed", start=JUNE_1)  # its first cycle starts tomorrow
        s["weekly"] = _auto(s, "Fay", cycle="weekly", start=dt.date(2026, 5, 25))
        s["removed"] = _auto(s, "Gus")
        s["yearly"] = _auto(s, "Hal", cycle="yearly")
        plan_patient = make_patient(first_name="Ivy", last_name="Planner")
        s["plan"] = package_sell(
            actor=front_desk.user,
            patient=plan_patient,
            card=_card(front_desk, plan_patient),
            template=package_template(catalog, name="Plan", price=40000, instalments=2),
        )
        first = s["plan"].pass_invoices.get(seq=1).invoice
        payment_receive(
            actor=front_desk.user,
            patient=plan_patient,
            method="cash",
            amount_minor=first.balance_minor,
            allocations=[(first, first.balance_minor)],
        )
        s["changing"] = _auto(s, "Kim")  # moves to a weekly plan at its next cycle
        passes_daily(today=MAY_1)
        membership_plan_change(
            actor=front_desk.user,
            sold_pass=s["changing"],
            when="next_cycle",
            template=membership_template(
                catalog, name="Kim weekly", cycle="weekly", price=2500, taxes=[catalog["tax"]]
            ),
        )
        ms.membership_pause(actor=front_desk.user, sold_pass=s["paused"], cycles=1)
        ms.membership_cancel(actor=front_desk.user, sold_pass=s["ending"], at_cycle_end=True)
    with clock.frozen(at("2026-05-31", "10:00")):
        s["declined"] = _auto(
            s, "Jo", number="4000000000009995"
        )  # declined today: tried again tomorrow
        passes_daily(today=MAY_31)
        card_remove(actor=front_desk.user, card=s["removed"].card)
    assert PassInvoice.objects.get(sold_pass=s["declined"]).next_attempt_on == JUNE_1
    return s


def _key(sold_pass_id, seq, amount, card_id):
    return (sold_pass_id, seq, amount, card_id)


def test_the_preview_lists_exactly_what_the_job_charges_after_midnight(
    world, django_capture_on_commit_callbacks
):
    with clock.frozen(at("2026-05-31", "21:00")):  # 01:00 on 1 June in UTC
        planned = charges_preview()
    listed = {_key(p.sold_pass.pk, p.seq, p.amount_minor, p.card.pk) for p in planned}
    names = {p.patient.first_name for p in planned}
    assert names == {"Ana", "Ed", "Fay", "Gus", "Ivy", "Jo", "Kim"}, (
        names
    )  # not manual, paused, ending or yearly
    assert len(planned) == len(listed) == 7
    ana = next(p for p in planned if p.patient.first_name == "Ana")
    assert (
        ana.amount_minor == 6780 and ana.what == "Membership cycle 2026-06-01 to 2026-06-30"
    )  # 60.00 + 13 %
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
    assert (
        made.filter(status="succeeded").count() == 5
    )  # Jo's card declines again, Gus's was removed
    assert_ledger_ok()


def test_the_owner_gets_the_list_once_a_night_when_the_clinic_opts_in(
    world, django_capture_on_commit_callbacks
):
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
    assert (
        reverse("memberships:charges_preview")
        in client.get(reverse("staff:dashboard")).content.decode()
    )


def _preview_then_job(day: dt.date) -> tuple[list, set, set]:
    """Tomorrow's list made at 21:00 the evening before `day` (already `day` in UTC), then the job
    run at 00:30 on `day` in the clinic's zone: (the list, its keys, what the job charged)."""
    with clock.frozen(at((day - dt.timedelta(days=1)).isoformat(), "21:00")):
        planned = charges_preview()
    before = set(CardAttempt.objects.values_list("pk", flat=True))
    with clock.frozen(at(day.isoformat(), "00:30")):
        assert passes_daily()["errors"] == []
    charged = set()
    for attempt in CardAttempt.objects.exclude(pk__in=before).filter(kind="charge"):
        row = PassInvoice.objects.get(pk=attempt.context["pass_invoice"])
        charged.add(_key(row.sold_pass_id, row.seq, attempt.amount_minor, attempt.card_id))
    assert_ledger_ok()
    return (
        planned,
        {_key(p.sold_pass.pk, p.seq, p.amount_minor, p.card.pk) for p in planned},
        charged,
    )


def test_a_frozen_cycle_s_freeze_fee_is_listed_and_charged_as_listed(owner, front_desk, catalog):
    """A paused cycle whose pause bills a freeze fee is charged by autopay: the list shows it, as a
    freeze fee, at the fee with the membership's taxes — once per pause or per frozen cycle, again
    after a decline, and on the new plan's taxes when a plan change takes effect that day."""
    clinic_set(time_zone="America/Toronto")
    s = {"fd": front_desk, "cat": catalog}
    freeze = {"pause_allowed": True, "pause_max_cycles": 2, "taxes": [catalog["tax"]]}
    with clock.frozen(at("2026-05-01", "10:00")):
        per_cycle = _auto(s, "Lu", freeze_fee_kind="per_cycle", freeze_fee_minor=1500, **freeze)
        once = _auto(s, "Mo", freeze_fee_kind="once", freeze_fee_minor=2000, **freeze)
        declined = _auto(s, "Ned", freeze_fee_kind="per_cycle", freeze_fee_minor=1000, **freeze)
        free = _auto(s, "Ola", freeze_fee_kind="none", **freeze)
        changing = _auto(s, "Pia", freeze_fee_kind="per_cycle", freeze_fee_minor=1000, **freeze)
        passes_daily(today=MAY_1)
        membership_plan_change(
            actor=front_desk.user,
            sold_pass=changing,
            when="next_cycle",
            template=membership_template(
                catalog, name="Pia untaxed", price=5000, **{**freeze, "taxes": []}
            ),
        )
        for sold in (per_cycle, once, declined, free, changing):
            ms.membership_pause(actor=front_desk.user, sold_pass=sold, cycles=2)
        # Ned's card fails from June: the test gateway's insufficient-funds card replaces it.
        ms.membership_payment_set(
            actor=front_desk.user,
            sold_pass=declined,
            payment_mode="automatic",
            card=_card(front_desk, declined.patient, "4000000000009995"),
        )

    planned, listed, charged = _preview_then_job(JUNE_1)
    assert charged == listed
    by_name = {p.patient.first_name: p for p in planned}
    assert set(by_name) == {"Lu", "Mo", "Ned", "Pia"}, by_name  # Ola's pause bills nothing
    assert by_name["Lu"].amount_minor == 1695  # 15.00 + 13 % tax
    assert by_name["Lu"].what == "Freeze fee for the paused cycle 2026-06-01 to 2026-06-30"
    assert by_name["Mo"].amount_minor == 2260 and by_name["Ned"].amount_minor == 1130
    assert by_name["Pia"].amount_minor == 1000  # the new plan has no tax
    assert all(p.seq == 2 and p.what.startswith("Freeze fee") for p in planned)

    planned, listed, charged = _preview_then_job(dt.date(2026, 6, 2))  # Ned's fee is tried again
    assert charged == listed and [(p.patient.first_name, p.retry) for p in planned] == [
        ("Ned", True)
    ]
    assert planned[0].what.startswith("Freeze fee for the paused cycle")

    planned, listed, charged = _preview_then_job(dt.date(2026, 7, 1))  # the second frozen cycle
    assert charged == listed
    new = [p for p in planned if not p.retry]  # Ned's June fee is still being retried
    assert sorted(p.patient.first_name for p in new) == ["Lu", "Ned", "Pia"]  # Mo's fee was once
    assert all(p.seq == 3 and p.what.startswith("Freeze fee") for p in planned if not p.retry)

    planned, listed, charged = _preview_then_job(dt.date(2026, 8, 1))  # back to the cycle price
    assert charged == listed
    assert {p.patient.first_name: p.what for p in planned if p.patient.first_name != "Ned"} == {
        name: "Membership cycle 2026-08-01 to 2026-08-31" for name in ("Lu", "Mo", "Ola", "Pia")
    }
