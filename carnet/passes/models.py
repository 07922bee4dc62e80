"""Passes (SPEC 5, 6, 9): packages now, memberships next. A template is what the clinic sells;
a Pass is one sold copy that keeps its own terms; a Redemption is one use of it by a visit.

Counters on Pass (reserved, posted, forfeited) and PassItem (used) are written only by the
passes services, under the pass's row lock and by conditional UPDATEs, and check constraints
make over-redemption impossible even if a service were wrong.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from carnet.billing.models import Invoice
from carnet.clinic.models import IncomeCategory, Location, Tax, Treatment
from carnet.people.models import Patient, StaffMember


class Kind(models.TextChoices):
    PACKAGE = "package", "Package"
    MEMBERSHIP = "membership", "Membership"


class ExpiryUnit(models.TextChoices):
    DAYS = "days", "days"
    WEEKS = "weeks", "weeks"
    MONTHS = "months", "months"
    YEARS = "years", "years"


class Cycle(models.TextChoices):
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"
    YEARLY = "yearly", "Yearly"


class FreezeFee(models.TextChoices):
    NONE = "none", "No fee"
    ONCE = "once", "Once per pause"
    PER_CYCLE = "per_cycle", "Per frozen cycle"


# A membership template's own terms (SPEC 6.1): checked at set-up (setup.checks), copied onto
# each membership sold (passes.terms).
MEMBERSHIP_TERMS = (
    "cycle",
    "term_cycles",
    "cancellable_after_cycles",
    "uses_per_cycle",
    "rollover",
    "rollover_cap",
    "pause_allowed",
    "pause_max_cycles",
    "freeze_fee_kind",
    "freeze_fee_minor",
    "self_cancel",
)


class PassTemplate(models.Model):
    """Settings → Packages & Memberships: what the clinic sells (SPEC 5.1, 9.3–9.6)."""

    Kind = Kind
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.PACKAGE)
    name = models.CharField(max_length=160)
    price_minor = models.BigIntegerField(default=0)
    tax_inclusive = models.BooleanField(default=False)
    taxes = models.ManyToManyField(Tax, blank=True)
    income_category = models.ForeignKey(IncomeCategory, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField(
        null=True, blank=True
    )  # uses; None = unlimited (memberships)
    # A value package (issue 23, "holds a value"): the amount of eligible treatments it covers,
    # drawn down by each covered visit's value; None = it counts uses (quantity).
    face_value_minor = models.BigIntegerField(null=True, blank=True)
    # Default expiry from the purchase date; no value = never expires.
    expiry_value = models.PositiveIntegerField(null=True, blank=True)
    expiry_unit = models.CharField(
        max_length=8, choices=ExpiryUnit.choices, default=ExpiryUnit.MONTHS
    )
    auto_select = models.BooleanField(default=True)
    redeem_online = models.BooleanField(default=False)
    family_sharing = models.BooleanField(default=False)
    transferable = models.BooleanField(default=False)
    instalments = models.PositiveIntegerField(default=1)  # payment plan: 1 = paid in full
    sold_online = models.BooleanField(default=False)
    # Intro offers (issue 23): refused to a patient who already came or bought,
    # or who had this one before.
    new_patients_only = models.BooleanField(default=False)
    once_per_patient = models.BooleanField(default=False)
    # When and where it applies (issue 23, passes/redeeming/windows.py): no location = all; days
    # "0".."6" from Monday, empty = every day; a window in the location's time zone (end before
    # start: crosses midnight); at most cap_uses per day or week, none = no cap.
    allowed_locations = models.ManyToManyField(Location, blank=True, related_name="+")
    allowed_days = models.CharField(max_length=7, blank=True, default="")
    window_start = models.TimeField(null=True, blank=True)
    window_end = models.TimeField(null=True, blank=True)
    cap_uses = models.PositiveIntegerField(null=True, blank=True)
    cap_period = models.CharField(
        max_length=4, choices=[("day", "per day"), ("week", "per week")], default="week"
    )
    # Breakage expected on a package, in basis points (1000 = 10 %): recognised in proportion to
    # redemptions when the clinic's breakage method says so (issue 23, passes/redeeming/breakage.py)
    expected_breakage_bp = models.PositiveIntegerField(default=0)
    archived = models.BooleanField(default=False)
    # Memberships (SPEC 6.1, 9.7): the price is per cycle; uses_per_cycle None = unlimited.
    cycle = models.CharField(max_length=8, choices=Cycle.choices, default=Cycle.MONTHLY)
    term_cycles = models.PositiveIntegerField(null=True, blank=True)  # None = open-ended
    cancellable_after_cycles = models.PositiveIntegerField(default=0)
    uses_per_cycle = models.PositiveIntegerField(null=True, blank=True)
    rollover = models.BooleanField(default=False)
    rollover_cap = models.PositiveIntegerField(null=True, blank=True)  # None = no cap
    pause_allowed = models.BooleanField(default=False)
    pause_max_cycles = models.PositiveIntegerField(default=0)  # per pause: the longest freeze
    # A fee for a freeze (issue 22 point 7): none, once per pause,
    # or per frozen cycle; billed like a cycle.
    freeze_fee_kind = models.CharField(
        max_length=10, choices=FreezeFee.choices, default=FreezeFee.NONE
    )
    freeze_fee_minor = models.BigIntegerField(default=0)
    self_cancel = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["archived", "name", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(price_minor__gte=0), name="pass_template_price_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(instalments__gte=1), name="pass_template_instalments_positive"
            ),
        ]

    def __str__(self):
        return self.name


class EligibleItem(models.Model):
    """A treatment or class a template covers, with what the patient still pays per visit."""

    template = models.ForeignKey(PassTemplate, on_delete=models.CASCADE, related_name="items")
    treatment = models.ForeignKey(Treatment, on_delete=models.PROTECT, related_name="+")
    additional_charge_minor = models.BigIntegerField(default=0)
    # The visit value for commission; None = the treatment's price.
    compensation_minor = models.BigIntegerField(null=True, blank=True)
    limit = models.PositiveIntegerField(
        null=True, blank=True
    )  # SPEC 9.3: at most this many of the quantity
    # A value package: what one visit draws from the balance; None = the treatment's price.
    value_minor = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "treatment"], name="eligible_item_once_per_template"
            ),
            models.CheckConstraint(
                condition=Q(additional_charge_minor__gte=0),
                name="eligible_item_charge_not_negative",
            ),
        ]


class Pass(models.Model):
    """A sold package (or membership) with its own copy of the template's terms."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REFUNDED = "refunded", "Refunded"
        TRANSFERRED = "transferred", "Transferred"
        CANCELLED = "cancelled", "Cancelled"
        DELETED = "deleted", "Deleted"

    class PaymentMode(models.TextChoices):
        MANUAL = "manual", "Manual"
        AUTOMATIC = "automatic", "Automatic (card on file)"

    Kind = Kind
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.PACKAGE)
    template = models.ForeignKey(PassTemplate, on_delete=models.PROTECT, related_name="sold")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="passes")
    name = models.CharField(max_length=160)
    income_category = models.ForeignKey(IncomeCategory, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField(null=True, blank=True)
    price_minor = models.BigIntegerField()  # what the patient pays in all, tax included
    net_minor = (
        models.BigIntegerField()
    )  # its value before tax: deferred, then recognised session by session
    auto_select = models.BooleanField(default=True)
    redeem_online = models.BooleanField(default=False)
    family_sharing = models.BooleanField(default=False)
    transferable = models.BooleanField(default=False)
    instalments = models.PositiveIntegerField(default=1)
    # The taxes at sale (SPEC 5.2): later instalments and cycles are taxed as sold,
    # whatever the template says now.
    taxes = models.ManyToManyField(Tax, blank=True, related_name="+")
    tax_inclusive = models.BooleanField(default=False)
    purchase_date = models.DateField()
    purchased_at = models.DateTimeField()
    expires_on = models.DateField(null=True, blank=True)  # covers visits on or before this date
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    ended_at = models.DateTimeField(null=True, blank=True)
    expiry_reminded_on = models.DateField(
        null=True, blank=True
    )  # the expiry date a reminder was sent for
    # The clinic's expiry terms at sale (issue 23, expiry_rules.expiry_terms): a later change of the
    # clinic's preset or rule never alters them. Blank rule:
    # sold before terms were kept (the clinic's rule).
    expiry_preset = models.CharField(max_length=12, blank=True, default="")
    expiry_rule = models.CharField(max_length=10, blank=True, default="")
    expiry_minimum_days = models.PositiveIntegerField(default=0)
    expiry_disclosure = models.CharField(max_length=300, blank=True, default="")
    # Proportional breakage (issue 23, passes/redeeming/breakage.py): the rate fixed at sale (0 = at
    # expiry only) and the breakage recognised ahead so far (the pass's part of the
    # expected-breakage contra account).
    breakage_rate_bp = models.PositiveIntegerField(default=0)
    breakage_expected_minor = models.BigIntegerField(default=0)
    # Where, when and how often it may be used, copied from the template at sale
    # (passes/redeeming/windows.py).
    window_terms = models.JSONField(default=dict, blank=True)
    sold_by = models.ForeignKey(
        StaffMember,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The staff member paid commission on the sale itself (upfront compensation).",
    )
    sold_online = models.BooleanField(default=False)
    card = models.ForeignKey(
        "gateway.CardOnFile", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    transferred_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Memberships: their own copy of the terms, the schedule, and how cycles are paid.
    cycle = models.CharField(max_length=8, choices=Cycle.choices, blank=True)
    term_cycles = models.PositiveIntegerField(null=True, blank=True)
    cancellable_after_cycles = models.PositiveIntegerField(default=0)
    uses_per_cycle = models.PositiveIntegerField(null=True, blank=True)
    rollover = models.BooleanField(default=False)
    rollover_cap = models.PositiveIntegerField(null=True, blank=True)
    pause_allowed = models.BooleanField(default=False)
    pause_max_cycles = models.PositiveIntegerField(default=0)
    freeze_fee_kind = models.CharField(
        max_length=10, choices=FreezeFee.choices, default=FreezeFee.NONE
    )
    freeze_fee_minor = models.BigIntegerField(default=0)
    self_cancel = models.BooleanField(default=False)
    cycle_price_minor = models.BigIntegerField(
        default=0
    )  # the line price of the next cycles issued
    start_date = models.DateField(null=True, blank=True)
    payment_mode = models.CharField(
        max_length=10, choices=PaymentMode.choices, default=PaymentMode.MANUAL
    )
    location = models.ForeignKey(
        "clinic.Location", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ends_after = models.DateField(
        null=True, blank=True
    )  # cancelled at the end of a cycle: the last day covered
    # A plan change (passes/memberships/plan_change.py) may move the cycle grid: cycle `index`
    # (0-based) starts at anchor_date + (index - anchor_index) cycles; no anchor_date = the start
    # date.
    anchor_date = models.DateField(null=True, blank=True)
    anchor_index = models.PositiveIntegerField(default=0)
    # Uses: reserved (attached to a booking), posted (arrived), forfeited (ended unused:
    # expiry, refund, transfer).
    reserved_count = models.PositiveIntegerField(default=0)
    posted_count = models.PositiveIntegerField(default=0)
    forfeited_count = models.PositiveIntegerField(default=0)
    # A value package (issue 23): the amount it covers (None: it counts uses), and that amount held
    # by bookings (reserved), drawn by arrived visits (posted) and ended unused (forfeited).
    face_value_minor = models.BigIntegerField(null=True, blank=True)
    value_reserved_minor = models.BigIntegerField(
        default=0, db_default=0
    )  # raw inserts (benchmarks) leave it out
    value_posted_minor = models.BigIntegerField(
        default=0, db_default=0
    )  # raw inserts (benchmarks) leave it out
    value_forfeited_minor = models.BigIntegerField(
        default=0, db_default=0
    )  # raw inserts (benchmarks) leave it out
    # Uses taken in the clinic's previous system before the switch (an imported pass, SPEC 15),
    # and for a value package the value drawn there.
    used_before_import = models.PositiveIntegerField(default=0)
    value_before_import_minor = models.BigIntegerField(
        default=0, db_default=0
    )  # raw inserts (benchmarks) leave it out
    # Ledger tie-out: value put into deferred revenue for this pass, and value taken out of it.
    deferred_minor = models.BigIntegerField(default=0)
    recognised_minor = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Memberships (issue 22, passes/memberships/overdue.py): the due date of the oldest cycle still
    # owed, kept by the daily job and by payments, so eligibility reads it with the pass (no query
    # for the common case).
    past_due_since = models.DateField(null=True, blank=True)
    past_due_override_until = models.DateField(
        null=True, blank=True
    )  # staff let it cover bookings until then

    class Meta:
        ordering = ["-purchased_at", "-pk"]
        indexes = [
            models.Index(fields=["patient", "status"]),
            # The billing job's walk: active memberships only, however many packages there are.
            models.Index(
                fields=["start_date"],
                name="pass_active_membership_idx",
                condition=models.Q(kind="membership", status="active"),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__isnull=True)
                | Q(
                    quantity__gte=F("reserved_count")
                    + F("posted_count")
                    + F("forfeited_count")
                    + F("used_before_import")
                ),
                name="pass_never_over_redeemed",
            ),
            models.CheckConstraint(
                condition=Q(price_minor__gte=0, net_minor__gte=0), name="pass_price_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(
                    value_reserved_minor__gte=0,
                    value_posted_minor__gte=0,
                    value_forfeited_minor__gte=0,
                    value_before_import_minor__gte=0,
                )
                & (
                    Q(face_value_minor__isnull=True)
                    | Q(
                        face_value_minor__gte=F("value_reserved_minor")
                        + F("value_posted_minor")
                        + F("value_forfeited_minor")
                        + F("value_before_import_minor")
                    )
                ),
                name="pass_value_never_over_drawn",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def used_count(self) -> int:
        return self.reserved_count + self.posted_count

    @property
    def remaining(self) -> int | None:
        if self.quantity is None:
            return None
        return (
            self.quantity
            - self.reserved_count
            - self.posted_count
            - self.forfeited_count
            - self.used_before_import
        )

    @property
    def holds_value(self) -> bool:
        return self.face_value_minor is not None

    @property
    def value_left(self) -> int | None:
        """A value package's balance still free to book (None for a count package)."""
        if self.face_value_minor is None:
            return None
        return (
            self.face_value_minor
            - self.value_reserved_minor
            - self.value_posted_minor
            - self.value_forfeited_minor
            - self.value_before_import_minor
        )


def value_left_expression():
    """A value package's balance still free to book, in SQL (Pass.value_left's rule); NULL for
    other passes."""
    return (
        F("face_value_minor")
        - F("value_reserved_minor")
        - F("value_posted_minor")
        - F("value_forfeited_minor")
        - F("value_before_import_minor")
    )


class PassItem(models.Model):
    """A sold pass's copy of one eligible item, with its own per-item use count."""

    sold_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="items")
    treatment = models.ForeignKey(Treatment, on_delete=models.PROTECT, related_name="+")
    additional_charge_minor = models.BigIntegerField(default=0)
    compensation_minor = models.BigIntegerField(null=True, blank=True)
    limit = models.PositiveIntegerField(null=True, blank=True)
    used_count = models.PositiveIntegerField(default=0)  # reserved + posted through this item
    value_minor = models.BigIntegerField(
        null=True, blank=True
    )  # a value package: what a visit draws (None: its price)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["sold_pass", "treatment"], name="pass_item_once_per_pass"
            ),
            models.CheckConstraint(
                condition=Q(limit__isnull=True) | Q(used_count__lte=F("limit")),
                name="pass_item_within_limit",
            ),
        ]


