"""Every page and endpoint × every access level (with and without billing), patients and anonymous.

The expectation for each route comes from core.permissions.RULES (SPEC section 8); the test
fails if a route exists that the matrix does not cover, so new routes must declare their action.
"""

import re
from datetime import UTC, datetime, time, timedelta

import pytest
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve, reverse

from carnet.billing.payments import payment_receive
from carnet.billing.tests.factories import manual_invoice
from carnet.clinic.models import IncomeCategory, Product, Treatment
from carnet.clinic.selectors import clinic_get
from carnet.conftest import Api, make_patient, make_staff
from carnet.core import clock
from carnet.core.permissions import AccessLevel, Action, allows
from carnet.gateway.services import card_store
from carnet.giftcards.services import gift_card_create_and_load
from carnet.passes.memberships.services import membership_sell
from carnet.passes.models import PassTemplate
from carnet.passes.packages.selling import package_sell
from carnet.passes.setup.services import template_save
from carnet.passes.tests.factories import membership_template, package_template, sold_package
from carnet.people.models import FamilyLink, Shift
from carnet.people.services import patient_portal_enable, token_digest
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.models import Break
from carnet.scheduling.services import appointment_book

pytestmark = pytest.mark.django_db

A = Action
SETUP_KINDS = {
    "locations": ({"name": "Loc {n}", "time_zone": "America/Toronto"}, A.CLINIC_SETTINGS),
    "disciplines": ({"name": "Disc {n}"}, A.SETUP_MANAGE),
    "income-categories": ({"name": "Cat {n}"}, A.SETUP_MANAGE),
    "taxes": ({"name": "Tax {n}", "rate": "5"}, A.SETUP_MANAGE),
    "treatments": (
        {
            "name": "T {n}",
            "discipline_id": "{discipline}",
            "income_category_id": "{category}",
            "duration_minutes": 30,
            "price_minor": 5000,
        },
        A.SETUP_MANAGE,
    ),
    "products": (
        {"name": "P {n}", "income_category_id": "{category}", "price_minor": 1000},
        A.SETUP_MANAGE,
    ),
}


PATIENT_ONLY = (
    "patient only"  # refused to every staff level, open to patients (on their own records)
)


