"""Invoices, payments and their allocations (SPEC 3.1–3.2).

Cached totals (invoice total/applied, payment applied/refunded) are written only by the
billing services, under a lock, in the same transaction as the ledger posting that moves the
money; `ledger_check` recomputes them from the rows and the ledger.
"""

from django.conf import settings
from django.db import models

from carnet.clinic.models import IncomeCategory, Location, Product, Tax, Treatment
from carnet.people.models import Patient, StaffMember


class InvoiceCounter(models.Model):
    """The next invoice number. Incremented inside the invoice's transaction,
    so numbers stay gap-free."""

    next_number = models.PositiveBigIntegerField(default=1)


class Invoice(models.Model):
    number = models.PositiveBigIntegerField(unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="invoices")
    location = models.ForeignKey(Location, null=True, blank=True, on_delete=models.PROTECT)
    staff = models.ForeignKey(StaffMember, null=True, blank=True, on_delete=models.PROTECT)
    invoice_date = models.DateField()
    created_at = models.DateTimeField()
    subtotal_minor = models.BigIntegerField(default=0)  # before tax
    tax_minor = models.BigIntegerField(default=0)
    total_minor = models.BigIntegerField(default=0)
    applied_minor = models.BigIntegerField(default=0)
    # Deleted invoices keep their number (the sequence stays gap-free) and are
    # reversed in the ledger.
    deleted_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-number"]
        indexes = [models.Index(fields=["patient", "deleted_at"])]
        # Issue 17: what payments cover never exceeds the invoice, nor goes below nothing.
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    applied_minor__gte=0, applied_minor__lte=models.F("total_minor")
                ),
                name="invoice_applied_within_total",
            )
        ]

    def __str__(self):
        return f"Invoice #{self.number}"

    @property
    def balance_minor(self) -> int:
        return self.total_minor - self.applied_minor

    @property
    def status(self) -> str:
        if self.deleted_at:
            return "deleted"
        if self.total_minor == 0:
            return "no_charge"
        if self.applied_minor >= self.total_minor:
            return "paid"
        return "partially_paid" if self.applied_minor else "unpaid"


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        TREATMENT = "treatment", "Treatment"
        PRODUCT = "product", "Product"
        FEE = "fee", "Fee"
        MANUAL = "manual", "Other"
        PACKAGE = "package", "Package"  # a pass sale: its net goes to deferred revenue, not revenue
        MEMBERSHIP = "membership", "Membership"
        PASS_CREDIT = "pass_credit", "Pass refund"  # negative: takes back part of a pass sale

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    description = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField(default=1)
    unit_price_minor = models.BigIntegerField()
    adjustment_minor = models.BigIntegerField(
        default=0
    )  # a discount, taken off quantity × unit price
    tax_inclusive = models.BooleanField(default=False)
    income_category = models.ForeignKey(IncomeCategory, on_delete=models.PROTECT)
    staff = models.ForeignKey(StaffMember, null=True, blank=True, on_delete=models.PROTECT)
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT)
    treatment = models.ForeignKey(Treatment, null=True, blank=True, on_delete=models.PROTECT)
    net_minor = models.BigIntegerField()  # revenue part
    tax_minor = models.BigIntegerField()
    total_minor = models.BigIntegerField()

    class Meta:
        ordering = ["id"]


class InvoiceLineTax(models.Model):
    line = models.ForeignKey(InvoiceLine, on_delete=models.CASCADE, related_name="line_taxes")
    tax = models.ForeignKey(Tax, on_delete=models.PROTECT)
    rate = models.DecimalField(max_digits=6, decimal_places=3)  # the rate at the time of sale
    amount_minor = models.BigIntegerField()


class Payment(models.Model):
    class Method(models.TextChoices):
        CASH = "cash", "Cash"
        CHEQUE = "cheque", "Cheque"
        DEBIT = "debit", "Debit"
        CARD_MANUAL = "card_manual", "Card (manual)"
        CARD_GATEWAY = "card_gateway", "Card on file / online"
        ETRANSFER = "etransfer", "E-transfer"
        OTHER = "other", "Other"
        GIFT_CARD = "gift_card", "Gift card"  # only through carnet.giftcards (redeem with a code)

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="payments")
    method = models.CharField(max_length=16, choices=Method.choices)
    amount_minor = models.BigIntegerField()
    received_at = models.DateTimeField()
    reference = models.CharField(max_length=120, blank=True)
    gateway_charge_id = models.CharField(max_length=80, blank=True)
    card = models.ForeignKey("gateway.CardOnFile", null=True, blank=True, on_delete=models.PROTECT)
    applied_minor = models.BigIntegerField(default=0)
    refunded_minor = models.BigIntegerField(default=0)
    # Spent loading gift cards: the purchaser's money moved from their credit to
    # the gift-card liability.
    gift_card_minor = models.BigIntegerField(default=0)
    # Held for card refunds sent to the gateway whose outcome is not recorded yet
    # (billing.card_attempts): still the patient's credit in the ledger,
    # but no longer free to apply or refund again.
    held_minor = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="payment_positive"),
            models.CheckConstraint(
                condition=models.Q(
                    applied_minor__gte=0, refunded_minor__gte=0, gift_card_minor__gte=0
                )
                & models.Q(
                    amount_minor__gte=models.F("applied_minor")
                    + models.F("refunded_minor")
                    + models.F("gift_card_minor")
                ),
                name="payment_never_overspent",
            ),
            models.CheckConstraint(
                condition=models.Q(held_minor__gte=0)
                & models.Q(
                    amount_minor__gte=models.F("applied_minor")
                    + models.F("refunded_minor")
                    + models.F("gift_card_minor")
                    + models.F("held_minor")
                ),
                name="payment_holds_within_amount",
            ),
            # One gateway charge is one payment, however often its outcome is recorded.
            models.UniqueConstraint(
                fields=["gateway_charge_id"],
                condition=~models.Q(gateway_charge_id=""),
                name="payment_gateway_charge_once",
            ),
        ]

    def __str__(self):
        return f"Payment #{self.pk} ({self.get_method_display()})"

    @property
    def unapplied_minor(self) -> int:
        return (
            self.amount_minor
            - self.applied_minor
            - self.refunded_minor
            - self.gift_card_minor
            - self.held_minor
        )


