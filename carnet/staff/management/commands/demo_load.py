"""`manage.py demo_load`: a demo clinic to click through (SPEC sections 1, 2 and 8).

Everything goes through the services the pages use (validated, and written to the activity
log), acting as the demo Account Owner. Only that owner is written directly: the first staff
member cannot come from a service, because nobody may act yet.

The data is fixed (no randomness). Running the command again changes nothing and only prints
the logins. The load is one transaction, so a failure leaves no half-loaded clinic.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from carnet.billing.invoicing import LineInput, invoice_create
from carnet.billing.payments import payment_receive
from carnet.clinic.models import Discipline, IncomeCategory, Location, Product, Tax, Treatment
from carnet.clinic.selectors import clinic_get, clinic_today
from carnet.clinic.services import clinic_update, setup_save
from carnet.core import activity, clock
from carnet.core.errors import CarnetError
from carnet.core.permissions import AccessLevel as L
from carnet.gateway.services import card_store, demo_load_calls
from carnet.passes.charging import pass_charge_due
from carnet.passes.memberships.services import membership_sell
from carnet.passes.packages.selling import package_sell
from carnet.passes.selectors import pass_invoices
from carnet.passes.setup.services import template_save
from carnet.people.models import FamilyLink, Patient, Shift, StaffMember
from carnet.people.services import (
    commission_rate_set,
    family_link_add,
    patient_create,
    patient_portal_enable,
    shift_create,
    staff_create,
    staff_update,
)
from carnet.scheduling.arrival import appointment_arrive
from carnet.scheduling.services import appointment_book

PASSWORD = "carnet-demo-clinic"  # meets the password rules (12+ characters, SPEC 14)
STAFF_LOGIN_URL = "http://127.0.0.1:8000/login/"
PORTAL_LOGIN_URL = "http://127.0.0.1:8000/portal/login/"
STAFF_EMAIL_DOMAIN = "harbourwellness.example"
PATIENT_EMAIL_DOMAIN = "example.com"

CLINIC = {
    "name": "Harbour Wellness Clinic",
    "currency": "CAD",
    "time_zone": "America/Toronto",
    "locale": "en-CA",
    "address": "10 Queens Quay West, Suite 400\nToronto, ON  M5J 2R9",
    "email": f"hello@{STAFF_EMAIL_DOMAIN}",
    "phone": "416-555-0100",
    "invoice_prefix": "HW-",
    "no_show_fee_minor": 4000,  # $40.00
}

# key: (name, time zone, address, phone)
LOCATIONS = {
    "TOR": (
        "Toronto Harbourfront",
        "America/Toronto",
        "10 Queens Quay West, Suite 400\nToronto, ON  M5J 2R9",
        "416-555-0100",
    ),
    "VAN": (
        "Vancouver Kitsilano",
        "America/Vancouver",
        "2150 West 4th Avenue\nVancouver, BC  V6K 1N6",
        "604-555-0140",
    ),
}

DISCIPLINES = ["Massage Therapy", "Physiotherapy", "Chiropractic"]
# One income category per discipline (same name), plus one for retail.
INCOME_CATEGORIES = [*DISCIPLINES, "Products"]

# key: (name, rate in percent, registration number)
TAXES = {
    "HST": ("HST", Decimal("13.000"), "81234 5678 RT0001"),
    "GST": ("GST", Decimal("5.000"), "81234 5678 RT0001"),
}

# (discipline, name, kind, minutes, price in cents, online bookable, capacity, tax keys)
# Physiotherapy and chiropractic are tax-exempt health services in Canada; massage is not.
TREATMENTS = [
    ("Massage Therapy", "Massage 30 min", "individual", 30, 6500, True, None, ["HST"]),
    ("Massage Therapy", "Massage 60 min", "individual", 60, 11000, True, None, ["HST"]),
    ("Massage Therapy", "Massage 90 min", "individual", 90, 15500, True, None, ["HST"]),
    ("Massage Therapy", "Couples Massage 60 min", "group", 60, 22000, False, 2, ["HST"]),
    ("Physiotherapy", "Physiotherapy Initial Assessment", "individual", 60, 12500, True, None, []),
    ("Physiotherapy", "Physiotherapy Follow-up", "individual", 30, 9000, True, None, []),
    ("Physiotherapy", "Post-Surgical Rehab Group", "group", 45, 4500, False, 4, []),
    ("Physiotherapy", "Rehab Pilates Class", "class", 60, 3000, True, 8, []),
    ("Chiropractic", "Chiropractic Initial Visit", "individual", 45, 9500, True, None, []),
    ("Chiropractic", "Chiropractic Adjustment", "individual", 15, 6000, True, None, []),
]

# (name, sku, price in cents, stock, tax keys)
PRODUCTS = [
    ("Cervical Support Pillow", "PIL-100", 7995, 12, ["HST"]),
    ("Hot/Cold Gel Pack", "GEL-200", 1995, 30, ["HST"]),
    ("Resistance Band Set", "BND-300", 2995, 20, ["GST"]),
    ("Arnica Massage Cream 120 ml", "ARN-120", 2450, 24, ["HST"]),
    ("Foam Roller 36 in", "FOM-360", 3995, 10, ["HST"]),
]

# One staff member per access level, highest first (the first is the Account Owner),
# then a second front desk member without billing access.
# (username, display name, access level, can access billing, practitioner, location keys)
STAFF = [
    ("owner", "Margaret Chen", L.ACCOUNT_OWNER, True, False, ["TOR", "VAN"]),
    ("fulladmin", "Daniel Okafor", L.FULL_ACCESS, True, False, ["TOR", "VAN"]),
    ("admin", "Priya Raman", L.ADMIN_BILLING, True, False, ["TOR", "VAN"]),
    ("frontdesk", "Sophie Tremblay", L.FRONT_DESK, True, False, ["TOR"]),
    ("pfdall", "Marcus Bélanger", L.PRACTITIONER_FRONT_DESK_ALL, True, True, ["TOR", "VAN"]),
    ("pfd", "Aisha Mohammed", L.PRACTITIONER_FRONT_DESK, True, True, ["TOR"]),
    ("practitioner", "Liam O'Connor", L.PRACTITIONER_LIMITED, True, True, ["VAN"]),
    ("noaccess", "Hannah Nakamura", L.NO_ACCESS, True, True, ["VAN"]),
    ("reception", "Noah Williams", L.FRONT_DESK, False, False, ["VAN"]),
]
OWNER_USERNAME = STAFF[0][0]

# username: {income category: commission in percent}
COMMISSION_RATES = {
    "pfdall": {"Massage Therapy": Decimal("50"), "Products": Decimal("10")},
    "pfd": {"Physiotherapy": Decimal("55"), "Products": Decimal("10")},
    "practitioner": {"Chiropractic": Decimal("60"), "Products": Decimal("5")},
    "noaccess": {"Massage Therapy": Decimal("45")},
}

MON, TUE, WED, THU, FRI, SAT = range(6)
# (username, location key, weekdays, start, end), in the location's own time zone
SHIFTS = [
    ("pfdall", "TOR", [MON, WED, FRI], "09:00", "17:00"),
    ("pfdall", "VAN", [TUE, THU], "10:00", "18:00"),
    ("pfd", "TOR", [MON, TUE, WED, THU], "08:00", "16:00"),
    ("pfd", "TOR", [SAT], "09:00", "13:00"),
    ("practitioner", "VAN", [MON, WED, FRI], "08:00", "14:00"),
    ("practitioner", "VAN", [TUE, THU], "12:00", "20:00"),
    ("noaccess", "VAN", [TUE, WED, THU, FRI, SAT], "10:00", "18:00"),
]

# key: (first, last, preferred, email (before @example.com), phone, date of birth)
PATIENTS = {
    "rebecca": ("Rebecca", "Thompson", "Becky", "rebecca.thompson", "416-555-0101", "1984-03-12"),
    "james": ("James", "Thompson", "", "james.thompson", "416-555-0102", "1982-11-30"),
    "oliver": ("Oliver", "Thompson", "", "", "", "2014-06-08"),
    "chloe": ("Chloe", "Thompson", "", "", "", "2017-09-21"),
    "arjun": ("Arjun", "Patel", "", "arjun.patel", "647-555-0105", "1990-01-17"),
    "isabelle": ("Isabelle", "Gagnon", "Izzy", "isabelle.gagnon", "604-555-0106", "1995-07-04"),
    "wei": ("Wei", "Zhang", "", "wei.zhang", "604-555-0107", "1978-02-25"),
    "fatima": ("Fatima", "Hassan", "", "fatima.hassan", "416-555-0108", "1988-12-02"),
    "robert": ("Robert", "MacDonald", "Bob", "bob.macdonald", "416-555-0109", "1956-04-19"),
    "mei": ("Mei", "Lin", "", "mei.lin", "778-555-0110", "1999-10-11"),
    "lucas": ("Lucas", "Roy", "", "lucas.roy", "416-555-0111", "1992-08-30"),
    "olivia": ("Olivia", "Martin", "Liv", "olivia.martin", "647-555-0112", "2001-05-15"),
    "ethan": ("Ethan", "Campbell", "", "ethan.campbell", "604-555-0113", "1986-03-03"),
    "amelia": ("Amelia", "Wilson", "", "amelia.wilson", "416-555-0114", "1973-09-09"),
    "nathan": ("Nathan", "Singh", "", "nathan.singh", "647-555-0115", "1994-02-14"),
    "grace": ("Grace", "Kim", "", "grace.kim", "604-555-0116", "1989-06-27"),
    "samuel": ("Samuel", "Lefebvre", "Sam", "sam.lefebvre", "416-555-0117", "1968-12-24"),
    "chiara": ("Chiara", "Rossi", "", "chiara.rossi", "416-555-0118", "1997-03-08"),
    "benjamin": ("Benjamin", "Cohen", "Ben", "ben.cohen", "647-555-0119", "1981-07-13"),
    "ava": ("Ava", "Nguyen", "", "ava.nguyen", "604-555-0120", "2003-01-29"),
    "kwame": ("Kwame", "Mensah", "", "kwame.mensah", "416-555-0121", "1977-10-05"),
    "sofia": ("Sofia", "Hernández", "", "sofia.hernandez", "778-555-0122", "1993-04-22"),
    "thomas": ("Thomas", "Wright", "Tom", "tom.wright", "416-555-0123", "1960-08-16"),
    "zoe": ("Zoë", "Bouchard", "", "zoe.bouchard", "416-555-0124", "1998-11-01"),
    "hiroshi": ("Hiroshi", "Tanaka", "", "hiroshi.tanaka", "604-555-0125", "1970-05-18"),
    "emily": ("Emily", "Anderson", "Em", "emily.anderson", "647-555-0126", "1987-02-09"),
    "daniel": ("Daniel", "Kowalski", "", "daniel.kowalski", "416-555-0127", "1991-09-14"),
    "leila": ("Leila", "Karimi", "", "leila.karimi", "604-555-0128", "1985-12-19"),
    "jack": ("Jack", "Murphy", "", "jack.murphy", "416-555-0129", "2000-06-06"),
    "priyanka": ("Priyanka", "Das", "", "priyanka.das", "778-555-0130", "1996-03-27"),
}

PATIENT_NOTES = {
    "rebecca": "Guardian of Oliver and Chloe. Prefers morning appointments.",
    "oliver": "Soccer knee injury; a guardian attends every visit.",
    "arjun": "Desk worker, recurring neck tension.",
    "fatima": "Prefers a female practitioner.",
    "robert": "Hip replacement (2023); post-surgical rehab.",
    "ethan": "Marathon runner; plantar fasciitis.",
    "grace": "Pregnant (due in spring): side-lying positioning only.",
    "kwame": "Lower back pain after a fall at work (WSIB claim).",
    "thomas": "Hard of hearing; please phone rather than email.",
    "leila": "Allergic to nut oils: use the unscented, nut-free lotion.",
}

# (patient, relative, kind): the patient is the guardian (or spouse) of the relative.
FAMILY_LINKS = [
    ("rebecca", "oliver", FamilyLink.Kind.GUARDIAN),
    ("rebecca", "chloe", FamilyLink.Kind.GUARDIAN),
    ("rebecca", "james", FamilyLink.Kind.SPOUSE),
]

# Patients with a portal login (their email is the login).
PORTAL_PATIENTS = ["rebecca", "arjun", "isabelle"]


def patient_email(key: str) -> str:
    local = PATIENTS[key][3]
    return f"{local}@{PATIENT_EMAIL_DOMAIN}" if local else ""


def staff_email(username: str) -> str:
    return f"{username}@{STAFF_EMAIL_DOMAIN}"


def create_owner() -> StaffMember:
    """The Account Owner, written directly: no one exists yet who may create staff."""
    username, name, level, billing, practitioner, _ = STAFF[0]
    first, last = name.split(" ", 1)
    user = get_user_model().objects.create_user(
        username=username,
        email=staff_email(username),
        password=PASSWORD,
        first_name=first,
        last_name=last,
    )
    owner = StaffMember.objects.create(
        user=user,
        display_name=name,
        access_level=level,
        can_access_billing=billing,
        is_practitioner=practitioner,
    )
    activity.record(actor=None, verb="created", obj=owner, after=activity.snapshot(owner))
    return owner


def load_clinic(actor) -> tuple[dict, dict]:
    """Clinic settings and catalog; returns the locations and income categories by key."""
    clinic_update(actor=actor, data=CLINIC)
    locations = {}
    for key, (name, tz, address, phone) in LOCATIONS.items():
        locations[key] = setup_save(
            actor=actor,
            obj=Location(),
            data={"name": name, "time_zone": tz, "address": address, "phone": phone},
        )
    disciplines = {
        name: setup_save(actor=actor, obj=Discipline(), data={"name": name}) for name in DISCIPLINES
    }
    categories = {
        name: setup_save(actor=actor, obj=IncomeCategory(), data={"name": name})
        for name in INCOME_CATEGORIES
    }
    taxes = {}
    for key, (name, rate, number) in TAXES.items():
        taxes[key] = setup_save(
            actor=actor, obj=Tax(), data={"name": name, "rate": rate, "registration_number": number}
        )
    for discipline, name, kind, minutes, price, online, capacity, tax_keys in TREATMENTS:
        setup_save(
            actor=actor,
            obj=Treatment(),
            data={
                "discipline": disciplines[discipline],
                "name": name,
                "kind": kind,
                "duration_minutes": minutes,
                "price_minor": price,
                "online_bookable": online,
                "capacity": capacity,
                "income_category": categories[discipline],
                "taxes": [taxes[k] for k in tax_keys],
            },
        )
    for name, sku, price, stock, tax_keys in PRODUCTS:
        setup_save(
            actor=actor,
            obj=Product(),
            data={
                "name": name,
                "sku": sku,
                "price_minor": price,
                "stock": stock,
                "income_category": categories["Products"],
                "taxes": [taxes[k] for k in tax_keys],
            },
        )
    return locations, categories


def load_staff(actor, owner: StaffMember, locations: dict, categories: dict) -> None:
    """The other staff members, their commission rates and weekly shifts."""

    def location_ids(keys):
        return [locations[k].pk for k in keys]

    staff = {OWNER_USERNAME: owner}
    staff_update(actor=actor, staff=owner, data={"location_ids": location_ids(STAFF[0][5])})
    for username, name, level, billing, practitioner, location_keys in STAFF[1:]:
        staff[username] = staff_create(
            actor=actor,
            username=username,
            email=staff_email(username),
            password=PASSWORD,
            display_name=name,
            access_level=level,
            can_access_billing=billing,
            is_practitioner=practitioner,
            location_ids=location_ids(location_keys),
        )
    for username, rates in COMMISSION_RATES.items():
        for category, rate in rates.items():
            commission_rate_set(
                actor=actor,
                staff=staff[username],
                income_category_id=categories[category].pk,
                rate=rate,
            )
    for username, location_key, weekdays, start, end in SHIFTS:
        for weekday in weekdays:
            shift_create(
                actor=actor,
                staff=staff[username],
                location_id=locations[location_key].pk,
                weekday=weekday,
                start_time=dt.time.fromisoformat(start),
                end_time=dt.time.fromisoformat(end),
            )


# A little billing history: (patient, [(product name, quantity)], payments as (method, amount)).
# Rebecca pays by her card on file and keeps credit; Arjun still owes; Isabelle pays part cash.
PURCHASES = [
    ("rebecca", [("Cervical Support Pillow", 1)], [("card_gateway", 12000)]),
    ("arjun", [("Resistance Band Set", 1), ("Hot/Cold Gel Pack", 2)], []),
    ("isabelle", [("Arnica Massage Cream 120 ml", 2)], [("cash", 3000)]),
    ("james", [("Foam Roller 36 in", 1)], [("debit", 4514)]),
]
DEMO_CARD = "4242424242424242"


def load_billing(actor, patients: dict) -> None:
    """Product sales and payments through the billing services, so the ledger has a history."""
    products = {p.name: p for p in Product.objects.all()}
    year = dt.date.today().year + 3
    card = card_store(
        actor=actor,
        patient=patients["rebecca"],
        number=DEMO_CARD,
        exp_month=12,
        exp_year=year,
        cvc="123",
        holder="Rebecca Thompson",
    )
    for n, (key, items, paid) in enumerate(PURCHASES):
        patient = patients[key]
        invoice = invoice_create(
            actor=actor,
            patient=patient,
            lines=[LineInput(product_id=products[name].pk, quantity=q) for name, q in items],
        )
        for method, amount in paid:
            applied = min(amount, invoice.balance_minor)
            payment_receive(
                actor=actor,
                patient=patient,
                method=method,
                amount_minor=amount,
                allocations=[(invoice, applied)],
                card=card if method == "card_gateway" else None,
                idempotency_key=f"demo-{n}-{method}",
            )
            invoice.refresh_from_db()


# (name, price in cents, quantity, expiry months or None, tax keys, instalments, flags,
#  [(treatment, additional charge in cents, per-item limit)])
PACKAGES = [
    (
        "10 Massages (60 min)",
        99000,
        10,
        12,
        ["HST"],
        1,
        {"sold_online": True, "transferable": True},
        [("Massage 60 min", 0, None)],
    ),
    (
        "Physio Recovery Pack",
        80000,
        10,
        6,
        [],
        4,
        {"family_sharing": True},
        [("Physiotherapy Follow-up", 0, 8), ("Post-Surgical Rehab Group", 0, None)],
    ),
    (
        "Pilates 8-Class Card",
        20000,
        8,
        3,
        [],
        1,
        {"sold_online": True, "redeem_online": True},
        [("Rehab Pilates Class", 0, None)],
    ),
    # SPEC 5.5, the insurance-friendly set-up: price 0, each visit billed 50.00
    # and paid from credit.
    (
        "Chiro Prepaid Plan (insurance-friendly)",
        0,
        10,
        None,
        [],
        1,
        {},
        [("Chiropractic Adjustment", 5000, None)],
    ),
]
# (patient, package, paid)
PACKAGE_SALES = [
    ("rebecca", "10 Massages (60 min)", True),
    ("arjun", "10 Massages (60 min)", True),
    ("rebecca", "Physio Recovery Pack", False),
    ("isabelle", "Pilates 8-Class Card", True),
    ("robert", "Chiro Prepaid Plan (insurance-friendly)", True),
]


def load_passes(actor, patients: dict) -> None:
    """Package templates and a few sales, so the schedule's bookings have packages to use."""

    treatments = {t.name: t for t in Treatment.objects.all()}
    taxes = {t.name: t for t in Tax.objects.all()}
    templates = _package_templates(actor, treatments, taxes)
    _packages_sold(actor, patients, templates)
    # Memberships: a monthly one (2 massages a month, rollover of 1, pause and self-cancel allowed,
    # sold online) and an unlimited weekly pilates pass.
    monthly, weekly = _membership_templates(actor, treatments, taxes)
    _memberships_sold(actor, patients, monthly, weekly)
    # The insurance-friendly plan: Robert prepays ten visits' charges, kept as his credit.
    payment_receive(
        actor=actor,
        patient=patients["robert"],
        method="card_manual",
        amount_minor=50000,
        reference="Prepaid chiropractic visits",
        idempotency_key="demo-chiro-prepay",
    )