def api_routes(w):
    """(method, path, action or None for 'any signed-in user', body) for every API operation."""
    routes = [
        ("get", "/me", None, None),
        ("get", "/access-levels", None, None),
        ("get", "/clinic", A.SETUP_VIEW, None),
        ("patch", "/clinic", A.CLINIC_SETTINGS, {"phone": "555"}),
        ("get", "/staff", A.STAFF_VIEW, None),
        (
            "post",
            "/staff",
            A.STAFF_MANAGE,
            {
                "username": "new{n}",
                "password": "a long enough password",
                "display_name": "New",
                "access_level": 40,
            },
        ),
        ("get", "/staff/{staff}", A.STAFF_VIEW, None),
        ("patch", "/staff/{staff}", A.STAFF_MANAGE, {}),
        ("get", "/staff/{staff}/commission-rates", A.STAFF_VIEW, None),
        (
            "post",
            "/staff/{staff}/commission-rates",
            A.STAFF_MANAGE,
            {"income_category_id": "{category}", "rate": "10"},
        ),
        ("get", "/staff/{staff}/shifts", A.SETUP_VIEW, None),
        (
            "post",
            "/staff/{staff}/shifts",
            A.STAFF_MANAGE,
            {
                "location_id": "{location}",
                "weekday": "{n7}",
                "start_time": "09:00",
                "end_time": "10:00",
            },
        ),
        ("delete", "/shifts/{shift}", A.STAFF_MANAGE, None),
        ("get", "/tokens", A.API_TOKEN_OWN, None),
        ("post", "/tokens", A.API_TOKEN_OWN, {"name": "t"}),
        ("post", "/tokens/{own_token}/revoke", A.API_TOKEN_OWN, None),
        ("get", "/patients", A.PATIENT_VIEW, None),
        ("post", "/patients", A.PATIENT_EDIT, {"first_name": "A", "last_name": "B"}),
        ("get", "/patients/{patient}", A.PATIENT_VIEW, None),
        ("patch", "/patients/{patient}", A.PATIENT_EDIT, {"notes": "x"}),
        ("get", "/patients/{patient}/family", A.PATIENT_VIEW, None),
        (
            "post",
            "/patients/{patient}/family",
            A.PATIENT_EDIT,
            {"relative_id": "{relative}", "kind": "spouse"},
        ),
        ("delete", "/family-links/{link}", A.PATIENT_EDIT, None),
        ("post", "/patients/{patient}/portal-invitation", A.PATIENT_EDIT, None),
    ]
    card = {
        "number": "4242424242424242",
        "exp_month": 12,
        "exp_year": 2099,
        "cvc": "123",
        "holder": "P",
    }
    routes += [
        ("get", "/patients/{patient}/account", A.INVOICE_VIEW, None),
        ("get", "/patients/{patient}/invoices", A.INVOICE_VIEW, None),
        (
            "post",
            "/invoices",
            A.SELL,
            {
                "patient_id": "{patient}",
                "lines": [
                    {
                        "description": "Towel",
                        "unit_price_minor": 100,
                        "income_category_id": "{category}",
                    }
                ],
            },
        ),
        ("get", "/invoices/{invoice}", A.INVOICE_VIEW, None),
        ("delete", "/invoices/{open_invoice}", A.INVOICE_DELETE, None),
        ("get", "/patients/{patient}/payments", A.INVOICE_VIEW, None),
        (
            "post",
            "/payments",
            A.PAYMENT_TAKE,
            {"patient_id": "{patient}", "method": "cash", "amount_minor": 500},
        ),
        ("get", "/payments/{payment}", A.INVOICE_VIEW, None),
        (
            "post",
            "/payments/{payment}/apply",
            A.PAYMENT_TAKE,
            {"invoice_id": "{open_invoice}", "amount_minor": 100},
        ),
        (
            "post",
            "/patients/{patient}/credit/apply",
            A.PAYMENT_TAKE,
            {"invoice_id": "{open_invoice}"},
        ),
        ("post", "/allocations/{allocation}/unapply", A.PAYMENT_UNAPPLY, None),
        ("post", "/payments/{payment}/refunds", A.REFUND, {"amount_minor": 100}),
        ("get", "/patients/{patient}/cards", A.INVOICE_VIEW, None),
        ("post", "/patients/{patient}/cards", A.PAYMENT_TAKE, card),
        # With the test gateway: 409 card_setup_unavailable once allowed
        # (Stripe's in test_card_setup_api).
        ("post", "/patients/{patient}/cards/setup", A.PAYMENT_TAKE, None),
        (
            "post",
            "/patients/{patient}/cards/setup/complete",
            A.PAYMENT_TAKE,
            {"setup_intent": "seti_x"},
        ),
        ("delete", "/cards/{card}", A.PAYMENT_TAKE, None),
        ("get", "/invoices/{invoice}/receipt.pdf", A.INVOICE_VIEW, None),
        ("post", "/invoices/{invoice}/receipt/email", A.INVOICE_VIEW, None),
        ("get", "/patients/{patient}/statement.pdf", A.INVOICE_VIEW, None),
        ("post", "/patients/{patient}/pay-balance-request", A.PAYMENT_TAKE, None),
    ]
    routes += [
        ("get", "/gift-cards", A.SELL, None),
        (
            "post",
            "/gift-cards",
            A.SELL,
            {"code": "NEWGC{n}", "amount_minor": 500, "purchaser_id": "{patient}"},
        ),
        ("get", "/gift-cards/{giftcard}", A.SELL, None),
        ("patch", "/gift-cards/{giftcard}", A.SELL, {"notes": "x"}),
        (
            "post",
            "/gift-cards/{giftcard}/reload",
            A.SELL,
            {"amount_minor": 100, "payer_id": "{patient}"},
        ),
        (
            "post",
            "/gift-cards/redeem",
            A.PAYMENT_TAKE,
            {
                "code": "GCARD{n}",
                "patient_id": "{patient}",
                "amount_minor": 100,
                "allocations": [{"invoice_id": "{open_invoice}", "amount_minor": 100}],
            },
        ),
        (
            "post",
            "/gift-cards/{giftcard}/transfer",
            A.SELL,
            {"target_code": "GEMPTY{n}", "amount_minor": 100},
        ),
        ("post", "/gift-cards/{giftcard}/refund", A.REFUND, {"amount_minor": 100}),
        ("delete", "/gift-cards/{empty_giftcard}", A.SELL, None),
    ]
    # Scheduling: the acting staff member is neither the practitioner nor at the location, so
    # touching an appointment needs SCHEDULE_ALL_LOCATIONS; the day list is
    # filtered to what one may see.
    everywhere = A.SCHEDULE_ALL_LOCATIONS
    routes += [
        (
            "post",
            "/appointments",
            everywhere,
            {
                "treatment_id": "{treatments}",
                "practitioner_id": "{practitioner}",
                "location_id": "{location}",
                "start": "{start}",
                "patient_ids": ["{patient}"],
            },
        ),
        ("get", "/appointments", A.SCHEDULE_OWN, None),
        ("get", "/appointments/{appointment}", everywhere, None),
        (
            "post",
            "/appointments/{group_appointment}/visits",
            everywhere,
            {"patient_id": "{relative}"},
        ),
        ("post", "/appointments/{appointment}/arrive", everywhere, None),
        ("post", "/appointments/{arrived_appointment}/unarrive", everywhere, None),
        ("post", "/appointments/{appointment}/no-show", everywhere, None),
        ("post", "/appointments/{appointment}/no-show/undo", everywhere, None),
        ("post", "/appointments/{appointment}/cancel", everywhere, None),
        ("post", "/appointments/{appointment}/copy", everywhere, {"start": "{start}"}),
        ("post", "/appointments/{appointment}/reschedule", everywhere, {"start": "{start}"}),
        (
            "post",
            "/appointments/{group_appointment}/duplicate-as-class",
            everywhere,
            {"treatment_id": "{class_treatment}"},
        ),
        ("get", "/practitioners/{practitioner}/availability", everywhere, None),
        ("get", "/practitioners/{practitioner}/breaks", A.SCHEDULE_OWN, None),
        (
            "post",
            "/practitioners/{practitioner}/breaks",
            everywhere,
            {"location_id": "{location}", "start": "{break_start}", "end": "{break_end}"},
        ),
        ("delete", "/breaks/{break}", everywhere, None),
        # Online booking: any signed-in user may look; only patients book,
        # list and cancel their own.
        ("get", "/locations/{location}/online-treatments", None, None),
        (
            "get",
            "/locations/{location}/online-slots?treatment_id={treatments}&date=2030-01-07",
            None,
            None,
        ),
        ("get", "/me/appointments", PATIENT_ONLY, None),
        (
            "post",
            "/me/appointments",
            PATIENT_ONLY,
            {
                "location_id": "{location}",
                "treatment_id": "{treatments}",
                "practitioner_id": "{practitioner}",
                "start": "2030-01-07T10:00:00+00:00",
            },
        ),
        ("post", "/me/appointments/{booking}/cancel", PATIENT_ONLY, None),
    ]
    # Settings → Packages & Memberships (passes.setup.api)
    package = {
        "name": "Pkg {n}",
        "price_minor": 1000,
        "income_category_id": "{category}",
        "quantity": 5,
        "items": [{"treatment_id": "{treatments}"}],
    }
    routes += [
        ("get", "/pass-templates", A.SETUP_VIEW, None),
        ("post", "/pass-templates", A.SETUP_MANAGE, package),
        ("get", "/pass-templates/{pass_template}", A.SETUP_VIEW, None),
        ("patch", "/pass-templates/{pass_template}", A.SETUP_MANAGE, {}),
        ("post", "/pass-templates/{pass_template}/archive", A.SETUP_MANAGE, {"archived": False}),
        ("get", "/pass-templates/{pass_template}/sold-update-preview", A.SETUP_MANAGE, None),
        ("post", "/pass-templates/{pass_template}/sold-update", A.SETUP_MANAGE, None),
    ]
    # Sold packages (passes.packages.api; one pass read or deleted: passes.api); using one on the
    # sample appointment (passes.redeeming.api) also needs its schedule scope.
    pass_use = (everywhere, A.PASS_USE)
    visit = "/appointments/{appointment}/patients/{patient}"
    routes += [
        ("get", "/patients/{patient}/passes", A.INVOICE_VIEW, None),
        ("post", "/patients/{patient}/passes", A.SELL, {"template_id": "{pass_template}"}),
        ("get", "/me/passes", PATIENT_ONLY, None),
        ("get", "/passes/{sold_pass}", A.INVOICE_VIEW, None),
        ("post", "/passes/{sold_pass}/expiry", A.PASS_EXPIRY_EDIT, {"expires_on": None}),
        ("get", "/passes/{sold_pass}/refund-suggestion", A.REFUND, None),
        ("post", "/passes/{sold_pass}/refund", A.REFUND, {"amount_minor": 0}),
        ("delete", "/passes/{sold_pass}", A.INVOICE_DELETE, None),
        ("post", "/passes/{sold_pass}/transfer", A.PASS_TRANSFER, {"to_patient_id": "{relative}"}),
        ("post", "/passes/{sold_pass}/shares", A.SELL, {"patient_ids": []}),
        # Memberships (passes.memberships.api): a fresh unpaid membership per call
        # (a delete may consume it).
        (
            "post",
            "/patients/{patient}/memberships",
            A.SELL,
            {"template_id": "{membership_template}"},
        ),
        ("get", "/passes/{membership}/membership", A.INVOICE_VIEW, None),
        ("post", "/passes/{membership}/cancel", A.SELL, {"at_cycle_end": True}),
        ("post", "/passes/{membership}/pause", A.SELL, {"cycles": 1}),
        ("post", "/passes/{membership}/resume", A.SELL, None),
        ("post", "/passes/{membership}/payment", A.SELL, {"payment_mode": "manual"}),
        ("delete", "/passes/{membership}", A.INVOICE_DELETE, None),
        (
            "get",
            "/passes/{membership}/plan-change-preview?template_id={membership_template}",
            A.SELL,
            None,
        ),
        (
            "post",
            "/passes/{membership}/plan-change",
            A.SELL,
            {"template_id": "{membership_template}", "when": "next_cycle"},
        ),
        ("get", "/pass-invoices/{membership_cycle}/refund-suggestion", A.REFUND, None),
        ("post", "/pass-invoices/{membership_cycle}/refund", A.REFUND, {"amount_minor": 0}),
        ("post", "/passes/{membership}/card-update-request", A.SELL, None),
        ("post", "/pass-invoices/{membership_cycle}/write-off", A.REFUND, {"reason": "x"}),
        ("post", "/passes/{membership}/past-due-override", A.SELL, {"until": "2000-01-01"}),
        ("post", "/passes/{membership}/retry-now", A.PAYMENT_TAKE, None),
        ("post", "/me/passes/{membership}/cancel", PATIENT_ONLY, None),
        ("post", "/me/passes/{membership}/pause", PATIENT_ONLY, {"cycles": 1}),
        ("post", "/me/passes/{membership}/resume", PATIENT_ONLY, None),
        ("get", visit + "/explain", pass_use, None),
        ("post", visit + "/pass", pass_use, {"pass_id": None}),
        ("delete", visit + "/pass", pass_use, None),
    ]
    # Pass reports (reports.pass_api): sales and usage show lower levels their own rows; the
    # deferred revenue roll-forward is whole-clinic only. The scope is tested in
    # carnet/reports/tests.
    routes += [
        ("get", "/reports/pass-sales", A.REPORTS_OWN, None),
        ("get", "/reports/pass-usage", A.REPORTS_OWN, None),
        ("get", "/reports/deferred-revenue", A.REPORTS_CLINIC, None),
    ]
    # Billing reports (reports.billing_api): own rows from Practitioner (Limited), whole clinic from
    # Administrative/All Billing with billing; the scope is tested in carnet/reports/tests.
    routes += [
        ("get", f"/reports/billing/{name}", A.REPORTS_OWN, None)
        for name in ("compensation", "transactions", "ar-aging", "summary")
    ]
    for kind, (body, manage) in SETUP_KINDS.items():
        routes += [
            ("get", f"/{kind}", A.SETUP_VIEW, None),
            ("post", f"/{kind}", manage, body),
            ("get", f"/{kind}/{{{kind}}}", A.SETUP_VIEW, None),
            ("patch", f"/{kind}/{{{kind}}}", manage, {}),
        ]
    return routes


