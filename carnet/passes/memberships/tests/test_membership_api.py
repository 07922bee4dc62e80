"""/api/v1 for memberships (SPEC 6, 9.7, 11): sell (manual; automatic with the first cycle charged
or declined; Idempotency-Key), read (terms, cycles, next billing date), cancel with the policy
warning, pause/resume, change the payment, delete, refund a cycle; bad input; who may do what; a
patient's own cancel/pause/resume within the policy (another patient's is not found); and the
addresses before issue 24, answering 308."""

import uuid

import pytest

from carnet.billing.models import Payment
from carnet.billing.payments import payment_receive
from carnet.billing.selectors import credit_balance
from carnet.conftest import PASSWORD, Api, make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel
from carnet.gateway.models import TestGatewayCharge
from carnet.gateway.services import card_store
from carnet.passes.memberships import services as ms
from carnet.passes.models import Pass, PassPause
from carnet.passes.packages.selling import package_sell
from carnet.passes.tests.factories import at, membership_template, package_template
from carnet.people.services import family_link_add, patient_portal_enable
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
            "desk": Api(front_desk.user),
            "api": Api(admin_staff.user),
            "template": membership_template(
                catalog,
                name="Wellness monthly",
                price=6000,
                uses=2,
                pause_allowed=True,
                pause_max_cycles=2,
                cancellable_after_cycles=3,
                self_cancel=True,
            ),
        }


def _card(s, number=GOOD, patient=None):
    return card_store(
        actor=s["fd"].user,
        patient=patient or s["patient"],
        number=number,
        exp_month=12,
        exp_year=2030,
        cvc="123",
        holder="Pat Test",
    )


def _key():
    return {"Idempotency-Key": uuid.uuid4().hex}


def _sell(s, expect=201, api=None, headers=None, **body):
    if headers is None and body.get("payment_mode") == "automatic":
        headers = _key()  # an automatic sale charges the card: the API requires a key
    response = (api or s["desk"]).post(
        f"/patients/{s['patient'].pk}/memberships",
        {"template_id": s["template"].pk, **body},
        **(headers or {}),
    )
    assert response.status_code == expect, response.content
    return response.json()


def _pay(s, sold_id):
    for row in (
        Pass.objects.get(pk=sold_id)
        .pass_invoices.select_related("invoice")
        .filter(invoice__isnull=False)
    ):
        if row.invoice.balance_minor:
            payment_receive(
                actor=s["fd"].user,
                patient=s["patient"],
                method="cash",
                amount_minor=row.invoice.balance_minor,
                allocations=[(row.invoice, row.invoice.balance_minor)],
            )


# ---------------------------------------------------------------- selling and reading


def test_sell_manual_then_read_terms_cycles_and_next_billing(s):
    sold = _sell(s)
    assert sold["charge"]["outcome"] == "none" and sold["payment_mode"] == "manual"
    assert (
        sold["name"],
        sold["status"],
        sold["start_date"],
        sold["cycle"],
        sold["uses_per_cycle"],
    ) == ("Wellness monthly", "active", "2026-05-01", "monthly", 2)
    read = s["desk"].get(f"/passes/{sold['id']}/membership")
    assert read.status_code == 200
    body = read.json()
    assert (
        body["next_billing_date"] == "2026-06-01"
        and body["billed_cycles"] == 1
        and body["owing_minor"] == 6000
    )
    assert body["uses_this_cycle"] == {
        "state": "ok",
        "used": 0,
        "allowed": 2,
        "left": 2,
        "rolled": 0,
    }
    [cycle] = body["cycles"]
    assert (
        cycle["seq"],
        cycle["period_start"],
        cycle["last_day"],
        cycle["invoice_status"],
        cycle["balance_minor"],
    ) == (1, "2026-05-01", "2026-05-31", "unpaid", 6000)
    assert cycle["invoice_id"] and cycle["uses_allowed"] == 2 and cycle["used_count"] == 0
    assert (body["cancellable_after_cycles"], body["pause_allowed"], body["self_cancel"]) == (
        3,
        True,
        True,
    )


