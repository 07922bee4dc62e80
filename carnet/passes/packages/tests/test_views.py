"""Staff pages for sold packages: the patient's list, selling, and one package's page with its
expiry edit, two-step refund, delete, transfer and sharing; each refused without its permission."""

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse

from carnet.billing.models import Payment
from carnet.clinic.models import Clinic, Location
from carnet.conftest import make_catalog, make_patient, make_staff, race
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.passes.memberships.services import membership_sell
from carnet.passes.models import Pass, Redemption
from carnet.passes.selectors import pass_collected_minor, pass_unlocked
from carnet.passes.tests.factories import (
    at,
    membership_template,
    package_template,
    practitioner,
    sold_package,
)
from carnet.people.models import FamilyLink
from carnet.scheduling.services import appointment_book
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "patient": make_patient(),
            "template": package_template(catalog, transferable=True, family_sharing=True),
        }


def _login(client, staff):
    client.force_login(staff.user)
    return client


def _text(response) -> str:
    return response.content.decode()


def _sell_form(s, **over):
    data = {
        "form_key": over.pop("form_key", "k1"),
        "template": s["template"].pk,
        "expiry": "default",
        "expires_on": "",
        "sold_by": "",
        "pay": "now",
        "method": "cash",
        "amount": "",
        "reference": "",
    }
    data.update(over)
    return data


def test_list_shows_usage_remaining_expiry_status_and_not_paid(s, client):
    paid = sold_package(s["fd"], s["patient"], s["template"], expires_on=dt.date(2026, 11, 1))
    unpaid = sold_package(s["fd"], s["patient"], s["template"], paid=False, expires_on=None)
    prac = practitioner(s["cat"]["location"])
    appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=prac,
        location=s["cat"]["location"],
        start=at("2026-05-12", "09:00"),
        patients=[s["patient"]],
    )
    page = _text(
        _login(client, s["fd"]).get(
            reverse("passes:patient_passes", kwargs={"pk": s["patient"].pk})
        )
    )
    row = page[page.index(f'data-testid="pass-{paid.pk}"') :]
    row = row[: row.index("</tr>")]
    assert (
        "1 / 10" in row
        and ">9<" in row
        and "2026-11-01" in row
        and "Active" in row
        and ">Paid<" in row
    )
    row = page[page.index(f'data-testid="pass-{unpaid.pk}"') :]
    row = row[: row.index("</tr>")]
    assert "0 / 10" in row and "Never" in row and "Not paid" in row
    assert reverse("billing:tab", kwargs={"pk": s["patient"].pk}) in row
    # The Billing tab links here.
    assert reverse("passes:patient_passes", kwargs={"pk": s["patient"].pk}) in _text(
        client.get(reverse("billing:tab", kwargs={"pk": s["patient"].pk}))
    )


def test_sell_with_payment_now_is_paid_and_redeemable(s, client):
    _login(client, s["fd"])
    url = reverse("passes:sell", kwargs={"pk": s["patient"].pk})
    assert "Sell package" in _text(client.get(url))
    response = client.post(url, _sell_form(s, sold_by=s["fd"].pk))
    sold = Pass.objects.get(patient=s["patient"])
    assert response.status_code == 302 and response["Location"] == reverse(
        "passes:detail", kwargs={"pk": sold.pk}
    )
    assert pass_unlocked(sold) == 10 and sold.sold_by == s["fd"]
    payment = Payment.objects.get(patient=s["patient"])
    assert (
        payment.method == "cash"
        and payment.amount_minor == sold.price_minor == payment.applied_minor
    )
    assert sold.expires_on is None  # the template has no default expiry
    page = _text(client.get(response["Location"]))
    assert "paid." in page and "0 / 10" in page


def test_sell_later_leaves_it_not_paid_and_a_date_expiry(s, client):
    _login(client, s["fd"])
    client.post(
        reverse("passes:sell", kwargs={"pk": s["patient"].pk}),
        _sell_form(s, pay="later", expiry="date", expires_on="2027-05-01"),
    )
    sold = Pass.objects.get(patient=s["patient"])
    assert pass_unlocked(sold) == 0 and sold.expires_on == dt.date(2027, 5, 1)
    assert not Payment.objects.filter(patient=s["patient"]).exists()


def test_double_submit_with_the_same_form_key_sells_once(s, client):
    _login(client, s["fd"])
    url = reverse("passes:sell", kwargs={"pk": s["patient"].pk})
    first, second = client.post(url, _sell_form(s)), client.post(url, _sell_form(s))
    assert first.status_code == second.status_code == 302
    assert Pass.objects.filter(patient=s["patient"]).count() == 1
    assert Payment.objects.filter(patient=s["patient"]).count() == 1


