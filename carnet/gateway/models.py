"""Cards on file, and the built-in test gateway's own records.

CardOnFile holds only what SPEC 3.4 allows: the gateway's token, brand, last four digits and
expiry. The card number and CVC are never stored anywhere in Carnet's database.
"""

from django.db import models
from django.db.models.functions import Length
from django.db.models.lookups import Exact

from carnet.people.models import Patient

BRAND_LABELS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "amex": "American Express",
    "discover": "Discover",
    "unknown": "Card",
}


class CardOnFile(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="cards")
    token = models.CharField(
        max_length=255
    )  # the gateway's reference; useless without our gateway account
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    holder = models.CharField("name on card", max_length=120)
    created_at = models.DateTimeField()
    removed_at = models.DateTimeField(
        null=True, blank=True
    )  # kept, not deleted: payments refer to it

    class Meta:
        verbose_name = "card on file"
        verbose_name_plural = "cards on file"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(exp_month__gte=1, exp_month__lte=12), name="card_exp_month_1_12"
            ),
            models.CheckConstraint(
                condition=Exact(Length("last4"), 4), name="card_last4_four_characters"
            ),
            # One active row per gateway card: the page's return and Stripe's webhook may both
            # keep the same card at once (gateway.services.card_on_file_new).
            models.UniqueConstraint(
                fields=["token"],
                condition=models.Q(removed_at__isnull=True),
                name="card_token_once_on_file",
            ),
        ]

    def __str__(self):
        return f"{self.brand_label} •••• {self.last4} (exp. {self.exp_month:02d}/{self.exp_year})"

    @property
    def brand_label(self) -> str:
        return BRAND_LABELS.get(self.brand, self.brand.title())

    @property
    def is_active(self) -> bool:
        return self.removed_at is None


class GatewayCustomer(models.Model):
    """The card processor's customer for a patient (Stripe: cus_…), made once,
    when a first card is saved."""

    patient = models.OneToOneField(
        Patient, on_delete=models.CASCADE, related_name="gateway_customer"
    )
    gateway = models.CharField(
        max_length=20
    )  # the gateway's name ("stripe"): ids mean nothing to another
    customer_id = models.CharField(max_length=255)
    created_at = models.DateTimeField()

    def __str__(self):
        return f"{self.gateway} customer {self.customer_id}"


# ---------------------------------------------------------------- test gateway
# These stand in for a remote gateway's own database, so the test gateway's state is shared by
# every process using the same database (web, worker, tests). Written only by testing.py.


class TestGatewayCard(models.Model):
    """A stored test card: its outcome, never its number."""

    __test__ = False  # not a pytest test class despite the name

    token = models.CharField(max_length=64, unique=True)
    behaviour = models.CharField(max_length=20)  # see testing.TEST_CARDS
    brand = models.CharField(max_length=20)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField()

    def __str__(self):
        return f"{self.token} ({self.behaviour})"


class TestGatewayCharge(models.Model):
    """One charge that really happened, found again by its idempotency key."""

    __test__ = False

    key = models.CharField(max_length=255, unique=True)
    charge_id = models.CharField(max_length=64, unique=True)
    token = models.CharField(max_length=64)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    refunded_minor = models.BigIntegerField(default=0)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0), name="test_charge_amount_positive"
            ),
            # The database itself refuses refunds beyond the charge, whatever the code does.
            models.CheckConstraint(
                condition=models.Q(
                    refunded_minor__gte=0, refunded_minor__lte=models.F("amount_minor")
                ),
                name="test_charge_refunds_within_amount",
            ),
        ]

    def __str__(self):
        return f"{self.charge_id} {self.amount_minor} {self.currency}"


class TestGatewayRefund(models.Model):
    """One refund, found again by its idempotency key."""

    __test__ = False

    key = models.CharField(max_length=255, unique=True)
    refund_id = models.CharField(max_length=64, unique=True)
    charge = models.ForeignKey(TestGatewayCharge, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.BigIntegerField()
    created_at = models.DateTimeField()

    def __str__(self):
        return f"{self.refund_id} {self.amount_minor}"
