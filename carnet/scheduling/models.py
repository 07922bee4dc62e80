"""Appointments (SPEC section 4). Individual, group and class share one shape: an Appointment
(the time slot) and its Visits (who is in it), each visit with its own status and invoice, so
arrival and no-show code works per visit for every kind."""

from django.db import models

from carnet.billing.models import Invoice
from carnet.clinic.models import Location, Treatment
from carnet.people.models import Patient, StaffMember


class Status(models.TextChoices):
    BOOKED = "booked", "Booked"
    ARRIVED = "arrived", "Arrived"
    NO_SHOW = "no_show", "No-show"
    CANCELLED = "cancelled", "Cancelled"


class Appointment(models.Model):
    class BookedBy(models.TextChoices):
        STAFF = "staff", "Staff"
        ONLINE = "online", "Online"

    Status = Status

    treatment = models.ForeignKey(Treatment, on_delete=models.PROTECT)
    practitioner = models.ForeignKey(
        StaffMember, on_delete=models.PROTECT, related_name="appointments"
    )
    location = models.ForeignKey(Location, on_delete=models.PROTECT)
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BOOKED)
    booked_by = models.CharField(max_length=10, choices=BookedBy.choices, default=BookedBy.STAFF)
    booked_by_staff = models.ForeignKey(
        StaffMember, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["start", "pk"]
        indexes = [
            models.Index(fields=["practitioner", "start"]),
            models.Index(fields=["location", "start"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end__gt=models.F("start")), name="appointment_ends_after_start"
            )
        ]

    def __str__(self):
        return f"{self.treatment} with {self.practitioner} at {self.start:%Y-%m-%d %H:%M}"

    @property
    def kind(self) -> str:
        return self.treatment.kind


class Visit(models.Model):
    """A patient's visit: one patient in one appointment. Group: one primary (first booked) and
    secondaries; class: participants, each arriving and billed on their own."""

    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary"
        SECONDARY = "secondary", "Secondary"
        PARTICIPANT = "participant", "Participant"

    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="visits")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="visits")
    role = models.CharField(max_length=12, choices=Role.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BOOKED)
    # The arrival or no-show-fee invoice this visit caused (group: on the primary's visit only).
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    booked_at = models.DateTimeField()

    class Meta:
        ordering = ["booked_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "patient"], name="patient_once_per_appointment"
            )
        ]

    def __str__(self):
        return f"{self.patient} in {self.appointment}"


class Break(models.Model):
    """Time a practitioner is not bookable inside a shift (lunch, admin, time off)."""

    practitioner = models.ForeignKey(StaffMember, on_delete=models.CASCADE, related_name="breaks")
    location = models.ForeignKey(Location, on_delete=models.PROTECT)
    start = models.DateTimeField()
    end = models.DateTimeField()
    reason = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["start", "pk"]
        indexes = [models.Index(fields=["practitioner", "start"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(end__gt=models.F("start")), name="break_ends_after_start"
            )
        ]

    def __str__(self):
        return f"{self.practitioner} break at {self.start:%Y-%m-%d %H:%M}"