def test_sell_automatic_charges_the_first_cycle_and_says_so(s):
    card = _card(s)
    sold = _sell(s, payment_mode="automatic", card_id=card.pk)
    assert (
        sold["charge"]["outcome"] == "charged"
        and "$60.00 was charged to Visa •••• 4242" in sold["charge"]["message"]
    )
    assert sold["cycles"][0]["invoice_status"] == "paid" and sold["card_id"] == card.pk
    assert TestGatewayCharge.objects.count() == 1 and Payment.objects.get().card_id == card.pk


def test_sell_automatic_with_a_declined_card_keeps_the_cycle_unpaid_and_says_when_it_is_retried(s):
    card = _card(s, DECLINED)
    sold = _sell(s, payment_mode="automatic", card_id=card.pk)
    assert (
        sold["charge"]["outcome"] == "declined"
        and "tried again on 2026-05-02" in sold["charge"]["message"]
    )
    cycle = sold["cycles"][0]
    assert (
        cycle["invoice_status"] == "unpaid"
        and cycle["charge_attempts"] == 1
        and cycle["next_attempt_on"] == "2026-05-02"
    )
    assert not Payment.objects.exists()


def test_the_same_idempotency_key_sells_once_and_charges_once(s):
    card = _card(s)
    body = {"payment_mode": "automatic", "card_id": card.pk}
    first = _sell(s, headers={"Idempotency-Key": "sell-1"}, **body)
    again = _sell(s, headers={"Idempotency-Key": "sell-1"}, **body)
    assert first == again
    assert (
        Pass.objects.filter(kind="membership").count() == 1
        and TestGatewayCharge.objects.count() == 1
    )
    assert Payment.objects.count() == 1
    _sell(
        s, expect=409, headers={"Idempotency-Key": "sell-1"}, payment_mode="manual"
    )  # same key, other body


@pytest.mark.parametrize(
    "body,field",
    [
        ({"template_id": 999999}, "template_id"),
        ({"payment_mode": "automatic"}, "card_id"),
        ({"payment_mode": "sometimes"}, "payment_mode"),
        ({"card_id": 999999, "payment_mode": "automatic"}, "card_id"),
        ({"location_id": 999999}, "location_id"),
        ({"start_date": "not a date"}, "start_date"),
    ],
)
def test_bad_sale_input_is_a_422_naming_the_field(s, body, field):
    response = s["desk"].post(
        f"/patients/{s['patient'].pk}/memberships",
        {"template_id": s["template"].pk, **body},
        **_key(),
    )
    assert response.status_code == 422, response.content
    assert field in {e["field"] for e in response.json()["errors"]}
    assert not Pass.objects.filter(kind="membership").exists()


