"""Staff members (access levels) and patients (family links) — SPEC section 2 and 8."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from carnet.clinic.models import IncomeCategory, Location
from carnet.core.permissions import AccessLevel


class StaffMember(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="staff"
    )
    display_name = models.CharField(max_length=120)
    access_level = models.PositiveSmallIntegerField(
        choices=AccessLevel.choices, default=AccessLevel.FRONT_DESK
    )
    can_access_billing = models.BooleanField(default=True)
    is_practitioner = models.BooleanField(default=False)
    locations = models.ManyToManyField(Location, blank=True, related_name="staff")
    # What a practitioner offers: the desk's booking form lists only these
    # (none chosen: every treatment).
    treatments = models.ManyToManyField(
        "clinic.Treatment", blank=True, related_name="practitioners"
    )
    is_active = models.BooleanField(default=True)
    # SHA-256 of the secret in the practitioner's private calendar feed URL (empty: no feed).
    calendar_feed_digest = models.CharField(
        max_length=64, blank=True, db_index=True, editable=False
    )

    class Meta:
        ordering = ["display_name"]

    def __str__(self):
        return self.display_name

    @property
    def access_label(self) -> str:
        return AccessLevel(self.access_level).label


class CommissionRate(models.Model):
    """A staff member's share of revenue in one income category, in percent."""

    staff = models.ForeignKey(
        StaffMember, on_delete=models.CASCADE, related_name="commission_rates"
    )
    income_category = models.ForeignKey(IncomeCategory, on_delete=models.PROTECT)
    rate = models.DecimalField(
        max_digits=6, decimal_places=3, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["staff", "income_category"], name="one_rate_per_category"
            )
        ]

    def __str__(self):
        return f"{self.staff} {self.income_category} {self.rate.normalize()}%"


class Shift(models.Model):
    """Weekly availability at one location (weekday 0 = Monday), in the location's time zone."""

    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="shifts")
    location = models.ForeignKey(Location, on_delete=models.PROTECT)
    weekday = models.PositiveSmallIntegerField(
        choices=[
            (0, "Monday"),
            (1, "Tuesday"),
            (2, "Wednesday"),
            (3, "Thursday"),
            (4, "Friday"),
            (5, "Saturday"),
            (6, "Sunday"),
        ]
    )
    start_time = models.TimeField()
    end_time = models.TimeField()

    class Meta:
        ordering = ["weekday", "start_time"]

    def __str__(self):
        return (
            f"{self.get_weekday_display()} {self.start_time:%H:%M}–{self.end_time:%H:%M} @ "
            f"{self.location}"
        )

    def clean(self):
        if self.start_time and self.end_time and self.end_time <= self.start_time:
            raise ValidationError({"end_time": "The shift must end after it starts."})


class ApiToken(models.Model):
    """A per-staff token for integrations; only its SHA-256 is stored."""

    staff = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"


def digits(text: str) -> str:
    return re.sub(r"\D", "", text or "")


class Patient(models.Model):
    first_name = models.CharField(max_length=80)
    last_name = models.CharField(max_length=80)
    preferred_name = models.CharField(max_length=80, blank=True)
    email = models.EmailField(blank=True, db_index=True)
    phone = models.CharField(max_length=40, blank=True)
    phone_digits = models.CharField(max_length=40, blank=True, db_index=True, editable=False)
    date_of_birth = models.DateField(null=True, blank=True)
    address = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="patient",
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        indexes = [models.Index(fields=["last_name", "first_name"])]

    def __str__(self):
        return self.full_name

    @property
    def full_name(self) -> str:
        first = (
            f"{self.first_name} ({self.preferred_name})" if self.preferred_name else self.first_name
        )
        return f"{first} {self.last_name}"

    def save(self, *args, **kwargs):
        self.phone_digits = digits(self.phone)
        super().save(*args, **kwargs)


class FamilyLink(models.Model):
    """guardian: `patient` is the guardian of `relative`; spouse: symmetric, stored once."""

    class Kind(models.TextChoices):
        GUARDIAN = "guardian", "Guardian of"
        SPOUSE = "spouse", "Spouse of"

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="links_out")
    relative = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="links_in")
    kind = models.CharField(max_length=10, choices=Kind.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["patient", "relative"], name="one_link_per_pair"),
            models.CheckConstraint(
                condition=~models.Q(patient=models.F("relative")), name="no_self_link"
            ),
        ]

    def __str__(self):
        return f"{self.patient} — {self.get_kind_display().lower()} — {self.relative}"


class LoginFailure(models.Model):
    """One failed log-in, kept while it can still count towards a wait (people.login_throttle)."""

    at = models.DateTimeField(db_index=True)
    username = models.CharField(max_length=254, db_index=True)  # as typed, lower-cased
    ip = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    # From a browser where this login has logged in before (a signed device cookie): counted for the
    # IP, never towards the username's wait, so nobody elsewhere can keep the owner out.
    trusted_device = models.BooleanField(default=False)

    def __str__(self):
        return f"{self.username} from {self.ip} at {self.at:%Y-%m-%d %H:%M:%S}"


class SignUpEvent(models.Model):
    """One online sign-up, kept for an hour to limit sign-ups per IP address
    (people.login_throttle)."""

    at = models.DateTimeField(db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True, db_index=True)

    def __str__(self):
        return f"sign-up from {self.ip} at {self.at:%Y-%m-%d %H:%M:%S}"


class LoginSession(models.Model):
    """A logged-in session as its login sees it on "Your sessions" (people.login_sessions)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="login_sessions"
    )
    session_key = models.CharField(max_length=64, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    last_active_at = models.DateTimeField()

    def __str__(self):
        return f"{self.user} from {self.ip} since {self.created_at:%Y-%m-%d %H:%M}"
