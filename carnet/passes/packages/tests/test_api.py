"""/api/v1 for sold packages: sell, list, read, expiry, refund, delete, transfer, sharing; using a
package on an appointment (explain, attach, remove, booking's pass_choice, no-show's use_pass);
a patient's own packages (/me/passes) and what patients may not see."""

import datetime as dt

import pytest

from carnet.conftest import Api, make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.passes.models import Pass, Redemption
from carnet.passes.tests.factories import (
    at,
    package_template,
    pay_in_full,
    practitioner,
    sold_package,
)
from carnet.people.models import FamilyLink
from carnet.people.services import patient_portal_enable
from carnet.scheduling.tests.factories import clinic_set

pytestmark = pytest.mark.django_db
DAY = "2026-05-12"


@pytest.fixture
def s(front_desk, admin_staff, catalog):
    clinic_set(time_zone="America/Toronto")
    with clock.frozen(at("2026-05-01", "10:00")):
        yield {
            "fd": front_desk,
            "admin": admin_staff,
            "cat": catalog,
            "prac": practitioner(catalog["location"]),
            "patient": make_patient(),
            "api": Api(admin_staff.user),
            "desk": Api(front_desk.user),
        }


def _sell(s, template=None, **body):
    template = template or package_template(s["cat"])
    response = s["api"].post(
        f"/patients/{s['patient'].pk}/passes", {"template_id": template.pk, **body}
    )
    assert response.status_code == 201, response.content
    return response.json()


def _book(s, hhmm="09:00", pass_choice="none", patients=None, api=None):
    body = {
        "treatment_id": s["cat"]["treatment"].pk,
        "practitioner_id": s["prac"].pk,
        "location_id": s["cat"]["location"].pk,
        "start": at(DAY, hhmm).isoformat(),
        "patient_ids": [p.pk for p in patients or [s["patient"]]],
        "pass_choice": pass_choice,
    }
    response = (api or s["desk"]).post("/appointments", body)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _row(s, appointment_id, patient=None):
    return f"/appointments/{appointment_id}/patients/{(patient or s['patient']).pk}"


def _live(appointment_id):
    return Redemption.objects.filter(
        visit__appointment_id=appointment_id, status__in=["reserved", "posted"]
    ).first()


# ---------------------------------------------------------------- selling and reading


def test_sell_then_list_and_read_with_usage(s):
    sold = _sell(s)
    assert (sold["name"], sold["status"], sold["quantity"], sold["used"], sold["remaining"]) == (
        "10 massages",
        "active",
        10,
        0,
        10,
    )
    assert (sold["paid"], sold["unlocked"], sold["price_minor"], len(sold["invoice_ids"])) == (
        False,
        0,
        90000,
        1,
    )
    assert sold["items"][0]["treatment_name"] == "Massage 60" and sold["redemptions"] == []
    assert sold["pass_invoices"] == [
        {
            "seq": 1,
            "due_on": "2026-05-01",
            "amount_minor": 90000,
            "invoice_id": sold["invoice_ids"][0],
            "paid": False,
        }
    ]
    # instalment_rows: pass_invoices' old name, kept for one release (CHANGELOG.md)
    assert sold["instalment_rows"] == sold["pass_invoices"]
    pay_in_full(s["admin"], Pass.objects.get(pk=sold["id"]))
    [listed] = s["api"].get(f"/patients/{s['patient'].pk}/passes").json()
    assert (
        listed["id"],
        listed["paid"],
        listed["unlocked"],
        listed["total"],
        listed["expires_on"],
    ) == (sold["id"], True, 10, 10, None)
    read = s["api"].get(f"/passes/{sold['id']}").json()
    assert read["pass_invoices"][0]["paid"] is True and read["paid_minor"] == 90000