def test_sell_expiry_refused_by_the_clinic_rule_shows_the_message(s, client):
    Clinic.objects.filter(pk=1).update(pass_expiry_rule=Clinic.PassExpiryRule.FORBIDDEN)
    _login(client, s["fd"])
    response = client.post(
        reverse("passes:sell", kwargs={"pk": s["patient"].pk}),
        _sell_form(s, expiry="date", expires_on="2027-05-01"),
    )
    assert response.status_code == 200 and "forbids expiry" in _text(response)
    assert not Pass.objects.filter(patient=s["patient"]).exists()


def test_a_failed_payment_leaves_no_half_sale(s, client):
    _login(client, s["fd"])
    response = client.post(
        reverse("passes:sell", kwargs={"pk": s["patient"].pk}), _sell_form(s, amount="0.00")
    )
    assert response.status_code == 200 and "greater than zero" in _text(response)
    assert not Pass.objects.filter(patient=s["patient"]).exists()


def test_pass_page_shows_summary_items_and_history_with_appointment_links(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    prac = practitioner(s["cat"]["location"])
    appointment = appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=prac,
        location=s["cat"]["location"],
        start=at("2026-05-12", "09:00"),
        patients=[s["patient"]],
    )
    page = _text(_login(client, s["fd"]).get(reverse("passes:detail", kwargs={"pk": sold.pk})))
    assert "2026-05-12" in page and "Reserved" in page and "Massage 60" in page
    assert reverse("scheduling:appointment", kwargs={"pk": appointment.pk}) in page
    assert "1 / 10" in page
    # Front Desk may not refund, transfer, edit expiry or delete: those actions are not shown.
    for name in ("expiry", "refund", "transfer", "delete"):
        assert reverse(f"passes:{name}", kwargs={"pk": sold.pk}) not in page, name