def test_another_patients_card_and_a_package_template_are_refused(s):
    stranger_card = _card(s, patient=make_patient())
    _sell(s, expect=422, payment_mode="automatic", card_id=stranger_card.pk)
    response = s["desk"].post(
        f"/patients/{s['patient'].pk}/memberships", {"template_id": package_template(s["cat"]).pk}
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "template_id"
    assert s["desk"].get("/passes/999999/membership").status_code == 404


# ---------------------------------------------------------------- changing one


def test_cancel_needs_a_paid_cycle_then_warns_about_the_policy(s):
    sold = _sell(s)
    refused = s["desk"].post(f"/passes/{sold['id']}/cancel", {"at_cycle_end": True})
    assert refused.status_code == 409 and refused.json()["code"] == "no_paid_cycle"
    _pay(s, sold["id"])
    done = s["desk"].post(f"/passes/{sold['id']}/cancel", {"at_cycle_end": True})
    assert done.status_code == 200, done.content
    body = done.json()
    assert (
        body["ends_after"] == "2026-05-31"
        and body["status"] == "active"
        and body["next_billing_date"] is None
    )
    assert "cancellable after 3 cycles" in body["warning"]
    again = s["desk"].post(f"/passes/{sold['id']}/cancel", {"at_cycle_end": False})
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_pause_then_resume(s):
    sold = _sell(s)
    paused = s["desk"].post(f"/passes/{sold['id']}/pause", {"cycles": 2})
    assert paused.status_code == 200, paused.content
    body = paused.json()
    assert (
        body["paused"]
        and body["paused_until"] == "2026-08-01"
        and body["next_billing_date"] == "2026-08-01"
    )
    twice = s["desk"].post(f"/passes/{sold['id']}/pause", {"cycles": 1})
    assert twice.status_code == 409 and twice.json()["code"] == "already_paused"
    assert s["desk"].post(f"/passes/{sold['id']}/pause", {"cycles": 0}).status_code == 422
    resumed = s["desk"].post(f"/passes/{sold['id']}/resume")
    assert resumed.status_code == 200 and not resumed.json()["paused"]
    assert resumed.json()["next_billing_date"] == "2026-06-01"
    assert s["desk"].post(f"/passes/{sold['id']}/resume").json()["code"] == "not_paused"


def test_pause_is_refused_beyond_the_templates_maximum(s):
    sold = _sell(s)
    response = s["desk"].post(f"/passes/{sold['id']}/pause", {"cycles": 3})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "cycles"
    assert not PassPause.objects.exists()


def test_changing_to_automatic_charges_the_unpaid_current_cycle(s):
    sold = _sell(s)
    card = _card(s)
    changed = s["desk"].post(
        f"/passes/{sold['id']}/payment",
        {"payment_mode": "automatic", "card_id": card.pk},
        **_key(),
    )
    assert changed.status_code == 200, changed.content
    assert (
        changed.json()["charge"]["outcome"] == "charged"
        and changed.json()["cycles"][0]["invoice_status"] == "paid"
    )
    back = s["desk"].post(f"/passes/{sold['id']}/payment", {"payment_mode": "manual"})
    assert back.json()["payment_mode"] == "manual" and back.json()["card_id"] is None
    bad = s["desk"].post(f"/passes/{sold['id']}/payment", {"payment_mode": "automatic"}, **_key())
    assert bad.status_code == 422


def test_a_card_charge_without_an_idempotency_key_is_refused_and_says_why(s):
    card = _card(s)
    response = _sell(s, expect=400, headers={}, payment_mode="automatic", card_id=card.pk)
    assert (
        response["code"] == "idempotency_key_required" and "Idempotency-Key" in response["detail"]
    )
    sold = _sell(s)
    changed = s["desk"].post(
        f"/passes/{sold['id']}/payment", {"payment_mode": "automatic", "card_id": card.pk}
    )
    assert changed.status_code == 400 and changed.json()["code"] == "idempotency_key_required"
    assert Pass.objects.count() == 1 and not TestGatewayCharge.objects.exists()


def test_delete_an_unpaid_membership_but_not_a_paid_one(s):
    sold = _sell(s)
    deleted = s["api"].delete(f"/passes/{sold['id']}")
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted"
    assert deleted.json()["cycles"][0]["invoice_status"] == "deleted"
    paid = _sell(s)
    _pay(s, paid["id"])
    refused = s["api"].delete(f"/passes/{paid['id']}")
    assert refused.status_code == 409 and refused.json()["code"] == "invoice_has_payments"


def test_refund_a_cycle_by_its_suggestion(s):
    sold = _sell(s)
    _pay(s, sold["id"])
    cycle_id = sold["cycles"][0]["id"]
    suggestion = s["api"].get(f"/pass-invoices/{cycle_id}/refund-suggestion")
    assert suggestion.json() == {"collected": 6000, "suggested": 6000}
    too_much = s["api"].post(f"/pass-invoices/{cycle_id}/refund", {"amount_minor": 7000})
    assert too_much.status_code == 422
    assert (
        s["api"].post(f"/pass-invoices/{cycle_id}/refund", {"amount_minor": -1}).status_code == 422
    )
    done = s["api"].post(
        f"/pass-invoices/{cycle_id}/refund", {"amount_minor": 6000, "reason": "moved away"}
    )
    assert done.status_code == 200, done.content
    assert done.json()["cycles"][0]["uses_allowed"] == 0 and credit_balance(s["patient"]) == 6000
    assert s["api"].get("/pass-invoices/999999/refund-suggestion").status_code == 404


# ---------------------------------------------------------------- access


def test_levels_without_the_action_get_403(s):
    sold = _sell(s)
    cycle_id = sold["cycles"][0]["id"]
    practitioner = Api(make_staff(AccessLevel.PRACTITIONER_LIMITED).user)
    no_billing = Api(make_staff(AccessLevel.FRONT_DESK, billing=False).user)
    for api in (practitioner, no_billing):
        assert api.get(f"/passes/{sold['id']}/membership").status_code == 403
        assert (
            api.post(
                f"/patients/{s['patient'].pk}/memberships", {"template_id": s["template"].pk}
            ).status_code
            == 403
        )
        assert api.post(f"/passes/{sold['id']}/pause", {"cycles": 1}).status_code == 403
    # Front desk sells and pauses, but neither deletes nor refunds.
    assert s["desk"].delete(f"/passes/{sold['id']}").status_code == 403
    assert s["desk"].get(f"/pass-invoices/{cycle_id}/refund-suggestion").status_code == 403
    assert (
        s["desk"].post(f"/pass-invoices/{cycle_id}/refund", {"amount_minor": 0}).status_code == 403
    )
    assert Pass.objects.get(pk=sold["id"]).status == "active"


@pytest.fixture
def me(s):
    me = make_patient(email="me@example.test")
    patient_portal_enable(actor=s["fd"].user, patient=me, password=PASSWORD)
    me.refresh_from_db()
    return me


def _membership_of(s, patient, **template_fields):
    template = s["template"]
    if template_fields:
        template = membership_template(s["cat"], name="Other plan", **template_fields)
    sold = ms.membership_sell(actor=s["fd"].user, patient=patient, template=template)
    s_patient, s["patient"] = s["patient"], patient
    _pay(s, sold.pk)
    s["patient"] = s_patient
    return sold


def test_a_patient_reads_their_own_membership_but_gets_404_for_anothers(s, me):
    mine, theirs = _membership_of(s, me), _membership_of(s, s["patient"])
    api = Api(me.user)
    assert api.get(f"/passes/{mine.pk}/membership").status_code == 200
    assert api.get(f"/passes/{theirs.pk}/membership").status_code == 404
    for path in ("cancel", "pause", "resume"):
        response = api.post(
            f"/me/passes/{theirs.pk}/{path}", {"cycles": 1} if path == "pause" else None
        )
        assert response.status_code == 404, path
    assert api.post(f"/passes/{mine.pk}/cancel").status_code == 403  # the staff route
    mine_listed = {p["id"]: p for p in api.get("/me/passes").json()}[mine.pk]
    assert (mine_listed["kind"], mine_listed["start_date"], mine_listed["self_cancel"]) == (
        "membership",
        "2026-05-01",
        True,
    )
    assert (
        s["desk"].post(f"/me/passes/{mine.pk}/cancel").status_code == 403
    )  # staff have no own memberships


def test_a_patient_cancels_within_policy_only(s, me):
    inside = _membership_of(s, me)  # cancellable after 3 cycles; 1 billed
    api = Api(me.user)
    refused = api.post(f"/me/passes/{inside.pk}/cancel")
    assert refused.status_code == 409 and refused.json()["code"] == "inside_policy"
    no_self = _membership_of(s, me, self_cancel=False)
    assert api.post(f"/me/passes/{no_self.pk}/cancel").json()["code"] == "self_cancel_off"
    free = _membership_of(s, me, self_cancel=True, cancellable_after_cycles=0)
    done = api.post(f"/me/passes/{free.pk}/cancel")
    assert done.status_code == 200, done.content
    assert done.json()["ends_after"] == "2026-05-31" and done.json()["warning"] == ""
    assert Pass.objects.get(pk=inside.pk).ends_after is None


def test_a_guardian_pauses_and_resumes_a_dependants_membership(s, me):
    child = make_patient()
    family_link_add(actor=s["fd"].user, patient=me, relative=child, kind="guardian")
    sold = _membership_of(s, child)
    api = Api(me.user)
    paused = api.post(f"/me/passes/{sold.pk}/pause", {"cycles": 1})
    assert paused.status_code == 200 and paused.json()["paused"]
    assert api.post(f"/me/passes/{sold.pk}/pause", {"cycles": 1}).json()["code"] == "already_paused"
    assert api.post(f"/me/passes/{sold.pk}/resume").status_code == 200
    no_pause = _membership_of(s, child, pause_allowed=False)
    refused = api.post(f"/me/passes/{no_pause.pk}/pause", {"cycles": 1})
    assert refused.status_code == 409 and refused.json()["code"] == "pause_not_allowed"


# ---------------------------------------------------------------- the addresses before issue 24

# Each old address (CHANGELOG.md): who calls it, the method, the old and new paths, the body, and
# the answer the old address gave: its status and one field of it (a dotted path). {paid} is a paid
# membership (its first cycle {cycle}), {unpaid} an unpaid one, {mine} the patient's own, {package}
# a package.
MOVED = [
    ("api", "get", "/memberships/{paid}", "/passes/{paid}/membership", None, 200, "owing_minor", 0),
    (
        "api",
        "get",
        "/memberships/{paid}/plan-change-preview?template_id={gold}&when=next_cycle",
        "/passes/{paid}/plan-change-preview?template_id={gold}&when=next_cycle",
        None,
        200,
        "charge_minor",
        0,
    ),
    (
        "api",
        "post",
        "/memberships/{paid}/cancel",
        "/passes/{paid}/cancel",
        {},
        200,
        "ends_after",
        "2026-05-31",
    ),
    (
        "api",
        "post",
        "/memberships/{paid}/pause",
        "/passes/{paid}/pause",
        {"cycles": 1},
        200,
        "paused",
        True,
    ),
    (
        "api",
        "post",
        "/memberships/{paid}/resume",
        "/passes/{paid}/resume",
        None,
        409,
        "code",
        "not_paused",
    ),
    (
        "api",
        "post",
        "/memberships/{paid}/payment",
        "/passes/{paid}/payment",
        {"payment_mode": "manual"},
        200,
        "payment_mode",
        "manual",
    ),
    (
        "api",
        "post",
        "/memberships/{paid}/plan-change",
        "/passes/{paid}/plan-change",
        {"template_id": "{gold}", "when": "next_cycle"},
        200,
        "plan_change.status",
        "scheduled",
    ),
    (
        "api",
        "post",
        "/memberships/{paid}/past-due-override",
        "/passes/{paid}/past-due-override",
        {"until": "2026-05-25"},
        200,
        "status",
        "active",
    ),
    (
        "api",
        "post",
        "/memberships/{paid}/retry-now",
        "/passes/{paid}/retry-now",
        None,
        409,
        "code",
        "no_card",
    ),
    (
        "api",
        "post",
        "/memberships/{paid}/card-update-request",
        "/passes/{paid}/card-update-request",
        None,
        202,
        "membership_id",
        "{paid}",
    ),
    (
        "api",
        "post",
        "/memberships/{package}/cancel",
        "/passes/{package}/cancel",
        {},
        404,
        "code",
        "membership_not_found",
    ),
    ("api", "delete", "/memberships/{unpaid}", "/passes/{unpaid}", None, 200, "status", "deleted"),
    (
        "api",
        "delete",
        "/memberships/{paid}",
        "/passes/{paid}",
        None,
        409,
        "code",
        "invoice_has_payments",
    ),
    (
        "me",
        "post",
        "/me/memberships/{mine}/cancel",
        "/me/passes/{mine}/cancel",
        None,
        409,
        "code",
        "inside_policy",
    ),
    (
        "me",
        "post",
        "/me/memberships/{mine}/pause",
        "/me/passes/{mine}/pause",
        {"cycles": 1},
        200,
        "paused",
        True,
    ),
    (
        "me",
        "post",
        "/me/memberships/{mine}/resume",
        "/me/passes/{mine}/resume",
        None,
        409,
        "code",
        "not_paused",
    ),
    (
        "api",
        "get",
        "/memberships/cycles/{cycle}/refund-suggestion",
        "/pass-invoices/{cycle}/refund-suggestion",
        None,
        200,
        "suggested",
        6000,
    ),
    (
        "api",
        "post",
        "/memberships/cycles/{cycle}/refund",
        "/pass-invoices/{cycle}/refund",
        {"amount_minor": 6000, "reason": "moved away"},
        200,
        "cycles.0.uses_allowed",
        0,
    ),
    (
        "api",
        "post",
        "/memberships/cycles/{cycle}/write-off",
        "/pass-invoices/{cycle}/write-off",
        {"reason": "Agreed"},
        409,
        "code",
        "cycle_paid",
    ),
]


@pytest.fixture
def moved_world(s, me):
    paid, unpaid = _sell(s), _sell(s)
    _pay(s, paid["id"])
    ids = {
        "paid": paid["id"],
        "cycle": paid["cycles"][0]["id"],
        "unpaid": unpaid["id"],
        "mine": _membership_of(s, me).pk,
        "gold": membership_template(s["cat"], name="Gold", price=12000, uses=8).pk,
        "package": package_sell(
            actor=s["fd"].user, patient=s["patient"], template=package_template(s["cat"])
        ).pk,
    }
    return {"api": s["api"], "me": Api(me.user)}, ids


def _fill(value, ids):
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, str):
        filled = value.format(**ids)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    return value