def test_expiry_omitted_takes_the_template_default_and_null_means_never(s):
    template = package_template(s["cat"], expiry_value=6, expiry_unit="months")
    assert _sell(s, template)["expires_on"] == "2026-11-01"
    assert _sell(s, template, expires_on=None)["expires_on"] is None
    assert _sell(s, template, expires_on="2026-09-30")["expires_on"] == "2026-09-30"


def test_sell_honours_the_idempotency_key(s):
    template = package_template(s["cat"])
    url, body = f"/patients/{s['patient'].pk}/passes", {"template_id": template.pk}
    first = s["api"].post(url, body, **{"Idempotency-Key": "sell-1"})
    again = s["api"].post(url, body, **{"Idempotency-Key": "sell-1"})
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert Pass.objects.count() == 1
    other = s["api"].post(url, {**body, "expires_on": None}, **{"Idempotency-Key": "sell-1"})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert Pass.objects.count() == 1


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "template_id"),
        ({"template_id": "abc"}, "template_id"),
        ({"template_id": 999999}, "template_id"),
        ({"expires_on": "someday"}, "expires_on"),
        ({"expires_on": "2026-04-01"}, "expires_on"),  # before the purchase date
        ({"sold_by_id": 999999}, "sold_by_id"),
        ({"card_id": 999999}, "card_id"),
    ],
)
def test_bad_sale_bodies_are_422_naming_the_field(s, body, field):
    template = package_template(s["cat"])
    if body and "template_id" not in body:
        body = {"template_id": template.pk, **body}
    response = s["api"].post(f"/patients/{s['patient'].pk}/passes", body)
    assert response.status_code == 422, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in {e["field"] for e in response.json()["errors"]}
    assert not Pass.objects.exists()


def test_unknown_patient_or_pass_is_a_404(s):
    template = package_template(s["cat"])
    assert s["api"].post("/patients/999999/passes", {"template_id": template.pk}).status_code == 404
    assert s["api"].get("/passes/999999").json()["code"] == "not_found"
    assert s["api"].get("/passes/abc").status_code == 422


def test_archived_template_is_a_409(s):
    template = package_template(s["cat"], archived=True)
    response = s["api"].post(f"/patients/{s['patient'].pk}/passes", {"template_id": template.pk})
    assert response.status_code == 409 and response.json()["code"] == "template_archived"


# ---------------------------------------------------------------- changing and ending


def test_expiry_is_changed_and_cleared(s):
    pk = _sell(s)["id"]
    changed = s["api"].post(f"/passes/{pk}/expiry", {"expires_on": "2026-12-31"})
    assert changed.status_code == 200 and changed.json()["expires_on"] == "2026-12-31"
    assert s["api"].post(f"/passes/{pk}/expiry", {"expires_on": None}).json()["expires_on"] is None
    assert s["api"].post(f"/passes/{pk}/expiry", {}).status_code == 422  # required (null to clear)
    assert s["api"].post(f"/passes/{pk}/expiry", {"expires_on": "2020-01-01"}).status_code == 422
    refused = s["desk"].post(f"/passes/{pk}/expiry", {"expires_on": "2026-12-31"})
    assert refused.status_code == 403 and refused.json()["code"] == "not_allowed"


def test_refund_suggestion_then_refund_ends_the_pass(s):
    sold = sold_package(s["admin"], s["patient"], package_template(s["cat"]))
    suggestion = s["api"].get(f"/passes/{sold.pk}/refund-suggestion").json()
    assert (suggestion["collected"], suggestion["suggested"], suggestion["remaining"]) == (
        90000,
        90000,
        10,
    )
    too_much = s["api"].post(f"/passes/{sold.pk}/refund", {"amount_minor": 90001})
    assert too_much.status_code == 422 and too_much.json()["errors"][0]["field"] == "amount_minor"
    assert (
        s["api"].post(f"/passes/{sold.pk}/refund", {"reason": "x"}).status_code == 422
    )  # amount required
    done = s["api"].post(
        f"/passes/{sold.pk}/refund", {"amount_minor": 45000, "reason": "Moving away"}
    )
    assert done.status_code == 200, done.content
    assert (done.json()["status"], done.json()["remaining"]) == ("refunded", 0)
    again = s["api"].post(f"/passes/{sold.pk}/refund", {"amount_minor": 0})
    assert again.status_code == 409 and again.json()["code"] == "pass_refunded"
    assert s["desk"].get(f"/passes/{sold.pk}/refund-suggestion").status_code == 403