def _package_templates(actor, treatments: dict, taxes: dict) -> dict:
    """PACKAGES saved as templates, by name."""
    templates = {}
    for name, price, quantity, months, tax_keys, instalments, flags, items in PACKAGES:
        category = treatments[items[0][0]].income_category_id
        templates[name] = template_save(
            actor=actor,
            template=None,
            data={
                "name": name,
                "price_minor": price,
                "quantity": quantity,
                "income_category_id": category,
                "tax_ids": [taxes[TAXES[k][0]].pk for k in tax_keys],
                "expiry_value": months,
                "expiry_unit": "months",
                "auto_select": True,
                "instalments": instalments,
                **flags,
            },
            items=[
                {
                    "treatment_id": treatments[t].pk,
                    "additional_charge_minor": charge,
                    "compensation_minor": None,
                    "limit": limit,
                }
                for t, charge, limit in items
            ],
        )
    return templates


def _packages_sold(actor, patients: dict, templates: dict) -> None:
    """PACKAGE_SALES, paid by debit when the sale says so."""
    for n, (key, name, paid) in enumerate(PACKAGE_SALES):
        # Sold at the first location (alphabetically), so the pass sales report shows where.
        sold = package_sell(
            actor=actor,
            patient=patients[key],
            template=templates[name],
            location=Location.objects.order_by("name").first(),
        )
        for invoice in pass_invoices(sold) if paid else ():
            if invoice.balance_minor:
                payment_receive(
                    actor=actor,
                    patient=patients[key],
                    method="debit",
                    amount_minor=invoice.balance_minor,
                    allocations=[(invoice, invoice.balance_minor)],
                    idempotency_key=f"demo-pass-{n}",
                )


