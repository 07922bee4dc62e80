"""Gift cards (SPEC 7): a shared balance any patient can spend, held as the gift-card liability.

`balance_minor` is written only by carnet.giftcards.services, with conditional updates
(`… WHERE balance_minor >= x`) so that two invoices racing for one balance cannot overspend it;
the check constraint is the last line of defence.
"""

from django.conf import settings
from django.db import models
from django.db.models.functions import Upper

from carnet.people.models import Patient


class GiftCard(models.Model):
    code = models.CharField(max_length=40)  # stored upper-case; looked up case-insensitively
    balance_minor = models.BigIntegerField(default=0)
    # Part of the balance being refunded by card, whose outcome is not recorded yet: not spendable.
    held_minor = models.BigIntegerField(default=0)
    purchaser = models.ForeignKey(
        Patient, null=True, blank=True, on_delete=models.PROTECT, related_name="gift_cards_bought"
    )
    recipient_name = models.CharField(max_length=120, blank=True)
    recipient_email = models.EmailField(blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField()
    # For cards sold online: "<patient id>:<form key>", so a retried sale finds its card.
    sale_key = models.CharField(max_length=120, null=True, blank=True, unique=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(Upper("code"), name="gift_card_code_unique_ci"),
            models.CheckConstraint(
                condition=models.Q(balance_minor__gte=0), name="gift_card_balance_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(held_minor__gte=0, held_minor__lte=models.F("balance_minor")),
                name="gift_card_held_within_balance",
            ),
        ]

    def __str__(self):
        return f"Gift card {self.code}"


class GiftCardTransaction(models.Model):
    """One change to a card's balance; `amount_minor` is signed (+ adds to the balance)."""

    class Kind(models.TextChoices):
        LOAD = "load", "Load"
        RELOAD = "reload", "Reload"
        REDEEM = "redeem", "Redeem"
        TRANSFER_IN = "transfer_in", "Transfer in"
        TRANSFER_OUT = "transfer_out", "Transfer out"
        REFUND = "refund", "Refund"

    gift_card = models.ForeignKey(GiftCard, on_delete=models.PROTECT, related_name="transactions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount_minor = models.BigIntegerField()
    balance_after_minor = models.BigIntegerField()
    payment = models.ForeignKey(
        "billing.Payment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="gift_card_transactions",
    )
    invoice = models.ForeignKey(
        "billing.Invoice",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="gift_card_transactions",
    )
    other_gift_card = models.ForeignKey(
        GiftCard, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-at", "-id"]