def test_refund_with_a_booked_visit_needs_detach_future(s):
    sold = sold_package(s["admin"], s["patient"], package_template(s["cat"]))
    appointment = _book(s, pass_choice="auto")
    refused = s["api"].post(f"/passes/{sold.pk}/refund", {"amount_minor": 0})
    assert refused.status_code == 409 and refused.json()["code"] == "has_reservations"
    done = s["api"].post(f"/passes/{sold.pk}/refund", {"amount_minor": 0, "detach_future": True})
    assert done.status_code == 200 and _live(appointment) is None


def test_delete_an_unpaid_purchase_and_not_a_paid_one(s):
    unpaid = _sell(s)["id"]
    deleted = s["api"].delete(f"/passes/{unpaid}")
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
    assert s["api"].get(f"/patients/{s['patient'].pk}/passes").json() == []
    paid = sold_package(s["admin"], s["patient"], package_template(s["cat"]))
    refused = s["api"].delete(f"/passes/{paid.pk}")
    assert refused.status_code == 409 and refused.json()["code"] == "invoice_has_payments"
    assert s["desk"].delete(f"/passes/{paid.pk}").status_code == 403


def test_transfer_gives_the_other_patient_a_new_pass(s):
    sold = sold_package(s["admin"], s["patient"], package_template(s["cat"], transferable=True))
    other = make_patient()
    response = s["api"].post(f"/passes/{sold.pk}/transfer", {"to_patient_id": other.pk})
    assert response.status_code == 201, response.content
    new = response.json()
    assert (new["patient_id"], new["transferred_from_id"], new["quantity"], new["paid"]) == (
        other.pk,
        sold.pk,
        10,
        True,
    )
    assert s["api"].get(f"/passes/{sold.pk}").json()["status"] == "transferred"
    assert (
        s["api"].post(f"/passes/{new['id']}/transfer", {"to_patient_id": 999999}).status_code == 422
    )
    plain = sold_package(s["admin"], s["patient"], package_template(s["cat"], name="Plain"))
    refused = s["api"].post(f"/passes/{plain.pk}/transfer", {"to_patient_id": other.pk})
    assert refused.status_code == 409 and refused.json()["code"] == "not_transferable"
    assert (
        s["desk"]
        .post(f"/passes/{new['id']}/transfer", {"to_patient_id": s["patient"].pk})
        .status_code
        == 403
    )


def test_shares_set_the_family_members_who_may_use_it(s):
    sold = sold_package(s["admin"], s["patient"], package_template(s["cat"], family_sharing=True))
    child, stranger = make_patient(), make_patient()
    FamilyLink.objects.create(patient=s["patient"], relative=child, kind="guardian")
    shared = s["desk"].post(f"/passes/{sold.pk}/shares", {"patient_ids": [child.pk]})
    assert shared.status_code == 200 and shared.json()["shared_with"] == [child.pk]
    assert (
        s["desk"].post(f"/passes/{sold.pk}/shares", {"patient_ids": [stranger.pk]}).status_code
        == 422
    )
    assert s["desk"].post(f"/passes/{sold.pk}/shares", {"patient_ids": [999999]}).status_code == 422
    assert s["desk"].post(f"/passes/{sold.pk}/shares", {"patient_ids": "x"}).status_code == 422
    assert (
        s["desk"].post(f"/passes/{sold.pk}/shares", {"patient_ids": []}).json()["shared_with"] == []
    )


