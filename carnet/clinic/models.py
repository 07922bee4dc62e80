"""Clinic set-up (SPEC section 2): one clinic per installation, its locations and catalog."""

from zoneinfo import available_timezones

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from carnet.core.money import ISO_4217, Money

_ZONES = sorted(available_timezones())
TIME_ZONE_CHOICES = [(z, z) for z in _ZONES]


def validate_time_zone(value: str) -> None:
    if value not in _ZONES:
        raise ValidationError(f"“{value}” is not a time zone; use a name like America/Toronto.")


def validate_currency(value: str) -> None:
    if value not in ISO_4217:
        raise ValidationError(
            f"“{value}” is not an ISO 4217 currency code; use one like CAD or EUR, in capitals."
        )


def validate_retry_days(value: str) -> None:
    parts = [part.strip() for part in (value or "").split(",")]
    if not all(part.isdigit() and 1 <= int(part) <= 60 for part in parts) or len(parts) > 10:
        raise ValidationError(
            "Enter up to 10 numbers of days from 1 to 60, separated by commas, like 1,3,7."
        )


class Clinic(models.Model):
    """The single clinic this installation runs (row pk=1), with its policies."""

    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="CAD", validators=[validate_currency])
    time_zone = models.CharField(
        max_length=64, default="America/Toronto", validators=[validate_time_zone]
    )
    locale = models.CharField(max_length=20, default="en-CA")
    address = models.TextField(blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    invoice_prefix = models.CharField(max_length=10, blank=True, default="")
    no_show_fee_minor = models.BigIntegerField(default=0, validators=[MinValueValidator(0)])
    allow_double_booking = models.BooleanField(default=False)
    cancellation_window_hours = models.PositiveIntegerField(
        default=24,
        validators=[MaxValueValidator(24 * 60)],
        help_text="Patients can cancel online up to this many hours before an appointment.",
    )
    # One patient could otherwise book every free slot online (SPEC 14, issue 18 point 7).
    online_bookings_per_patient = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="The most upcoming appointments a patient may hold from online booking at once.",
    )
    # Full Access and Account Owner always need a second factor; this asks it of every staff login.
    two_factor_all_staff = models.BooleanField(
        default=False,
        verbose_name="Two-factor log-in for all staff",
        help_text=(
            "Every staff login must use an authenticator app (Full Access and Account Owner "
            "always must)."
        ),
    )
    online_sales_enabled = models.BooleanField(default=False)
    gift_cards_enabled = models.BooleanField(default=True)
    gift_card_load_limit_minor = models.BigIntegerField(
        default=100000, validators=[MinValueValidator(0)]
    )
    gift_card_online_sales_enabled = models.BooleanField(default=False)
    gift_card_online_minimum_minor = models.BigIntegerField(
        default=2500, validators=[MinValueValidator(0)]
    )

    class PassExpiryRule(models.TextChoices):  # SPEC 9.10: where the law forbids or limits expiry
        ALLOWED = "allowed", "Passes may expire"
        FORBIDDEN = "forbidden", "Passes never expire"
        MINIMUM = "minimum", "Passes may expire after a minimum duration"

    class PassExpiryPreset(
        models.TextChoices
    ):  # issue 23: the law of the clinic's place, on top of the rule
        NONE = "none", "None (the rule below)"
        QUEBEC = "quebec", "Quebec"
        ONTARIO = "ontario", "Ontario / no expiry"
        US_FEDERAL = "us_federal", "US federal (gift cards ≥ 5 years)"

    pass_expiry_preset = models.CharField(
        "Pass expiry preset",
        max_length=12,
        choices=PassExpiryPreset.choices,
        default=PassExpiryPreset.NONE,
        help_text=(
            "Quebec: packages never expire (only unlimited-use memberships over a fixed period "
            "end), a balance under 5.00 is refunded on request. Ontario: passes never expire. "
            "US federal: no expiry sooner than 5 years after purchase. None: the expiry rule "
            "below. The preset's rule and its disclosure line are printed on sale receipts and "
            "shown in the portal. Changing it never alters passes already sold: "
            "each keeps the terms it was sold with."
        ),
    )
    pass_expiry_rule = models.CharField(
        max_length=10,
        choices=PassExpiryRule.choices,
        default=PassExpiryRule.ALLOWED,
        help_text="Used when the preset is None.",
    )
    pass_expiry_minimum_days = models.PositiveIntegerField(
        default=0,
        help_text=(
            "With the minimum rule: a pass expires no sooner than this many days after purchase."
        ),
    )

    class BreakageMethod(models.TextChoices):  # issue 23 point 5: the accountant's choice
        EXPIRY = "expiry", "At expiry (unused value when a package expires)"
        PROPORTIONAL = "proportional", "In proportion to redemptions (ASC 606-10-55-48)"

    breakage_method = models.CharField(
        max_length=12,
        choices=BreakageMethod.choices,
        default=BreakageMethod.EXPIRY,
        help_text=(
            "In proportion to redemptions: each use of a package also recognises its share of the "
            "breakage its template expects (the template's expected breakage rate); "
            "what is left is trued up when the package expires or ends. Applies to packages sold "
            "from now on; those already sold keep theirs."
        ),
    )

    class MembershipProration(
        models.TextChoices
    ):  # issue 22 point 6: changing a member's plan at once
        PRORATE = "prorate", "Credit the unused days and charge the rest of the new plan's cycle"
        NONE = "none", "No proration: the new price applies from the next cycle"

    membership_proration = models.CharField(
        max_length=10,
        choices=MembershipProration.choices,
        default=MembershipProration.PRORATE,
        help_text=(
            "When staff change a member's plan at once. Changes at the next cycle are never "
            "prorated."
        ),
    )
    pass_expiry_reminder_days = models.PositiveIntegerField(
        default=14,
        help_text="Email the patient this many days before a pass expires (0: no reminder).",
    )
    insurer_ready_receipts = models.BooleanField(
        default=False,
        help_text=(
            "Receipts of pass-covered visits show the visit's prepaid value (the pass's price ÷ "
            "its uses) as paid, so an insurer sees what the visit cost."
        ),
    )
    charges_preview_email = models.BooleanField(
        "Email tomorrow's automatic charges",
        default=False,
        help_text=(
            "Each night the daily job emails the account owner the card charges it will make the "
            "next day (patient, amount, card, what for), so a card can be fixed before it fails."
        ),
    )
    charges_preview_sent_for = models.DateField(
        null=True, blank=True, editable=False
    )  # the day last emailed

    # Dunning (issue 22, passes/dunning.py and passes/memberships/overdue.py):
    # memberships whose card payments fail.
    dunning_retry_days = models.CharField(
        "Retry declined card payments after (days)",
        max_length=40,
        default="1,3,7",
        validators=[validate_retry_days],
        help_text=(
            "After a soft decline (insufficient funds, a processing error) the card is tried "
            "again this many days after each failed try, e.g. 1,3,7. A hard decline (lost or "
            "stolen card, closed account, do not honour, expired card) is never retried: "
            "the patient is asked for a new card."
        ),
    )
    dunning_write_off = models.BooleanField(
        "Write off a cycle when its last retry fails",
        default=False,
        help_text=(
            "The cycle is not charged again and gives no uses; the membership goes on with the "
            "next cycle instead of owing cycles that stack up."
        ),
    )
    past_due_suspend_days = models.PositiveIntegerField(
        "Stop covering new bookings after (days past due)",
        default=14,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text=(
            "A membership this many days past due no longer covers new bookings (existing "
            "bookings stay covered; staff may override)."
        ),
    )
    past_due_end_days = models.PositiveIntegerField(
        "Then act after (days past due)",
        default=45,
        validators=[MinValueValidator(1), MaxValueValidator(730)],
    )

    class PastDueEndAction(models.TextChoices):
        SUSPEND = "suspend", "Keep it suspended"
        CANCEL = "cancel", "Cancel the membership"

    past_due_end_action = models.CharField(
        "What then",
        max_length=8,
        choices=PastDueEndAction.choices,
        default=PastDueEndAction.SUSPEND,
    )

    def clean(self):
        if (
            self.past_due_end_days is not None
            and self.past_due_suspend_days is not None
            and self.past_due_end_days < self.past_due_suspend_days
        ):
            raise ValidationError(
                {
                    "past_due_end_days": (
                        "Act on a past-due membership on or after the day it stops covering "
                        f"bookings ({self.past_due_suspend_days} days)."
                    )
                }
            )

    def __str__(self):
        return self.name

    def retry_days(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.dunning_retry_days.split(",") if part.strip())

    def money(self, minor: int) -> Money:
        return Money(int(minor), self.currency)


