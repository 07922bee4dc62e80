from django import forms

from carnet.clinic.models import IncomeCategory, Location, Treatment
from carnet.core.permissions import AccessLevel

from .models import FamilyLink, Patient, Shift, StaffMember
from .services import PATIENT_FIELDS


class PatientForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = list(PATIENT_FIELDS)
        widgets = {
            "date_of_birth": forms.DateInput(attrs={"type": "date"}),
            "address": forms.Textarea(attrs={"rows": 2}),
            "notes": forms.Textarea(attrs={"rows": 3}),
        }

    def _post_clean(self):
        pass  # the service validates


class FamilyLinkForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[
            ("guardian", "is the guardian of"),
            ("spouse", "is the spouse of"),
            ("dependant", "is a dependant of"),
        ],
        label="This patient",
        widget=forms.Select(attrs={"aria-label": "Family link"}),
    )  # shown inline, no <label>
    relative = forms.ModelChoiceField(
        queryset=Patient.objects.all(),
        label="Relative",
        widget=forms.Select(attrs={"aria-label": "Relative"}),
    )

    def __init__(self, *args, patient=None, **kwargs):
        super().__init__(*args, **kwargs)
        if patient is not None:
            self.fields["relative"].queryset = Patient.objects.exclude(pk=patient.pk)


class StaffCreateForm(forms.Form):
    display_name = forms.CharField(max_length=120, label="Name")
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)
    access_level = forms.TypedChoiceField(
        choices=AccessLevel.choices, coerce=int, initial=AccessLevel.FRONT_DESK
    )
    can_access_billing = forms.BooleanField(required=False, initial=True)
    is_practitioner = forms.BooleanField(required=False)
    location_ids = forms.ModelMultipleChoiceField(
        queryset=Location.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Locations",
    )

    def clean_location_ids(self):
        return [loc.pk for loc in self.cleaned_data["location_ids"]]


class StaffEditForm(forms.ModelForm):
    email = forms.EmailField(required=False)
    location_ids = StaffCreateForm.base_fields["location_ids"]
    treatment_ids = forms.ModelMultipleChoiceField(
        queryset=Treatment.objects.filter(is_active=True).order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Treatments offered",
        help_text="A practitioner's booking form lists only these; none ticked: every treatment.",
    )

    class Meta:
        model = StaffMember
        fields = [
            "display_name",
            "access_level",
            "can_access_billing",
            "is_practitioner",
            "is_active",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["email"].initial = self.instance.user.email
            self.fields["location_ids"].initial = list(
                self.instance.locations.values_list("pk", flat=True)
            )
            self.fields["treatment_ids"].initial = list(
                self.instance.treatments.values_list("pk", flat=True)
            )

    clean_location_ids = StaffCreateForm.clean_location_ids

    def clean_treatment_ids(self):
        return [t.pk for t in self.cleaned_data["treatment_ids"]]

    def _post_clean(self):
        pass


class ShiftForm(forms.ModelForm):
    class Meta:
        model = Shift
        fields = ["location", "weekday", "start_time", "end_time"]
        widgets = {
            "start_time": forms.TimeInput(attrs={"type": "time"}),
            "end_time": forms.TimeInput(attrs={"type": "time"}),
        }

    def _post_clean(self):
        pass


class CommissionRateForm(forms.Form):
    income_category = forms.ModelChoiceField(queryset=IncomeCategory.objects.all())
    rate = forms.DecimalField(min_value=0, max_value=100, decimal_places=3, label="Rate %")


FAMILY_KINDS = FamilyLink.Kind