# ---------------------------------------------------------------- on appointments


def test_explain_attach_and_remove(s):
    sold = sold_package(s["admin"], s["patient"], package_template(s["cat"]))
    appointment = _book(s)
    [entry] = s["desk"].get(_row(s, appointment) + "/explain").json()
    assert (entry["pass_id"], entry["code"], entry["can_cover"], entry["remaining"]) == (
        sold.pk,
        "ok",
        True,
        10,
    )
    attached = s["desk"].post(_row(s, appointment) + "/pass", {"pass_id": None})
    assert attached.status_code == 201, attached.content
    assert (
        attached.json()["pass_id"],
        attached.json()["status"],
        attached.json()["appointment_id"],
    ) == (sold.pk, "reserved", appointment)
    assert s["desk"].get(_row(s, appointment) + "/explain").json()[0]["code"] == "attached"
    history = s["desk"].get(f"/passes/{sold.pk}").json()
    assert (history["used"], history["remaining"], len(history["redemptions"])) == (1, 9, 1)
    again = s["desk"].post(_row(s, appointment) + "/pass", {"pass_id": sold.pk})
    assert again.status_code == 409 and again.json()["code"] == "already_covered"
    removed = s["desk"].delete(_row(s, appointment) + "/pass")
    assert removed.status_code == 200 and removed.json()["status"] == "voided"
    # released_at: voided_at's old name, kept for one release (CHANGELOG.md)
    assert removed.json()["released_at"] == removed.json()["voided_at"] is not None
    assert s["desk"].delete(_row(s, appointment) + "/pass").status_code == 404
    assert (
        s["desk"].post(_row(s, appointment) + "/pass").status_code == 201
    )  # no body = auto-select


@pytest.mark.parametrize("code", ["used_up", "expired", "not_paid"])
def test_a_pass_that_cannot_cover_is_a_409_with_its_reason(s, code):
    if code == "used_up":
        sold = sold_package(s["admin"], s["patient"], package_template(s["cat"], quantity=1))
        _book(s, "08:00", pass_choice="auto")
    elif code == "expired":
        sold = sold_package(
            s["admin"], s["patient"], package_template(s["cat"]), expires_on=dt.date(2026, 5, 10)
        )
    else:
        sold = sold_package(s["admin"], s["patient"], package_template(s["cat"]), paid=False)
    appointment = _book(s)
    response = s["desk"].post(_row(s, appointment) + "/pass", {"pass_id": sold.pk})
    assert response.status_code == 409, response.content
    assert (
        response.json()["code"] == code and response["Content-Type"] == "application/problem+json"
    )
    assert s["desk"].get(_row(s, appointment) + "/explain").json()[-1]["code"] == code
    auto = s["desk"].post(_row(s, appointment) + "/pass", {"pass_id": None})
    assert auto.status_code == 409 and auto.json()["code"] == "no_pass_fits"
    assert _live(appointment) is None


def test_bad_attach_bodies_and_rows(s):
    sold = sold_package(s["admin"], s["patient"], package_template(s["cat"]))
    cancelled = _book(s, "08:00")
    assert s["desk"].post(f"/appointments/{cancelled}/cancel").status_code == 200
    refused = s["desk"].post(_row(s, cancelled) + "/pass", {"pass_id": sold.pk})
    assert refused.status_code == 409 and refused.json()["code"] == "not_booked"
    appointment = _book(s)
    assert s["desk"].post(_row(s, appointment) + "/pass", {"pass_id": 999999}).status_code == 422
    assert s["desk"].post(_row(s, appointment) + "/pass", {"pass_id": "abc"}).status_code == 422
    assert s["desk"].get(_row(s, appointment, make_patient()) + "/explain").status_code == 404
    assert (
        s["desk"].get(f"/appointments/999999/patients/{s['patient'].pk}/explain").status_code == 404
    )