class Allocation(models.Model):
    """Part of a payment applied to an invoice. Unapplying marks it, so history stays."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    amount_minor = models.BigIntegerField()
    applied_at = models.DateTimeField()
    unapplied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["applied_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0), name="allocation_positive"
            )
        ]


class Refund(models.Model):
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.BigIntegerField()
    method = models.CharField(max_length=16, choices=Payment.Method.choices)
    refunded_at = models.DateTimeField()
    gateway_refund_id = models.CharField(max_length=80, blank=True)
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="refund_positive"),
            models.UniqueConstraint(
                fields=["gateway_refund_id"],
                condition=~models.Q(gateway_refund_id=""),
                name="refund_gateway_refund_once",
            ),
        ]


class CardAttempt(models.Model):
    """One charge or refund sent to the card gateway, recorded (and committed) before the call.

    pending → succeeded | failed | unknown. `succeeded` is written in the same transaction as the
    payment or refund row and its ledger posting, so "succeeded" always means "recorded". An
    attempt left pending or unknown (a crash, a lost answer) is resolved by payments_reconcile,
    which asks the gateway by `gateway_key` (billing.card_attempts).
    """

    class Kind(models.TextChoices):
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown (no answer)"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    purpose = models.CharField(max_length=40)  # what it is for: see card_attempts.PURPOSES
    # The request that asked for it (a form key or an API Idempotency-Key, scoped to who asked):
    # the same request again finds this attempt instead of making a second one.
    request_key = models.CharField(max_length=200, unique=True)
    gateway_key = models.CharField(max_length=200, unique=True)  # the gateway's idempotency key
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="card_attempts")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    card = models.ForeignKey("gateway.CardOnFile", null=True, blank=True, on_delete=models.PROTECT)
    token = models.CharField(
        max_length=255, blank=True
    )  # a one-off card's token; cleared once resolved
    card_label = models.CharField(max_length=60, blank=True)
    # A charge: the payment it became. A refund: the payment refunded, and the refund it became.
    payment = models.ForeignKey(
        Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="card_attempts"
    )
    refund = models.OneToOneField(
        Refund, null=True, blank=True, on_delete=models.PROTECT, related_name="attempt"
    )
    gateway_id = models.CharField(max_length=80, blank=True)
    context = models.JSONField(
        default=dict, blank=True
    )  # the purpose's own details (a template, a gift card…)
    message = models.CharField(
        max_length=300, blank=True
    )  # the decline, or what happened to the money
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(
        null=True, blank=True
    )  # resolved by payments_reconcile, not inline

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0), name="card_attempt_positive"
            ),
            models.UniqueConstraint(
                fields=["kind", "gateway_id"],
                condition=~models.Q(gateway_id=""),
                name="card_attempt_gateway_id_once",
            ),
        ]

    def __str__(self):
        return f"Card {self.kind} attempt #{self.pk} ({self.status})"


class CardAttemptInvoice(models.Model):
    """The part of a pending card charge meant for an invoice: reserved, so that parallel card
    payments on one invoice never charge more than it owes."""

    attempt = models.ForeignKey(CardAttempt, on_delete=models.CASCADE, related_name="invoices")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="card_reservations")
    amount_minor = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0), name="card_attempt_invoice_positive"
            )
        ]


class GatewayEvent(models.Model):
    """A webhook event from the card processor (Stripe evt_…), kept so each is handled once."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=80)
    received_at = models.DateTimeField()
    outcome = models.CharField(
        max_length=300, blank=True
    )  # what Carnet did with it, for whoever looks

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{self.type} {self.event_id}"


class CardDispute(models.Model):
    """A card payment the patient's bank disputes (a chargeback): shown on the payment, in Card
    payments to review and in the activity log. The money is settled at the processor; staff answer
    there with evidence, and record a refund here if they lose."""

    dispute_id = models.CharField(max_length=255, unique=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    amount_minor = models.BigIntegerField()
    reason = models.CharField(max_length=60, blank=True)
    status = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"Dispute {self.dispute_id} on payment #{self.payment_id}"

    @property
    def reason_label(self) -> str:
        return self.reason.replace("_", " ") or "no reason given"

    @property
    def status_label(self) -> str:
        return self.status.replace("_", " ") or "—"

    @property
    def status_sentence(self) -> str:
        """What the dispute's state means for the clinic, as staff see it on the payment."""
        if self.status == "won":
            return "Won: the clinic keeps the money."
        if self.status == "lost":
            return (
                "Lost: the money went back to the card holder (recorded as a refund of this "
                "payment)."
            )
        if self.status in ("warning_closed", "prevented", "charge_refunded"):
            return f"Closed ({self.status_label}) without taking money back."
        return f"Open ({self.status_label}): answer it in Stripe."