class World:
    def __init__(self, catalog):
        self.n = 0
        self._kept, self._last_method = set(), None
        self.patient = make_patient()
        self.relative = make_patient()
        self.other = make_staff(AccessLevel.FRONT_DESK)
        self.other.locations.add(catalog["location"])
        self.ids = {
            "patient": self.patient.pk,
            "relative": self.relative.pk,
            "staff": self.other.pk,
            "location": catalog["location"].pk,
            "discipline": catalog["discipline"].pk,
            "category": catalog["income_category"].pk,
            "locations": catalog["location"].pk,
            "disciplines": catalog["discipline"].pk,
            "income-categories": catalog["income_category"].pk,
            "taxes": catalog["tax"].pk,
            "treatments": catalog["treatment"].pk,
        }
        self._scheduling(catalog)

    def fresh(self, actor_staff, needs: str = "", method: str | None = None):
        """Per-call objects a delete may consume, and a token owned by the acting staff member.

        `method` is the request about to be made. The invoices and appointments (the slow ones to
        make) are kept across calls while only GETs were made since they were, as a GET consumes
        nothing; after any other request (or an unknown one) they are made afresh."""
        self.n += 1
        if self._last_method != "get":
            self._kept.clear()
        self._last_method = method
        if any(word in needs for word in ("invoice", "payment", "allocation", "card", "billing")):
            self._keep(self._billing)
        if "appointment" in needs or "break" in needs:
            self._keep(self._appointments)
        if any(word in needs for word in ("gift", "GCARD")):
            self._gift_cards()
        if any(word in needs for word in ("pass_template", "pass_templates:", "sold_pass")):
            self._pass_template()
        if "sold_pass" in needs:
            self._sold_pass()
        if "passes:" in needs:
            self._page_pass()
        if "memberships:" in needs:
            self._page_membership()
        if "{membership" in needs:  # the membership API routes
            self._page_membership()
            self.ids["membership"] = self.ids["page_membership"]

        self.ids["shift"] = Shift.objects.create(
            staff=self.other,
            location_id=self.ids["location"],
            weekday=self.n % 7,
            start_time=time(6),
            end_time=time(7),
        ).pk
        self.ids["link"] = FamilyLink.objects.get_or_create(
            patient=self.patient, relative=self.relative, defaults={"kind": "guardian"}
        )[0].pk
        if actor_staff is not None:
            self.ids["own_token"] = actor_staff.api_tokens.create(
                name="t",
                token_hash=token_digest(f"x{self.n}-{actor_staff.pk}"),
                prefix="x",
                created_at=clock.now(),
            ).pk
        self.ids.setdefault("products", None)
        self.ids.setdefault(
            "giftcard", 0
        )  # named for the route templates; real ones come from _gift_cards
        self.ids.setdefault("empty_giftcard", 0)
        self.ids.setdefault("own_token", 0)
        self.ids.setdefault("booking", 0)
        self.ids.setdefault("pass_template", 0)
        self.ids.setdefault("sold_pass", 0)
        for name in ("membership", "membership_cycle"):
            self.ids.setdefault(name, 0)

    def _keep(self, make):
        if make.__name__ not in self._kept:
            make()
            self._kept.add(make.__name__)

    def _scheduling(self, catalog):
        """A practitioner with a shift at the location, and group and class treatments."""
        self.practitioner = make_staff(AccessLevel.PRACTITIONER_FRONT_DESK, practitioner=True)
        self.practitioner.locations.add(catalog["location"])
        Shift.objects.create(
            staff=self.practitioner,
            location=catalog["location"],
            weekday=0,
            start_time=time(9),
            end_time=time(17),
        )
        self.treatments = {
            kind: Treatment.objects.create(
                name=f"{kind} visit",
                discipline=catalog["discipline"],
                income_category=catalog["income_category"],
                duration_minutes=30,
                price_minor=4000,
                kind=kind,
                capacity=10,
            )
            for kind in ("group", "class")
        }
        self.ids.update(
            practitioner=self.practitioner.pk,
            class_treatment=self.treatments["class"].pk,
            appointment=0,
            group_appointment=0,
            arrived_appointment=0,
            start="",
            **{"break": 0},
            break_start="",
            break_end="",
        )

    def _appointments(self):
        """Fresh appointments on day n (a booked, a group and an arrived one) and
        a free start time."""
        owner = self.__dict__.setdefault("owner", make_staff(AccessLevel.ACCOUNT_OWNER))
        day = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=self.n)

        def book(hour, treatment):
            return appointment_book(
                actor=owner.user,
                treatment=treatment,
                practitioner=self.practitioner,
                location=self.practitioner.locations.get(),
                start=day + timedelta(hours=hour),
                patients=[self.patient],
            )

        arrived = book(13, Treatment.objects.get(pk=self.ids["treatments"]))
        appointment_arrive(actor=owner.user, appointment=arrived)
        self.ids.update(
            appointment=book(9, arrived.treatment).pk,
            group_appointment=book(11, self.treatments["group"]).pk,
            arrived_appointment=arrived.pk,
            start=(day + timedelta(hours=15)).isoformat(),
            break_start=(day + timedelta(hours=16)).isoformat(),
            break_end=(day + timedelta(hours=16, minutes=30)).isoformat(),
        )

        self.ids["break"] = Break.objects.create(
            practitioner=self.practitioner,
            location=self.practitioner.locations.get(),
            start=day + timedelta(hours=18),
            end=day + timedelta(hours=19),
        ).pk

    def _billing(self):
        """A paid invoice (with its payment and allocation), an open invoice, and a card."""
        owner = self.__dict__.setdefault("owner", make_staff(AccessLevel.ACCOUNT_OWNER))
        category = type("C", (), {"pk": self.ids["category"]})
        paid = manual_invoice(owner, self.patient, 1000, category=category)
        self.ids["open_invoice"] = manual_invoice(owner, self.patient, 1000, category=category).pk
        payment = payment_receive(
            actor=owner.user,
            patient=self.patient,
            method="cash",
            amount_minor=2000,
            allocations=[(paid, 1000)],
        )
        self.ids.update(
            invoice=paid.pk, payment=payment.pk, allocation=payment.allocations.get().pk
        )
        self.ids["card"] = card_store(
            actor=owner.user,
            patient=self.patient,
            number="4242424242424242",
            exp_month=12,
            exp_year=2099,
            cvc="123",
            holder="P",
        ).pk
        from carnet.billing.card_attempts import (
            charge_begin,
        )  # a card charge begun by staff (3-D Secure's return)

        self.ids["card_attempt"] = charge_begin(
            request_key=f"matrix-{self.n}-{self.ids['card']}",
            purpose="payment",
            patient=self.patient,
            amount_minor=100,
            card_label="Visa",
            actor=owner.user,
        ).pk

    def _gift_cards(self):
        """A loaded card (code GCARD<n>) and an empty one (GEMPTY<n>) that a delete may consume."""
        owner = self.__dict__.setdefault("owner", make_staff(AccessLevel.ACCOUNT_OWNER))
        self.ids["giftcard"] = gift_card_create_and_load(
            actor=owner.user, code=f"GCARD{self.n}", amount_minor=5000, purchaser=self.patient
        ).pk
        self.ids["empty_giftcard"] = gift_card_create_and_load(
            actor=owner.user, code=f"GEMPTY{self.n}"
        ).pk

    def _pass_template(self):
        """A package template (Settings → Packages & Memberships) covering the sample treatment."""
        owner = self.__dict__.setdefault("owner", make_staff(AccessLevel.ACCOUNT_OWNER))
        self.ids["pass_template"] = template_save(
            actor=owner.user,
            template=None,
            items=[{"treatment_id": self.ids["treatments"]}],
            data={
                "name": f"Pkg {self.n}",
                "price_minor": 1000,
                "income_category_id": self.ids["category"],
                "quantity": 5,
            },
        ).pk

    def _sold_pass(self):
        """An unpaid package of the sample template, sold to the patient
        (a delete may consume it)."""
        owner = self.__dict__.setdefault("owner", make_staff(AccessLevel.ACCOUNT_OWNER))
        template = PassTemplate.objects.get(pk=self.ids["pass_template"])
        self.ids["sold_pass"] = package_sell(
            actor=owner.user, patient=self.patient, template=template
        ).pk

    def _page_pass(self):
        """For the sold-package pages: an unpaid package sold to the patient
        (a delete may consume it)."""
        self._pass_template()
        self.ids["page_pass"] = package_sell(
            actor=self.owner.user,
            patient=self.patient,
            template=PassTemplate.objects.get(pk=self.ids["pass_template"]),
        ).pk

    def _page_membership(self):
        """For the membership pages: an unpaid monthly membership sold to the patient
        (a delete may consume it)."""
        owner = self.__dict__.setdefault("owner", make_staff(AccessLevel.ACCOUNT_OWNER))
        if "membership_template" not in self.ids:
            catalog = {
                "income_category": IncomeCategory.objects.get(pk=self.ids["category"]),
                "treatment": Treatment.objects.get(pk=self.ids["treatments"]),
            }
            self.ids["membership_template"] = membership_template(
                catalog, name="Matrix membership"
            ).pk
        sold = membership_sell(
            actor=owner.user,
            patient=self.patient,
            template=PassTemplate.objects.get(pk=self.ids["membership_template"]),
        )
        self.ids["page_membership"] = sold.pk
        self.ids["membership_cycle"] = sold.pass_invoices.get(seq=1).pk

    def fill(self, value):
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, str):
            out = value
            for k, v in {**self.ids, "n": self.n, "n7": self.n % 7}.items():
                out = out.replace("{" + k + "}", str(v))
            return int(out) if out.isdigit() and value.startswith("{") else out
        return value