def test_booking_pass_choice_auto_none_or_a_pass(s):
    template = package_template(s["cat"])
    first = sold_package(s["admin"], s["patient"], template, expires_on=dt.date(2026, 6, 30))
    second = sold_package(s["admin"], s["patient"], template, expires_on=None)
    assert _live(_book(s, "08:00", pass_choice="auto")).sold_pass_id == first.pk
    assert _live(_book(s, "09:00", pass_choice="none")) is None
    assert _live(_book(s, "10:00", pass_choice=second.pk)).sold_pass_id == second.pk
    default = s["desk"].post(
        "/appointments",
        {
            "treatment_id": s["cat"]["treatment"].pk,
            "practitioner_id": s["prac"].pk,
            "location_id": s["cat"]["location"].pk,
            "start": at(DAY, "11:00").isoformat(),
            "patient_ids": [s["patient"].pk],
        },
    )
    assert _live(default.json()["id"]).sold_pass_id == first.pk  # omitted = auto
    for bad in ("sometimes", 999999):
        body = {
            "treatment_id": s["cat"]["treatment"].pk,
            "practitioner_id": s["prac"].pk,
            "location_id": s["cat"]["location"].pk,
            "start": at(DAY, "12:00").isoformat(),
            "patient_ids": [s["patient"].pk],
            "pass_choice": bad,
        }
        response = s["desk"].post("/appointments", body)
        assert response.status_code == 422, response.content
        assert any(e["field"].startswith("pass_choice") for e in response.json()["errors"]), (
            response.content
        )


def test_no_show_uses_the_session_unless_use_pass_is_false(s):
    sold = sold_package(s["admin"], s["patient"], package_template(s["cat"]))
    used = _book(s, "08:00", pass_choice="auto")
    freed = _book(s, "09:00", pass_choice="auto")
    with clock.frozen(at(DAY, "12:00")):
        assert s["desk"].post(f"/appointments/{used}/no-show", {}).status_code == 200
        assert (
            s["desk"].post(f"/appointments/{freed}/no-show", {"use_pass": False}).status_code == 200
        )
    assert _live(used).status == "posted" and _live(used).by_no_show
    assert _live(freed) is None
    sold.refresh_from_db()
    assert (sold.posted_count, sold.reserved_count, sold.remaining) == (1, 0, 9)


# ---------------------------------------------------------------- access


def test_levels_without_the_action_are_refused(s):
    sold = sold_package(s["admin"], s["patient"], package_template(s["cat"]))
    appointment = _book(s)
    no_billing = Api(make_staff(AccessLevel.FULL_ACCESS, billing=False).user)
    for response in (
        no_billing.get(f"/patients/{s['patient'].pk}/passes"),
        no_billing.get(f"/passes/{sold.pk}"),
        no_billing.get(_row(s, appointment) + "/explain"),
        no_billing.post(_row(s, appointment) + "/pass", {"pass_id": sold.pk}),
        s["desk"].post(f"/passes/{sold.pk}/refund", {"amount_minor": 0}),
        Api(make_staff(AccessLevel.PRACTITIONER_FRONT_DESK).user).post(
            f"/patients/{s['patient'].pk}/passes", {"template_id": sold.template_id}
        ),
    ):
        assert response.status_code == 403 and response.json()["code"] == "not_allowed", (
            response.content
        )
    # Practitioner (Limited) may use passes, but only on their own schedule.
    limited = Api(make_staff(AccessLevel.PRACTITIONER_LIMITED, practitioner=True).user)
    assert limited.post(_row(s, appointment) + "/pass", {"pass_id": sold.pk}).status_code == 403
    own = Api(
        s["prac"].user
    )  # Practitioner/Front Desk at its own location: schedule yes, with billing
    assert own.get(_row(s, appointment) + "/explain").status_code == 200
    assert _live(appointment) is None