class PassShare(models.Model):
    """SPEC 9.4: a family member the owner allows to redeem this pass."""

    sold_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="shares")
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sold_pass", "patient"], name="pass_shared_once")
        ]


class PassInvoice(models.Model):
    """A pass invoice: an invoice a pass issues on its schedule, and the part of the price it bills
    (README glossary). A membership's is a **cycle** (its period, uses and recognised value below);
    a package's is an **instalment** of its payment plan (1 of 1 when paid in full).

    The daily job issues each due pass invoice once: the invoice is set in the same transaction that
    creates it, under this row's lock, and a card charge uses `charge_key` at the gateway (its
    "pass-instalment-" prefix and the constraint's name predate the word and stay: they are
    data)."""

    sold_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="pass_invoices")
    seq = models.PositiveIntegerField()
    due_on = models.DateField()
    unit_price_minor = models.BigIntegerField(
        default=0
    )  # the invoice line's price (before exclusive tax)
    amount_minor = models.BigIntegerField()  # gross, tax included
    net_minor = models.BigIntegerField()
    invoice = models.OneToOneField(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="pass_invoice"
    )
    charge_attempts = models.PositiveIntegerField(default=0)
    next_attempt_on = models.DateField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    # Membership cycles: the days covered [period_start, period_end), the uses they allow (None =
    # unlimited; rollover adds last cycle's unused ones), the uses taken, and the value recognised
    # so far, day by day. A paused cycle is skipped: never invoiced.
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    uses_allowed = models.PositiveIntegerField(null=True, blank=True)
    used_count = models.PositiveIntegerField(default=0)
    recognised_minor = models.BigIntegerField(default=0)
    skipped = models.BooleanField(default=False)
    # Dunning (issue 22, passes/dunning.py): the last decline's kind ("hard" / "soft"),
    # a hard decline's request for a new card, and a cycle written off after its last retry (no
    # uses, no back-charge).
    decline_kind = models.CharField(max_length=4, blank=True, default="")
    needs_new_card = models.BooleanField(default=False)
    written_off_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["seq"]
        indexes = [
            models.Index(
                fields=["due_on"], condition=Q(invoice__isnull=True), name="pass_invoice_due_idx"
            )
        ]
        constraints = [
            models.UniqueConstraint(fields=["sold_pass", "seq"], name="pass_instalment_once"),
            models.CheckConstraint(
                condition=Q(uses_allowed__isnull=True) | Q(used_count__lte=F("uses_allowed")),
                name="cycle_within_its_uses",
            ),
        ]

    @property
    def charge_key(self) -> str:
        return f"pass-instalment-{self.pk}"