class Location(models.Model):
    name = models.CharField(max_length=120, unique=True)
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone])
    address = models.TextField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Discipline(models.Model):
    name = models.CharField(max_length=120, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class IncomeCategory(models.Model):
    name = models.CharField(max_length=120, unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "income categories"

    def __str__(self):
        return self.name


class Tax(models.Model):
    name = models.CharField(max_length=60, unique=True)
    # Percent with three decimals (13.000 = 13 %); Decimal, never float.
    rate = models.DecimalField(
        max_digits=6, decimal_places=3, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    registration_number = models.CharField(max_length=60, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "taxes"

    def __str__(self):
        return f"{self.name} ({self.rate.normalize()}%)" if self.rate is not None else self.name


class PricedItem(models.Model):
    """What treatments and products share: a price, its taxes and where the revenue goes."""

    name = models.CharField(max_length=160)
    price_minor = models.BigIntegerField(validators=[MinValueValidator(0)])
    tax_inclusive = models.BooleanField(
        default=False, help_text="The price already includes its taxes."
    )
    taxes = models.ManyToManyField(Tax, blank=True)
    income_category = models.ForeignKey(IncomeCategory, on_delete=models.PROTECT)
    is_active = models.BooleanField(default=True)

    class Meta:
        abstract = True
        ordering = ["name"]

    def __str__(self):
        return self.name


class Treatment(PricedItem):
    class Kind(models.TextChoices):
        INDIVIDUAL = "individual", "Individual"
        GROUP = "group", "Group"
        CLASS = "class", "Class"

    discipline = models.ForeignKey(Discipline, on_delete=models.PROTECT, related_name="treatments")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INDIVIDUAL)
    duration_minutes = models.PositiveIntegerField(
        validators=[MinValueValidator(5), MaxValueValidator(24 * 60)]
    )
    online_bookable = models.BooleanField(default=False)
    capacity = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Places in a class or group.",
    )

    class Meta(PricedItem.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["discipline", "name"], name="treatment_name_per_discipline"
            )
        ]

    def clean(self):
        if self.kind == self.Kind.CLASS and not self.capacity:
            raise ValidationError({"capacity": "A class needs a capacity of at least 1."})
        if self.kind == self.Kind.INDIVIDUAL and self.capacity not in (None, 1):
            raise ValidationError(
                {"capacity": "An individual treatment has one patient; leave capacity empty."}
            )


class Product(PricedItem):
    stock = models.IntegerField(default=0)
    sku = models.CharField(max_length=60, blank=True)

    class Meta(PricedItem.Meta):
        constraints = [models.UniqueConstraint(fields=["name"], name="product_name_unique")]