def _membership_templates(actor, treatments: dict, taxes: dict):
    """(the monthly membership, the weekly one)."""
    monthly = template_save(
        actor=actor,
        template=None,
        data={
            "kind": "membership",
            "name": "Wellness Monthly",
            "price_minor": 9900,
            "cycle": "monthly",
            "income_category_id": treatments["Massage 30 min"].income_category_id,
            "tax_ids": [taxes[TAXES["HST"][0]].pk],
            "uses_per_cycle": 2,
            "rollover": True,
            "rollover_cap": 1,
            "cancellable_after_cycles": 3,
            "pause_allowed": True,
            "pause_max_cycles": 2,
            "self_cancel": True,
            "sold_online": True,
            "auto_select": True,
        },
        items=[
            {
                "treatment_id": treatments["Massage 30 min"].pk,
                "additional_charge_minor": 0,
                "compensation_minor": None,
                "limit": None,
            }
        ],
    )
    weekly = template_save(
        actor=actor,
        template=None,
        data={
            "kind": "membership",
            "name": "Unlimited Pilates (weekly)",
            "price_minor": 3500,
            "cycle": "weekly",
            "income_category_id": treatments["Rehab Pilates Class"].income_category_id,
            "uses_per_cycle": None,
            "term_cycles": 12,
            "auto_select": True,
        },
        items=[
            {
                "treatment_id": treatments["Rehab Pilates Class"].pk,
                "additional_charge_minor": 0,
                "compensation_minor": None,
                "limit": None,
            }
        ],
    )
    return monthly, weekly