@pytest.fixture
def portal(s, owner):
    me, child = make_patient(email="me@example.test"), make_patient()
    FamilyLink.objects.create(patient=me, relative=child, kind="guardian")
    patient_portal_enable(actor=owner.user, patient=me, password="a long enough password")
    me.refresh_from_db()
    return {"me": me, "child": child, "api": Api(me.user)}


def test_a_patient_lists_their_own_and_dependants_passes(s, portal):
    template = package_template(s["cat"])
    mine = sold_package(s["admin"], portal["me"], template)
    childs = sold_package(s["admin"], portal["child"], template, paid=False)
    sold_package(s["admin"], s["patient"], template)  # someone else's
    listed = portal["api"].get("/me/passes")
    assert listed.status_code == 200
    got = {p["id"]: p for p in listed.json()}
    assert set(got) == {mine.pk, childs.pk}
    assert {
        k: got[mine.pk][k] for k in ("name", "purchase_date", "used", "remaining", "expires_on")
    } == {
        "name": "10 massages",
        "purchase_date": "2026-05-01",
        "used": 0,
        "remaining": 10,
        "expires_on": None,
    }
    assert s["api"].get("/me/passes").status_code == 403  # staff have no passes of their own


def test_a_patient_cannot_read_another_patients_pass(s, portal):
    template = package_template(s["cat"])
    mine = sold_package(s["admin"], portal["me"], template)
    theirs = sold_package(s["admin"], s["patient"], template)
    childs = sold_package(s["admin"], portal["child"], template)
    assert portal["api"].get(f"/passes/{mine.pk}").status_code == 200
    assert (
        portal["api"].get(f"/passes/{childs.pk}").json()["patient_id"] == portal["child"].pk
    )  # a dependant's
    for url in (f"/passes/{theirs.pk}", f"/patients/{s['patient'].pk}/passes"):
        response = portal["api"].get(url)
        assert response.status_code == 404 and response.json()["code"] == "not_found", url
    assert portal["api"].post(f"/passes/{mine.pk}/refund", {"amount_minor": 0}).status_code == 403
    appointment = _book(s)
    assert portal["api"].get(_row(s, appointment) + "/explain").status_code == 403


def test_a_redemption_through_the_api_takes_a_bounded_number_of_statements(
    s, django_assert_max_num_queries
):
    """Attach + arrive is the front desk's busiest path (benchmarks/README.md, benchmark 1): each
    statement costs every arrival, and the invoice number's lock is held from its statement to
    commit. (Session auth here: its session read and save are in the counts; the first arrival also
    makes the income category's revenue account.)"""
    sold = sold_package(s["admin"], s["patient"], package_template(s["cat"]))
    appointment = _book(s)
    with django_assert_max_num_queries(
        24
    ):  # the pass carries its own window rules (no template read)
        attached = s["desk"].post(
            _row(s, appointment) + "/pass", {"pass_id": sold.pk}, **{"Idempotency-Key": "a1"}
        )
    assert attached.status_code == 201, attached.content
    assert (
        attached.json()["treatment_name"] == s["cat"]["treatment"].name
        and attached.json()["status"] == "reserved"
    )
    # The ledger's liability guard (issue 17) is in it; no appointment, treatment or staff re-reads.
    with django_assert_max_num_queries(40) as arrive:
        arrived = s["desk"].post(f"/appointments/{appointment}/arrive", **{"Idempotency-Key": "a2"})
    assert arrived.status_code == 200, arrived.content
    assert arrived.json()["visits"][0]["status"] == "arrived"
    sql = [q["sql"] for q in arrive.captured_queries]
    counter = next(i for i, q in enumerate(sql) if "billing_invoicecounter" in q)
    # After the counter's row lock: the invoice's own rows, the visit's statuses and
    # the activity log only.
    assert not any("passes_" in q or "ledger_" in q for q in sql[counter:]), sql[counter:]
    assert _live(appointment).status == "posted"
