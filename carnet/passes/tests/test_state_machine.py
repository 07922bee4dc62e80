"""Packages as a state machine (SPEC 5.3, 5.4): random sales, payments, bookings with and without a
package, removals, arrivals, un-arrivals, no-shows, cancellations, refunds, expiry, transfers and
"update sold packages" over two patients, count packages and packages that hold a value (issue 23),
some limited to a location, days, hours (one window crossing midnight) or a use cap per day or week
(issue 23 point 2), at two locations in two time zones; checked after every step: each pass's
counters equal its redemption rows and never go negative, per-item limits hold, each visit's use
matches its status, a value package's held and drawn amounts equal its redemptions' and never
exceed what it holds and its deferred revenue is the price's share of the value not drawn yet,
every live use keeps its pass's place, hours and cap, a refused operation
changes nothing, and every ledger invariant holds (deferred revenue – packages included).

Each example runs in its own savepoint inside the test's transaction, rolled back in teardown
(the billing machine's pattern), so it runs on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools

import pytest
from django.db.models import Count, Q, Sum
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from carnet.billing.models import Invoice
from carnet.billing.payments import payment_receive
from carnet.clinic.models import Location
from carnet.conftest import ExampleRollback, make_catalog, make_patient, make_staff
from carnet.core import clock
from carnet.core.errors import CarnetError
from carnet.core.permissions import AccessLevel
from carnet.ledger import accounts
from carnet.ledger.invariants import discover, run_all
from carnet.ledger.models import JournalTransaction
from carnet.ledger.selectors import balance
from carnet.passes.models import EligibleItem, Pass, PassItem, PassTemplate, Redemption
from carnet.passes.packages.ending import (
    pass_expiry_set,
    pass_refund,
    pass_transfer,
    passes_expire,
    refund_suggestions,
)
from carnet.passes.packages.selling import package_sell
from carnet.passes.redeeming.redemption import pass_attach, pass_remove, value_to_post
from carnet.passes.redeeming.windows import window_refusal
from carnet.passes.selectors import pass_collected_minor, pass_invoices, visit_redemption
from carnet.passes.setup.sold_update import sold_update
from carnet.scheduling.arrival import (
    appointment_arrive,
    appointment_no_show,
    appointment_no_show_undo,
    appointment_unarrive,
)
from carnet.scheduling.models import Visit
from carnet.scheduling.services import appointment_book, appointment_cancel
from carnet.scheduling.tests.factories import clinic_set, treatment_of

from .factories import at, package_template, practitioner

# Domain refusals are allowed outcomes; anything else (IntegrityError,
# AttributeError…) fails the run.
ALLOWED = CarnetError
START = dt.date(2026, 5, 1)
WHO = st.sampled_from([0, 1])
LIMIT = st.one_of(st.none(), st.integers(0, 3))
ITEM = st.tuples(
    st.booleans(), st.sampled_from([0, 0, 1500]), LIMIT
)  # eligible?, additional charge, limit
LIVE = (Redemption.Status.RESERVED, Redemption.Status.POSTED)
_names = itertools.count(1)
OUTCOMES: collections.Counter = collections.Counter()  # "rule:ok" / "rule:code" over the whole run
# Issue 23 point 2: where, when and how often a pass may be used (mostly no rule).
PLACES = st.sampled_from(["any", "any", "main", "uptown"])
DAYS = st.sampled_from(["", "", "01234", "56"])
HOURS = st.sampled_from([None, None, (dt.time(8), dt.time(14)), (dt.time(22), dt.time(2))])
CAPS = st.sampled_from([None, None, (1, "week"), (1, "day"), (2, "week")])
# Slots in the clinic's time (Toronto), one a day each: the early hours, morning, afternoon and
# late evening, so windows (22:00-02:00 crosses midnight) and days both matter.
SLOTS = ("01:00", "09:00", "13:00", "22:30")


def _left(sold: Pass) -> int:
    """Uses left, or for a value package its balance left."""
    return sold.value_left if sold.face_value_minor is not None else sold.remaining


class PassesMachine(RuleBasedStateMachine):
    @initialize(
        no_show_fee=st.sampled_from([0, 2500]),
        first=st.tuples(st.integers(1, 5), st.integers(1, 5)),
        prices=st.tuples(st.integers(0, 50000), st.integers(0, 50000)),
        breakage=st.sampled_from(["expiry", "proportional"]),  # issue 23 point 5
        data=st.data(),
    )
    def start(self, no_show_fee, first, prices, breakage, data):
        self.atomic = ExampleRollback().__enter__()
        self.frozen = clock.frozen(at(START.isoformat(), "10:00"))
        self.frozen.__enter__()
        discover()
        clinic_set(
            time_zone="America/Toronto", no_show_fee_minor=no_show_fee, breakage_method=breakage
        )
        self.cat = make_catalog()
        self.treatments = [
            self.cat["treatment"],
            treatment_of(self.cat, "individual", name="Second massage"),
        ]
        self.staff = make_staff(AccessLevel.FULL_ACCESS).user
        self.prac = practitioner(self.cat["location"])
        # A second location in another time zone: a pass's hours are read in the visit's location's
        # zone (issue 23 point 2).
        self.uptown = Location.objects.create(name="Uptown", time_zone="America/Vancouver")
        self.prac.locations.add(self.uptown)
        self.locations = {"main": self.cat["location"], "uptown": self.uptown}
        self.patients = [make_patient(), make_patient()]
        self.templates: list[int] = []
        self.passes: list[int] = []
        self.visits: list[int] = []
        self.slot = 0
        self.job_day = START
        # Each patient starts with a paid package covering both treatments, so visits get covered
        # early; it may have a place, days, hours or cap, which most visits then meet, and the
        # second may hold a value.
        for who, (quantity, price) in enumerate(zip(first, prices, strict=True)):
            rules, place = self._window_rules(data)
            # The second may hold a value (issue 23 point 3), so draws happen from the start.
            face = (
                data.draw(st.sampled_from([None, 20000, 50000]), label="value held")
                if who
                else None
            )
            template = package_template(
                self.cat,
                name=f"Pack {next(_names)}",
                price=price,
                quantity=quantity if face is None else None,
                face_value_minor=face,
                items=[(t, 0, None, None) for t in self.treatments],
                transferable=True,
                **rules,
            )
            template.allowed_locations.set([place] if place else [])
            self.templates.append(template.pk)
            sold = package_sell(
                actor=self.staff, patient=self.patients[who], template=template, expires_on=None
            )
            for invoice in pass_invoices(sold):
                if invoice.balance_minor:
                    payment_receive(
                        actor=self.staff,
                        patient=self.patients[who],
                        method="cash",
                        amount_minor=invoice.balance_minor,
                        allocations=[(invoice, invoice.balance_minor)],
                    )
            self.passes.append(sold.pk)

    def teardown(self):
        if hasattr(self, "atomic"):
            self.frozen.__exit__(None, None, None)
            self.atomic.__exit__(None, None, None)

    # ------------------------------------------------------------ helpers

    def _snapshot(self) -> tuple:
        """What a refused operation must leave untouched."""
        return (
            tuple(
                Pass.objects.order_by("pk").values_list(
                    "pk",
                    "status",
                    "quantity",
                    "reserved_count",
                    "posted_count",
                    "forfeited_count",
                    "recognised_minor",
                    "expires_on",
                    "value_reserved_minor",
                    "value_posted_minor",
                    "value_forfeited_minor",
                )
            ),
            tuple(PassItem.objects.order_by("pk").values_list("pk", "used_count", "limit")),
            tuple(Redemption.objects.order_by("pk").values_list("pk", "status")),
            tuple(Visit.objects.order_by("pk").values_list("pk", "status", "invoice_id")),
            JournalTransaction.objects.count(),
            Invoice.objects.filter(deleted_at__isnull=True).count(),
        )

    def _try(self, name: str, call):
        """Run `call`; a domain refusal is an allowed outcome but must change nothing."""
        before = self._snapshot()
        try:
            result = call()
        except ALLOWED as exc:
            assert self._snapshot() == before, f"{name} refused ({exc.code}) but changed something"
            OUTCOMES[f"{name}:{exc.code}"] += 1
            return None
        OUTCOMES[f"{name}:ok"] += 1
        return result

    @staticmethod
    def _pick(data, pks: list[int], label: str) -> int:
        return data.draw(st.sampled_from(pks), label=f"{label} id")

    def _visit(self, data, **likely) -> Visit:
        """Any visit, or (mostly) one matching `likely` so the rule usually gets somewhere."""
        pks = self.visits
        if likely and data.draw(st.integers(0, 3), label="targeted") < 3:
            pks = (
                list(
                    Visit.objects.filter(pk__in=self.visits, **likely)
                    .order_by("pk")
                    .values_list("pk", flat=True)
                )
                or pks
            )
        return Visit.objects.select_related("appointment").get(pk=self._pick(data, pks, "visit"))

    def _pass(self, data, **likely) -> Pass | None:
        """Any pass, or (mostly) one matching `likely`."""
        pks = self.passes
        if likely and data.draw(st.integers(0, 3), label="targeted") < 3:
            pks = (
                list(
                    Pass.objects.filter(pk__in=self.passes, **likely)
                    .order_by("pk")
                    .values_list("pk", flat=True)
                )
                or pks
            )
        return Pass.objects.get(pk=self._pick(data, pks, "pass")) if pks else None

    def _next_start(self) -> dt.datetime:
        """A fresh slot for the practitioner: four a day from 4 May, so bookings never overlap."""
        day, n = START + dt.timedelta(days=3 + self.slot // 4), self.slot % 4
        self.slot += 1
        return at(day.isoformat(), SLOTS[n])

    def _book(self, patient, which: int, location, choice):
        """Book `patient` the treatment `which` at the next slot (refusals allowed), or None."""
        return self._try(
            "book",
            lambda: appointment_book(
                actor=self.staff,
                treatment=self.treatments[which],
                practitioner=self.prac,
                location=location,
                start=self._next_start(),
                patients=[patient],
                pass_choice=choice,
            ),
        )

    def _location(self, data) -> Location:
        return self.locations[data.draw(st.sampled_from(["main", "uptown"]), label="location")]

    # ------------------------------------------------------------ selling and paying

    @rule(
        data=st.data(),
        who=WHO,
        quantity=st.integers(1, 5),
        price=st.sampled_from([0, 1, 10000, 33333]),
        items=st.tuples(ITEM, ITEM),
        taxed=st.booleans(),
        transferable=st.booleans(),
        expiry=st.sampled_from(["none", "default", "date"]),
    )
    def sell(self, data, who, quantity, price, items, taxed, transferable, expiry):
        eligible = [
            (self.treatments[i], charge, None, limit)
            for i, (on, charge, limit) in enumerate(items)
            if on
        ]
        # Issue 23: now and then a package that holds a value (a visit's price is 90.00:
        # 50.00 covers one in part).
        face = data.draw(st.sampled_from([None, None, 5000, 9000, 20000]), label="value held")
        rules, place = self._window_rules(data)
        template = package_template(
            self.cat,
            name=f"Pack {next(_names)}",
            price=price,
            quantity=quantity if face is None else None,
            face_value_minor=face,
            items=eligible or [(self.treatments[0], 0, None, None)],
            taxes=[self.cat["tax"]] if taxed else [],
            transferable=transferable,
            expiry_value=data.draw(st.sampled_from([None, 10, 30]), label="expiry days"),
            expiry_unit="days",
            expected_breakage_bp=data.draw(st.sampled_from([0, 1000, 5000]), label="breakage"),
            **rules,
        )
        template.allowed_locations.set([place] if place else [])
        if face is not None and data.draw(st.booleans(), label="item value"):
            EligibleItem.objects.filter(template=template).update(value_minor=7000)
        self.templates.append(template.pk)
        expires_on = {
            "none": None,
            "default": "default",
            "date": START + dt.timedelta(days=data.draw(st.integers(0, 40), label="expires in")),
        }[expiry]
        sold = self._try(
            "sell",
            lambda: package_sell(
                actor=self.staff,
                patient=self.patients[who],
                template=template,
                expires_on=expires_on,
            ),
        )
        if sold is not None:
            self.passes.append(sold.pk)
            OUTCOMES["sell:value package" if face is not None else "sell:count package"] += 1
            assert (_left(sold), sold.reserved_count, sold.posted_count) == (face or quantity, 0, 0)
            if data.draw(st.integers(0, 3), label="paid at once") < 3:
                for invoice in pass_invoices(sold):
                    if invoice.balance_minor:
                        self._try(
                            "pay",
                            lambda i=invoice: payment_receive(
                                actor=self.staff,
                                patient=i.patient,
                                method="cash",
                                amount_minor=i.balance_minor,
                                allocations=[(i, i.balance_minor)],
                            ),
                        )

    def _window_rules(self, data) -> tuple[dict, Location | None]:
        """A template's place, days, hours and cap (issue 23 point 2), mostly none."""
        place = data.draw(PLACES, label="place")
        hours = data.draw(HOURS, label="hours")
        cap = data.draw(CAPS, label="cap")
        rules = {
            "allowed_days": data.draw(DAYS, label="days"),
            "window_start": hours and hours[0],
            "window_end": hours and hours[1],
            "cap_uses": cap and cap[0],
            "cap_period": cap[1] if cap else "week",
        }
        if place != "any" or any(v for k, v in rules.items() if k != "cap_period"):
            OUTCOMES["sell:with a window"] += 1
        return rules, None if place == "any" else self.locations[place]

    @precondition(lambda self: self.passes)
    @rule(data=st.data(), in_full=st.booleans())
    def pay(self, data, in_full):
        sold = self._pass(data)
        owing = [i for i in pass_invoices(sold) if not i.deleted_at and i.balance_minor > 0]
        if not owing:
            return
        invoice = owing[0]
        amount = (
            invoice.balance_minor
            if in_full
            else data.draw(st.integers(1, invoice.balance_minor), label="amount")
        )
        self._try(
            "pay",
            lambda: payment_receive(
                actor=self.staff,
                patient=invoice.patient,
                method="cash",
                amount_minor=amount,
                allocations=[(invoice, amount)],
            ),
        )

    # ------------------------------------------------------------ visits

    @rule(
        data=st.data(),
        who=WHO,
        which=st.sampled_from([0, 1]),
        how=st.sampled_from(["auto", "pass", "none", "later"]),
    )
    def book(self, data, who, which, how):
        """Book (auto-select, a chosen pass or none), and sometimes attach a
        chosen pass afterwards."""
        chosen = (
            self._pass(data, status=Pass.Status.ACTIVE)
            if how in ("pass", "later") and self.passes
            else None
        )
        choice = {"auto": "auto", "pass": chosen, "none": None, "later": None}[how]
        location = self._location(data)
        appointment = self._book(self.patients[who], which, location, choice)
        if appointment is None:
            return
        visit = appointment.visits.get()
        self.visits.append(visit.pk)
        if how == "later":
            self._try(
                "attach", lambda: pass_attach(actor=self.staff, visit=visit, sold_pass=chosen)
            )

    @rule(
        data=st.data(),
        which=st.sampled_from([0, 1]),
        steps=st.lists(
            st.sampled_from(
                [
                    "arrive",
                    "unarrive",
                    "no_show",
                    "no_show_fee",
                    "no_show_undo",
                    "cancel",
                    "remove",
                    "attach",
                ]
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def walk_a_visit(self, data, which, steps):
        """Book the owner of an active pass (auto-select, or now and then that pass, so value
        packages get drawn too) and walk that visit through a few changes."""
        owner = self._pass(data, status=Pass.Status.ACTIVE)
        patient = owner.patient if owner is not None else self.patients[0]
        location = self._location(data)
        choice = (
            owner if owner is not None and data.draw(st.booleans(), label="its own") else "auto"
        )
        appointment = self._book(patient, which, location, choice)
        if appointment is None:
            return
        visit = appointment.visits.get()
        self.visits.append(visit.pk)
        actions = {
            "arrive": lambda: appointment_arrive(actor=self.staff, appointment=appointment),
            "unarrive": lambda: appointment_unarrive(actor=self.staff, appointment=appointment),
            "no_show": lambda: appointment_no_show(
                actor=self.staff, appointment=appointment, use_pass=True
            ),
            "no_show_fee": lambda: appointment_no_show(
                actor=self.staff, appointment=appointment, use_pass=False
            ),
            "no_show_undo": lambda: appointment_no_show_undo(
                actor=self.staff, appointment=appointment
            ),
            "cancel": lambda: appointment_cancel(actor=self.staff, appointment=appointment),
            "remove": lambda: pass_remove(actor=self.staff, visit=visit),
            "attach": lambda: pass_attach(actor=self.staff, visit=visit),
        }
        for step in steps:
            self._try(step, actions[step])
            self.check_everything()

    @rule(data=st.data(), which=st.sampled_from([0, 1]))
    def draw_from_a_value_package(self, data, which):
        """Book a visit on an active package that holds a value and arrive it (issue 23 point 3),
        so draws interleave with everything else."""
        sold = self._pass(data, status=Pass.Status.ACTIVE, face_value_minor__isnull=False)
        if sold is None or sold.face_value_minor is None:
            return
        location = self._location(data)
        appointment = self._book(sold.patient, which, location, sold)
        if appointment is not None:
            self.visits.append(appointment.visits.get().pk)
            self._try(
                "arrive", lambda: appointment_arrive(actor=self.staff, appointment=appointment)
            )

    @precondition(lambda self: self.visits)
    @rule(data=st.data(), chosen=st.booleans())
    def attach(self, data, chosen):
        """Attach to any visit (booked, arrived, cancelled…): auto-select or a chosen pass."""
        visit = self._visit(data, status="booked")
        sold = self._pass(data, status=Pass.Status.ACTIVE) if chosen and self.passes else None
        self._try("attach", lambda: pass_attach(actor=self.staff, visit=visit, sold_pass=sold))

    @precondition(lambda self: self.visits)
    @rule(data=st.data())
    def remove(self, data):
        visit = self._visit(data, status="booked", redemptions__status=Redemption.Status.RESERVED)
        self._try("remove", lambda: pass_remove(actor=self.staff, visit=visit))

    @precondition(lambda self: self.visits)
    @rule(data=st.data())
    def arrive(self, data):
        visit = self._visit(data, status="booked")
        self._try(
            "arrive", lambda: appointment_arrive(actor=self.staff, appointment=visit.appointment)
        )

    @precondition(lambda self: self.visits)
    @rule(data=st.data())
    def unarrive(self, data):
        visit = self._visit(data, status="arrived")
        self._try(
            "unarrive",
            lambda: appointment_unarrive(actor=self.staff, appointment=visit.appointment),
        )

    @precondition(lambda self: self.visits)
    @rule(data=st.data(), use_pass=st.booleans(), charge_fee=st.booleans())
    def no_show(self, data, use_pass, charge_fee):
        """Marks the no-show (using the session or freeing it for the fee);
        marking again changes nothing."""
        visit = self._visit(
            data, status=data.draw(st.sampled_from(["booked", "booked", "no_show"]), label="from")
        )
        self._try(
            "no_show",
            lambda: appointment_no_show(
                actor=self.staff,
                appointment=visit.appointment,
                charge_fee=charge_fee,
                use_pass=use_pass,
            ),
        )

    @precondition(lambda self: self.visits)
    @rule(data=st.data())
    def no_show_undo(self, data):
        visit = self._visit(data, status="no_show")
        self._try(
            "no_show_undo",
            lambda: appointment_no_show_undo(actor=self.staff, appointment=visit.appointment),
        )

    @precondition(lambda self: self.visits)
    @rule(data=st.data())
    def cancel(self, data):
        visit = self._visit(data, status="booked")
        self._try(
            "cancel", lambda: appointment_cancel(actor=self.staff, appointment=visit.appointment)
        )

    # ------------------------------------------------------------ ending and changing

    @precondition(lambda self: self.passes)
    @rule(data=st.data(), how=st.sampled_from(["suggested", "by_rule", "random", "all"]))
    def refund(self, data, how):
        sold = self._pass(data, status=Pass.Status.ACTIVE)
        suggestions = refund_suggestions(sold)
        collected = pass_collected_minor(sold)
        assert suggestions["collected"] == collected
        assert (
            0 <= suggestions["suggested"] <= collected and 0 <= suggestions["by_rule"] <= collected
        )
        amount = {
            "suggested": suggestions["suggested"],
            "by_rule": suggestions["by_rule"],
            "all": collected,
            "random": data.draw(st.integers(0, collected), label="amount"),
        }[how]
        refunded = self._try(
            "refund",
            lambda: pass_refund(
                actor=self.staff,
                sold_pass=sold,
                amount_minor=amount,
                detach_future=True,
                reason="state machine",
            ),
        )
        if refunded is not None:
            assert refunded.status == Pass.Status.REFUNDED and refunded.reserved_count == 0
            assert _left(refunded) == 0

    @precondition(lambda self: self.passes)
    @rule(data=st.data(), days=st.integers(0, 6), set_first=st.booleans())
    def expire(self, data, days, set_first):
        """Maybe move one pass's expiry, then run the daily job on a later day."""
        if set_first:
            sold = self._pass(data, status=Pass.Status.ACTIVE)
            new = START + dt.timedelta(days=data.draw(st.integers(0, 30), label="expires in"))
            self._try(
                "expiry_set",
                lambda: pass_expiry_set(actor=self.staff, sold_pass=sold, expires_on=new),
            )
        self.job_day += dt.timedelta(days=days)
        due = set(
            Pass.objects.filter(
                pk__in=self.passes, status=Pass.Status.ACTIVE, expires_on__lt=self.job_day
            ).values_list("pk", flat=True)
        )
        assert passes_expire(today=self.job_day) == len(due)
        for sold in Pass.objects.filter(pk__in=due):
            assert sold.status == Pass.Status.EXPIRED
            assert _left(sold) == 0, (
                "an expired pass keeps only the uses reserved on or before its expiry"
            )
            assert not sold.redemptions.filter(
                status=Redemption.Status.RESERVED, visit_date__gt=sold.expires_on
            ).exists()
        assert passes_expire(today=self.job_day) == 0  # idempotent

    @precondition(lambda self: self.passes)
    @rule(data=st.data(), to_owner=st.integers(0, 4))
    def transfer(self, data, to_owner):
        """To the other patient (or, now and then, to its own owner: refused)."""
        sold = self._pass(data, status=Pass.Status.ACTIVE, transferable=True)
        owner = self.patients.index(sold.patient)
        to = owner if to_owner == 4 else 1 - owner
        new = self._try(
            "transfer",
            lambda: pass_transfer(actor=self.staff, sold_pass=sold, to_patient=self.patients[to]),
        )
        if new is not None:
            self.passes.append(new.pk)
            sold.refresh_from_db()
            assert sold.status == Pass.Status.TRANSFERRED and _left(sold) == 0
            assert (
                _left(new) == (new.face_value_minor or new.quantity) > 0
                and new.patient_id == self.patients[to].pk
            )

    @precondition(lambda self: self.templates)
    @rule(
        data=st.data(),
        quantity=st.integers(1, 6),
        limits=st.tuples(LIMIT, LIMIT),
        charge=st.sampled_from([0, 900]),
    )
    def update_sold(self, data, quantity, limits, charge):
        """Change a template (quantity, item limits and charges) and apply it to
        its sold packages."""
        template = PassTemplate.objects.get(pk=self._pick(data, self.templates, "template"))
        if (
            template.face_value_minor is None
        ):  # a value package has no quantity (its value does not carry over)
            template.quantity = quantity
            template.save(update_fields=["quantity"])
        for item in EligibleItem.objects.filter(template=template):
            index = 0 if item.treatment_id == self.treatments[0].pk else 1
            item.limit, item.additional_charge_minor = limits[index], charge
            item.save(update_fields=["limit", "additional_charge_minor"])
        self._try("sold_update", lambda: sold_update(actor=self.staff, template=template))

    # ------------------------------------------------------------ invariants

    def check_everything(self):
        self.counters_match_redemptions()
        self.each_visit_uses_at_most_one_session_matching_its_status()
        self.live_uses_keep_their_passes_place_hours_and_cap()
        self.ledger_invariants_hold()

    @invariant()
    def live_uses_keep_their_passes_place_hours_and_cap(self):
        """Issue 23 point 2: every reserved or posted use is at a location its pass allows, inside
        its days and hours (in that location's time zone) and within its cap, counting the others
        of its day or week."""
        if not hasattr(self, "atomic"):
            return
        for use in Redemption.objects.filter(
            sold_pass__in=self.passes, status__in=LIVE
        ).select_related("sold_pass", "visit__appointment__location"):
            appointment = use.visit.appointment
            broken = window_refusal(
                use.sold_pass,
                location=appointment.location,
                start=appointment.start,
                visit_date=use.visit_date,
                visit_pk=use.visit_id,
            )
            assert broken is None, f"use #{use.pk} of pass #{use.sold_pass_id}: {broken}"
            OUTCOMES["window:live use checked"] += 1

    @invariant()
    def counters_match_redemptions(self):
        if not hasattr(self, "atomic"):
            return
        R = Redemption.Status
        passes = Pass.objects.filter(pk__in=self.passes).annotate(
            reserved=Count("redemptions", filter=Q(redemptions__status=R.RESERVED)),
            posted=Count("redemptions", filter=Q(redemptions__status=R.POSTED)),
            held=Sum("redemptions__drawn_minor", filter=Q(redemptions__status=R.RESERVED)),
            drawn=Sum("redemptions__drawn_minor", filter=Q(redemptions__status=R.POSTED)),
        )
        for sold in passes:
            assert (sold.reserved_count, sold.posted_count) == (sold.reserved, sold.posted), (
                f"pass #{sold.pk} counters"
            )
            assert min(sold.reserved_count, sold.posted_count, sold.forfeited_count) >= 0
            if (
                sold.face_value_minor is not None
            ):  # never over-drawn; held and drawn equal the redemptions'
                assert (sold.value_reserved_minor, sold.value_posted_minor) == (
                    sold.held or 0,
                    sold.drawn or 0,
                )
                assert (
                    min(
                        sold.value_reserved_minor,
                        sold.value_posted_minor,
                        sold.value_forfeited_minor,
                    )
                    >= 0
                )
                assert sold.value_left >= 0, f"pass #{sold.pk} over-drawn"
                assert sold.quantity is None and sold.forfeited_count == 0
                self._deferred_follows_the_value_not_drawn(sold)
            else:
                assert (
                    sold.remaining
                    == sold.quantity - sold.reserved - sold.posted - sold.forfeited_count
                )
                assert sold.remaining >= 0, f"pass #{sold.pk} over-redeemed"
            assert 0 <= sold.recognised_minor <= sold.deferred_minor
            if sold.status in (Pass.Status.REFUNDED, Pass.Status.TRANSFERRED, Pass.Status.EXPIRED):
                # Uses of an ended pass are used, forfeited or reserved (kept at expiry, or a visit
                # un-arrived after the pass ended): never unused, or their value would sit in
                # deferred revenue for good. A use freed on an ended pass is forfeited to breakage.
                assert _left(sold) == 0, f"pass #{sold.pk} {sold.status} with {_left(sold)} unused"
                assert sold.breakage_expected_minor == 0, (
                    f"pass #{sold.pk} ended with breakage recognised ahead"
                )
                if not sold.reserved:
                    assert sold.recognised_minor == sold.deferred_minor, (
                        f"pass #{sold.pk} ended with value deferred"
                    )
        items = PassItem.objects.filter(sold_pass__in=self.passes).annotate(
            live=Count("redemptions", filter=Q(redemptions__status__in=LIVE))
        )
        for item in items:
            assert item.used_count == item.live, f"pass item #{item.pk} count"
            assert item.limit is None or item.used_count <= item.limit, (
                f"pass item #{item.pk} over its limit"
            )

    @staticmethod
    def _deferred_follows_the_value_not_drawn(sold: Pass) -> None:
        """A value package's revenue still deferred is its share of the value not drawn yet (held
        or free): deferred × value to post ÷ value held, each draw rounding down by less than a
        cent, and nothing once all is drawn."""
        still, to_post = sold.deferred_minor - sold.recognised_minor, value_to_post(sold)
        if sold.status != Pass.Status.ACTIVE or not sold.face_value_minor:
            return
        ideal = sold.deferred_minor * to_post / sold.face_value_minor
        slack = sold.redemptions.count() + 1
        assert abs(still - ideal) <= slack, (
            f"pass #{sold.pk}: {still} deferred for {to_post} of {sold.face_value_minor} not drawn"
        )
        assert to_post or not still, f"pass #{sold.pk}: all drawn, {still} still deferred"
        if to_post < sold.face_value_minor and sold.deferred_minor > 1:
            OUTCOMES["value:deferred checked after a draw"] += 1

    @invariant()
    def each_visit_uses_at_most_one_session_matching_its_status(self):
        if not hasattr(self, "atomic"):
            return
        live = list(
            Redemption.objects.filter(visit__in=self.visits, status__in=LIVE).values_list(
                "visit_id",
                "status",
                "by_no_show",
                "patient_id",
                "visit__patient_id",
                "visit__status",
            )
        )
        assert len({row[0] for row in live}) == len(live), "a visit holds two live uses"
        for visit, status, by_no_show, patient, visit_patient, visit_status in live:
            assert patient == visit_patient
            expected = {"booked": "reserved", "arrived": "posted", "no_show": "posted"}.get(
                visit_status
            )
            assert status == expected, f"visit #{visit} {visit_status} holds a {status} use"
            assert by_no_show == (visit_status == "no_show")

    @invariant()
    def ledger_invariants_hold(self):
        if not hasattr(self, "atomic"):
            return
        assert {name: problems for name, problems in run_all().items() if problems} == {}


def _run():
    run_state_machine_as_test(
        PassesMachine,
        settings=hsettings(
            max_examples=20,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
                HealthCheck.function_scoped_fixture,
                HealthCheck.filter_too_much,
            ],
        ),
    )


def test_passes_state_machine(db):
    _run()
    assert (
        OUTCOMES["sell:value package"] and OUTCOMES["sell:count package"]
    )  # both kinds were exercised
    assert OUTCOMES["sell:with a window"]  # and passes with a place, hours or cap


# ---------------------------------------------------------------- what the machine found


def _ended_pass_world(front_desk, catalog, quantity=3):
    clinic_set(time_zone="America/Toronto")
    boss = make_staff(AccessLevel.FULL_ACCESS)
    patient = make_patient()
    sold = package_sell(
        actor=boss.user,
        patient=patient,
        expires_on=dt.date(2026, 5, 10),
        template=package_template(catalog, price=30000, quantity=quantity),
    )
    [invoice] = pass_invoices(sold)
    payment_receive(
        actor=boss.user,
        patient=patient,
        method="cash",
        amount_minor=invoice.balance_minor,
        allocations=[(invoice, invoice.balance_minor)],
    )
    appointment = appointment_book(
        actor=boss.user,
        treatment=catalog["treatment"],
        practitioner=practitioner(catalog["location"]),
        location=catalog["location"],
        start=at("2026-05-04", "09:00"),
        patients=[patient],
    )
    assert visit_redemption(appointment.visits.get()).sold_pass == sold
    return boss, sold, appointment


def _stranded(sold) -> tuple:
    sold.refresh_from_db()
    return (
        sold.remaining,
        sold.deferred_minor - sold.recognised_minor,
        balance(accounts.DEFERRED_PACKAGES),
    )


@pytest.mark.django_db
def test_a_visit_un_arrived_after_its_pass_was_refunded_strands_no_value(front_desk, catalog):
    """Refund (step one) after an arrival, then un-arrive and cancel that visit."""
    with clock.frozen(at("2026-05-01", "10:00")):
        boss, sold, appointment = _ended_pass_world(front_desk, catalog)
        appointment_arrive(actor=boss.user, appointment=appointment)
        pass_refund(actor=boss.user, sold_pass=sold, amount_minor=20000, detach_future=True)
        assert _stranded(sold) == (0, 0, 0)
        try:
            appointment_unarrive(
                actor=boss.user, appointment=appointment
            )  # a refusal would be fine too
            appointment_cancel(actor=boss.user, appointment=appointment)
        except CarnetError:
            pass
        assert _stranded(sold) == (0, 0, 0)


@pytest.mark.django_db
def test_a_reservation_kept_at_expiry_then_cancelled_strands_no_value(front_desk, catalog):
    """A visit on or before the expiry keeps its reservation through the expiry job;
    cancelled after it."""
    with clock.frozen(at("2026-05-01", "10:00")):
        boss, sold, appointment = _ended_pass_world(front_desk, catalog)
        passes_expire(today=dt.date(2026, 5, 11))
        assert _stranded(sold) == (0, 10000, 10000)  # the kept reservation's share
        appointment_cancel(actor=boss.user, appointment=appointment)
        assert _stranded(sold) == (0, 0, 0)


@pytest.mark.django_db
def test_more_uses_given_to_an_expired_package_by_update_sold_strand_no_value(front_desk, catalog):
    """One use, reserved for a visit before the expiry; the template goes to 5 uses and sold
    packages are updated after the expiry job; then the visit arrives."""
    with clock.frozen(at("2026-05-01", "10:00")):
        boss, sold, appointment = _ended_pass_world(front_desk, catalog, quantity=1)
        passes_expire(today=dt.date(2026, 5, 11))
        assert _stranded(sold) == (0, 30000, 30000)  # all of it kept for the reserved use
        PassTemplate.objects.filter(pk=sold.template_id).update(quantity=5)
        sold_update(actor=boss.user, template=PassTemplate.objects.get(pk=sold.template_id))
        appointment_arrive(actor=boss.user, appointment=appointment)
        assert _stranded(sold) == (0, 0, 0)