def _memberships_sold(actor, patients: dict, monthly, weekly) -> None:
    """Isabelle's monthly one, paid automatically by card (its first cycle charged now), and
    James's weekly one begun two weeks ago, its two past cycles paid in cash."""
    today = clinic_today()
    card = card_store(
        actor=actor,
        patient=patients["isabelle"],
        number=DEMO_CARD,
        exp_month=12,
        exp_year=today.year + 3,
        cvc="123",
        holder="Isabelle Gagnon",
    )

    sold = membership_sell(
        actor=actor,
        patient=patients["isabelle"],
        template=monthly,
        payment_mode="automatic",
        card=card,
    )
    pass_charge_due(
        sold_pass=sold
    )  # inside the load's transaction: see gateway.services.demo_load_calls
    james = membership_sell(
        actor=actor,
        patient=patients["james"],
        template=weekly,
        start_date=today - dt.timedelta(weeks=2),
    )  # two past cycles, paid by hand
    for n, invoice in enumerate(pass_invoices(james)[:2]):
        payment_receive(
            actor=actor,
            patient=patients["james"],
            method="cash",
            amount_minor=invoice.balance_minor,
            allocations=[(invoice, invoice.balance_minor)],
            idempotency_key=f"demo-membership-{n}",
        )


def load_appointments(actor, patients: dict) -> None:
    """Two individual visits a day for each practitioner shift over the next week, so the schedule
    has something on it; the first visit of today (if any) is arrived, which bills it."""

    visits = list(Treatment.objects.filter(kind=Treatment.Kind.INDIVIDUAL).order_by("pk"))
    people = [p for p in patients.values() if p.email]
    n = 0
    for shift in Shift.objects.select_related("staff", "location").order_by("pk"):
        zone = ZoneInfo(shift.location.time_zone)
        today = clock.today(zone)
        for offset in range(7):
            day = today + dt.timedelta(days=offset)
            if day.weekday() != shift.weekday:
                continue
            for hours in (1, 3):
                start = dt.datetime.combine(day, shift.start_time, tzinfo=zone) + dt.timedelta(
                    hours=hours
                )
                appointment = appointment_book(
                    actor=actor,
                    treatment=visits[n % len(visits)],
                    practitioner=shift.staff,
                    location=shift.location,
                    start=start,
                    patients=[people[n % len(people)]],
                )
                if offset == 0 and hours == 1:
                    appointment_arrive(actor=actor, appointment=appointment)
                n += 1
    # Visits covered by packages (auto-selected at booking): Arjun's yesterday (arrived: $0 owing)
    # and Rebecca's tomorrow (a session reserved).
    massage = Treatment.objects.get(name="Massage 60 min")
    marcus = StaffMember.objects.get(user__username="pfdall")
    toronto = Location.objects.get(name=LOCATIONS["TOR"][0])
    zone = ZoneInfo(toronto.time_zone)
    today = clock.today(zone)
    for key, day, arrive in (
        ("arjun", today - dt.timedelta(days=1), True),
        ("rebecca", today + dt.timedelta(days=1), False),
    ):
        start = dt.datetime.combine(day, dt.time(7, 0), tzinfo=zone)  # before the shifts' bookings
        appointment = appointment_book(
            actor=actor,
            treatment=massage,
            practitioner=marcus,
            location=toronto,
            start=start,
            patients=[patients[key]],
        )
        if arrive:
            appointment_arrive(actor=actor, appointment=appointment)


