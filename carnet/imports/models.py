"""Imports from the clinic's previous system (SPEC 15): each file committed is a batch, and each
row it created is a record under the row's external id, so the same file run again creates nothing
twice and a batch can be undone while nothing it brought in has been used."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Kind(models.TextChoices):
    PATIENTS = "patients", "Patients"
    PACKAGES = "packages", "Packages"
    MEMBERSHIPS = "memberships", "Memberships"
    CREDIT = "credit", "Account credit"
    GIFT_CARDS = "gift_cards", "Gift cards"


class ImportBatch(models.Model):
    Kind = Kind
    kind = models.CharField(max_length=16, choices=Kind.choices)
    file_name = models.CharField(max_length=200)
    file_sha256 = models.CharField(max_length=64)
    encoding = models.CharField(
        max_length=40
    )  # as detected: "UTF-8", "UTF-8 with BOM", "Windows-1252", "XLSX"
    cut_over = models.DateField()  # opening balances are dated the start of this day, clinic time
    rows = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)  # already imported by an earlier batch
    money_minor = models.BigIntegerField(default=0)  # opening balances brought in
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self):
        return f"Import #{self.pk} ({self.get_kind_display().lower()}, {self.file_name})"


class ImportedRecord(models.Model):
    """One row brought in: what it became (`object_id` of the kind's model) and its opening-balance
    journal transaction, if it carried money."""

    batch = models.ForeignKey(ImportBatch, on_delete=models.PROTECT, related_name="records")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    external_id = models.CharField(max_length=120)
    line = models.PositiveIntegerField()
    object_id = models.BigIntegerField()
    txn_id = models.BigIntegerField(null=True, blank=True)
    live = models.BooleanField(default=True)  # False once its batch is undone

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "external_id"],
                condition=Q(live=True),
                name="imported_once_per_external_id",
            )
        ]


class ImportFile(models.Model):
    """A file uploaded on the import page, kept between the dry run (and its column mapping) and the
    commit, then removed. In the database so every web process sees it."""

    file_name = models.CharField(max_length=200)
    data = models.BinaryField()
    uploaded_at = models.DateTimeField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
