"""Closing the month (SPEC 15): how the clinic's accounting software names each Carnet account, and
every journal export made, with its period, so a later export of the same period warns and a later
posting into an exported period shows as "changed since export"."""

from django.conf import settings
from django.db import models


class AccountMapping(models.Model):
    """A Carnet ledger account and the clinic's own account it goes to."""

    account = models.OneToOneField(
        "ledger.Account", on_delete=models.PROTECT, related_name="mapping"
    )
    name = models.CharField(
        max_length=159, blank=True
    )  # QuickBooks (Online and Desktop): "Parent:Sub" allowed
    code = models.CharField(max_length=10, blank=True)  # Xero's account code
    tax_rate = models.CharField(
        max_length=60, blank=True
    )  # Xero's tax rate name; blank = the export's default
    updated_at = models.DateTimeField()
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["account__code"]

    def __str__(self):
        return f"{self.account_id} → {self.name or self.code}"


class JournalExport(models.Model):
    class Format(models.TextChoices):
        QBO = "qbo", "QuickBooks Online (journal entries CSV)"
        XERO = "xero", "Xero (manual journals CSV)"
        IIF = "iif", "QuickBooks Desktop (IIF)"

    format = models.CharField(max_length=8, choices=Format.choices)
    start = models.DateField()
    end = models.DateField()  # inclusive, clinic time
    detailed = models.BooleanField(default=False)  # one journal per transaction; else one per day
    journals = models.PositiveIntegerField(default=0)
    lines = models.PositiveIntegerField(default=0)
    debits_minor = models.BigIntegerField(default=0)
    txn_count = models.PositiveIntegerField(default=0)
    last_txn_id = models.BigIntegerField(default=0)  # the newest journal transaction it included
    files = models.JSONField(default=list)  # [{"name", "sha256", "lines"}]
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"Export #{self.pk} ({self.get_format_display()}, {self.start} to {self.end})"