class PassPause(models.Model):
    """A membership paused from one cycle for some cycles (SPEC 9.7): those cycles are skipped."""

    sold_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="pauses")
    from_seq = models.PositiveIntegerField()
    cycles = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    resumed_at = models.DateTimeField(null=True, blank=True)
    # The freeze fee as the patient or staff saw it when pausing: each frozen cycle's row is billed
    # it (once: the first only) as a line of its own.
    fee_kind = models.CharField(max_length=10, choices=FreezeFee.choices, default=FreezeFee.NONE)
    fee_minor = models.BigIntegerField(default=0)

    def fee_for(self, seq: int) -> int:
        if (
            self.fee_kind == FreezeFee.PER_CYCLE
            or self.fee_kind == FreezeFee.ONCE
            and seq == self.from_seq
        ):
            return self.fee_minor
        return 0


class PassPlanChange(models.Model):
    """A membership moved to another template (issue 22 point 6, passes/memberships/plan_change.py):
    at once or from the next cycle, with what the preview showed and what was posted."""

    class When(models.TextChoices):
        NOW = "now", "At once"
        NEXT_CYCLE = "next_cycle", "At the next cycle"

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        APPLIED = "applied", "Applied"
        CANCELLED = "cancelled", "Cancelled"

    sold_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="plan_changes")
    from_template = models.ForeignKey(PassTemplate, on_delete=models.PROTECT, related_name="+")
    to_template = models.ForeignKey(PassTemplate, on_delete=models.PROTECT, related_name="+")
    from_name = models.CharField(max_length=160)
    to_name = models.CharField(max_length=160)
    when = models.CharField(max_length=10, choices=When.choices)
    effective_on = models.DateField()
    proration = models.CharField(max_length=10)  # the clinic's setting when it was made
    credit_minor = models.BigIntegerField(
        default=0
    )  # taken off the current cycle's invoice, tax included
    charge_minor = models.BigIntegerField(
        default=0
    )  # the new plan's invoice for the rest of its cycle
    credit_applied_minor = models.BigIntegerField(
        default=0
    )  # of the freed payment, applied to that invoice
    uses = models.CharField(max_length=10)  # "carried" or "reset"
    # The new plan's cycle invoiced and charged at once (a change "now" that costs more).
    cycle = models.ForeignKey(
        PassInvoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SCHEDULED)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["sold_pass"],
                condition=Q(status="scheduled"),
                name="one_scheduled_plan_change",
            )
        ]


