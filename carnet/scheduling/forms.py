"""Forms for the schedule pages. Times are entered as wall-clock times in the
location's time zone."""

import datetime as dt
from zoneinfo import ZoneInfo

from django import forms

from carnet.clinic.models import Location, Treatment
from carnet.core.limits import FIRST_YEAR, LAST_YEAR
from carnet.people.models import Patient, StaffMember

from .selectors import treatments_offered

LOCAL = forms.DateTimeInput(attrs={"type": "datetime-local", "step": 300}, format="%Y-%m-%dT%H:%M")


def aware(local: dt.datetime, location: Location) -> dt.datetime:
    """A wall-clock time at `location` as an aware instant."""
    return local.replace(tzinfo=ZoneInfo(location.time_zone))


class StartField(forms.DateTimeField):
    """A wall-clock start within the years Carnet accepts (0001 or 9999 would
    overflow in a time zone)."""

    def __init__(self, **kwargs):
        super().__init__(widget=LOCAL, input_formats=["%Y-%m-%dT%H:%M"], **kwargs)

    def validate(self, value):
        super().validate(value)
        if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise forms.ValidationError(f"Choose a date between {FIRST_YEAR} and {LAST_YEAR}.")


class BookForm(forms.Form):
    treatment = forms.ModelChoiceField(
        queryset=Treatment.objects.filter(is_active=True).order_by("name")
    )
    patient = forms.ModelChoiceField(
        queryset=Patient.objects.none(),
        error_messages={"required": "Find the patient and choose them."},
    )
    practitioner = forms.ModelChoiceField(
        queryset=StaffMember.objects.filter(is_practitioner=True, is_active=True).order_by(
            "display_name"
        )
    )
    start = StartField(label="Start (location time)")
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    package = forms.ChoiceField(
        choices=[
            ("auto", "Auto: use a paid package that covers it"),
            ("none", "None: bill the visit"),
        ],
        initial="auto",
        required=False,
        help_text=(
            "Auto picks the package expiring first; you can change it later in the appointment "
            "panel."
        ),
    )
    form_key = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(
        self,
        *args,
        patients,
        passes: bool = True,
        practitioner: StaffMember | None = None,
        **kwargs,
    ):
        """`practitioner`: the one booked (a slot's), whose treatments alone are offered."""
        super().__init__(*args, **kwargs)
        self.fields["patient"].queryset = patients
        if practitioner is not None:
            self.fields["treatment"].queryset = treatments_offered(practitioner)
            self.fields["treatment"].error_messages["invalid_choice"] = (
                f"{practitioner} does not offer that treatment; choose one of their treatments."
            )
        if (
            not passes
        ):  # staff without PASS_USE book without packages (passes.redeeming.visits.after_booking)
            del self.fields["package"]

    def clean(self):
        data = super().clean()
        who, what = data.get("practitioner"), data.get("treatment")
        if (
            who is not None
            and what is not None
            and not treatments_offered(who).filter(pk=what.pk).exists()
        ):
            self.add_error(
                "treatment", f"{who} does not offer {what.name}; choose one of their treatments."
            )
        return data


class StartForm(forms.Form):
    start = StartField(label="New start (location time)")


class JoinForm(forms.Form):
    patient = forms.ModelChoiceField(queryset=Patient.objects.order_by("last_name", "first_name"))


class ClassForm(forms.Form):
    treatment = forms.ModelChoiceField(
        label="Class",
        queryset=Treatment.objects.filter(is_active=True, kind=Treatment.Kind.CLASS).order_by(
            "name"
        ),
    )
