"""Staff pages for memberships (SPEC 6.2–6.4, 9.7): selling (manual, automatic with the first cycle
charged or declined, a past start), the membership's page (uses this cycle, billing events newest
first), pause/resume, cancel with the policy warning, refunding a cycle, changing the card, delete,
and each refused without its permission."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from carnet.billing.models import Invoice, Payment
from carnet.billing.payments import payment_receive
from carnet.billing.selectors import credit_balance
from carnet.conftest import make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.gateway.services import card_store
from carnet.passes.memberships import services as ms
from carnet.passes.memberships.cycle_billing import cycles_issue
from carnet.passes.models import Pass, PassInvoice, PassPause
from carnet.passes.tests.factories import at, membership_template, practitioner
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db

GOOD, DECLINED = "4242424242424242", "4000000000000002"


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "patient": make_patient(),
            "template": membership_template(
                catalog,
                name="Wellness monthly",
                price=6000,
                uses=2,
                pause_allowed=True,
                pause_max_cycles=2,
                cancellable_after_cycles=3,
            ),
        }


def _login(client, staff):
    client.force_login(staff.user)
    return client


def _text(response) -> str:
    return response.content.decode()


def _card(s, number=GOOD):
    return card_store(
        actor=s["fd"].user,
        patient=s["patient"],
        number=number,
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="Pat Test",
    )


def _sell_data(s, **over):
    data = {
        "form_key": "k1",
        "template": s["template"].pk,
        "start_date": "2026-05-01",
        "location": "",
        "payment_mode": "manual",
        "card": "",
        "sold_by": "",
    }
    data.update({k: str(v) for k, v in over.items()})
    return data


def _sell_url(s):
    return reverse("memberships:sell", kwargs={"pk": s["patient"].pk})


def _detail(client, sold) -> str:
    return _text(client.get(reverse("memberships:detail", kwargs={"pk": sold.pk})))


def _sold(s, **kw) -> Pass:
    return ms.membership_sell(
        actor=s["fd"].user, patient=s["patient"], template=s["template"], **kw
    )


def _invoices(sold):
    return list(Invoice.objects.filter(pass_invoice__sold_pass=sold).order_by("pass_invoice__seq"))


def _pay(s, sold):
    for invoice in _invoices(sold):
        if invoice.balance_minor:
            payment_receive(
                actor=s["fd"].user,
                patient=s["patient"],
                method="cash",
                amount_minor=invoice.balance_minor,
                allocations=[(invoice, invoice.balance_minor)],
            )


# ---- selling ------------------------------------------------------------------------------------


def test_the_sell_form_offers_memberships_the_patients_cards_and_the_past_cycles_note(s, client):
    membership_template(s["cat"], name="Old plan", archived=True)
    card = _card(s)
    page = _text(_login(client, s["fd"]).get(_sell_url(s)))
    assert "Wellness monthly" in page and "Old plan" not in page
    assert f'value="{card.pk}"' in page and "4242" in page
    assert 'value="2026-05-01"' in page  # the start date defaults to today
    assert "invoiced at once and paid by hand" in page


def test_selling_a_manual_membership_invoices_the_first_cycle_unpaid(s, client):
    response = _login(client, s["fd"]).post(_sell_url(s), _sell_data(s), follow=True)
    sold = Pass.objects.get(kind="membership")
    assert response.redirect_chain[-1][0] == reverse("memberships:detail", kwargs={"pk": sold.pk})
    [invoice] = _invoices(sold)
    assert (
        invoice.balance_minor == 6000
        and sold.payment_mode == "manual"
        and Payment.objects.count() == 0
    )
    page = _text(response)
    assert "Sold Wellness monthly" in page and "0 used of 2" in page and "Manual" in page
    assert 'data-testid="next-billing">2026-06-01<' in page


def test_selling_an_automatic_membership_charges_the_first_cycle_at_once(s, client):
    card = _card(s)
    response = _login(client, s["fd"]).post(
        _sell_url(s), _sell_data(s, payment_mode="automatic", card=card.pk), follow=True
    )
    sold = Pass.objects.get(kind="membership")
    [invoice] = _invoices(sold)
    assert invoice.balance_minor == 0 and Payment.objects.get().card_id == card.pk
    page = _text(response)
    assert "The current cycle was charged to Visa •••• 4242" in page and "$60.00 paid" in page
    assert "Automatic — Visa •••• 4242" in page
    assert 'data-testid="invoice-status">Paid<' in page


def test_a_declined_card_shows_the_reason_and_leaves_the_invoice_unpaid_for_the_job(s, client):
    card = _card(s, DECLINED)
    response = _login(client, s["fd"]).post(
        _sell_url(s), _sell_data(s, payment_mode="automatic", card=card.pk), follow=True
    )
    sold = Pass.objects.get(kind="membership")
    [invoice] = _invoices(sold)
    row = PassInvoice.objects.get(sold_pass=sold)
    assert invoice.balance_minor == 6000 and Payment.objects.count() == 0
    assert row.charge_attempts == 1 and row.next_attempt_on == dt.date(2026, 5, 2)
    page = _text(response)
    assert "The card was declined:" in page and row.last_error in page and "stays unpaid" in page
    assert "tried again on 2026-05-02" in page
    assert (
        'data-testid="invoice-status">Unpaid<' in page and "Retrying (next on 2026-05-02)" in page
    )


def test_automatic_without_a_card_shows_the_services_message(s, client):
    response = _login(client, s["fd"]).post(_sell_url(s), _sell_data(s, payment_mode="automatic"))
    assert response.status_code == 200
    assert "Choose a card." in _text(response) and not Pass.objects.exists()


def test_the_same_form_twice_sells_once(s, client):
    _login(client, s["fd"])
    client.post(_sell_url(s), _sell_data(s))
    response = client.post(_sell_url(s), _sell_data(s), follow=True)
    assert Pass.objects.filter(kind="membership").count() == 1
    assert "nothing was done twice" in _text(response)


def test_a_past_start_invoices_the_past_cycles_at_once_shown_newest_first(s, client):
    response = _login(client, s["fd"]).post(
        _sell_url(s), _sell_data(s, start_date="2026-02-15"), follow=True
    )
    sold = Pass.objects.get(kind="membership")
    assert len(_invoices(sold)) == 3
    page = _text(response)
    assert "3 cycle invoices issued (past cycles are invoiced at once and paid by hand)" in page
    assert (
        page.index('data-testid="cycle-3"')
        < page.index('data-testid="cycle-2"')
        < page.index('data-testid="cycle-1"')
    )
    assert "2026-04-15 to 2026-05-14" in page and "2026-02-15 to 2026-03-14" in page
    assert 'data-testid="value">$180.00<' in page and 'data-testid="collected">$0.00<' in page
    assert 'data-testid="next-billing">2026-05-15<' in page


def test_a_future_start_invoices_nothing_yet(s, client):
    response = _login(client, s["fd"]).post(
        _sell_url(s), _sell_data(s, start_date="2026-06-10"), follow=True
    )
    sold = Pass.objects.get(kind="membership")
    assert _invoices(sold) == []
    page = _text(response)
    assert "Not started" in page and 'data-testid="next-billing">2026-06-10<' in page
    assert "nothing is invoiced until it starts" in page


def test_unused_uses_rolled_over_are_noted(s, client):
    template = membership_template(s["cat"], name="Rolling", uses=2, rollover=True)
    sold = ms.membership_sell(actor=s["fd"].user, patient=s["patient"], template=template)
    with clock.frozen(at("2026-06-02", "10:00")):
        cycles_issue()
        page = _detail(_login(client, s["fd"]), sold)
    assert "0 used of 4" in page and "includes 2 rolled over" in page
    assert page.index('data-testid="cycle-2"') < page.index('data-testid="cycle-1"')
    assert (
        "(current)"
        in page[page.index('data-testid="cycle-2"') : page.index('data-testid="cycle-1"')]
    )


# ---- the membership's page ----------------------------------------------------------------------


def test_the_page_shows_uses_this_cycle_term_and_history(s, client):
    template = membership_template(s["cat"], name="Ten months", uses=2, term=10)
    sold = ms.membership_sell(actor=s["fd"].user, patient=s["patient"], template=template)
    _pay(s, sold)
    appointment = appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=practitioner(s["cat"]["location"]),
        location=s["cat"]["location"],
        start=at("2026-05-12", "09:00"),
        patients=[s["patient"]],
    )
    page = _detail(_login(client, s["fd"]), sold)
    assert "1 used of 2" in page
    assert "1 of 10 cycles billed, 9 remaining" in page
    assert reverse("scheduling:appointment", kwargs={"pk": appointment.pk}) in page
    assert 'data-testid="collected">$60.00<' in page


def test_unlimited_and_open_ended(s, client):
    template = membership_template(s["cat"], name="Unlimited", uses=None)
    sold = ms.membership_sell(actor=s["fd"].user, patient=s["patient"], template=template)
    page = _detail(_login(client, s["fd"]), sold)
    assert "Unlimited (0 used)" in page and "Open-ended (1 cycle billed)" in page


def test_pause_and_resume(s, client):
    sold = _sold(s)
    _login(client, s["fd"])
    response = client.post(
        reverse("memberships:pause", kwargs={"pk": sold.pk}), {"cycles": "2"}, follow=True
    )
    pause = PassPause.objects.get(sold_pass=sold)
    assert pause.from_seq == 2 and pause.cycles == 2
    page = _text(response)
    assert "paused for 2 cycles" in page and "billing again from 2026-08-01" in page
    assert 'data-testid="next-billing">2026-08-01<' in page and "Resume now" in page
    response = client.post(reverse("memberships:resume", kwargs={"pk": sold.pk}), follow=True)
    assert "resumed" in _text(response) and 'data-testid="next-billing">2026-06-01<' in _text(
        response
    )
    response = client.post(
        reverse("memberships:pause", kwargs={"pk": sold.pk}), {"cycles": "5"}, follow=True
    )
    assert "can be paused for at most 2 cycles at a time" in _text(response)


def test_pausing_a_membership_that_does_not_allow_it_shows_the_reason(s, client):
    sold = ms.membership_sell(
        actor=s["fd"].user, patient=s["patient"], template=membership_template(s["cat"])
    )
    _login(client, s["fd"])
    assert "Pause for" not in _detail(client, sold)
    response = client.post(
        reverse("memberships:pause", kwargs={"pk": sold.pk}), {"cycles": "1"}, follow=True
    )
    assert "cannot be paused" in _text(response)


def test_cancel_shows_the_policy_warning_then_cancels_at_the_cycle_end(s, client):
    sold = _sold(s)
    _pay(s, sold)
    _login(client, s["fd"])
    url = reverse("memberships:cancel", kwargs={"pk": sold.pk})
    page = _text(client.get(url))
    assert (
        'data-testid="cancel-warning"' in page
        and "cancellable after 3 cycles; 1 have been billed" in page
    )
    response = client.post(url, {"form_key": "c1", "when": "cycle_end"}, follow=True)
    sold.refresh_from_db()
    assert sold.status == "active" and sold.ends_after == dt.date(2026, 5, 31)
    page = _text(response)
    assert "covers visits until 2026-05-31" in page and "Cancelled — ends after 2026-05-31" in page
    assert 'data-testid="next-billing">None<' in page


def test_cancel_at_once_and_without_a_paid_cycle(s, client):
    sold = _sold(s)
    _login(client, s["fd"])
    url = reverse("memberships:cancel", kwargs={"pk": sold.pk})
    response = client.post(url, {"form_key": "c1", "when": "now"})
    assert response.status_code == 200 and "has no paid cycle yet" in _text(response)
    _pay(s, sold)
    response = client.post(url, {"form_key": "c2", "when": "now"}, follow=True)
    sold.refresh_from_db()
    assert sold.status == "cancelled" and "benefits ended on 2026-05-01" in _text(response)
    assert ">Cancelled<" in _text(response) and "Cancel membership…" not in _text(response)


def test_refund_a_cycle_within_what_was_collected(s, client):
    sold = _sold(s)
    _pay(s, sold)
    row = PassInvoice.objects.get(sold_pass=sold)
    _login(client, s["admin"])
    assert reverse("memberships:cycle_refund", kwargs={"cycle_pk": row.pk}) in _detail(client, sold)
    url = reverse("memberships:cycle_refund", kwargs={"cycle_pk": row.pk})
    page = _text(client.get(url))
    assert 'data-testid="suggested">$60.00' in page and 'data-testid="collected">$60.00' in page
    response = client.post(url, {"form_key": "r1", "amount": "70.00", "reason": ""})
    assert response.status_code == 200 and "what was collected for this cycle" in _text(response)
    response = client.post(
        url, {"form_key": "r2", "amount": "30.00", "reason": "moved away"}, follow=True
    )
    assert "$30.00 is now" in _text(response) and credit_balance(s["patient"]) == 3000
    row.refresh_from_db()
    assert row.uses_allowed == row.used_count == 0


def test_change_the_card_charges_the_unpaid_current_cycle(s, client):
    sold = _sold(s)
    _login(client, s["fd"])
    url = reverse("memberships:payment", kwargs={"pk": sold.pk})
    response = client.post(url, {"payment_mode": "automatic", "card": ""})
    assert response.status_code == 200 and "Choose a card." in _text(response)
    card = _card(s)
    response = client.post(url, {"payment_mode": "automatic", "card": str(card.pk)}, follow=True)
    sold.refresh_from_db()
    assert sold.payment_mode == "automatic" and sold.card_id == card.pk
    assert "now paid automatically by Visa •••• 4242" in _text(response) and "was charged" in _text(
        response
    )
    assert _invoices(sold)[0].balance_minor == 0
    response = client.post(url, {"payment_mode": "manual", "card": ""}, follow=True)
    sold.refresh_from_db()
    assert (
        sold.payment_mode == "manual" and sold.card_id is None and "paid by hand" in _text(response)
    )


def test_delete_an_unpaid_membership_and_refused_once_paid(s, client):
    unpaid, paid = _sold(s), _sold(s)
    _pay(s, paid)
    _login(client, s["admin"])
    assert "Delete this unpaid membership" in _detail(client, unpaid)
    assert "Delete this unpaid membership" not in _detail(client, paid)
    response = client.post(reverse("memberships:delete", kwargs={"pk": unpaid.pk}))
    assert response["Location"] == reverse("passes:patient_passes", kwargs={"pk": s["patient"].pk})
    unpaid.refresh_from_db()
    assert unpaid.status == "deleted" and all(i.deleted_at for i in _invoices(unpaid))
    assert client.get(reverse("memberships:detail", kwargs={"pk": unpaid.pk})).status_code == 404
    response = client.post(reverse("memberships:delete", kwargs={"pk": paid.pk}), follow=True)
    assert "has a paid cycle" in _text(response)
    paid.refresh_from_db()
    assert paid.status == "active"


# ---- access -------------------------------------------------------------------------------------


def test_front_desk_without_billing_and_practitioners_are_refused(s, client):
    sold = _sold(s)
    _pay(s, sold)
    row = PassInvoice.objects.get(sold_pass=sold)
    no_billing = make_staff(AccessLevel.FRONT_DESK, billing=False)
    prac = make_staff(AccessLevel.PRACTITIONER_FRONT_DESK_ALL, billing=True)
    detail = reverse("memberships:detail", kwargs={"pk": sold.pk})
    for staff, url in [
        (no_billing, detail),
        (no_billing, _sell_url(s)),
        (prac, _sell_url(s)),
        (prac, reverse("memberships:cancel", kwargs={"pk": sold.pk})),
        (s["fd"], reverse("memberships:cycle_refund", kwargs={"cycle_pk": row.pk})),
    ]:
        response = _login(client, staff).get(url)
        assert response.status_code == 403 and b"Not allowed" in response.content, (staff, url)
    for staff, name in [(prac, "pause"), (prac, "payment"), (s["fd"], "delete")]:
        response = _login(client, staff).post(
            reverse(f"memberships:{name}", kwargs={"pk": sold.pk}), {"cycles": "1"}
        )
        assert response.status_code == 403, name
    assert PassPause.objects.count() == 0 and Pass.objects.get(pk=sold.pk).status == "active"
    # A practitioner who may see invoices sees the page, without the selling actions.
    page = _detail(_login(client, prac), sold)
    assert (
        "Wellness monthly" in page
        and "Cancel membership…" not in page
        and "Refund cycle…" not in page
    )
    # Front Desk sells, pauses and cancels but neither refunds nor deletes.
    page = _detail(_login(client, s["fd"]), sold)
    assert (
        "Cancel membership…" in page and "Refund cycle…" not in page and "Delete this" not in page
    )


def test_the_patients_list_shows_memberships_with_uses_this_cycle_and_links_to_their_page(
    s, client
):
    manual = _sold(s)
    cancelled = ms.membership_sell(
        actor=s["fd"].user,
        patient=s["patient"],
        template=membership_template(s["cat"], name="Unlimited", uses=None),
    )
    _pay(s, cancelled)
    ms.membership_cancel(actor=s["fd"].user, sold_pass=cancelled, at_cycle_end=False)
    page = _text(
        _login(client, s["fd"]).get(
            reverse("passes:patient_passes", kwargs={"pk": s["patient"].pk})
        )
    )
    assert (
        reverse("memberships:sell", kwargs={"pk": s["patient"].pk}) in page
        and "Sell a membership" in page
    )
    row = page[page.index(f'data-testid="pass-{manual.pk}"') :]
    row = row[: row.index("</tr>")]
    assert reverse("memberships:detail", kwargs={"pk": manual.pk}) in row
    assert (
        "0 used this cycle of 2" in row
        and "Next billing 2026-06-01" in row
        and "Owing $60.00" in row
    )
    row = page[page.index(f'data-testid="pass-{cancelled.pk}"') :]
    row = row[: row.index("</tr>")]
    assert (
        ">Cancelled<" in row
        and "ended" in row
        and "Ends after 2026-05-01" in row
        and "Owing" not in row
    )


def test_the_patients_passes_page_reads_a_bounded_number_of_queries(s, client):
    _login(client, s["fd"])
    url = reverse("passes:patient_passes", args=[s["patient"].pk])

    def queries() -> int:
        with CaptureQueriesContext(connection) as seen:
            assert client.get(url).status_code == 200
        return len(seen)

    ms.membership_sell(actor=s["fd"].user, patient=s["patient"], template=s["template"])
    queries()  # the first request also saves the new session
    one = queries()
    for _ in range(5):
        ms.membership_sell(actor=s["fd"].user, patient=s["patient"], template=s["template"])
    assert queries() == one  # no query per membership