class Redemption(models.Model):
    """One use of a pass by a visit: reserved on booking, posted at arrival, voided on removal
    or cancellation. At most one live (reserved or posted) redemption per visit."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        POSTED = "posted", "Used"
        VOIDED = "voided", "Voided"

    sold_pass = models.ForeignKey(Pass, on_delete=models.PROTECT, related_name="redemptions")
    item = models.ForeignKey(PassItem, on_delete=models.PROTECT, related_name="redemptions")
    # The membership cycle the use counts in (a voided use may outlive its cycle's row).
    cycle = models.ForeignKey(
        PassInvoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="redemptions"
    )
    visit = models.ForeignKey(
        "scheduling.Visit", on_delete=models.PROTECT, related_name="redemptions"
    )
    patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, related_name="+"
    )  # who came (owner or family)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RESERVED)
    visit_date = (
        models.DateField()
    )  # the appointment's date in its location's zone (expiry is checked on it)
    reserved_at = models.DateTimeField()
    posted_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    # Set when posted: the session value recognised, and what the compensation
    # report needs (SPEC 5.6).
    value_minor = models.BigIntegerField(default=0)
    breakage_minor = models.BigIntegerField(
        default=0
    )  # expected breakage posted with it (may be negative)
    additional_charge_minor = models.BigIntegerField(default=0)
    practitioner = models.ForeignKey(
        StaffMember, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    compensation_minor = models.BigIntegerField(default=0)
    compensated_upfront = models.BooleanField(default=False)
    remaining_after = models.PositiveIntegerField(
        null=True, blank=True
    )  # for the receipt (SPEC 9.2)
    # A value package: the amount of its balance this visit holds (reserved) or drew (posted), the
    # visit's full value (drawn < full: partly covered, the patient owes the rest), and the balance
    # left after it (for the receipt).
    drawn_minor = models.BigIntegerField(
        default=0, db_default=0
    )  # raw inserts (benchmarks) leave it out
    full_value_minor = models.BigIntegerField(
        default=0, db_default=0
    )  # raw inserts (benchmarks) leave it out
    value_left_after = models.BigIntegerField(null=True, blank=True)
    by_no_show = models.BooleanField(default=False)

    class Meta:
        ordering = ["reserved_at", "pk"]
        indexes = [
            models.Index(fields=["status", "posted_at"]),
            models.Index(fields=["sold_pass", "status"]),
            # the pass usage report: posted uses by service date (SPEC 10, 13)
            models.Index(fields=["status", "visit_date"], name="redemption_status_visit_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["visit"],
                condition=Q(status__in=["reserved", "posted"]),
                name="one_live_redemption_per_visit",
            ),
        ]


class CardUpdateRequest(models.Model):
    """A request to the patient for a new autopay card (issue 22 point 3): made by staff or by a
    hard decline, emailed as a signed link (passes/memberships/card_requests.py). Open until a card
    is added through the link (`completed_at`) or a newer request replaces it (`superseded_at`); at
    most one is open per membership. `nonce` is in the link,
    so a replaced request's link stops working."""

    class Reason(models.TextChoices):
        STAFF = "staff", "Requested by staff"
        HARD_DECLINE = "hard_decline", "The card was declined for good"

    sold_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="card_requests")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices, default=Reason.STAFF)
    note = models.CharField(max_length=200, blank=True)  # e.g. the decline's sentence
    nonce = models.CharField(max_length=32)
    emailed_to = models.CharField(
        max_length=254, blank=True
    )  # empty: the patient has no email address
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    completed_key = models.CharField(
        max_length=80, blank=True
    )  # the form key of the POST that added the card
    card = models.ForeignKey(
        "gateway.CardOnFile", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    superseded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sold_pass"],
                condition=Q(completed_at__isnull=True, superseded_at__isnull=True),
                name="one_open_card_request_per_pass",
            )
        ]