@pytest.fixture
def world(catalog):
    w = World(catalog)
    w.ids["products"] = Product.objects.create(
        name="Oil", price_minor=1000, income_category=catalog["income_category"]
    ).pk
    return w


LEVELS = [(level, billing) for level in AccessLevel for billing in (True, False)]


@pytest.mark.parametrize(
    "level,billing",
    LEVELS,
    ids=[f"{lv.name}-{'billing' if b else 'nobilling'}" for lv, b in LEVELS],
)
def test_api_matrix(world, level, billing):
    staff = make_staff(level, billing=billing)
    api = Api(staff.user)
    for method, path, action, body in api_routes(world):
        world.fresh(staff, needs=path + str(body), method=method)
        url = world.fill(path)
        response = getattr(api, method)(url, world.fill(body)) if method != "get" else api.get(url)
        expected = action is None or (
            action != PATIENT_ONLY and _page_allows(level, billing, action)
        )  # tuple: all
        where = f"{method.upper()} {url} as {level.label} billing={billing}"
        assert response.status_code < 500, where
        if expected:
            assert response.status_code != 403, f"{where} refused: {response.content[:200]}"
        else:
            assert response.status_code == 403, f"{where} allowed ({response.status_code})"
            assert response.json()["code"] == "not_allowed"