def test_expiry_edit_and_clear(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    _login(client, s["admin"])
    url = reverse("passes:expiry", kwargs={"pk": sold.pk})
    assert client.post(url, {"expires_on": "2026-12-31"}).status_code == 302
    sold.refresh_from_db()
    assert sold.expires_on == dt.date(2026, 12, 31)
    page = _text(client.post(url, {"clear": "on"}, follow=True))
    sold.refresh_from_db()
    assert sold.expires_on is None and "no longer expires" in page


def test_expiry_forbidden_by_clinic_rule_shows_the_message(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    Clinic.objects.filter(pk=1).update(pass_expiry_rule=Clinic.PassExpiryRule.FORBIDDEN)
    _login(client, s["admin"])
    response = client.post(
        reverse("passes:expiry", kwargs={"pk": sold.pk}), {"expires_on": "2026-12-31"}, follow=True
    )
    assert response.status_code == 200 and "forbid" in _text(response).lower()
    sold.refresh_from_db()
    assert sold.expires_on is None


def test_refund_step_one_suggests_and_bounds_the_override_by_what_was_collected(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    collected = pass_collected_minor(sold)
    _login(client, s["admin"])
    url = reverse("passes:refund", kwargs={"pk": sold.pk})
    page = _text(client.get(url))
    assert 'data-testid="suggested"' in page and 'data-testid="by-rule"' in page
    assert 'value="900.00"' in page  # 10 of 10 remaining: the whole price
    over = client.post(
        url, {"form_key": "r1", "amount": f"{collected / 100 + 1:.2f}", "reason": ""}
    )
    assert over.status_code == 200 and "what was collected" in _text(over)
    sold.refresh_from_db()
    assert sold.status == Pass.Status.ACTIVE
    done = client.post(url, {"form_key": "r2", "amount": "500.00", "reason": "moving away"})
    assert done.status_code == 302 and "credited=50000" in done["Location"]
    sold.refresh_from_db()
    assert sold.status == Pass.Status.REFUNDED
    step_two = _text(client.get(done["Location"]))
    payment = Payment.objects.get(patient=s["patient"])
    assert (
        "Step two" in step_two
        and reverse("billing:refund", kwargs={"pk": s["patient"].pk, "payment_pk": payment.pk})
        in step_two
    )
    assert 'value="500.00"' in step_two
    # Step two through billing's own refund page.
    client.post(
        reverse("billing:refund", kwargs={"pk": s["patient"].pk, "payment_pk": payment.pk}),
        {"amount": "500.00", "method": "", "reason": "moving away"},
    )
    payment.refresh_from_db()
    assert payment.refunds.get().amount_minor == 50000


def test_refund_with_booked_visits_needs_detaching(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    prac = practitioner(s["cat"]["location"])
    appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=prac,
        location=s["cat"]["location"],
        start=at("2026-05-12", "09:00"),
        patients=[s["patient"]],
    )
    _login(client, s["admin"])
    url = reverse("passes:refund", kwargs={"pk": sold.pk})
    assert 'data-testid="future"' in _text(client.get(url))
    refused = client.post(url, {"form_key": "r1", "amount": "100.00"})
    assert refused.status_code == 200 and "Detach" in _text(refused)
    assert (
        client.post(url, {"form_key": "r2", "amount": "100.00", "detach_future": "on"}).status_code
        == 302
    )
    assert not Redemption.objects.filter(sold_pass=sold, status="reserved").exists()


def test_transfer_to_another_patient(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    other = make_patient(first_name="Zelda", last_name="Quince")
    _login(client, s["admin"])
    url = reverse("passes:transfer", kwargs={"pk": sold.pk})
    page = _text(client.get(url, {"q": "Quince"}))
    assert f'value="{other.pk}"' in page and f'value="{s["patient"].pk}"' not in page
    response = client.post(url, {"form_key": "t1", "to_patient": other.pk})
    new = Pass.objects.get(patient=other)
    assert response["Location"] == reverse("passes:detail", kwargs={"pk": new.pk})
    sold.refresh_from_db()
    assert sold.status == Pass.Status.TRANSFERRED and new.remaining == 10


def test_transfer_refusal_is_a_message(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"], paid=False)
    other = make_patient()
    _login(client, s["admin"])
    response = client.post(
        reverse("passes:transfer", kwargs={"pk": sold.pk}),
        {"form_key": "t1", "to_patient": other.pk},
    )
    assert response.status_code == 200 and "not fully paid" in _text(response)


def test_sharing_with_family(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    child, stranger = make_patient(), make_patient()
    FamilyLink.objects.create(patient=s["patient"], relative=child, kind="guardian")
    _login(client, s["fd"])
    page = _text(client.get(reverse("passes:detail", kwargs={"pk": sold.pk})))
    assert reverse("passes:shares", kwargs={"pk": sold.pk}) in page and child.full_name in page
    client.post(reverse("passes:shares", kwargs={"pk": sold.pk}), {"patients": [child.pk]})
    assert list(sold.shares.values_list("patient_id", flat=True)) == [child.pk]
    refused = client.post(
        reverse("passes:shares", kwargs={"pk": sold.pk}), {"patients": [stranger.pk]}, follow=True
    )
    assert "Choose family members" in _text(refused)
    client.post(reverse("passes:shares", kwargs={"pk": sold.pk}), {})
    assert not sold.shares.exists()


def test_delete_an_unpaid_purchase(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"], paid=False)
    _login(client, s["admin"])
    page = _text(client.get(reverse("passes:detail", kwargs={"pk": sold.pk})))
    assert "data-confirm" in page and reverse("passes:delete", kwargs={"pk": sold.pk}) in page
    response = client.post(reverse("passes:delete", kwargs={"pk": sold.pk}))
    assert response["Location"] == reverse("passes:patient_passes", kwargs={"pk": s["patient"].pk})
    sold.refresh_from_db()
    assert sold.status == Pass.Status.DELETED
    assert client.get(reverse("passes:detail", kwargs={"pk": sold.pk})).status_code == 404


def test_delete_a_paid_purchase_is_refused_with_a_message(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    _login(client, s["admin"])
    response = client.post(reverse("passes:delete", kwargs={"pk": sold.pk}), follow=True)
    assert response.status_code == 200 and "Refund the package instead" in _text(response)
    sold.refresh_from_db()
    assert sold.status == Pass.Status.ACTIVE


@pytest.mark.parametrize(
    "name,data",
    [
        ("expiry", {"expires_on": "2026-12-31"}),
        ("refund", {"form_key": "x", "amount": "1.00"}),
        ("transfer", {"form_key": "x"}),
        ("delete", {}),
    ],
)
def test_front_desk_is_refused_the_admin_actions(s, client, name, data):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    response = _login(client, s["fd"]).post(reverse(f"passes:{name}", kwargs={"pk": sold.pk}), data)
    assert response.status_code == 403
    sold.refresh_from_db()
    assert sold.status == Pass.Status.ACTIVE and sold.expires_on is None


def test_without_billing_access_nothing_is_shown_or_sold(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    nobilling = make_staff(AccessLevel.FULL_ACCESS, billing=False)
    _login(client, nobilling)
    assert (
        client.get(reverse("passes:patient_passes", kwargs={"pk": s["patient"].pk})).status_code
        == 403
    )
    assert client.get(reverse("passes:detail", kwargs={"pk": sold.pk})).status_code == 403
    assert (
        client.post(
            reverse("passes:sell", kwargs={"pk": s["patient"].pk}), _sell_form(s)
        ).status_code
        == 403
    )
    assert client.post(reverse("passes:shares", kwargs={"pk": sold.pk}), {}).status_code == 403


def test_a_membership_opens_on_its_own_page_and_package_actions_do_not_apply(s, client):
    membership = membership_sell(
        actor=s["fd"].user, patient=s["patient"], template=membership_template(s["cat"])
    )
    _login(client, s["admin"])
    response = client.get(reverse("passes:detail", kwargs={"pk": membership.pk}))
    assert response["Location"] == reverse("memberships:detail", kwargs={"pk": membership.pk})
    assert client.post(reverse("passes:delete", kwargs={"pk": membership.pk})).status_code == 404
    membership.refresh_from_db()
    assert membership.status == Pass.Status.ACTIVE


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_concurrent_double_submit_sells_once():
    catalog = make_catalog()
    desk, patient = make_staff(AccessLevel.FRONT_DESK), make_patient()
    data = _sell_form({"template": package_template(catalog)}, form_key="same-key")
    clients = []
    for _ in range(4):
        client = Client()
        client.force_login(desk.user)
        clients.append(client)
    url = reverse("passes:sell", kwargs={"pk": patient.pk})
    results = race(4, lambda i: clients[i].post(url, data).status_code)
    assert all(r in (200, 302) for r in results), results
    assert Pass.objects.filter(patient=patient).count() == 1
    assert Payment.objects.filter(patient=patient).count() == 1


def test_a_cash_typo_above_the_price_is_asked_about_before_anything_is_saved(s, client):
    """5,000.00 typed for a 1,118.70 sale: nothing is sold or recorded until the desk answers, and
    the answer is for that excess only (a different amount asks again)."""
    s["template"].price_minor = 111870
    s["template"].save()
    _login(client, s["fd"])
    url = reverse("passes:sell", kwargs={"pk": s["patient"].pk})
    asked = client.post(url, _sell_form(s, amount="5000.00"))
    page = _text(asked)
    assert (
        asked.status_code == 200
        and "Record $3,881.30 as credit?" in page
        and 'value="388130"' in page
    )
    assert not Pass.objects.exists() and not Payment.objects.exists()
    stale = client.post(url, _sell_form(s, amount="5001.00", credit_ok="388130"))
    assert "Record $3,882.30 as credit?" in _text(stale) and not Pass.objects.exists()
    client.post(url, _sell_form(s, amount="5000.00", credit_ok="388130"))
    payment = Payment.objects.get()
    assert payment.amount_minor == 500000 and payment.unapplied_minor == 388130
    exact = client.post(url, _sell_form(s, form_key="k2"))  # the price itself is never asked about
    assert exact.status_code == 302 and Pass.objects.count() == 2


def test_a_package_sold_at_the_desk_records_where(s, client):
    _login(client, s["fd"])
    url = reverse("passes:sell", kwargs={"pk": s["patient"].pk})
    assert client.get(url).context["form"]["location"].initial == s["cat"]["location"]
    client.post(url, _sell_form(s))
    assert Pass.objects.get().location == s["cat"]["location"]
    other = Location.objects.create(name="Uptown", time_zone="America/Toronto")
    form = client.get(url).context["form"]  # two locations: a real choice, so required
    assert form.fields["location"].required and form["location"].initial is None
    response = client.post(url, _sell_form(s, form_key="k2"))
    assert response.status_code == 200 and Pass.objects.count() == 1
    client.post(url, _sell_form(s, form_key="k3", location=other.pk))
    assert Pass.objects.order_by("pk").last().location == other


def test_the_refund_suggestion_says_it_counts_the_reserved_uses(s, client):
    sold = sold_package(s["fd"], s["patient"], s["template"])
    appointment_book(
        actor=s["fd"].user,
        treatment=s["cat"]["treatment"],
        practitioner=practitioner(s["cat"]["location"]),
        location=s["cat"]["location"],
        start=at("2026-05-12", "09:00"),
        patients=[s["patient"]],
    )
    assert Pass.objects.get(pk=sold.pk).reserved_count == 1
    page = _text(_login(client, s["admin"]).get(reverse("passes:refund", kwargs={"pk": sold.pk})))
    assert "10 remaining: 9 unused and 1 reserved by booked visit (refunding voids it)" in page