def _call(api, method, path, body, headers):
    if method == "get":
        return api.get(path, **headers)
    return getattr(api, method)(path, body, **headers)


@pytest.mark.parametrize(
    "who,method,old,new,body,status,field,value",
    MOVED,
    ids=[f"{m.upper()} {old.split('?')[0]}" for _, m, old, *_ in MOVED],
)
def test_an_old_address_answers_308_and_following_it_gives_the_old_answer(
    moved_world, who, method, old, new, body, status, field, value
):
    """A membership is a pass and a cycle a pass invoice (issue 24): the old addresses answer 308
    for one release, and the request sent again to the new address, with the same method, body
    and Idempotency-Key, answers what the old address answered."""
    apis, ids = moved_world
    api, old, new, body = apis[who], _fill(old, ids), _fill(new, ids), _fill(body, ids)
    key = {"Idempotency-Key": f"moved-{method}-{old}"} if method != "get" else {}
    before = Pass.objects.order_by("pk").values_list("pk", "status", "ends_after", "payment_mode")
    before = list(before)
    redirect = _call(api, method, old, body, key)
    assert redirect.status_code == 308, redirect.content
    assert redirect["Location"] == f"/api/v1{new}"
    assert (
        list(Pass.objects.order_by("pk").values_list("pk", "status", "ends_after", "payment_mode"))
        == before
    )  # the redirect itself changes nothing
    followed = _call(api, method, redirect["Location"].removeprefix("/api/v1"), body, key)
    assert followed.status_code == status, followed.content
    answer = followed.json()
    for step in field.split("."):
        answer = answer[int(step) if step.isdigit() else step]
    assert answer == _fill(value, ids)
    if method == "post":  # the key was not spent on the redirect: the new address replays
        # its own answer (only POSTs are keyed)
        again = _call(api, method, new, body, key)
        assert (again.status_code, again.json()) == (followed.status_code, followed.json())
    assert _call(Api(), method, old, body, {}).status_code == 401


def test_the_old_delete_keeps_refusing_a_package_and_does_not_redirect_it(moved_world):
    """DELETE /memberships/{id} refused a package (404), while DELETE /passes/{id} deletes one:
    the old address answers as it did instead of sending the client on to delete it."""
    apis, ids = moved_world
    refused = apis["api"].delete(f"/memberships/{ids['package']}")
    assert refused.status_code == 404 and refused.json()["code"] == "membership_not_found"
    assert Pass.objects.get(pk=ids["package"]).status == "active"
    assert apis["api"].delete("/memberships/999999").json()["code"] == "membership_not_found"
    desk = Api(make_staff(AccessLevel.FRONT_DESK).user)
    assert desk.delete(f"/memberships/{ids['unpaid']}").status_code == 403
    assert Api().delete(f"/memberships/{ids['unpaid']}").status_code == 401