def test_every_api_operation_is_in_the_matrix(world):
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    world.fresh(owner, needs="billing")
    api = Api(owner.user)
    spec = api.get("/openapi.json").json()
    declared = {(m, re.sub(r"\{\w+\}", "{pk}", p)) for p, ops in spec["paths"].items() for m in ops}
    covered = set()
    for method, path, _, _ in api_routes(world):
        template = path
        for k in world.ids:
            template = template.replace("{" + k + "}", "{pk}")
        covered.add((method, "/api/v1" + template.split("?")[0]))
    assert declared - covered == set(), "API operations missing from the access matrix"


def test_api_anonymous_and_patient(world):
    world.fresh(None)

    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    me = make_patient(email="me@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password="a long enough password")
    me.refresh_from_db()
    anonymous, as_patient = Api(), Api(me.user)
    for method, path, action, body in api_routes(world):
        world.fresh(None, needs=path + str(body), method=method)
        url = world.fill(path)
        anon = (
            getattr(anonymous, method)(url, world.fill(body))
            if method != "get"
            else anonymous.get(url)
        )
        assert anon.status_code == 401, f"anonymous {method} {url}: {anon.status_code}"
        pat = (
            getattr(as_patient, method)(url, world.fill(body))
            if method != "get"
            else as_patient.get(url)
        )
        if action is None:
            assert pat.status_code == 200
        elif action == PATIENT_ONLY:
            assert pat.status_code not in (401, 403) and pat.status_code < 500, (
                f"patient {method} {url}: {pat.status_code}"
            )
        else:
            # A patient gets 403, or 404 for another patient's record (no probing ids).
            assert pat.status_code in (403, 404), f"patient {method} {url}: {pat.status_code}"


# Reachable without a login: asking for a reset link and using one (tested in test_passwords.py).
ACCOUNT_PAGES_PUBLIC = {
    "staff:password_reset",
    "staff:password_reset_confirm",
    "portal:password_reset",
    "portal:password_reset_confirm",
    # online sign-up: "check your email", then the link from it (test_online.py)
    "booking:sign_up_sent",
    "portal:sign_up_confirm",
}


def test_account_pages_are_public_and_the_change_pages_need_a_login(client):
    for name in ACCOUNT_PAGES_PUBLIC:
        url = reverse(name, kwargs={"token": "x"} if name.endswith("confirm") else {})
        assert client.get(url).status_code in (200, 400), url
    for door in ("staff", "portal"):
        assert client.get(reverse(f"{door}:password_change"))["Location"].startswith(
            reverse(f"{door}:login")
        )


def page_routes():
    """Every named staff page (app:name, view) except the public ones."""
    # Portal pages are the patient's own (tested in carnet/portal and carnet/billing tests).
    public = {
        "staff:login",
        "staff:logout",
        "portal:login",
        "portal:home",
        "portal:gift_card_buy",
        "portal:receipt_pdf",
        "portal:pay_balance",
        "portal:pay_balance_paid",
        "portal:appointment_cancel",
        "booking:start",
        "booking:book",
        "booking:confirm",
        "calendar:feed",
        "portal:passes",
        "portal:pass_buy",
        "portal:pass_bought",
        "portal:membership_sign_up",
        "portal:membership_cancel",
        "portal:membership_pause",
        "portal:membership_resume",
        # the card update link: its signed token is the credential
        # (passes/memberships/tests/test_card_requests.py)
        "portal:card_update",
        "portal:card_update_done",
        *ACCOUNT_PAGES_PUBLIC,
        "portal:password_change",
        "portal:invitation",
        # the code after the password (any login that has passed it; test_two_factor.py) and the
        # patient's own account pages
        "staff:two_factor_verify",
        "portal:two_factor_verify",
        "portal:two_factor",
        "portal:sessions",
        # Stripe's deliveries: no session, the signature is the authentication
        # (test_stripe_webhooks).
        "billing:stripe_webhook",
    }
    out = []

    def walk(patterns, ns=None):
        for p in patterns:
            if isinstance(p, URLResolver):
                if str(p.pattern).startswith("api/"):
                    continue
                walk(p.url_patterns, p.namespace or ns)
            elif isinstance(p, URLPattern) and p.name:
                name = f"{ns}:{p.name}"
                if name not in public:
                    out.append((name, p))

    walk(get_resolver().url_patterns)
    return out


# What each staff page must require, written out so a wrong decorator is caught too.
PAGE_ACTIONS = {
    "staff:dashboard": A.DASHBOARD_VIEW,
    "staff:activity": A.ACTIVITY_LOG_VIEW,
    "staff:tokens": A.API_TOKEN_OWN,
    "staff:token_revoke": A.API_TOKEN_OWN,
    "staff:password_change": A.ACCOUNT_OWN,
    "staff:two_factor": A.ACCOUNT_OWN,
    "staff:sessions": A.ACCOUNT_OWN,
    "calendar:feed_settings": A.SCHEDULE_OWN,
    "clinic:settings": A.SETUP_VIEW,
    "clinic:clinic_settings": A.CLINIC_SETTINGS,
    "clinic:setup_list": A.SETUP_VIEW,
    "clinic:setup_new": A.SETUP_MANAGE,
    "clinic:setup_edit": A.SETUP_MANAGE,
    "people:patients": A.PATIENT_VIEW,
    "people:patient": A.PATIENT_VIEW,
    "people:patient_new": A.PATIENT_EDIT,
    "people:patient_edit": A.PATIENT_EDIT,
    "people:family_add": A.PATIENT_EDIT,
    "people:family_remove": A.PATIENT_EDIT,
    "people:portal_invite": A.PATIENT_EDIT,
    "people:staff": A.STAFF_VIEW,
    "people:staff_new": A.STAFF_MANAGE,
    "people:staff_edit": A.STAFF_MANAGE,
    "people:shift_add": A.STAFF_MANAGE,
    "people:staff_unlock": A.STAFF_MANAGE,
    "people:staff_two_factor_reset": A.OWNERSHIP,
    "people:shift_remove": A.STAFF_MANAGE,
    "people:rate_set": A.STAFF_MANAGE,
    "billing:tab": A.INVOICE_VIEW,
    "billing:purchase_new": A.SELL,
    "billing:purchase_totals": A.SELL,
    "billing:payment_new": A.PAYMENT_TAKE,
    "billing:credit_apply": A.PAYMENT_TAKE,
    "billing:invoice_delete": A.INVOICE_DELETE,
    "billing:unapply": A.PAYMENT_UNAPPLY,
    "billing:refund": A.REFUND,
    "billing:card_new": A.PAYMENT_TAKE,
    "billing:card_remove": A.PAYMENT_TAKE,
    "billing:receipt": A.INVOICE_VIEW,
    "billing:receipt_pdf": A.INVOICE_VIEW,
    "billing:receipt_email": A.INVOICE_VIEW,
    "billing:statement": A.INVOICE_VIEW,
    "billing:statement_pdf": A.INVOICE_VIEW,
    "billing:pay_balance_request": A.PAYMENT_TAKE,
    "billing:card_review": A.CARD_REVIEW,
    "billing:card_authenticated": A.PAYMENT_TAKE,
    "billing:purchase_authenticated": A.PAYMENT_TAKE,
    "giftcards:list": A.SELL,
    "giftcards:new": A.SELL,
    "giftcards:detail": A.SELL,
    "giftcards:reload": A.SELL,
    "giftcards:transfer": A.SELL,
    "giftcards:refund": A.REFUND,
    "giftcards:delete": A.SELL,
    "giftcards:notes": A.SELL,
    "reports:index": A.REPORTS_OWN,
    "pass_templates:list": A.SETUP_VIEW,
    "pass_templates:new": A.SETUP_MANAGE,
    "pass_templates:edit": A.SETUP_MANAGE,
    "pass_templates:archive": A.SETUP_MANAGE,
    "pass_templates:sold_update": A.SETUP_MANAGE,
    "passes:patient_passes": A.INVOICE_VIEW,
    "passes:sell": A.SELL,
    "passes:detail": A.INVOICE_VIEW,
    "passes:expiry": A.PASS_EXPIRY_EDIT,
    "passes:refund": A.REFUND,
    "passes:transfer": A.PASS_TRANSFER,
    "passes:shares": A.SELL,
    "passes:delete": A.INVOICE_DELETE,
    "memberships:sell": A.SELL,
    "memberships:detail": A.INVOICE_VIEW,
    "memberships:pause": A.SELL,
    "memberships:resume": A.SELL,
    "memberships:cancel": A.SELL,
    "memberships:payment": A.SELL,
    "memberships:delete": A.INVOICE_DELETE,
    "memberships:cycle_refund": A.REFUND,
    "memberships:card_request": A.SELL,
    "memberships:charges_preview": A.INVOICE_VIEW,
    "memberships:plan_change": A.SELL,
    "memberships:plan_change_cancel": A.SELL,
    "memberships:past_due_override": A.SELL,
    "memberships:cycle_write_off": A.REFUND,
    "memberships:retry_now": A.PAYMENT_TAKE,
    "reports:past_due": A.REPORTS_OWN,
}
PAGE_ACTIONS.update(
    {
        f"reports:billing_{name}": A.REPORTS_OWN
        for name in ("compensation", "transactions", "ar_aging", "summary")
    }
)
PAGE_ACTIONS.update(
    {f"imports:{name}": A.DATA_IMPORT for name in ("index", "template", "file", "commit", "undo")}
)
PAGE_ACTIONS.update(
    {
        f"accounting:{name}": A.ACCOUNTING_EXPORT
        for name in ("index", "mapping", "export", "trial_balance", "general_ledger")
    }
)
PAGE_ACTIONS.update(
    {
        "reports:pass_sales": A.REPORTS_OWN,
        "reports:pass_usage": A.REPORTS_OWN,
        "reports:pass_rollforward": A.REPORTS_CLINIC,
    }
)
SCHEDULING_PAGES = {
    "schedule",
    "book",
    "book_patients",
    "book_quote",
    "patient_appointments",
    "appointment",
    "appointment_arrive",
    "appointment_unarrive",
    "appointment_no_show",
    "appointment_no_show_undo",
    "appointment_cancel",
    "appointment_copy",
    "appointment_reschedule",
    "appointment_join",
    "appointment_duplicate_as_class",
}
PAGE_ACTIONS.update({f"scheduling:{name}": A.SCHEDULE_OWN for name in SCHEDULING_PAGES})
# The sample appointment belongs to another practitioner at a location the actor is not linked to,
# so opening or changing it needs SCHEDULE_ALL_LOCATIONS (as in the API matrix above).
PAGE_EXPECTS = {
    f"scheduling:{name}": A.SCHEDULE_ALL_LOCATIONS
    for name in SCHEDULING_PAGES
    if name.startswith("appointment")
}
# The appointment panel's package controls: PASS_USE on the page,
# plus the sample appointment's scope.
PASS_PANEL_PAGES = {"appointment_pass_use", "appointment_pass_remove", "appointment_pass_explain"}
PAGE_ACTIONS.update({f"scheduling:{name}": A.PASS_USE for name in PASS_PANEL_PAGES})
PAGE_EXPECTS.update(
    {f"scheduling:{name}": (A.PASS_USE, A.SCHEDULE_ALL_LOCATIONS) for name in PASS_PANEL_PAGES}
)


def _page_allows(level, billing, expects) -> bool:
    return all(
        allows(level, billing, a) for a in (expects if isinstance(expects, tuple) else (expects,))
    )


def test_every_staff_page_declares_the_expected_action():
    pages = dict(page_routes())
    assert set(pages) == set(PAGE_ACTIONS), "staff pages and the matrix differ"
    for name, pattern in pages.items():
        assert getattr(pattern.callback, "required_action", None) == PAGE_ACTIONS[name], name


POST_ONLY_PAGES = {
    "family_add",
    "family_remove",
    "portal_invite",
    "staff_unlock",
    "staff_two_factor_reset",
    "shift_add",
    "shift_remove",
    "rate_set",
    "token_revoke",
    "plan_change_cancel",
    "credit_apply",
    "invoice_delete",
    "unapply",
    "refund",
    "card_remove",
    "card_authenticated",
    "purchase_authenticated",
    "receipt_email",
    "pay_balance_request",
    "reload",
    "transfer",
    "delete",
    "notes",
    "archive",
    "expiry",
    "shares",
    "appointment_arrive",
    "appointment_unarrive",
    "appointment_no_show",
    "appointment_no_show_undo",
    "appointment_cancel",
    "appointment_copy",
    "appointment_reschedule",
    "appointment_join",
    "appointment_duplicate_as_class",
    "appointment_pass_use",
    "appointment_pass_remove",
    "pause",
    "resume",
    "commit",
    "undo",
    "card_request",
    "past_due_override",
    "cycle_write_off",
    "retry_now",
}
PAGE_ARGS = {
    "link_pk": "link",
    "shift_pk": "shift",
    "invoice_pk": "open_invoice",
    "allocation_pk": "allocation",
    "payment_pk": "payment",
    "card_pk": "card",
    "attempt_pk": "card_attempt",
}


def page_arg(world, name: str, arg: str):
    """The sample value for one URL argument of a page."""
    if arg == "kind":
        return "treatments"
    if arg in PAGE_ARGS:
        return world.ids[PAGE_ARGS[arg]]
    if name == "staff:token_revoke":
        return world.ids["own_token"]
    if name.startswith("giftcards:"):
        return world.ids["giftcard"]
    if name.startswith("pass_templates:"):
        return world.ids["pass_template"]
    if name in ("passes:patient_passes", "passes:sell"):
        return world.ids["patient"]
    if name.startswith("passes:"):
        return world.ids["page_pass"]
    if name == "memberships:sell":
        return world.ids["patient"]
    if name in ("memberships:cycle_refund", "memberships:cycle_write_off"):
        return world.ids["membership_cycle"]
    if name.startswith("memberships:"):
        return world.ids["page_membership"]
    if name.startswith("billing:receipt"):
        return world.ids["invoice"]
    if name.startswith("scheduling:appointment"):
        return world.ids["appointment"]
    if name == "scheduling:patient_appointments":
        return world.ids["patient"]
    if name.startswith(("people:patient", "people:family", "people:portal", "billing:")):
        return world.ids["patient"]
    if name.startswith("people:"):
        return world.ids["staff"]
    return world.ids["treatments"]


@pytest.mark.parametrize(
    "level,billing",
    LEVELS,
    ids=[f"{lv.name}-{'billing' if b else 'nobilling'}" for lv, b in LEVELS],
)
def test_page_matrix(world, client, level, billing):
    staff = make_staff(level, billing=billing)
    client.force_login(staff.user)
    dead_ends: dict[str, str] = {}  # a link to a page this level may not open -> a page with it
    codes: dict[str, str] = {}  # a developer's word on a page ("(ok)", "SPEC 9.11") -> the page
    for name, pattern in page_routes():
        post_only = name.split(":")[1] in POST_ONLY_PAGES
        world.fresh(staff, needs=name, method="post" if post_only else "get")
        url = reverse(
            name, kwargs={k: page_arg(world, name, k) for k in pattern.pattern.converters}
        )
        response = client.post(url) if post_only else client.get(url)
        expected = _page_allows(level, billing, PAGE_EXPECTS.get(name, PAGE_ACTIONS[name]))
        where = f"{url} as {level.label} billing={billing}"
        assert response.status_code < 500, where
        if expected:
            assert response.status_code in (200, 302), f"{where}: {response.status_code}"
        else:
            assert response.status_code == 403, f"{where}: {response.status_code}"
            assert b"Not allowed" in response.content
        for link in _links_refused(response, level, billing):
            dead_ends.setdefault(link, url)
        for word in _internal_words(response):
            codes.setdefault(word, url)
    assert not codes, f"internal codes shown to people: {codes}"
    # Menus and buttons link only to pages the user may open (a refusal page included: its way
    # out must not be another refusal).
    assert not dead_ends, "\n".join(f"{link} (on {url})" for link, url in sorted(dead_ends.items()))


_TAGS = re.compile(r"<script\b.*?</script>|<style\b.*?</style>|<[^>]*>", re.S)
_CODE = re.compile(r"\bSPEC \d|\b[Ii]ssue \d+\b|\((?:ok|[a-z]+_[a-z_]+)\)")


def _internal_words(response) -> list[str]:
    """Spec references and machine codes in a page's visible text (attributes and scripts aside)."""
    if "text/html" not in response.get("Content-Type", ""):
        return []
    return _CODE.findall(_TAGS.sub(" ", response.content.decode()))


_HREF = re.compile(r'<a\b[^>]*\bhref="(/[^"#?]*)')


def _links_refused(response, level, billing) -> list[str]:
    """The staff pages a response links to that this level's own rule refuses (the page's declared
    action, not the world's sample record: a link to one's own appointment is fine)."""
    if "text/html" not in response.get("Content-Type", ""):
        return []
    refused = []
    for path in set(_HREF.findall(response.content.decode())):
        try:
            match = resolve(path)
        except Resolver404:
            continue
        action = PAGE_ACTIONS.get(f"{match.namespace}:{match.url_name}")
        if action is not None and not allows(level, billing, action):
            refused.append(path)
    return refused


def test_pages_send_anonymous_to_login_and_patients_to_portal(world, client):
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    me = make_patient(email="me2@example.test")
    patient_portal_enable(actor=owner.user, patient=me, password="a long enough password")
    me.refresh_from_db()
    url = reverse("people:patient", kwargs={"pk": world.patient.pk})
    assert client.get(url)["Location"].startswith(reverse("staff:login"))
    client.force_login(me.user)
    assert client.get(url)["Location"] == reverse("portal:home")


def test_portal_pass_pages_are_patients_only_and_their_own(catalog, client):
    """Packages & Memberships in the portal: a patient login only;
    another patient's pass is not found."""
    owner = make_staff(AccessLevel.ACCOUNT_OWNER)
    me, stranger = make_patient(email="me4@example.test"), make_patient()
    patient_portal_enable(actor=owner.user, patient=me, password="a long enough password")
    me.refresh_from_db()
    clinic = clinic_get()
    clinic.online_sales_enabled = True
    clinic.save()
    template = package_template(catalog, name="Matrix pack", sold_online=True)
    mine, theirs = sold_package(owner, me, template), sold_package(owner, stranger, template)
    pages = [
        reverse("portal:passes"),
        reverse("portal:pass_buy", kwargs={"pk": template.pk}),
        reverse("portal:pass_bought", kwargs={"pk": mine.pk}),
    ]
    for url in pages:
        assert client.get(url)["Location"].startswith(reverse("portal:login")), url
    client.force_login(owner.user)  # staff have no portal record
    for url in pages:
        assert client.get(url)["Location"].startswith(reverse("portal:login")), url
    client.force_login(me.user)
    for url in pages:
        assert client.get(url).status_code == 200, url
    assert client.get(reverse("portal:pass_bought", kwargs={"pk": theirs.pk})).status_code == 404