def load_patients(actor) -> dict:
    """Patients, the Thompson family's links and a few portal logins."""
    patients = {}
    for key, (first, last, preferred, _, phone, born) in PATIENTS.items():
        patients[key] = patient_create(
            actor=actor,
            data={
                "first_name": first,
                "last_name": last,
                "preferred_name": preferred,
                "email": patient_email(key),
                "phone": phone,
                "date_of_birth": dt.date.fromisoformat(born),
                "notes": PATIENT_NOTES.get(key, ""),
            },
        )
    for patient, relative, kind in FAMILY_LINKS:
        family_link_add(
            actor=actor, patient=patients[patient], relative=patients[relative], kind=kind
        )
    for key in PORTAL_PATIENTS:
        patient_portal_enable(actor=actor, patient=patients[key], password=PASSWORD)
    return patients


class Command(BaseCommand):
    help = "Load the Harbour Wellness demo clinic (run again, it only prints the logins)."

    def handle(self, *args, **options):
        if StaffMember.objects.filter(user__username=OWNER_USERNAME).exists():
            self.stdout.write("The demo clinic is already loaded; nothing was changed.")
        else:
            self.check_empty()
            try:
                with transaction.atomic(), demo_load_calls():
                    clinic_get()
                    owner = create_owner()
                    locations, categories = load_clinic(owner.user)
                    load_staff(owner.user, owner, locations, categories)
                    patients = load_patients(owner.user)
                    load_billing(owner.user, patients)
                    load_passes(owner.user, patients)
                    load_appointments(owner.user, patients)
            except CarnetError as exc:
                raise CommandError(
                    f"The demo was not loaded (nothing was saved): {exc.message}"
                ) from exc
            self.stdout.write(self.style.SUCCESS(f"Loaded the demo clinic “{CLINIC['name']}”."))
        self.print_logins()

    def check_empty(self) -> None:
        """Refuse to mix the demo into a clinic someone set up, or to clash with existing logins."""
        if StaffMember.objects.exists() or Patient.objects.exists() or Location.objects.exists():
            raise CommandError(
                "This database already holds a clinic that is not the demo. "
                "demo_load only fills an empty database; point DATABASE_URL at a new one."
            )
        logins = [row[0] for row in STAFF] + [patient_email(key) for key in PORTAL_PATIENTS]
        users = get_user_model().objects.filter(username__in=logins)
        taken = users.values_list("username", flat=True)
        if taken:
            raise CommandError(
                f"These demo logins already exist: {', '.join(sorted(taken))}. "
                "Remove them or use a new database."
            )

    def print_logins(self) -> None:
        out = self.stdout.write
        staff = {s.user.username: s for s in StaffMember.objects.select_related("user")}
        rows = [("Username", "Access level", "Billing", "Name", "Password")]
        for username, *_ in STAFF:
            if username in staff:
                member = staff[username]
                rows.append(
                    (
                        username,
                        member.access_label,
                        "yes" if member.can_access_billing else "no",
                        member.display_name,
                        PASSWORD,
                    )
                )
        out("")
        out(self.style.MIGRATE_HEADING(f"Staff logins: {STAFF_LOGIN_URL}"))
        self.table(rows)
        out(
            "  Account Owner and Full Access logins set up two-factor log-in at their first "
            "log-in: scan the"
        )
        out(
            "  QR code with an authenticator app (any TOTP app) and keep the recovery codes. "
            "The other levels"
        )
        out("  log in with the password alone unless the clinic asks two-factor of all staff.")

        emails = [patient_email(key) for key in PORTAL_PATIENTS]
        with_login = Patient.objects.filter(user__username__in=emails).select_related("user")
        patients = {p.user.username: p for p in with_login}
        rows = [("Email (login)", "Patient", "Password")]
        rows += [
            (email, patients[email].full_name, PASSWORD) for email in emails if email in patients
        ]
        out("")
        out(self.style.MIGRATE_HEADING(f"Patient portal logins: {PORTAL_LOGIN_URL}"))
        self.table(rows)
        out("")

    def table(self, rows) -> None:
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
        for n, row in enumerate(rows):
            line = "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths))
            self.stdout.write("  " + line.rstrip())
            if n == 0:
                self.stdout.write("  " + "  ".join("-" * width for width in widths))
